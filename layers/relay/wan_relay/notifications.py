"""DashScope's task-finished notifications, received over HTTPS and kept as hints for the sweeper.

Alibaba Cloud EventBridge delivers DashScope's `dashscope:System:AsyncTaskFinish` events (source
`acs.dashscope`, one per task end, success or failure) to an HTTP target, which POSTs the complete event
(a CloudEvents 1.0 envelope, the task in `data`). `receive` takes such a request as API Gateway's HTTP API
(payload format 2.0) or a Lambda function URL hands it over, checks the shared token header in constant
time, validates the event and puts one `Hint` per final status. A hint is not a verdict: the resumed
workflow's GET decides, so a forged one costs a query and a blind re-park, never a wrong event.

Pure: no AWS SDK here. The token source and the hint store are given (runtime.py builds them); they raise
the relay's typed errors (errors.py) when Secrets Manager or DynamoDB fail, which answer 5xx, so that
EventBridge delivers again (a second hint for the same end is harmless: the sweeper ignores a hint for a
task it already ended). A 5xx says only what could not be done: the error's own message (it names the
secret and the account) is the answer's `detail`, for the log, never for the caller, who may have sent
no token at all.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from msgspec import Meta

from .errors import WanRelayError
from .models import TASK_ID_PATTERN, TERMINAL_PROVIDER_STATUSES
from .normalize import MAX_STATUS_CHARS, china_time_to_iso
from .registry import Hint

#: the header the EventBridge target sends the shared token in (HTTP API and function URLs lower-case names)
TOKEN_HEADER = "x-wan-relay-token"  # noqa: S105 (a header name)
#: a notification is well under 2 KiB; anything past this is not one
MAX_BODY_BYTES = 64 * 1024
EVENT_SOURCE = "acs.dashscope"
EVENT_TYPE = "dashscope:System:AsyncTaskFinish"
#: the earliest end a notification can sanely give (2023-01-01, before DashScope's task API had them), and
#: how far past the receiver's clock (clocks differ)
_EARLIEST_END = 1_672_531_200.0
_CLOCK_SKEW_SECONDS = 300.0


class TokenSource(Protocol):
    """The expected token: `current()` (cached), and `refreshed()`, read afresh, or None when it was read
    afresh too recently (a wrong token must not become a Secrets Manager read per request)."""

    def current(self) -> str: ...

    def refreshed(self) -> str | None: ...


class HintStore(Protocol):
    def put(self, hint: Hint) -> None: ...


@dataclass(frozen=True)
class FixedToken:
    """A token that never changes (tests, local runs)."""

    value: str

    def current(self) -> str:
        return self.value

    def refreshed(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return "FixedToken(<redacted>)"


@dataclass(frozen=True)
class Answer:
    """What the receiver answers: the HTTP status, an outcome for the metrics, a reason in a few words
    (never the token, never the body, nothing of the configuration), the task id when a valid one was read,
    and for the log only, the `detail` of a failure (it may name the secret, never its value)."""

    status: int
    outcome: Literal["hinted", "not_final", "rejected", "failed"]
    reason: str
    task_id: str | None = None
    headers: Mapping[str, str] | None = None
    detail: str | None = None

    def as_http(self) -> dict[str, Any]:
        """The answer in the shape HTTP API (payload format 2.0) and function URLs take."""
        body: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason}
        if self.task_id is not None:
            body["task_id"] = self.task_id
        return {"statusCode": self.status, "headers": {"content-type": "application/json", **(self.headers or {})},
                "body": json.dumps(body)}


# --- the event, as Model Studio's page documents it; unknown fields are ignored -------------------


class _TaskData(msgspec.Struct):
    task_id: Annotated[str, Meta(pattern=TASK_ID_PATTERN)]
    task_status: Annotated[str, Meta(min_length=1, max_length=MAX_STATUS_CHARS)]
    #: `yyyy-MM-dd HH:mm:ss` in China time on the page; epoch milliseconds accepted too (the list's items)
    end_time: Any = None


class _TaskFinished(msgspec.Struct):
    source: Literal["acs.dashscope"]
    type: Literal["dashscope:System:AsyncTaskFinish"]
    data: _TaskData


_DECODER = msgspec.json.Decoder(_TaskFinished)


def receive(event: Mapping[str, Any], *, tokens: TokenSource, hints: HintStore, clock: Callable[[], float]) -> Answer:
    """One HTTP request: a hint stored (2xx), a request refused (4xx), or a store or secret that failed
    (5xx: delivered again). Never raises for anything a caller sends."""
    if _method(event) != "POST":
        return Answer(405, "rejected", "only POST", headers={"allow": "POST"})
    try:
        authentic = _authentic(_header(event, TOKEN_HEADER), tokens)
    except WanRelayError as exc:
        return _failed(exc, "the token could not be checked")
    if not authentic:
        return Answer(401, "rejected", f"missing or wrong {TOKEN_HEADER}")
    body = _body(event)
    if isinstance(body, Answer):
        return body
    if body[:1] == b"[":
        # one event per request, as EventBridge's HTTP target sends it: an array is not that
        return Answer(400, "rejected", "one event per request, not an array")
    try:
        notification = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError) as exc:
        return Answer(400, "rejected", "not a task-finished notification: " + _why(exc))
    data = notification.data
    if data.task_status not in TERMINAL_PROVIDER_STATUSES:
        return Answer(200, "not_final", f"status {data.task_status} is not final: nothing kept", data.task_id)
    now = clock()
    hint = Hint(task_id=data.task_id, status=data.task_status, hinted_at=now, ended_at=_ended_at(data.end_time, now))
    try:
        hints.put(hint)
    except WanRelayError as exc:
        return _failed(exc, "the hint could not be kept", data.task_id)
    # 200, not 202: Alibaba Cloud EventBridge's HTTP sink, as its open-source code (apache/rocketmq-connect) had it
    # until late 2022, took anything but 200 for a failure and delivers a failure again for up to a day
    return Answer(200, "hinted", "kept for the sweeper", data.task_id)


def _method(event: Mapping[str, Any]) -> str | None:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    method = http.get("method") if isinstance(http, Mapping) else event.get("httpMethod")
    return method.upper() if isinstance(method, str) else None


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _authentic(given: str | None, tokens: TokenSource) -> bool:
    """Compared in constant time (`hmac.compare_digest`, on bytes: any text a caller sends compares, and
    only lengths could leak, never the token's characters); once more against a fresh read of the secret,
    so a rotated token works at once in a warm container."""
    if given is None:
        return False
    offered = given.strip().encode("utf-8", "surrogatepass")
    if hmac.compare_digest(offered, tokens.current().encode("utf-8")):
        return True
    fresh = tokens.refreshed()
    return fresh is not None and hmac.compare_digest(offered, fresh.encode("utf-8"))


def _body(event: Mapping[str, Any]) -> bytes | Answer:
    raw = event.get("body")
    if raw is None or raw == "":
        return Answer(400, "rejected", "no body")
    if not isinstance(raw, str):
        return Answer(400, "rejected", "the body is not text")
    if event.get("isBase64Encoded") is True:
        if len(raw) > (MAX_BODY_BYTES + 2) // 3 * 4:
            return Answer(413, "rejected", f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return Answer(400, "rejected", "the body is not valid base64")
    else:
        body = raw.encode("utf-8", "surrogatepass")
    if len(body) > MAX_BODY_BYTES:
        return Answer(413, "rejected", f"the body is over {MAX_BODY_BYTES} bytes")
    return body.lstrip(b" \t\r\n")


def _why(exc: Exception) -> str:
    """What was wrong, by the field's place in the event only: the sender's values are never repeated."""
    if isinstance(exc, msgspec.ValidationError):
        where = re.search(r"`(\$[.\w\[\]]*)`", str(exc))
        missing = re.search(r"missing required field `(\w+)`", str(exc))
        if missing and where:
            return f"{where.group(1)}.{missing.group(1)} is missing"
        if where:
            return f"{where.group(1)} is not what DashScope sends"
        return "not the event's shape"
    return "not valid JSON"


def _ended_at(value: Any, now: float) -> float | None:
    """The task's end in epoch seconds, when the notification gives a sane one: China time as the page
    documents it (`2023-10-25 09:45:16`), or epoch milliseconds; anything else, or out of range: None."""
    seconds: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value / 1000
    elif isinstance(value, str):
        iso = china_time_to_iso(value)
        if iso is not None:
            seconds = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    if seconds is None or not _EARLIEST_END <= seconds <= now + _CLOCK_SKEW_SECONDS:
        return None
    return seconds


def _failed(exc: WanRelayError, reason: str, task_id: str | None = None) -> Answer:
    """A secret or a store that failed: 503 when it may heal, else 500 (somebody has to fix it: a denied read,
    a missing or unusable secret); EventBridge delivers either again. The caller reads `reason` only."""
    status = 503 if exc.retryable else 500
    return Answer(status, "failed", reason, task_id, detail=exc.message)
