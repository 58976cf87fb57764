"""The relay's typed errors: what went wrong, whose fault it is, and whether trying again can help.

The class name is the contract with the workflow: Lambda reports it as `errorType`, and the state
machine's Retry and Catch match on it. Rename a class and the ASL must change with it.
Messages never carry secrets: they name the cause, never a header or a key.
"""

from __future__ import annotations


class WanRelayError(Exception):
    """Base of every error the relay raises on purpose."""

    #: machine-readable cause, carried into the completion event's `error.code`
    code: str = "RelayError"
    #: who has to act: provider, media, protocol, transient, input, operator
    category: str = "relay"
    #: whether the same call may succeed later without anybody changing anything
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_error(self) -> dict[str, object]:
        """The completion event's `error` object."""
        return {
            "code": self.code,
            "message": self.message,
            "category": self.category,
            "retryable": self.retryable,
        }


class ConfigurationError(WanRelayError):
    """A missing or invalid setting; the message names the variable."""

    code = "ConfigurationError"
    category = "operator"


class OperatorError(WanRelayError):
    """Somebody has to fix the account or the stack (bad API key, missing bucket, denied access).

    Not caught by the workflow: the execution fails under this name so an alarm fires, and it can be
    redriven once the cause is fixed. No completion event claims the task failed.
    """

    code = "OperatorError"
    category = "operator"


class InvalidInput(WanRelayError):
    """The loop input is unusable (a hostile or malformed task id, a non-object context...)."""

    code = "InvalidInput"
    category = "input"


class TransientError(WanRelayError):
    """DashScope or AWS did not answer properly this time (5xx, timeout, reset): retry with back-off."""

    code = "Transient"
    category = "transient"
    retryable = True


class ThrottledError(TransientError):
    """DashScope answered 429 with a retryable code; `retry_after` is its Retry-After, if any."""

    code = "Throttling"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class BudgetSpent(ThrottledError):
    """DashScope was not asked: the account's query budget had no slot for the query (a refused key's
    query, to be sent again with the rotated one). Waited out as a throttle, unasked."""

    code = "QueryBudgetSpent"


class ProtocolError(WanRelayError):
    """DashScope's answer is not one the relay understands (HTML page, invalid JSON, wrong types)."""

    code = "ProtocolError"
    category = "protocol"
    retryable = True


class MediaTransferError(WanRelayError):
    """A media download broke in a way that may heal (reset, cut-short body, 5xx): retry the poll."""

    code = "MediaTransferError"
    category = "media"
    retryable = True


class MediaRejected(WanRelayError):
    """A media item that can never be fetched as asked (expired URL, 404, host not allowed, oversize)."""

    code = "MediaRejected"
    category = "media"
