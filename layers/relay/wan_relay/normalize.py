"""Every DashScope task answer shape, reduced to one `Task`. Pure: no I/O.

Shapes handled (see events/dashscope/): wan2.6 images in `output.choices[].message.content[]`,
wan2.5-and-earlier images in `output.results[]` (with per-image failures), videos in
`output.video_url`, wan2.2-animate's `output.results` object, FAILED answers with `code`/`message`
in `output` or at the top level, and UNKNOWN. Anything else raises `ProtocolError`, never another
exception: the normalizer is fed by the network and is fuzzed with hypothesis. Before anything is read,
every text of the answer is made valid Unicode (`valid_unicode`), so whatever the task carries can be
written as UTF-8 (the event, the state, the logs). What it read becomes a `Task` through
`msgspec.convert`, which checks the model's types and constraints once, at the end.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from .errors import ProtocolError
from .models import Kind, Task

CHINA_TIME = timezone(timedelta(hours=8), "UTC+08:00")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")
#: an answer's time before this is a placeholder, not when something happened: a zero date such as
#: `0001-01-01 00:00:00` (in UTC a day before the first datetime can hold) or `1970-01-01 08:00:00`
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: a UTF-16 surrogate: JSON can escape a lone one (`"\ud83d"`) and json.loads hands it on, but it is not a
#: character, and no UTF-8 encoder writes it
_SURROGATE = re.compile("[\ud800-\udfff]")

#: the longest task_status kept (every status DashScope documents is under 16 characters)
MAX_STATUS_CHARS = 64
#: the most results (media and failed items together) one answer may list
MAX_RESULT_ITEMS = 50

def iso_z(moment: datetime) -> str:
    """A UTC ISO-8601 string with millisecond precision and a `Z`; the year always in four digits
    (`strftime("%Y")` writes `999` on Linux). OverflowError for a moment whose UTC day is out of range."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def china_time_to_iso(value: Any) -> str | None:
    """`2026-01-09 17:18:17.901` (China time, no zone marker) -> `2026-01-09T09:18:17.901Z`; None for
    anything else, a zero date included."""
    if not isinstance(value, str):
        return None
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(value.strip(), fmt).replace(tzinfo=CHINA_TIME)
        except ValueError:
            continue
        return iso_z(moment) if moment >= EARLIEST_TIME else None
    return None


def valid_unicode(answer: Any) -> Any:
    """`answer` (decoded JSON) with every lone surrogate in its texts, keys included, replaced by U+FFFD,
    so that any of it can be written as UTF-8. Left in, one would fail the poll where the event is
    measured or sent, not where it came in."""
    try:
        msgspec.json.encode(answer)  # raises for a surrogate only; the usual answer has none
        return answer
    except UnicodeEncodeError:
        pass
    return json.loads(_SURROGATE.sub("\ufffd", json.dumps(answer, ensure_ascii=False)))


