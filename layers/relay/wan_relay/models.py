"""Typed models at every boundary: the loop state, the normalized task, and the completion event.

The completion event model is the one source of truth for the published JSON Schema
(`schemas/wan-task-completed.schema.json` is generated from it by `python -m wan_relay.schema`).
Pure: no I/O here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, field

# The contract, defined once: the template, the sample events and the tests read these names.
SCHEMA_VERSION = "1.0"
DETAIL_TYPE_COMPLETED = "Wan Task Completed"
DETAIL_TYPE_SUBMITTED = "Wan Task Submitted"
DEFAULT_EVENT_SOURCE = "wan.relay"
#: the source a `Wan Task Submitted` event must carry: not the completion events' own, so that whoever
#: may announce results is not thereby allowed to start polls (and a rule can tell the two apart)
DEFAULT_SUBMIT_SOURCE = "wan.relay.submit"

# Anchored with `\Z`: msgspec checks patterns with Python's `re`, whose `$` also matches before a final
# newline. The published schema says `$` (JSON Schema's regexes are ECMA-262: no `\Z`, and `$` is the
# end of the text); `wan_relay.schema` writes them so.
TASK_ID_PATTERN = r"^[A-Za-z0-9-]{1,128}\Z"
ISO_UTC_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\Z"
SHA256_PATTERN = r"^[0-9a-f]{64}\Z"

# `type: string` next to the enum keeps the published schema's shape (msgspec writes the enum alone)
Kind = Annotated[Literal["image", "video"], Meta(extra_json_schema={"type": "string"})]
TaskId = Annotated[str, Meta(pattern=TASK_ID_PATTERN)]
IsoUtc = Annotated[str, Meta(pattern=ISO_UTC_PATTERN, extra_json_schema={"format": "date-time"})]

#: every status a completion event can carry
CompletionStatus = Annotated[
    Literal["SUCCEEDED", "PARTIAL", "FAILED", "CANCELED", "UNKNOWN", "TIMED_OUT", "MEDIA_UNAVAILABLE"],
    Meta(extra_json_schema={"type": "string"}),
]
#: provider statuses after which the task can no longer change
TERMINAL_PROVIDER_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


class _Model(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Immutable, and an unknown field is an error, not silently dropped. Constructing a model checks
    nothing: data from outside becomes a model through `msgspec.convert`, which checks every type and
    constraint (the `wan_relay.normalize` and `wan_relay.relay` boundaries do)."""


# --- the normalized DashScope task ------------------------------------------------------------


class MediaRef(_Model):
    """One generated image or video, as DashScope points at it."""

    index: int
    type: Kind
    url: str
    expires_at: IsoUtc | None = None


class ItemFailure(_Model):
    """One media item that did not make it: failed at the provider, or could not be fetched."""

    index: int
    code: str
    message: str


class TextItem(_Model):
    """Text interleaved with the images of a wan2.6 answer; kept in the event, never stored in S3."""

    index: int
    text: str


class Prompt(_Model):
    original: str | None = None
    actual: str | None = None


class Usage(_Model):
    """Usage, normalized across the model generations, with the provider's own object in `raw`."""

    image_count: int | None = None
    video_count: int | None = None
    duration_seconds: float | None = None
    input_video_duration_seconds: float | None = None
    output_video_duration_seconds: float | None = None
    resolution: int | None = None
    ratio: str | None = None
    fps: float | None = None
    size: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class Task(_Model):
    """Every DashScope answer shape, reduced to what the relay needs."""

    task_id: str
    status: str
    request_id: str | None = None
    kind: Kind | None = None
    submitted_at: IsoUtc | None = None
    scheduled_at: IsoUtc | None = None
    ended_at: IsoUtc | None = None
    media: tuple[MediaRef, ...] = ()
    failures: tuple[ItemFailure, ...] = ()
    texts: tuple[TextItem, ...] = ()
    prompt: Prompt = field(default_factory=Prompt)
    usage: Usage = field(default_factory=Usage)
    error_code: str | None = None
    error_message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_PROVIDER_STATUSES


# --- the completion event ---------------------------------------------------------------------


#: RFC 6838, section 4.2: type and subtype names of 1 to 127 characters each (`restricted-name-first
#: *126restricted-name-chars`), case-insensitive
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
UNKNOWN_MEDIA_TYPE = "application/octet-stream"


def media_type(content_type: str) -> str:
    """The media type of a Content-Type, `type/subtype` in lower case without its parameters, or
    application/octet-stream when it is none: a media host's header is the host's to make as long as it
    likes (parameters are unbounded), the object and the event carry its media type only."""
    candidate = content_type.split(";", 1)[0].strip()
    if candidate.isascii() and _MEDIA_TYPE.fullmatch(candidate.lower()):
        return candidate.lower()
    return UNKNOWN_MEDIA_TYPE


class StoredMedia(_Model):
    """One media item as it landed in S3."""

    index: int
    type: Kind
    bucket: str
    key: str
    s3_uri: str
    size_bytes: Annotated[int, Meta(ge=0)]
    content_type: Annotated[str, Meta(description="The media type (type/subtype, lower case), without parameters.")]
    sha256: Annotated[str, Meta(pattern=SHA256_PATTERN)]
    source_expires_at: IsoUtc | None = None


class Timing(_Model, kw_only=True):
    submitted_at: IsoUtc | None = None
    scheduled_at: IsoUtc | None = None
    ended_at: IsoUtc | None = None
    queue_seconds: float | None = None
    run_seconds: float | None = None
    detected_at: IsoUtc


