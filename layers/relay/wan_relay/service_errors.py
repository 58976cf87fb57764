"""What a failure of a service the relay calls means for the task: the one place where botocore's,
Powertools' and requests' exceptions become the relay's typed errors (errors.py).

One table per AWS service lists the error codes somebody has to fix (OperatorError: the execution
fails by that name, no event claims the task failed); any other answer of a service (a throttle, a
5xx, a connection that broke) may heal by itself and is a TransientError, retried.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from .errors import OperatorError, TransientError, WanRelayError

#: GetSecretValue's refusals (AWS Secrets Manager API reference, "Errors") and the caller's own
#: credentials: a throttle or InternalServiceError is not among them
SECRETS_MANAGER_OPERATOR_CODES = frozenset({
    "AccessDeniedException", "ResourceNotFoundException", "DecryptionFailure", "InvalidRequestException",
    "InvalidParameterException", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "KMS.DisabledException", "KMSAccessDeniedException",
})


def error_code(exc: BaseException | None) -> str | None:
    """The service's error code of a ClientError (`AccessDenied`, `ThrottlingException`), else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "Unknown")
    return None


def secret_read_error(exc: BaseException, secret_id: str) -> WanRelayError:
    """A failed read of the key's secret through Powertools. Powertools raises GetParameterError
    inside its `except` without `from`: the SDK's error is its `__context__`, not its `__cause__`."""
    cause = exc.__cause__ or exc.__context__
    code = error_code(cause)
    if code in SECRETS_MANAGER_OPERATOR_CODES:
        return OperatorError(f"cannot read the DashScope key from secret {secret_id}: {code}",
                             code="SecretUnavailable")
    return TransientError(
        f"Secrets Manager failed to give the DashScope key from secret {secret_id}: "
        f"{code or type(cause or exc).__name__}",
        code="SecretUnavailable",
    )
