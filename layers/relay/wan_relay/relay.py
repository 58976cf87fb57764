"""One poll of the wait loop: query the task, decide, and on a terminal status ingest the media and
decide the completion event.

`Relay.handle(event)` is everything the Lambda handler does, minus Lambda: it takes the loop state,
returns the next one, and raises the typed errors the workflow's Retry and Catch match on. The relay
does not put the event on the bus itself: its last answer carries the event's detail and the
workflow's EmitCompletion state puts it, so that Step Functions' exactly-once state execution, not a
crash window in this process, decides how often it is sent.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import msgspec
from aws_lambda_powertools import Logger
from msgspec.structs import replace

from .dashscope import DashScopeClient
from .errors import InvalidInput, MediaRejected, ThrottledError
from .metrics import completion_metrics
from .models import (
    CompletionDetail,
    CompletionStatus,
    ErrorInfo,
    ItemFailure,
    LoopState,
    MediaRef,
    Prompt,
    StoredMedia,
    Task,
    Timing,
    Usage,
)
from .normalize import iso_z, normalize
from .policy import budget_left, kind_from_model, next_wait, throttle_wait
from .publish import fit_context, fit_detail

if TYPE_CHECKING:  # only a finished task needs them: the relay makes them on first use
    from .idempotency import Ledger, NoLedger
    from .ingest import MediaStreamer


def _no_ledger() -> NoLedger:
    from .idempotency import NoLedger

    return NoLedger()


logger = Logger(child=True)

#: how long one poll may spend downloading media at most, and what it leaves of Lambda's own time
TRANSFER_BUDGET_SECONDS = 780.0
LAMBDA_TIME_MARGIN_SECONDS = 60.0

#: namespace of the deterministic event ids (uuid5 of source and task id)
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c36-8a0e-4a59-9a53-2f3d1c6b7a10")

#: error names the workflow's Catch hands back to the relay, and what they mean for the task
_CAUGHT_CATEGORY = {
    "MediaTransferError": "media",
    "ProtocolError": "protocol",
    "TransientError": "transient",
    "States.Timeout": "transient",
}


def event_id_for(source: str, task_id: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}/{task_id}"))


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = _parse_iso(start), _parse_iso(end)
    return round((b - a).total_seconds(), 3) if a and b else None


def parse_state(event: Any) -> LoopState:
    """The loop state from the workflow's input; a clear InvalidInput before any request is made."""
    if not isinstance(event, dict):
        raise InvalidInput("the loop input must be a JSON object with a task_id")
    # JSON has one number type: 3600.0 is the integer 3600 (JSON Schema's `integer` says so too), and
    # some producers write it so (a CloudFormation Number parameter given as 3600.0 reaches the workflow
    # through States.StringToJson). A number with a fraction stays a float, and is refused where an
    # integer is expected.
    event = {key: int(value) if isinstance(value, float) and value.is_integer() else value
             for key, value in event.items()}
    try:
        return msgspec.convert(event, LoopState)
    except msgspec.ValidationError as exc:
        # the first problem and its path ("Expected `int` >= 1 - at `$.poll_interval_seconds`"), never
        # the value; an unknown key is named, hence the cap
        raise InvalidInput(f"invalid loop input: {str(exc)[:300]}") from None