class ErrorInfo(_Model):
    code: str
    message: str
    category: str
    retryable: bool


class CompletionDetail(_Model, kw_only=True):
    """The `detail` of the `Wan Task Completed` event: one per task, success or failure. A field without
    a default is required in the published schema (null where it is unknown)."""

    schema_version: Annotated[Literal["1.0"], Meta(extra_json_schema={"type": "string"})] = SCHEMA_VERSION
    event_id: Annotated[str, Meta(description="Deterministic per task: a dedupe key for subscribers.")]
    task_id: TaskId
    status: CompletionStatus
    provider_status: Annotated[
        str | None, Meta(description="task_status as DashScope last answered it; null if it never answered.")
    ]
    kind: Kind | None
    model: str | None
    context: Annotated[dict[str, Any] | None, Meta(description="The caller's context, passed through untouched.")]
    request_id: str | None
    prompt: Prompt
    timing: Timing
    media: list[StoredMedia]
    failures: list[ItemFailure]
    texts: list[TextItem] = field(default_factory=list)
    usage: Usage
    error: ErrorInfo | None
    polls: Annotated[int, Meta(ge=0)]


# --- the loop state ---------------------------------------------------------------------------

#: the default poll budget: DashScope keeps task ids and result URLs for 24 hours
DEFAULT_TIMEOUT_SECONDS = 24 * 3600


class LoopInput(_Model):
    """What a caller may put in the workflow's input (StartExecution, or the `detail` of a `Wan Task
    Submitted` event): these fields and no other. The workflow's first state hands the caller's input to
    the relay as `{"action": "start", "input": ...}`, so nothing a caller writes can reach the relay's own
    loop state (`LoopState`) except through this model."""

    task_id: TaskId
    kind: Kind | None = None
    model: Annotated[str, Meta(max_length=128)] | None = None
    context: dict[str, Any] | None = None
    poll_interval_seconds: Annotated[int, Meta(ge=1, le=3600)] | None = None
    timeout_seconds: Annotated[int, Meta(ge=1, le=DEFAULT_TIMEOUT_SECONDS)] = DEFAULT_TIMEOUT_SECONDS


class TaskLock(_Model):
    """What ClaimTask writes: the lock expires `expires_at` (epoch seconds, the table's TTL attribute)
    whatever becomes of the execution, and a lock whose expiry is before `now` is free to take."""

    now: int
    expires_at: int


class Resume(_Model):
    """How the park ended: the sweeper's SendTaskSuccess output (`reason`, and the slot of the account's
    budget it reserved for this workflow's GET), or, from the park's Catch, its error (`Error`,
    `Cause`): the watchdog fired (the sweeper stopped heartbeating) or the budget ran out."""

    reason: Literal["finished", "probe"] | None = None
    get_at_us: Annotated[int, Meta(ge=0)] | None = None
    Error: str | None = None
    Cause: str | None = None


class Outages(_Model):
    """The workflow's count of AfterTrouble's failures (the function could not run past every retry: Lambda
    throttled, down, crashing), each followed by a wait (OutageWait): `n` since the relay last ran, and
    `total`, the loop's passes counted with them (the cap's Choice reads it). The relay folds `n` into
    `polls` when it next runs: each such pass costs history events as a poll does."""

    n: Annotated[int, Meta(ge=0)] = 0
    total: Annotated[int, Meta(ge=0)] = 0


class LoopState(LoopInput):
    """The relay's loop state: the checked `LoopInput`, and what the relay and the workflow write (made
    by the relay, then passed back to it between polls: each poll answers a new state with
    `msgspec.structs.replace`). A caller never writes it."""

    # written by the relay
    lock: TaskLock | None = None
    polls: Annotated[int, Meta(ge=0)] = 0
    started_at: IsoUtc | None = None
    throttled: Annotated[int, Meta(ge=0, description="Consecutive throttled polls.")] = 0
    troubles: Annotated[int, Meta(ge=0, description="Consecutive polls that failed (outage, unreadable answer).")] = 0
    last_error: ErrorInfo | None = None
    done: bool = False
    #: the loop's own status: DashScope's last, THROTTLED while the relay waits unasked (after a 429, or for
    #: the account's budget), the completion status once done
    status: str | None = None
    #: DashScope's task_status as it last answered it (None: no answer yet), for the event; a state written
    #: before this field has only `status` (relay.py, `_last_provider_status`)
    provider_status: str | None = None
    wait_seconds: int | None = None
    event: dict[str, Any] | None = None
    records_expire_at: Annotated[
        int | None, Meta(description="Epoch seconds when the task's idempotency records (and its lock) expire.")
    ] = None
    #: how the workflow waits for the next poll: "park" (ParkTask, until the sweeper resumes it) or "poll"
    #: (WaitForTask, `wait_seconds`); the workflow's Choice states read it
    mode: Literal["park", "poll"] = "poll"
    park_timeout_seconds: Annotated[int, Meta(ge=1)] | None = None
    park_heartbeat_seconds: Annotated[int, Meta(ge=1)] | None = None
    #: the list is not trusted for this task (a resume found it running): the sweeper probes it instead
    blind: bool = False
    #: written by the workflow (CountOutage), read and reset by the relay
    outages: Outages = Outages()
    # written by the workflow: ParkTask's result, and the Catch's {"Error": name, "Cause": json}
    resume: Resume | None = None
    error: dict[str, Any] | None = None
