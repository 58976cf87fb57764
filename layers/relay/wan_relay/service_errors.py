"""What a failure of a service the relay calls means for the task: the one place where botocore's,
Powertools', requests' and urllib3's exceptions, and DashScope's and the media hosts' error answers,
become the relay's typed errors (errors.py).

One table per service lists the error codes somebody has to fix (OperatorError: the execution fails
by that name, no event claims the task failed); any other answer of an AWS service (a throttle, a
5xx, a connection that broke) may heal by itself and is a TransientError, retried. The modules that
call the services only catch and hand the exception here, with a few words on what was being done.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import requests
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import (
    InvalidInput,
    MediaRejected,
    MediaTransferError,
    OperatorError,
    ProtocolError,
    ThrottledError,
    TransientError,
    WanRelayError,
)
from .foreign_text import CODE_CHARS, MESSAGE_CHARS, sanitized

# --- AWS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsService:
    """An AWS service as the relay's errors name it, and the codes that need the operator."""

    name: str  #: as messages say it
    prefix: str  #: of the error codes (`S3.AccessDenied`)
    operator_codes: frozenset[str]

    def error_class(self, code: str) -> type[OperatorError] | type[TransientError]:
        return OperatorError if code in self.operator_codes else TransientError


#: the caller's own credentials, refused by any service
_CREDENTIALS = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                          "InvalidClientTokenId", "AccessDeniedException"})

S3 = AwsService("S3", "S3", frozenset({
    "NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "AccountProblem",
    # the bucket's SSE-KMS key disabled, pending deletion, deleted or a wrong ARN: S3 answers 400 with
    # KMS's name (a key S3 may not use is plain AccessDenied, 403)
    "KMS.DisabledException", "KMS.KMSInvalidStateException", "KMS.NotFoundException",
    "403", "404",  # HEAD answers have no body: the status is the code
}))
DYNAMODB = AwsService("DynamoDB", "DynamoDB", _CREDENTIALS | {"ResourceNotFoundException"})
EVENTBRIDGE = AwsService("EventBridge", "Events", _CREDENTIALS | {
    "ResourceNotFoundException", "NotAuthorized", "AccessDenied"})
#: GetSecretValue's refusals (the Secrets Manager API reference's "Errors"): a throttle or an
#: InternalServiceError is not among them
SECRETS_MANAGER = AwsService("Secrets Manager", "SecretsManager", _CREDENTIALS | {
    "ResourceNotFoundException", "DecryptionFailure", "InvalidRequestException", "InvalidParameterException",
    "KMS.DisabledException", "KMSAccessDeniedException"})
STEP_FUNCTIONS = AwsService("Step Functions", "StepFunctions", _CREDENTIALS)


