"""The completion event, fitted under the limits of everything that carries it.

The detail travels as the `event` of the loop state (Step Functions: at most 256 KiB per state input,
output and task result, UTF-8), then as the Detail of a PutEvents entry (EventBridge: at most 256 KB
per entry), and it is kept as the task's fate in DynamoDB (Powertools Idempotency: one item, at most
400 KB). The loop state also carries the caller's context, so both are capped here together; sizes
are measured as the biggest rendering they get on the way (see `utf8_size`, `record_size`). The values
the caller and DashScope choose (`context`, `usage.raw`) are also kept to what PutEvents takes as JSON
(see `unsendable`).

In the stack the workflow's EmitCompletion state puts the event; `EventPublisher` does the same put
for a wait loop run without a workflow (`wan-relay run --aws`), checking the answer entry by entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from .foreign_text import CODE_CHARS, MESSAGE_CHARS, sanitized
from .models import DETAIL_TYPE_COMPLETED, CompletionDetail
from .service_errors import EVENTBRIDGE, aws_error

#: the detail, as UTF-8 JSON: with the context below and the loop state's other fields (and Lambda's
#: answer envelope around them, about 1 KB) it stays within Step Functions' 256 KiB per state, and
#: with its source and detail-type within EventBridge's 256 KB per entry
MAX_DETAIL_BYTES = 200 * 1024
#: the detail as Powertools keeps it in the idempotency table (`json.dumps`: every non-ASCII character
#: escaped, 6 to 12 bytes): with the record's other attributes it stays within DynamoDB's 400 KB item
MAX_DETAIL_RECORD_BYTES = 380 * 1024
#: a caller's context larger than this is replaced by a marker when the loop starts
MAX_CONTEXT_BYTES = 32 * 1024
#: EventBridge's PutEvents takes JSON integers from -2**63 to 2**63 - 1 only and "will only process nested
#: JSON up to 1000 levels deep" (PutEvents API reference, docs.aws.amazon.com/eventbridge/latest/APIReference/
#: API_PutEvents.html); JSON has no NaN or Infinity (RFC 8259, section 6). Outside them an event cannot be
#: put, and EmitCompletion would fail on every retry and redrive.
EVENT_INTEGERS = range(-(2**63), 2**63)
#: the levels of objects and arrays a context or `usage.raw` may take: far under EventBridge's 1,000 with
#: the event's own levels around them, and under what Python's recursion limit (1,000 frames) leaves the
#: JSON encoders and this module's walks on the way (Lambda's runtime, msgspec, Powertools); no caller's
#: context needs a tenth of it
MAX_NESTING = 64
TEXT_KEEP_CHARS = 2000
#: what is left of any text from DashScope when a detail still does not fit after everything else
SHORT_TEXT_CHARS = 200


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def utf8_size(value: Any) -> int:
    """Bytes of `value` as UTF-8 JSON with `", "` and `": "` separators, as Lambda's Python runtime
    writes a handler's answer: never less than a compact rendering (Step Functions', EventBridge's)."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def record_size(value: Any) -> int:
    """Bytes of `value` as Powertools Idempotency stores a result: `json.dumps`, non-ASCII escaped."""
    return len(json.dumps(value).encode())


def trimmed_marker(value: Any) -> dict[str, Any]:
    """What replaces a value too large to carry: its size and hash, so the caller can match it."""
    raw = _json(value).encode()
    return {"_truncated": True, "_original_bytes": len(raw), "_sha256": hashlib.sha256(raw).hexdigest()}


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _path(parent: str, key: str | int) -> str:
    """A JSONPath step; an object key that is not a plain name is not repeated (it is the caller's data)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{parent}[...]"


def _refusal(value: Any) -> str | None:
    """Why PutEvents could not take a scalar `value` (never the value itself), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in EVENT_INTEGERS:
        return "an integer outside EventBridge's signed 64-bit range"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{'NaN' if math.isnan(value) else 'Infinity'}, which JSON cannot write"
    return None


