"""service_errors: every service's failure meets its typed error in one place, one table of
operator codes per service; a library's wrapper is looked through whether it keeps the SDK's error
as its cause or only as its context."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError, EndpointConnectionError
from wan_relay.errors import InvalidInput, OperatorError, ProtocolError, ThrottledError, TransientError
from wan_relay.service_errors import (
    DYNAMODB,
    EVENTBRIDGE,
    S3,
    SECRETS_MANAGER,
    aws_error,
    dashscope_answer_error,
)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "Operation")


@pytest.mark.parametrize(("service", "code", "kind"), [
    (S3, "NoSuchBucket", OperatorError), (S3, "403", OperatorError), (S3, "SlowDown", TransientError),
    (S3, "KMS.KMSInvalidStateException", OperatorError), (S3, "KMS.NotFoundException", OperatorError),
    (DYNAMODB, "ResourceNotFoundException", OperatorError),
    (DYNAMODB, "ProvisionedThroughputExceededException", TransientError),
    (EVENTBRIDGE, "AccessDeniedException", OperatorError), (EVENTBRIDGE, "InternalException", TransientError),
    (SECRETS_MANAGER, "DecryptionFailure", OperatorError), (SECRETS_MANAGER, "ThrottlingException", TransientError),
])
def test_each_services_codes_are_the_operators_or_may_heal(service, code, kind):
    error = aws_error(client_error(code), service, "the thing")
    assert type(error) is kind and error.code == f"{service.prefix}.{code}" and code in error.message


def _wrapped_like_powertools_parameters(cause: Exception) -> GetParameterError:
    try:
        try:
            raise cause
        except Exception as exc:
            raise GetParameterError(str(exc))  # as Powertools does: no `from`  # noqa: B904
    except GetParameterError as wrapped:
        return wrapped


def test_a_wrapper_without_from_is_looked_through_by_its_context():
    wrapped = _wrapped_like_powertools_parameters(client_error("AccessDeniedException"))
    assert wrapped.__cause__ is None
    assert isinstance(aws_error(wrapped, SECRETS_MANAGER, "the key"), OperatorError)


def test_an_unreachable_service_may_heal():
    error = aws_error(EndpointConnectionError(endpoint_url="https://s3"), S3, "the upload")
    assert isinstance(error, TransientError) and error.code == "S3.Unreachable"


@pytest.mark.parametrize(("status", "code", "kind"), [
    (401, "InvalidApiKey", OperatorError), (403, None, OperatorError), (429, "Throttling", ThrottledError),
    (429, "Throttling.AllocationQuota", ThrottledError), (429, "PrepaidBillOverdue", OperatorError),
    (400, "InvalidParameter", InvalidInput),
    (400, "Arrearage", OperatorError), (500, "InternalError", TransientError), (503, None, TransientError),
    (302, None, ProtocolError),
])
def test_dashscopes_http_errors_meet_their_types(status, code, kind):
    assert type(dashscope_answer_error(status, code, "DashScope answered")) is kind