def error_code(exc: BaseException | None) -> str | None:
    """The service's error code of a ClientError (`AccessDenied`, `ThrottlingException`), else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    return None


def aws_error(exc: BaseException, service: AwsService, subject: str) -> WanRelayError:
    """A failed call of `service` about `subject` ("the upload to bucket media"). A library's wrapper
    (Powertools' GetParameterError, IdempotencyPersistenceLayerError) is looked through: Powertools
    raises GetParameterError inside its `except` without `from`, so the SDK's error is its
    `__context__`, where IdempotencyPersistenceLayerError has it as `__cause__`."""
    cause = exc if isinstance(exc, ClientError | BotoCoreError) else (exc.__cause__ or exc.__context__)
    code = error_code(cause)
    if code is None:
        return TransientError(f"{service.name} could not be reached ({subject}): {type(cause or exc).__name__}",
                              code=f"{service.prefix}.Unreachable")
    if service.error_class(code) is OperatorError:
        return OperatorError(f"{service.name} refused {subject}: {code}", code=f"{service.prefix}.{code}")
    return TransientError(f"{service.name} failed: {code} ({subject})", code=f"{service.prefix}.{code}")


# --- DashScope's task API ---------------------------------------------------------------------

#: DashScope's codes that need the operator (a key, the account's balance or bills, a model name); the
#: bills' and the purchase's come with HTTP 429 (Model Studio's status codes)
DASHSCOPE_OPERATOR_CODES = frozenset({
    "InvalidApiKey", "AccessDenied", "Arrearage", "ModelNotFound",
    "PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased"})
#: "Allocated quota exceeded": the model's quota for a period (requests or tokens a minute) is spent, and
#: comes back by itself (Model Studio: throttled calls typically resume within a minute). Only a free
#: quota used up ("Free allocated quota exceeded") waits for the operator.
ALLOCATION_QUOTA = "Throttling.AllocationQuota"
#: the least wait after it: the quota's period
ALLOCATION_QUOTA_WAIT_SECONDS = 60.0
_FREE_QUOTA = re.compile(r"(?i)\bfree\b")


def dashscope_request_error(exc: requests.RequestException, *, reading: bool = False,
                            read_timeout: float | None = None) -> TransientError:
    """The task query could not be sent, or its answer not read: DashScope may answer next time."""
    if reading:
        return TransientError(f"DashScope's answer broke off while being read: {type(exc).__name__}",
                              code="ConnectionError")
    if isinstance(exc, requests.Timeout):
        return TransientError(f"DashScope did not answer the task query within {read_timeout:g} s", code="Timeout")
    return TransientError(f"could not reach DashScope: {type(exc).__name__}", code="ConnectionError")


def dashscope_answer_error(status: int, code: str | None, detail: str,
                           retry_after: float | None = None) -> WanRelayError:
    """DashScope answered with an HTTP error: `detail` already says so, in words fit to repeat."""
    if status == 429:
        if code == ALLOCATION_QUOTA and _FREE_QUOTA.search(detail):
            return OperatorError(detail + "; the free quota is used up, retrying does not help", code=code)
        if code in DASHSCOPE_OPERATOR_CODES:
            return OperatorError(detail, code=code)
        if code == ALLOCATION_QUOTA:
            retry_after = max(retry_after or 0.0, ALLOCATION_QUOTA_WAIT_SECONDS)
        return ThrottledError(detail, code=code or "Throttling", retry_after=retry_after)
    if status in (401, 403, 404) or code in DASHSCOPE_OPERATOR_CODES:
        default = {401: "InvalidApiKey", 403: "AccessDenied", 404: "NotFound"}.get(status, "OperatorError")
        return OperatorError(detail, code=code or default)
    if status == 400:
        return InvalidInput(detail, code=code or "InvalidParameter")
    if status >= 500:
        return TransientError(detail, code=code or f"HTTP{status}")
    return ProtocolError(detail, code=code or f"HTTP{status}")


# --- the media hosts (OSS) ----------------------------------------------------------------------

#: what reading a media body can raise: urllib3's and requests' errors, the socket's, and a file
#: closed under the reader (another part failed first and closed its answer)
MEDIA_READ_ERRORS = (Urllib3Error, requests.RequestException, OSError, ValueError, AttributeError)
#: an error answer is a small XML document; no more of it is read
_ERROR_BODY_BYTES = 16 * 1024


def media_request_error(exc: requests.RequestException) -> MediaTransferError:
    """A media request that got no answer: the host may answer the retry."""
    if isinstance(exc, requests.Timeout):
        return MediaTransferError("the media host did not answer in time", code="Timeout")
    return MediaTransferError(f"could not reach the media host: {type(exc).__name__}", code="ConnectionError")


def media_read_error(exc: BaseException, position: int) -> MediaTransferError:
    """A media body that broke off `position` bytes in."""
    return MediaTransferError(f"the media download broke after {position} bytes: {type(exc).__name__}",
                              code="StreamBroken")


def media_refusal(response: requests.Response) -> WanRelayError:
    """The typed error for a media answer that is neither a 200 nor a 206; OSS explains itself in a
    small XML body (`<Code>`, `<Message>`), whose text is repeated only as foreign_text.py allows."""
    status = response.status_code
    try:
        body = response.raw.read(_ERROR_BODY_BYTES, decode_content=True) or b""
    except Exception:
        body = b""
    text = body.decode("utf-8", "replace")
    code = _xml_field(text, "Code", CODE_CHARS)
    message = _xml_field(text, "Message", MESSAGE_CHARS)
    reason = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 403 and message and "expired" in message.lower():
        return MediaRejected(f"the media URL has expired ({reason})", code="MediaExpired")
    if status in (401, 403):
        return MediaRejected(f"the media host refused access ({reason})", code="MediaAccessDenied")
    if status in (404, 410):
        return MediaRejected(f"the media no longer exists ({reason})", code="MediaNotFound")
    if status == 429 or status >= 500:
        return MediaTransferError(f"the media host failed ({reason})", code=f"HTTP{status}")
    return MediaRejected(f"the media host answered {reason}", code=f"HTTP{status}")


def _xml_field(text: str, name: str, limit: int) -> str | None:
    """One element of OSS's XML error body (its start, if the body was cut short), fit to repeat."""
    match = re.search(rf"<{name}>([^<]+)", text)
    return (sanitized(html.unescape(match.group(1)), limit) or None) if match else None