def url_expiry(url: str) -> str | None:
    """When a presigned OSS URL dies: `Expires=<unix s>`, or `x-oss-date` + `x-oss-expires` (V4)."""
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return None
    try:
        if "Expires" in query:
            return iso_z(datetime.fromtimestamp(int(query["Expires"][0]), UTC))
        if "x-oss-date" in query and "x-oss-expires" in query:
            signed = datetime.strptime(query["x-oss-date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return iso_z(signed + timedelta(seconds=int(query["x-oss-expires"][0])))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)  # an integer past a float's range: OverflowError
        elif isinstance(value, str):
            number = float(value.strip().rstrip("sSpP"))  # "5s", "720P" seen in the wild
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and abs(number) < 1e15 else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _url(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def normalize_usage(raw: Any) -> dict[str, Any]:
    """The fields of `Usage` (from valid Unicode: `valid_unicode`); `raw` as JSON can carry it (NaN and
    infinities, which JSON has not, as null)."""
    if not isinstance(raw, dict):
        return {}
    ratio = _text(_first(raw.get("video_ratio"), raw.get("ratio")))
    carried = msgspec.json.decode(msgspec.json.encode(raw))
    return {
        "image_count": _int(raw.get("image_count")),
        "video_count": _int(raw.get("video_count")),
        "duration_seconds": _number(
            _first(raw.get("duration"), raw.get("video_duration"), raw.get("output_video_duration"))
        ),
        "input_video_duration_seconds": _number(raw.get("input_video_duration")),
        "output_video_duration_seconds": _number(
            _first(raw.get("output_video_duration"), raw.get("video_duration"), raw.get("duration"))
        ),
        "resolution": _int(raw.get("SR")),
        "ratio": ratio,
        "fps": _number(raw.get("fps")),
        "size": _text(raw.get("size")),
        "raw": carried,
    }


class _Collector:
    """Gathers media, failures and texts (the fields of `MediaRef`, `ItemFailure`, `TextItem`) in answer
    order, numbering media slots from 0."""

    def __init__(self) -> None:
        self.media: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.texts: list[dict[str, Any]] = []
        self.next_index = 0

    def add_media(self, kind: Kind, url: Any) -> None:
        index = self.next_index
        self.next_index += 1
        clean = _url(url)
        if clean is None:
            self.failures.append({"index": index, "code": "MalformedResult", "message": "the result has no usable URL"})
            return
        self.media.append({"index": index, "type": kind, "url": clean, "expires_at": url_expiry(clean)})

    def add_failure(self, code: Any, message: Any) -> None:
        index = self.next_index
        self.next_index += 1
        self.failures.append({
            "index": index,
            "code": _text(code) or "UnknownError",
            "message": _text(message) or "the provider reported no reason",
        })


def _collect_choices(choices: list[Any], out: _Collector) -> None:
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise ProtocolError("output.choices[].message.content is not a list")
        for item in content:
            if not isinstance(item, dict):
                raise ProtocolError("output.choices[].message.content[] holds a non-object")
            if item.get("type") == "text" or ("text" in item and "image" not in item):
                text = _text(item.get("text"))
                if text is not None:
                    out.texts.append({"index": len(out.texts), "text": text})
            elif item.get("type") in ("image", None) and "image" in item:
                out.add_media("image", item.get("image"))
            elif item.get("type") == "video" or "video" in item:
                out.add_media("video", item.get("video"))


def _collect_results(results: list[Any], out: _Collector, prompts: dict[str, str | None]) -> None:
    for result in results:
        if not isinstance(result, dict):
            out.add_failure("MalformedResult", "a result is not an object")
            continue
        for field, name in (("orig_prompt", "original"), ("actual_prompt", "actual")):
            if prompts[name] is None:
                prompts[name] = _text(result.get(field))
        if result.get("url") is not None or result.get("video_url") is not None:
            kind: Kind = "video" if result.get("video_url") is not None else "image"
            out.add_media(kind, _first(result.get("url"), result.get("video_url")))
        else:
            out.add_failure(result.get("code"), result.get("message"))


def normalize(answer: Any, *, expected_task_id: str | None = None) -> Task:
    """Reduce one `GET /tasks/{id}` answer body (already JSON-decoded) to a `Task`."""
    if not isinstance(answer, dict):
        raise ProtocolError("the task answer is not a JSON object")
    answer = valid_unicode(answer)
    output = answer.get("output")
    if not isinstance(output, dict):
        raise ProtocolError("the task answer has no 'output' object")
    status = output.get("task_status")
    if not isinstance(status, str) or not status.strip():
        raise ProtocolError("the task answer has no 'output.task_status' string")
    status = status.strip().upper()
    if len(status) > MAX_STATUS_CHARS:
        # the status travels in the loop state between polls (256 KiB per state): a known one is short
        raise ProtocolError(f"the task answer's task_status is over {MAX_STATUS_CHARS} characters")

    task_id = output.get("task_id")
    if task_id is None:
        task_id = expected_task_id
    if not isinstance(task_id, str) or not task_id:
        raise ProtocolError("the task answer has no 'output.task_id'")
    if expected_task_id is not None and task_id != expected_task_id:
        raise ProtocolError("the task answer is about another task than the one asked for")

    out = _Collector()
    prompts: dict[str, str | None] = {
        "original": _text(output.get("orig_prompt")),
        "actual": _text(output.get("actual_prompt")),
    }
    choices, results, video_url = output.get("choices"), output.get("results"), output.get("video_url")
    if choices is not None:
        if not isinstance(choices, list):
            raise ProtocolError("output.choices is not a list")
        _collect_choices(choices, out)
    if isinstance(results, list):
        _collect_results(results, out, prompts)
    elif isinstance(results, dict):  # wan2.2-animate: a single object
        _collect_results([results], out, prompts)
    elif results is not None:
        raise ProtocolError("output.results is neither a list nor an object")
    if video_url is not None:
        out.add_media("video", video_url)

    if len(out.media) + len(out.failures) > MAX_RESULT_ITEMS:
        # every item becomes an object, a ledger record and an entry of the event (256 KB): a Wan task
        # answers a handful, and an answer with more is not one the relay can carry whole
        raise ProtocolError(f"the task answer lists more than {MAX_RESULT_ITEMS} results")
    kinds = {m["type"] for m in out.media}
    kind: Kind | None = None
    if len(kinds) == 1:
        kind = kinds.pop()
    elif "video" in kinds:
        kind = "video"

    error_code = _text(_first(output.get("code"), answer.get("code")))
    error_message = _text(_first(output.get("message"), answer.get("message")))
    request_id = _text(answer.get("request_id"))

    fields = {
        "task_id": task_id,
        "status": status,
        "request_id": request_id,
        "kind": kind,
        "submitted_at": china_time_to_iso(output.get("submit_time")),
        "scheduled_at": china_time_to_iso(output.get("scheduled_time")),
        "ended_at": china_time_to_iso(output.get("end_time")),
        "media": out.media,
        "failures": out.failures,
        "texts": out.texts,
        "prompt": prompts,
        "usage": normalize_usage(answer.get("usage")),
        "error_code": error_code,
        "error_message": error_message,
    }
    try:
        return msgspec.convert(fields, Task)
    except msgspec.ValidationError as exc:  # names the field and what it should be, not the value
        raise ProtocolError(f"the task answer does not fit the task model: {exc}") from None
