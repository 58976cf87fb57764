"""Typed models at every boundary: the loop state, the normalized task, and the completion event.

The completion event model is the one source of truth for the published JSON Schema
(`schemas/wan-task-completed.schema.json` is generated from it by `python -m wan_relay.schema`).
Pure: no I/O here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The contract, defined once: the template, the sample events and the tests read these names.
SCHEMA_VERSION = "1.0"
DETAIL_TYPE_COMPLETED = "Wan Task Completed"
DETAIL_TYPE_SUBMITTED = "Wan Task Submitted"
DEFAULT_EVENT_SOURCE = "wan.relay"

TASK_ID_PATTERN = r"^[A-Za-z0-9-]{1,128}$"
ISO_UTC_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$"

Kind = Literal["image", "video"]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
IsoUtc = Annotated[str, Field(pattern=ISO_UTC_PATTERN, json_schema_extra={"format": "date-time"})]

#: every status a completion event can carry
CompletionStatus = Literal[
    "SUCCEEDED", "PARTIAL", "FAILED", "CANCELED", "UNKNOWN", "TIMED_OUT", "MEDIA_UNAVAILABLE"
]
#: provider statuses after which the task can no longer change
TERMINAL_PROVIDER_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TerminalModel(_Model):
    """A model only a finished task uses: its validator is built on first use, not at import, so the
    polls that find the task still running (most of them) never pay for building it."""

    model_config = ConfigDict(defer_build=True)


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
    raw: dict[str, Any] = Field(default_factory=dict)


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
    prompt: Prompt = Prompt()
    usage: Usage = Usage()
    error_code: str | None = None
    error_message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_PROVIDER_STATUSES


# --- the completion event ---------------------------------------------------------------------


class StoredMedia(_TerminalModel):
    """One media item as it landed in S3."""

    index: int
    type: Kind
    bucket: str
    key: str
    s3_uri: str
    size_bytes: int = Field(ge=0)
    content_type: str
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    source_expires_at: IsoUtc | None = None


class Timing(_TerminalModel):
    submitted_at: IsoUtc | None = None
    scheduled_at: IsoUtc | None = None
    ended_at: IsoUtc | None = None
    queue_seconds: float | None = None
    run_seconds: float | None = None
    detected_at: IsoUtc


class ErrorInfo(_TerminalModel):
    code: str
    message: str
    category: str
    retryable: bool


class CompletionDetail(_TerminalModel):
    """The `detail` of the `Wan Task Completed` event: one per task, success or failure."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="WanTaskCompleted",
        json_schema_extra={"description": "Detail of the 'Wan Task Completed' EventBridge event."},
    )

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic per task: a dedupe key for subscribers.")
    task_id: TaskId
    status: CompletionStatus
    provider_status: str | None = Field(description="task_status as DashScope last answered it.")
    kind: Kind | None
    model: str | None
    context: dict[str, Any] | None = Field(description="The caller's context, passed through untouched.")
    request_id: str | None
    prompt: Prompt
    timing: Timing
    media: list[StoredMedia]
    failures: list[ItemFailure]
    texts: list[TextItem] = Field(default_factory=list)
    usage: Usage
    error: ErrorInfo | None
    polls: int = Field(ge=0)


# --- the loop state ---------------------------------------------------------------------------

#: the default poll budget: DashScope keeps task ids and result URLs for 24 hours
DEFAULT_TIMEOUT_SECONDS = 24 * 3600


class LoopState(BaseModel):
    """The workflow's input, and what the handler passes back to itself between polls."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    kind: Kind | None = None
    model: Annotated[str, StringConstraints(max_length=128)] | None = None
    context: dict[str, Any] | None = None
    poll_interval_seconds: int | None = Field(default=None, ge=1, le=3600)
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=1, le=DEFAULT_TIMEOUT_SECONDS)
    # written by the handler
    polls: int = Field(default=0, ge=0)
    started_at: IsoUtc | None = None
    throttled: int = Field(default=0, ge=0, description="Consecutive throttled polls.")
    done: bool = False
    status: str | None = None
    wait_seconds: int | None = None
    event: dict[str, Any] | None = None
    records_expire_at: int | None = Field(
        default=None, description="Epoch seconds when the task's idempotency records (and its lock) expire."
    )
    # written by the workflow's Catch: {"Error": name, "Cause": json}
    error: dict[str, Any] | None = None
