"""Fault matrix, InspectClaim: a lock's holder that Step Functions no longer knows, or will not let us
read, blocks the task; a DescribeExecution that fails this time (throttled, a 5xx, no connection) is a
TransientError that InspectClaim retries, never a verdict."""

from __future__ import annotations

import json
import time

import pytest
from wan_relay.claims import ClaimInspector, lock_key
from wan_relay.errors import TransientError
from wan_relay.runtime import default_client

from tests.faults.aws_faults import Injected, Refused, Unreachable, error

HOLDER = "arn:aws:states:us-east-1:123456789012:execution:wan-relay-poll-task:f470bbfd"
TASK = "f470bbfd"


@pytest.fixture(autouse=True)
def _no_sdk_backoff(monkeypatch):
    """The SDK's retry delays are real sleeps; the retries themselves still happen."""
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)


@pytest.fixture
def inspector(account) -> ClaimInspector:
    """A task lock held by HOLDER, and the inspector with the clients production builds."""
    table = account.create_idempotency_table()
    account.dynamodb.put_item(TableName=table, Item={
        "id": {"S": lock_key(TASK)}, "execution": {"S": HOLDER}, "expiration": {"N": str(int(time.time()) + 3600)}})
    return ClaimInspector(table=table, dynamodb=account.dynamodb, sfn=default_client("stepfunctions"))


def test_a_holder_step_functions_no_longer_knows_blocks_the_task(inspector):
    claim = inspector.inspect(TASK)  # moto, as Step Functions after 90 days: ExecutionDoesNotExist

    assert (claim.verdict, claim.holder, claim.holder_status) == ("blocked", HOLDER, "ExecutionDoesNotExist")


def test_a_holder_not_ours_to_read_blocks_the_task(inspector):
    Refused(inspector.sfn, "DescribeExecution", 400, error("AccessDeniedException", "not authorized"), times=99)

    claim = inspector.inspect(TASK)

    assert (claim.verdict, claim.holder_status) == ("blocked", "AccessDeniedException")


def _json_error(client, status: int, code: str) -> Injected:
    body = json.dumps({"__type": code, "message": "try again"}).encode()
    return Injected(client, "DescribeExecution", status, body, times=99, content_type="application/x-amz-json-1.0")


#: the SDK's sends of a call it retries (the first and 5 retries, as runtime.default_client sets it)
SDK_ATTEMPTS = 6


@pytest.mark.parametrize(("fault", "code", "sends"), [
    (lambda sfn: _json_error(sfn, 400, "ThrottlingException"), "StepFunctions.ThrottlingException", SDK_ATTEMPTS),
    # a modeled error of DescribeExecution the SDK does not retry: InspectClaim does
    (lambda sfn: _json_error(sfn, 400, "KmsThrottlingException"), "StepFunctions.KmsThrottlingException", 1),
    (lambda sfn: _json_error(sfn, 500, "InternalFailure"), "StepFunctions.InternalFailure", SDK_ATTEMPTS),
    (lambda sfn: _json_error(sfn, 503, "ServiceUnavailable"), "StepFunctions.ServiceUnavailable", SDK_ATTEMPTS),
    (lambda sfn: Unreachable(sfn, "DescribeExecution"), "StepFunctions.Unreachable", SDK_ATTEMPTS),
], ids=["throttled", "kms-throttled", "500", "503", "unreachable"])
def test_a_describe_execution_that_fails_this_time_is_transient_not_a_verdict(inspector, fault, code, sends):
    injected = fault(inspector.sfn)

    with pytest.raises(TransientError) as raised:
        inspector.inspect(TASK)

    assert raised.value.code == code
    assert injected.calls == sends