@dataclass
class Relay:
    """One poll of the wait loop. What only a finished task needs, the media streamer and the
    idempotency ledger (and through them s3transfer, Powertools Idempotency, the S3 and DynamoDB
    clients), is made from its factory the first time a finished task uses it: most polls find the
    task still running and never load any of it."""

    client: DashScopeClient
    make_streamer: Callable[[], MediaStreamer]
    event_source: str
    metrics: Any = None
    make_ledger: Callable[[], Ledger | NoLedger] = _no_ledger
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)
    transfer_budget_seconds: float = TRANSFER_BUDGET_SECONDS

    def __post_init__(self) -> None:
        self._transfer_deadline: float | None = None
        self._lambda_context: Any = None

    @cached_property
    def streamer(self) -> MediaStreamer:
        return self.make_streamer()

    @cached_property
    def ledger(self) -> Ledger | NoLedger:
        ledger = self.make_ledger()
        if self._lambda_context is not None:
            ledger.register_lambda_context(self._lambda_context)
        return ledger

    @cached_property
    def _store_once(self) -> Callable[..., dict[str, Any]]:
        return self.ledger.once("media", self._store_effect)

    @cached_property
    def _decide_once(self) -> Callable[..., dict[str, Any]]:
        return self.ledger.once("completion", self._decide_effect)

    # --- entry point --------------------------------------------------------------------------

    def handle(self, event: Any, lambda_context: Any = None) -> dict[str, Any]:
        """One invocation: the next loop state as JSON. `lambda_context` bounds the transfers in time."""
        state = parse_state(event)
        budget = self.transfer_budget_seconds
        if lambda_context is not None:
            self._lambda_context = lambda_context
            if "ledger" in self.__dict__:  # made by an earlier poll of this container
                self.ledger.register_lambda_context(lambda_context)
            remaining = lambda_context.get_remaining_time_in_millis() / 1000 - LAMBDA_TIME_MARGIN_SECONDS
            budget = max(1.0, min(budget, remaining))
        self._transfer_deadline = time.monotonic() + budget
        result = self.finish_after_error(state) if state.error is not None else self.poll(state)
        return msgspec.to_builtins(result)

    # --- the poll -----------------------------------------------------------------------------

    def poll(self, state: LoopState) -> LoopState:
        now = self.clock()
        if state.polls == 0:
            state = replace(state, context=fit_context(state.context), started_at=iso_z(now))
        polls = state.polls + 1
        elapsed = (now - (_parse_iso(state.started_at) or now)).total_seconds()
        left = budget_left(elapsed_seconds=elapsed, budget_seconds=state.timeout_seconds, polls=polls)
        self._count("Polls")
        try:
            answer = self.client.get_task(state.task_id)
        except ThrottledError as exc:
            self._count("Throttled")
            throttled = state.throttled + 1
            logger.warning("DashScope throttled the task query", extra={"code": exc.code, "attempt": throttled})
            if left <= 0:
                return self._finish(state, None, polls, "TIMED_OUT", error=_timed_out(state, polls))
            wait = min(throttle_wait(throttled, exc.retry_after, self.rng), max(1, math.ceil(left)))
            return replace(state, polls=polls, throttled=throttled, done=False, status="THROTTLED", wait_seconds=wait)
        task = normalize(answer, expected_task_id=state.task_id)
        logger.debug("task answer", extra={
            "provider_status": task.status, "request_id": task.request_id, "media": len(task.media),
            "failures": len(task.failures), "submitted_at": task.submitted_at,
        })
        kind = state.kind or task.kind or kind_from_model(state.model)
        if task.terminal:
            return self._finish(state, task, polls, None)
        if left <= 0:
            return self._finish(state, task, polls, "TIMED_OUT", error=_timed_out(state, polls))
        submitted = _parse_iso(task.submitted_at)
        age = (now - submitted).total_seconds() if submitted and submitted <= now else elapsed
        wait = min(
            next_wait(kind=kind, age_seconds=age, interval_override=state.poll_interval_seconds),
            max(1, math.ceil(left)),
        )
        logger.info("task not finished", extra={"status": task.status, "wait_seconds": wait, "polls": polls})
        return replace(state, kind=kind, polls=polls, throttled=0, done=False, status=task.status, wait_seconds=wait)

    def finish_after_error(self, state: LoopState) -> LoopState:
        """The workflow's Catch path: retries ran out, so announce the failure once."""
        error_name = str((state.error or {}).get("Error", "TransientError"))
        try:
            cause = json.loads((state.error or {}).get("Cause") or "{}")
        except (TypeError, ValueError):
            cause = {}
        message = cause.get("errorMessage") if isinstance(cause, dict) else None
        category = _CAUGHT_CATEGORY.get(error_name, "transient")
        error = ErrorInfo(
            code=error_name,
            message=(str(message) if message else f"the poll failed with {error_name} after its retries")[:1000],
            category=category,
            retryable=True,
        )
        status: CompletionStatus = "MEDIA_UNAVAILABLE" if category == "media" else "FAILED"
        return self._finish(replace(state, error=None), None, state.polls, status, error=error)

    # --- the end of a task --------------------------------------------------------------------

    def _finish(
        self,
        state: LoopState,
        task: Task | None,
        polls: int,
        status: CompletionStatus | None,
        error: ErrorInfo | None = None,
    ) -> LoopState:
        """Ingest (on success), decide the completion event once, and answer `done` with its detail."""
        from .idempotency import RECORD_TTL_SECONDS

        stored: list[StoredMedia] = []
        failures: list[ItemFailure] = list(task.failures) if task else []
        if task is not None and status is None:
            status, error = self._ingest(state, task, stored, failures)
        assert status is not None
        draft = self._detail(state, task, polls, status, stored, failures, error)
        # the first answer that reached a fate is the task's event: a retried or redriven poll answers
        # with the same detail (same media, same times), never a second version of it
        decided = self._decide_once(request={"key": state.task_id, "detail": msgspec.to_builtins(draft)})
        detail = msgspec.convert(decided["detail"], CompletionDetail)
        status = detail.status
        for metric, value in completion_metrics(detail):
            self._count(metric.name, value, metric.unit)
        logger.info("task completed", extra={"status": status, "media": len(stored), "polls": polls})
        return replace(
            state, kind=detail.kind, polls=polls, done=True, status=status, wait_seconds=0,
            event=msgspec.to_builtins(detail),
            records_expire_at=int(self.clock().timestamp()) + RECORD_TTL_SECONDS,
        )

    def _ingest(
        self, state: LoopState, task: Task, stored: list[StoredMedia], failures: list[ItemFailure]
    ) -> tuple[CompletionStatus, ErrorInfo | None]:
        if task.status != "SUCCEEDED":
            return _provider_failure(task)
        rejected: list[MediaRejected] = []
        for ref in task.media:
            request = {"key": f"{state.task_id}#{ref.index}", "task_id": state.task_id, "ref": msgspec.to_builtins(ref)}
            try:
                item = msgspec.convert(self._store_once(request=request), StoredMedia)
            except MediaRejected as exc:
                logger.warning("media item rejected", extra={"index": ref.index, "code": exc.code})
                rejected.append(exc)
                failures.append(ItemFailure(index=ref.index, code=exc.code, message=exc.message))
                continue
            stored.append(item)
            self._count("MediaBytes", item.size_bytes, unit="Bytes")
        failures.sort(key=lambda f: f.index)
        if stored:
            return ("PARTIAL" if failures else "SUCCEEDED"), None
        if rejected:
            first = rejected[0]
            return "MEDIA_UNAVAILABLE", ErrorInfo(**first.as_error())
        if failures:
            return "FAILED", ErrorInfo(
                code="AllItemsFailed", message="DashScope reported every media item as failed",
                category="provider", retryable=False,
            )
        return "MEDIA_UNAVAILABLE", ErrorInfo(
            code="NoMedia", message="DashScope reported SUCCEEDED but its answer holds no media URL",
            category="protocol", retryable=False,
        )

    def _store_effect(self, *, request: dict[str, Any]) -> dict[str, Any]:
        ref = msgspec.convert(request["ref"], MediaRef)
        stored = self.streamer.store(request["task_id"], ref, deadline=self._transfer_deadline)
        return msgspec.to_builtins(stored)

    @staticmethod
    def _decide_effect(*, request: dict[str, Any]) -> dict[str, Any]:
        return {"detail": request["detail"]}

    def _detail(
        self,
        state: LoopState,
        task: Task | None,
        polls: int,
        status: CompletionStatus,
        stored: list[StoredMedia],
        failures: list[ItemFailure],
        error: ErrorInfo | None,
    ) -> CompletionDetail:
        kind = state.kind or (task.kind if task else None) or kind_from_model(state.model)
        timing = Timing(
            submitted_at=task.submitted_at if task else None,
            scheduled_at=task.scheduled_at if task else None,
            ended_at=task.ended_at if task else None,
            queue_seconds=_seconds_between(task.submitted_at, task.scheduled_at) if task else None,
            run_seconds=_seconds_between(task.scheduled_at, task.ended_at) if task else None,
            detected_at=iso_z(self.clock()),
        )
        detail = msgspec.to_builtins({
            "event_id": event_id_for(self.event_source, state.task_id),
            "task_id": state.task_id,
            "status": status,
            "provider_status": task.status if task else state.status,
            "kind": kind,
            "model": state.model,
            "context": state.context,
            "request_id": task.request_id if task else None,
            "prompt": task.prompt if task else Prompt(),
            "timing": timing,
            "media": stored,
            "failures": failures,
            "texts": task.texts if task else [],
            "usage": task.usage if task else Usage(),
            "error": error,
            "polls": polls,
        })
        # the whole detail checked once: msgspec's constructors (Timing, ErrorInfo, StoredMedia) check nothing
        return msgspec.convert(fit_detail(detail), CompletionDetail)

    def _count(self, name: str, value: float = 1, unit: str = "Count") -> None:
        if self.metrics is not None:
            self.metrics.add_metric(name=name, unit=unit, value=value)


def _timed_out(state: LoopState, polls: int) -> ErrorInfo:
    return ErrorInfo(
        code="PollBudgetExhausted",
        message=f"the task did not finish within the poll budget ({state.timeout_seconds} s, {polls} polls)",
        category="timeout",
        retryable=True,
    )


def _provider_failure(task: Task) -> tuple[CompletionStatus, ErrorInfo]:
    if task.status == "FAILED":
        return "FAILED", ErrorInfo(
            code=task.error_code or "TaskFailed",
            message=task.error_message or "DashScope reported the task as FAILED without a reason",
            category="provider", retryable=False,
        )
    if task.status == "CANCELED":
        return "CANCELED", ErrorInfo(
            code=task.error_code or "TaskCanceled",
            message=task.error_message or "the task was canceled before it ran",
            category="provider", retryable=False,
        )
    return "UNKNOWN", ErrorInfo(
        code=task.error_code or "TaskUnknown",
        message=task.error_message or (
            "DashScope does not know this task: it does not exist, belongs to another account, "
            "or is older than 24 hours"
        ),
        category="provider", retryable=False,
    )