def unsendable(value: Any, path: str = "$", levels: int = MAX_NESTING) -> str | None:
    """The first thing in `value` no event could carry, and where (`... - at $.context.order_id`): an
    integer outside EventBridge's range, NaN or Infinity, or objects and arrays nested more than `levels`
    deep (`value` itself counts as one); None when all of it can go."""
    if isinstance(value, dict | list):
        if levels <= 0:
            return f"objects and arrays nested deeper than {MAX_NESTING} levels - at `{path}`"
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            found = unsendable(item, _path(path, key), levels - 1)
            if found is not None:
                return found
        return None
    reason = _refusal(value)
    return f"{reason} - at `{path}`" if reason else None


def carried(value: Any, levels: int = MAX_NESTING) -> Any:
    """`value` with each part no event could carry (`unsendable`) replaced by its marker, so that the rest
    still goes out: for values the relay must pass on, not refuse (DashScope's `usage`). A container
    whose children would be a level too deep becomes the marker, one level itself."""
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        if levels <= 1 and any(isinstance(child, dict | list) for child in children):
            return trimmed_marker(value)
        if isinstance(value, dict):
            return {key: carried(item, levels - 1) for key, item in value.items()}
        return [carried(item, levels - 1) for item in value]
    return trimmed_marker(value) if _refusal(value) else value


def fit_context(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The caller's context untouched, or a marker if it would push the event past the limit, or if no
    event could carry it (the input check refuses such a context; a loop state written before it did may
    still hold one)."""
    if context is None or (utf8_size(context) <= MAX_CONTEXT_BYTES and unsendable(context) is None):
        return context
    return trimmed_marker(context)


def _cut(text: str, keep: int) -> str:
    return text if len(text) <= keep else text[:keep] + " [truncated]"


def _shortened(value: Any, keep: int) -> Any:
    """Every string in `value` cut to `keep` characters (objects' keys left alone)."""
    if isinstance(value, str):
        return _cut(value, keep)
    if isinstance(value, list):
        return [_shortened(item, keep) for item in value]
    if isinstance(value, dict):
        return {name: _shortened(item, keep) for name, item in value.items()}
    return value


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
    """Shrink an oversize detail step by step, marking what was cut, so the event is never lost.

    Whatever DashScope's answer held, the result fits, unless the lists of media and failures alone do
    not (hundreds of items): they are never cut, as `media` is what landed in S3. What PutEvents could not
    take at all in DashScope's `usage.raw` is marked first, whatever the size (the context came through
    `fit_context`)."""
    detail = sanitize_errors(detail)
    if isinstance(detail.get("usage"), dict):
        detail["usage"] = {**detail["usage"], "raw": carried(detail["usage"].get("raw"))}

    def fits() -> bool:
        return utf8_size(detail) <= MAX_DETAIL_BYTES and record_size(detail) <= MAX_DETAIL_RECORD_BYTES

    if fits():
        return detail
    detail = dict(detail)
    if detail.get("context") is not None:
        detail["context"] = trimmed_marker(detail["context"])
    if not fits():
        detail["texts"] = [{**t, "text": _cut(t["text"], TEXT_KEEP_CHARS)} for t in detail.get("texts", [])]
        prompt = dict(detail.get("prompt") or {})
        for name, text in prompt.items():
            if isinstance(text, str):
                prompt[name] = _cut(text, TEXT_KEEP_CHARS)
        detail["prompt"] = prompt
    if not fits():
        usage = dict(detail.get("usage") or {})
        usage["raw"] = trimmed_marker(usage.get("raw"))
        detail["usage"] = usage
    if not fits():
        detail["texts"] = []
        detail["failures"] = [
            {**f, "message": f["message"][:SHORT_TEXT_CHARS]} for f in detail.get("failures", [])
        ]
    if not fits():  # long error texts, statuses, ids: every string but the media's, cut short
        detail = {name: value if name == "media" else _shortened(value, SHORT_TEXT_CHARS)
                  for name, value in detail.items()}
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
