"""The permission contract's own parts (tests/workflow/iam_requests.py): its small operation-to-action
table checked against the IAM catalogue and botocore's API models, and its condition logic against
the rules of AWS's IAM User Guide ("Condition operators", "Conditions with multiple context keys or
values")."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from tests.workflow.iam_requests import (
    FORMAT_PARAMETERS,
    OPERATION_ACTIONS,
    PARAMETER_DEFAULTS,
    Call,
    Request,
    Unsupported,
    conditions_hold,
    integration_operation,
    requests_for,
)
from tools.check_iam import privilege, resource_formats

MODELS = botocore.session.get_session()


@pytest.mark.parametrize(("service", "operation"), sorted(OPERATION_ACTIONS))
def test_each_mapped_operation_exists_and_is_authorized_by_a_catalogue_action_of_another_name(service, operation):
    action = OPERATION_ACTIONS[(service, operation)]

    assert operation in MODELS.get_service_model(service).operation_names
    assert privilege(action) is not None, f"{action} is not in the IAM catalogue"
    # the table is needed only where IAM has no action of the operation's own name
    assert privilege(f"{service}:{operation}") is None


def test_the_parameters_that_fill_arn_formats_exist_in_the_api_and_the_catalogue() -> None:
    s3_formats = resource_formats("s3:PutObject")
    for variable, parameter in FORMAT_PARAMETERS.items():
        assert any("${" + variable + "}" in f for f in s3_formats)
        assert parameter in MODELS.get_service_model("s3").operation_model("PutObject").input_shape.members
    entry = MODELS.get_service_model("events").shape_for("PutEventsRequestEntry")
    assert set(PARAMETER_DEFAULTS) <= set(entry.members)
    assert any("${EventBusName}" in f for f in resource_formats("events:PutEvents"))


def test_step_functions_resources_name_the_api_operation() -> None:
    assert integration_operation("putItem") == "PutItem"
    assert integration_operation("invoke.waitForTaskToken") == "Invoke"
    assert integration_operation("startExecution.sync:2") == "StartExecution"


def test_a_call_becomes_the_request_iam_decides_with_only_the_keys_its_action_carries() -> None:
    call = Call("function", "s3", "UploadPart", {"Bucket": "b", "Key": "wan/t/0.mp4", "UploadId": "u"}, "us-east-1")
    lock = Call("state machine", "dynamodb", "PutItem",
                {"TableName": "locks", "Item": {"id": {"S": "lock#t"}, "execution": {"S": "x"}}}, "us-east-1")
    bus = Call("state machine", "events", "PutEvents", {"Entries": [{"Source": "s"}]}, "us-east-1")
    kwargs: dict[str, Any] = {"account": "123456789012", "principal_arn": "arn:aws:iam::123456789012:role/r",
                              "partition_keys": {"locks": "id"}}

    (upload,) = requests_for(call, **kwargs)
    (put,) = requests_for(lock, **kwargs)
    (event,) = requests_for(bus, **kwargs)

    assert (upload.action, upload.resource) == ("s3:PutObject", "arn:aws:s3:::b/wan/t/0.mp4")
    assert "s3:prefix" not in upload.context and upload.context["aws:securetransport"] == ["true"]
    assert (put.resource, put.context["dynamodb:leadingkeys"]) == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/locks", ["lock#t"])
    assert event.resource == "arn:aws:events:us-east-1:123456789012:event-bus/default"  # no EventBusName: default


def _request(**context: list[str]) -> Request:
    call = Call("function", "dynamodb", "GetItem", {}, "us-east-1")
    return Request(call, "dynamodb:GetItem", "*", {k.lower(): v for k, v in context.items()})


@pytest.mark.parametrize(("condition", "context", "holds"), [
    # a missing key (here one the action does not carry) does not match; a negated operator then holds;
    # ...IfExists holds
    ({"StringLike": {"s3:prefix": "wan/*"}}, {}, False),
    ({"StringNotLike": {"aws:PrincipalArn": "arn:*:other"}}, {}, True),
    ({"StringEqualsIfExists": {"aws:PrincipalArn": "x"}}, {}, True),
    ({"Null": {"aws:PrincipalArn": "true"}}, {}, True),
    ({"Null": {"aws:PrincipalArn": "false"}}, {}, False),
    # several values of one key: OR; negated: NOR
    ({"StringEquals": {"aws:PrincipalArn": ["a", "b"]}}, {"aws:PrincipalArn": ["b"]}, True),
    ({"StringNotEquals": {"aws:PrincipalArn": ["a", "b"]}}, {"aws:PrincipalArn": ["b"]}, False),
    # set operators on a multivalued key: ForAllValues holds over no values, ForAnyValue does not
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "lock#*"}}, {}, True),
    ({"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": "lock#*"}}, {}, False),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "lock#*"}}, {"dynamodb:LeadingKeys": ["lock#a"]}, True),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "lock#*"}},
     {"dynamodb:LeadingKeys": ["lock#a", "wan-relay.x"]}, False),
    ({"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": "lock#*"}},
     {"dynamodb:LeadingKeys": ["lock#a", "wan-relay.x"]}, True),
    # ARNs compare part by part, wildcards within a part; Bool is a string comparison
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/r"}}, {"aws:PrincipalArn": ["arn:aws:iam::1:role/r"]}, True),
    ({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::1:role/r"}}, {"aws:PrincipalArn": ["arn:aws:iam::1:role/x"]},
     False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": ["true"]}, False),
    # every operator and every key must hold: AND
    ({"Bool": {"aws:SecureTransport": "true"}, "StringEquals": {"aws:PrincipalArn": "x"}},
     {"aws:SecureTransport": ["true"], "aws:PrincipalArn": ["y"]}, False),
])
def test_conditions_hold_as_iam_evaluates_them(condition, context, holds) -> None:
    assert conditions_hold(condition, _request(**context)) is holds


@pytest.mark.parametrize("condition", [
    {"NumericLessThan": {"dynamodb:ReturnConsumedCapacity": "1"}},  # an operator family not implemented
    {"StringEquals": {"dynamodb:Select": "ALL_ATTRIBUTES"}},  # a key GetItem carries that is not computed
    {"StringEquals": {"aws:PrincipalArn": "${aws:username}"}},  # a policy variable
    {"StringLike": {"dynamodb:LeadingKeys": "a*"}},  # a single-value operator on a key with two values
])
def test_what_the_evaluator_cannot_decide_is_an_error_not_an_allow(condition) -> None:
    with pytest.raises(Unsupported):
        conditions_hold(condition, _request(**{"aws:PrincipalArn": ["x"], "dynamodb:LeadingKeys": ["a", "b"]}))
