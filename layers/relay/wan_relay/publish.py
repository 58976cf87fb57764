"""The completion event: fitted under EventBridge's size limit (and Step Functions' payload limit).

In the stack the workflow's EmitCompletion state puts the event; `EventPublisher` does the same put
for a wait loop run without a workflow (`wan-relay run --aws`), checking the answer entry by entry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from .foreign_text import CODE_CHARS, MESSAGE_CHARS, sanitized
from .models import DETAIL_TYPE_COMPLETED, CompletionDetail
from .service_errors import EVENTBRIDGE, aws_error

#: EventBridge's limit is 256 KB for the whole entry, Step Functions' 256 KiB for a state's input and
#: output, which carries the detail and the loop state (whose context is at most MAX_CONTEXT_BYTES)
MAX_DETAIL_BYTES = 200 * 1024
#: a caller's context larger than this is replaced by a marker when the loop starts
MAX_CONTEXT_BYTES = 32 * 1024
TEXT_KEEP_CHARS = 2000


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def trimmed_marker(value: Any) -> dict[str, Any]:
    """What replaces a value too large to carry: its size and hash, so the caller can match it."""
    raw = _json(value).encode()
    return {"_truncated": True, "_original_bytes": len(raw), "_sha256": hashlib.sha256(raw).hexdigest()}


def fit_context(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The caller's context untouched, or a marker if it would push the event past the limit."""
    if context is None or len(_json(context).encode()) <= MAX_CONTEXT_BYTES:
        return context
    return trimmed_marker(context)


def sanitize_errors(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail with its error and failure codes and messages fit to be repeated: they are, or
    carry, another party's text (DashScope's reasons, OSS's error body; foreign_text.py)."""

    def clean(entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        return {**entry, **{name: sanitized(entry[name], limit) for name, limit in
                            (("code", CODE_CHARS), ("message", MESSAGE_CHARS)) if isinstance(entry.get(name), str)}}

    return {**detail, "error": clean(detail.get("error")), "failures": [clean(f) for f in detail.get("failures", [])]}


def fit_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """Shrink an oversize detail step by step, marking what was cut, so the event is never lost."""
    detail = sanitize_errors(detail)

    def size() -> int:
        return len(_json(detail).encode())

    if size() <= MAX_DETAIL_BYTES:
        return detail
    detail = dict(detail)
    if detail.get("context") is not None:
        detail["context"] = trimmed_marker(detail["context"])
    if size() > MAX_DETAIL_BYTES:
        detail["texts"] = [
            {**t, "text": t["text"][:TEXT_KEEP_CHARS] + " [truncated]"} if len(t["text"]) > TEXT_KEEP_CHARS else t
            for t in detail.get("texts", [])
        ]
        prompt = dict(detail.get("prompt") or {})
        for name, text in prompt.items():
            if isinstance(text, str) and len(text) > TEXT_KEEP_CHARS:
                prompt[name] = text[:TEXT_KEEP_CHARS] + " [truncated]"
        detail["prompt"] = prompt
    if size() > MAX_DETAIL_BYTES:
        usage = dict(detail.get("usage") or {})
        usage["raw"] = trimmed_marker(usage.get("raw"))
        detail["usage"] = usage
    if size() > MAX_DETAIL_BYTES:
        detail["texts"] = []
        detail["failures"] = [
            {**f, "message": f["message"][:200]} for f in detail.get("failures", [])
        ]
    return detail


class EventPublisher:
    """Puts one completion event on a bus; an entry EventBridge did not accept is an error, not a send."""

    def __init__(self, events: Any, bus_name: str, source: str) -> None:
        self._events = events
        self._bus_name = bus_name
        self._source = source

    def publish(self, detail: CompletionDetail | dict[str, Any]) -> str:
        """Publishes the detail; returns EventBridge's event id."""
        if isinstance(detail, CompletionDetail):
            detail = msgspec.to_builtins(detail)
        entry = {
            "Source": self._source,
            "DetailType": DETAIL_TYPE_COMPLETED,
            "Detail": _json(detail),
            "EventBusName": self._bus_name,
        }
        try:
            answer = self._events.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, EVENTBRIDGE, f"the completion event on bus {self._bus_name}") from None
        results = answer.get("Entries") or [{}]
        result = results[0]
        if answer.get("FailedEntryCount", 0) or result.get("ErrorCode") or not result.get("EventId"):
            code = result.get("ErrorCode", "NotAccepted")
            message = f"EventBridge did not accept the completion event: {code} {result.get('ErrorMessage', '')}"
            raise EVENTBRIDGE.error_class(code)(message.strip(), code=f"Events.{code}")
        return str(result["EventId"])
