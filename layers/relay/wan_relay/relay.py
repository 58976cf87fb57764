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
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import msgspec
from aws_lambda_powertools import Logger
from msgspec.structs import replace

from .budget import MICROS
from .dashscope import DashScopeClient
from .errors import (
    BudgetSpent,
    InvalidInput,
    MediaRejected,
    MediaTransferError,
    ProtocolError,
    ThrottledError,
    TransientError,
    WanRelayError,
)
from .metrics import completion_metrics, resume_slot_metrics
from .models import (
    CompletionDetail,
    CompletionStatus,
    ErrorInfo,
    ItemFailure,
    LoopInput,
    LoopState,
    MediaRef,
    Outages,
    Prompt,
    Resume,
    StoredMedia,
    Task,
    TaskLock,
    Timing,
    Usage,
    media_type,
)
from .normalize import iso_z, normalize
from .policy import budget_left, fit_wait, kind_from_model, next_wait, throttle_wait, trouble_wait
from .publish import fit_context, fit_detail, unsendable

if TYPE_CHECKING:  # only a finished task needs them: the relay makes them on first use
    from .claims import ClaimInspector
    from .fleet import Fleet
    from .idempotency import Ledger, NoLedger
    from .ingest import MediaStreamer


def _no_ledger() -> NoLedger:
    from .idempotency import NoLedger

    return NoLedger()


logger = Logger(child=True)

#: how long one poll may spend downloading media at most, and what it leaves of Lambda's own time
TRANSFER_BUDGET_SECONDS = 780.0
LAMBDA_TIME_MARGIN_SECONDS = 60.0

#: a task's lock expires this long after its poll budget, whatever becomes of its execution: time for the
#: terminal path (media, event) and its retries after the last poll. The workflow's own TimeoutSeconds
#: (93,600 s) is the longest budget (86,400 s) plus this margin, so no execution outlives its lock.
LOCK_MARGIN_SECONDS = 7200
#: an execution start older than the workflow's own timeout is not this execution's (a redrive days later)
_OLDEST_START = timedelta(seconds=86_400 + LOCK_MARGIN_SECONDS)

#: how often one media item is tried within a poll before it is listed in `failures[]`, and the cap of
#: the jittered pause between tries: seconds, not the task's budget
ITEM_ATTEMPTS = 3
ITEM_RETRY_CAP_SECONDS = 8.0

#: namespace of the deterministic event ids (uuid5 of source and task id)
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c36-8a0e-4a59-9a53-2f3d1c6b7a10")

#: error names the workflow's Catch hands back to the relay, and what they mean for the task
_CAUGHT_CATEGORY = {
    "MediaTransferError": "media",
    "ProtocolError": "protocol",
    "TransientError": "transient",
    "States.Timeout": "transient",
}


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def event_id_for(source: str, task_id: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}/{task_id}"))


def _parse_iso(value: str | None) -> datetime | None:
    """A state's UTC time (models.IsoUtc: milliseconds as the relay writes them, or none)."""
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC)


def _execution_start(value: Any, now: datetime) -> datetime:
    """The execution's start time as Step Functions gives it (ISO 8601, e.g. `2026-12-02T03:14:13.192Z`),
    if it is one and not in the future nor more than the longest budget and its margin ago; else now."""
    try:
        began = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return now
    if began is None or began.tzinfo is None or not timedelta(0) <= now - began <= _OLDEST_START:
        return now
    return began.astimezone(UTC)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = _parse_iso(start), _parse_iso(end)
    return round((b - a).total_seconds(), 3) if a and b else None


def _integral(event: dict[str, Any]) -> dict[str, Any]:
    # JSON has one number type: 3600.0 is the integer 3600 (JSON Schema's `integer` says so too), and
    # some producers write it so (a CloudFormation Number parameter given as 3600.0 reaches the workflow
    # through States.StringToJson). A number with a fraction stays a float, and is refused where an
    # integer is expected.
    return {key: int(value) if isinstance(value, float) and value.is_integer() else value
            for key, value in event.items()}


def _convert(event: Any, model: type[Any], what: str) -> Any:
    if not isinstance(event, dict):
        raise InvalidInput(f"the {what} must be a JSON object with a task_id")
    try:
        return msgspec.convert(_integral(event), model)
    except msgspec.ValidationError as exc:
        # the first problem and its path ("Expected `int` >= 1 - at `$.poll_interval_seconds`"), never
        # the value; an unknown key is named, hence the cap
        raise InvalidInput(f"invalid {what}: {str(exc)[:300]}") from None


def parse_input(event: Any, defaults: dict[str, Any] | None = None) -> LoopInput:
    """The caller's workflow input: the public fields only (an internal one, `polls` or `error`, is an
    unknown field here), each of its JSON type; the stack's `defaults` fill what the caller left out."""
    loop_input = _convert(event, LoopInput, "loop input")
    if (problem := unsendable(loop_input.context, "$.context")) is not None:
        # refused here, before anything is written: accepted, it would fail EmitCompletion on every retry
        raise InvalidInput(f"invalid loop input: the context holds {problem}"[:300])
    given = event if isinstance(event, dict) else {}
    fill = {k: v for k, v in _integral(defaults or {}).items() if v is not None and k not in given}
    return _convert({**msgspec.to_builtins(loop_input), **fill}, LoopInput, "loop input") if fill else loop_input


#: the park's end the relay takes a resume that is not the sweeper's shape for: as if its watchdog fired
UNREADABLE_RESUME = "UnreadableResume"


def parse_state(event: Any) -> LoopState:
    """The loop state the workflow hands back; a clear InvalidInput before any request is made.

    A resume that is not the sweeper's shape (SendTaskSuccess with some other output: a tool, a person,
    a forger holding the token) is taken as a park that ended without one, as when its watchdog fires:
    the workflow polls at a slot of its own and the GET decides. Failing the execution instead would fail
    every redrive the same way (a redrive runs the state again with the same input), and the task's lock
    would keep it from being started again."""
    try:
        return _convert(event, LoopState, "loop input")
    except InvalidInput:
        if not (isinstance(event, dict) and event.get("resume") is not None):
            raise
        state = _convert({**event, "resume": None}, LoopState, "loop input")
    logger.warning("a resume that is not the sweeper's was taken as a park without one")
    return replace(state, resume=Resume(Error=UNREADABLE_RESUME))


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
    make_claims: Callable[[], ClaimInspector] | None = None
    #: the pause between tries of a media item (None: `_pause`, which the workflow tests record)
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)
    transfer_budget_seconds: float = TRANSFER_BUDGET_SECONDS
    #: the account's budget, registry and sweeper (docs/fleet.md); None: the relay asks DashScope freely
    fleet: Fleet | None = None

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
        """One invocation: the next loop state as JSON. `lambda_context` bounds the transfers in time.

        The workflow calls it five ways: `{"action": "start", "input": <the caller's input>, "defaults":
        {...}}` first, to check the input before anything is written; `{"action": "claimed", ...}` when
        the task's lock is held by another execution; with the loop state itself for every poll;
        `{"action": "after_trouble", "state": <the loop state, with the workflow's caught error>}` from
        AfterTrouble when a poll failed past its retries; and `{"action": "park", "token": ...,
        "execution": ..., "state": <the loop state>}` from ParkTask, whose task token the sweeper resumes.

        A loop state with `error` set and no action is the last release's (0.1.0) ReportFailure: an
        execution started on that definition before an upgrade, which puts whatever this answers as the
        task's event. It gets the task's failure event now (`finish_after_error`), as 0.1.0 answered."""
        action = event.get("action") if isinstance(event, dict) else None
        if action == "start":
            return msgspec.to_builtins(self.start(event.get("input"), event.get("defaults"), event.get("started_at")))
        if action == "claimed":
            return self.claimed(event.get("task_id"))
        if action == "park":
            return self.park(event.get("token"), event.get("execution"), parse_state(event.get("state")))
        state = parse_state(event.get("state") if action == "after_trouble" else event)
        budget = self.transfer_budget_seconds
        if lambda_context is not None:
            self._lambda_context = lambda_context
            if "ledger" in self.__dict__:  # made by an earlier poll of this container
                self.ledger.register_lambda_context(lambda_context)
            remaining = lambda_context.get_remaining_time_in_millis() / 1000
            # what is left after the transfers: a minute, or a fifth of a short invocation's time
            remaining -= min(LAMBDA_TIME_MARGIN_SECONDS, remaining / 5)
            budget = max(1.0, min(budget, remaining))
        self._transfer_deadline = time.monotonic() + budget
        state = replace(state, context=fit_context(state.context))  # every path: a marker stays a marker
        if action == "after_trouble":
            result = self.after_trouble(state)
        elif state.error is not None:
            result = self.finish_after_error(state)
        else:
            result = self.poll(state)
        return msgspec.to_builtins(result)

    def start(self, raw_input: Any, defaults: dict[str, Any] | None = None, started_at: Any = None) -> LoopState:
        """The loop's first state, from the caller's input checked whole: nothing is written before this
        has passed, and the lock ClaimTask writes carries its expiry from the start. `started_at`: when the
        execution started (`$$.Execution.StartTime`): the task's budget counts from then, so time spent
        waiting out the function's outage before this check is spent from it, and the budget still ends
        inside the execution's own timeout (the budget and LOCK_MARGIN_SECONDS)."""
        loop_input = parse_input(raw_input, defaults)
        self._count("TasksStarted")
        now = self.clock()
        began = _execution_start(started_at, now)
        left = loop_input.timeout_seconds - (now - began).total_seconds()
        epoch = int(now.timestamp())
        # a parking stack parks right away: the sweeper's first look is the task's first query; the park
        # lasts what is left of the budget at most
        parks = self.fleet is not None and self.fleet.may_park(left)
        return LoopState(
            mode="park" if parks else "poll", park_timeout_seconds=max(1, int(left)) if parks else None,
            park_heartbeat_seconds=self.fleet.watchdog_seconds if parks and self.fleet else None,
            task_id=loop_input.task_id, kind=loop_input.kind, model=loop_input.model,
            context=fit_context(loop_input.context), poll_interval_seconds=loop_input.poll_interval_seconds,
            timeout_seconds=loop_input.timeout_seconds, started_at=iso_z(began),
            lock=TaskLock(now=epoch, expires_at=epoch + loop_input.timeout_seconds + LOCK_MARGIN_SECONDS),
        )

    def claimed(self, task_id: Any) -> dict[str, Any]:
        """ClaimTask found the task's lock taken: whose it is, and whether that is a plain duplicate start
        (counted) or a start blocked by a stale claim (counted apart: an alarm watches it)."""
        task_id = parse_input({"task_id": task_id}).task_id
        if self.make_claims is None:
            raise InvalidInput("no lock table is configured: nothing can hold a claim")
        claim = self.make_claims().inspect(task_id)
        self._count("TasksAlreadyClaimed" if claim.verdict == "duplicate" else "TasksBlockedByStaleClaim")
        logger.warning("task already claimed", extra={
            "verdict": claim.verdict, "holder": claim.holder, "holder_status": claim.holder_status,
            "lock_expires_at": claim.expires_at,
        })
        return {"verdict": claim.verdict, "holder": claim.holder, "holder_status": claim.holder_status,
                "lock_expires_at": claim.expires_at}

    def park(self, token: Any, execution: Any, state: LoopState) -> dict[str, Any]:
        """ParkTask: put the workflow's task token in the registry, where the sweeper finds it."""
        from .registry import Parked

        if self.fleet is None or not self.fleet.parks:
            raise InvalidInput("this stack does not park (WAITING=poll)")
        if not isinstance(token, str) or not token:
            raise InvalidInput("the park needs the state's task token")
        now = self.clock()
        lock_expiry = state.lock.expires_at if state.lock else int(now.timestamp()) + state.timeout_seconds
        woke = self.fleet.park(
            Parked(task_id=state.task_id, token=token, parked_at=now.timestamp(), kind=state.kind,
                   blind=state.blind, execution=execution if isinstance(execution, str) else None,
                   wait_seconds=state.wait_seconds),
            expires_at=lock_expiry,
        )
        self._count("Parks")
        logger.info("parked", extra={"blind": state.blind, "polls": state.polls, "woke_sweeper": woke})
        return {"parked": True, "woke_sweeper": woke}

    # --- the poll -----------------------------------------------------------------------------

    def poll(self, state: LoopState) -> LoopState:
        now = self.clock()
        if state.started_at is None:  # a state made without `start` (a direct call, a test)
            state = replace(state, started_at=iso_z(now))
        polls = state.polls + 1
        elapsed = (now - (_parse_iso(state.started_at) or now)).total_seconds()
        left = budget_left(elapsed_seconds=elapsed, budget_seconds=state.timeout_seconds, polls=polls)
        resume, state = state.resume, replace(state, resume=None, mode="poll", park_timeout_seconds=None,
                                              park_heartbeat_seconds=None)
        reason = resume.reason if resume is not None and resume.Error is None else None
        if resume is not None and resume.get_at_us is not None:  # is the sweeper's lead long enough?
            for metric, value in resume_slot_metrics(resume.get_at_us / MICROS - now.timestamp()):
                self._count(metric.name, value, metric.unit)
        if self.fleet is not None:
            try:  # the key read and a connection open before the slot, not after it
                self.client.ready()
            except (TransientError, ProtocolError) as exc:  # the key's secret could not be read this time
                return self._setback(state, polls, elapsed, left, ErrorInfo(**exc.as_error()))
            if not self._slot(resume, left) and left > 0:
                # the account's budget is spoken for as far ahead as it reaches: wait as after a 429, unasked
                return self._budget_wait(state, polls, elapsed)
        self._count("Polls")
        try:
            answer = self.client.get_task(state.task_id, slot_to_ask_again=self._slot_to_ask_again(left))
            try:
                task = normalize(answer, expected_task_id=state.task_id)
            except WanRelayError:
                raise
            except Exception as exc:  # a slip of the normalizer's own: an unreadable answer, not a failed execution
                # the type only: the exception's text may quote the answer
                raise ProtocolError(f"the task answer could not be read ({type(exc).__name__})") from None
        except BudgetSpent:  # the key was rotated, and no slot was to be had to ask again with the new one
            return self._budget_wait(state, polls, elapsed)
        except ThrottledError as exc:
            self._count("Throttled")
            throttled = state.throttled + 1
            logger.warning("DashScope throttled the task query", extra={"code": exc.code, "attempt": throttled})
            if left <= 0:
                return self._finish(state, None, polls, "TIMED_OUT", error=_timed_out(state, polls))
            wait = fit_wait(throttle_wait(throttled, exc.retry_after, self.rng), elapsed_seconds=elapsed,
                            budget_seconds=state.timeout_seconds, polls=polls)
            # the loop's own word for the wait; the event keeps what DashScope last said
            return replace(state, polls=polls, throttled=throttled, done=False, status="THROTTLED",
                           provider_status=_last_provider_status(state), wait_seconds=wait)
        except (TransientError, ProtocolError) as exc:
            return self._setback(state, polls, elapsed, left, ErrorInfo(**exc.as_error()))
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
        wait = fit_wait(
            next_wait(kind=kind, age_seconds=age, interval_override=state.poll_interval_seconds),
            elapsed_seconds=elapsed, budget_seconds=state.timeout_seconds, polls=polls,
        )
        state = replace(state, kind=kind, polls=polls, throttled=0, troubles=0, done=False, status=task.status,
                        provider_status=task.status, wait_seconds=wait)
        if self.fleet is not None and self.fleet.next_move(reason, left) == "park":
            # resumed for a task that still runs (the list was wrong about it, or this was a probe): the
            # sweeper probes it from now on instead of trusting the list
            state = replace(state, mode="park", park_timeout_seconds=max(1, int(left)), blind=reason is not None,
                            park_heartbeat_seconds=self.fleet.watchdog_seconds)
        logger.info("task not finished", extra={"status": task.status, "mode": state.mode, "polls": polls})
        return state

    def _budget_wait(self, state: LoopState, polls: int, elapsed: float) -> LoopState:
        """No slot of the account's budget for this poll's GET: wait as after a 429, unasked."""
        self._count("QueryBudgetWaits")
        throttled = state.throttled + 1
        wait = fit_wait(throttle_wait(throttled, None, self.rng), elapsed_seconds=elapsed,
                        budget_seconds=state.timeout_seconds, polls=polls)
        return replace(state, polls=polls, throttled=throttled, done=False, status="THROTTLED",
                       provider_status=_last_provider_status(state), wait_seconds=wait)

    def _slot(self, resume: Resume | None, left: float) -> bool:
        """A slot of the account's budget for this poll's GET (waited for); False if none is to be had.
        With the task's budget spent, the last GET decides its fate: it goes, a slot or not, even when
        DynamoDB cannot be asked for one."""
        assert self.fleet is not None
        try:
            return self.fleet.take_slot(resume.get_at_us if resume else None)
        except TransientError:
            if left > 0:
                raise
            return False

    def _slot_to_ask_again(self, left: float) -> Callable[[], bool] | None:
        """A GET sent again with a rotated key takes a slot of its own: the refused one took this poll's
        slot, and DashScope's limit may count it. The last GET of a task goes, a slot or not."""
        if self.fleet is None:
            return None
        return lambda: self._slot(None, left) or left <= 0

    def _setback(self, state: LoopState, polls: int, elapsed: float, left: float, error: ErrorInfo) -> LoopState:
        """DashScope could not be asked this time (an outage, an unreadable answer): trouble within the
        budget never ends a task. Back off, capped and jittered, until the budget is spent; then the task
        ends TIMED_OUT with the last error. FAILED stays what DashScope says."""
        self._count("PollErrors")
        troubles = state.troubles + 1
        logger.warning("the poll failed; backing off", extra={"code": error.code, "attempt": troubles})
        state = replace(state, troubles=troubles, last_error=error)
        if left <= 0:
            return self._finish(state, None, polls, "TIMED_OUT", error=error)
        wait = fit_wait(trouble_wait(troubles, self.rng), elapsed_seconds=elapsed,
                        budget_seconds=state.timeout_seconds, polls=polls)
        return replace(state, polls=polls, done=False, wait_seconds=wait)

    def after_trouble(self, state: LoopState) -> LoopState:
        """The workflow's Catch path: an attempt failed past its quick retries (the function crashed, timed
        out or was throttled; S3 or DynamoDB kept failing). Still within the budget: wait and poll again
        (items already stored are not fetched again). Budget spent: the task ends TIMED_OUT with that
        error."""
        error = _caught_error(state.error)
        # a pass through here costs history events like a poll: it counts against the poll cap as one, and
        # so does each pass through OutageWait since the relay last ran (the workflow counted them)
        polls = state.polls + 1 + state.outages.n
        state = replace(state, error=None, resume=None, mode="poll", park_timeout_seconds=None,
                        park_heartbeat_seconds=None, outages=Outages())
        now = self.clock()
        elapsed = (now - (_parse_iso(state.started_at) or now)).total_seconds()
        left = budget_left(elapsed_seconds=elapsed, budget_seconds=state.timeout_seconds, polls=polls)
        return self._setback(state, polls, elapsed, left, error)

    def finish_after_error(self, state: LoopState) -> LoopState:
        """The last release's ReportFailure (see `handle`): its PollTask's retries ran out, and its
        definition puts this answer's event at once, so the task ends here: MEDIA_UNAVAILABLE when the
        media would not transfer, else FAILED, with the error caught (or the fate an earlier attempt
        already decided, and the media the task has in S3)."""
        error = _caught_error(state.error)
        status: CompletionStatus = "MEDIA_UNAVAILABLE" if error.category == "media" else "FAILED"
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
        elif task is None:
            # decided without an answer in hand (the budget ran out in trouble): an attempt may have
            # stored items before it died, and the event names exactly what the task has in S3
            stored = self._landed(state.task_id)
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
        # the context travels in the event now: the state carries it once, not twice (256 KB per state)
        return replace(
            state, kind=detail.kind, context=None, polls=polls, done=True, status=status, wait_seconds=0,
            event=msgspec.to_builtins(detail),
            records_expire_at=int(self.clock().timestamp()) + RECORD_TTL_SECONDS,
        )

    def _ingest(
        self, state: LoopState, task: Task, stored: list[StoredMedia], failures: list[ItemFailure]
    ) -> tuple[CompletionStatus, ErrorInfo | None]:
        if task.status != "SUCCEEDED":
            return _provider_failure(task)
        rejected: list[MediaRejected | MediaTransferError] = []
        for ref in task.media:
            request = {"key": f"{state.task_id}#{ref.index}", "task_id": state.task_id, "ref": msgspec.to_builtins(ref)}
            try:
                item = self._store_item(request)
            except (MediaRejected, MediaTransferError) as exc:
                logger.warning("media item not stored", extra={"index": ref.index, "code": exc.code})
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

    def _store_item(self, request: dict[str, Any]) -> StoredMedia:
        """One item, tried a few times: a broken transfer (reset, cut short, checksum) is tried again
        after a short jittered pause, then it is the item's failure, and the items after it are still
        fetched. A transfer past this invocation's deadline is not the item's fault: it goes up, and the
        workflow polls again with a fresh Lambda (the items already stored are not fetched again)."""
        for attempt in range(1, ITEM_ATTEMPTS + 1):
            try:
                return msgspec.convert(self._store_once(request=request), StoredMedia)
            except MediaTransferError as exc:
                if self._transfer_deadline is not None and time.monotonic() >= self._transfer_deadline:
                    raise TransientError(f"this poll ran out of time for the media ({exc.code})",
                                         code="OutOfTime") from None
                if attempt == ITEM_ATTEMPTS:
                    raise
                self._count("MediaRetries")
                logger.info("media transfer failed; trying again", extra={"code": exc.code, "attempt": attempt})
                (self.sleep or _pause)(self.rng.uniform(0.0, min(ITEM_RETRY_CAP_SECONDS, 2.0 ** attempt)))
        raise AssertionError("unreachable")

    def _landed(self, task_id: str) -> list[StoredMedia]:
        from .landed import landed_media

        streamer = self.streamer
        return landed_media(streamer.s3, streamer.bucket, streamer.prefix, task_id)

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
            "provider_status": task.status if task else _last_provider_status(state),
            "kind": kind,
            "model": state.model,
            "context": state.context,
            "request_id": task.request_id if task else None,
            "prompt": task.prompt if task else Prompt(),
            "timing": timing,
            # the media type only, also for an item recorded (or an object stored) by a release that kept
            # the host's whole Content-Type
            "media": [replace(item, content_type=media_type(item.content_type)) for item in stored],
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


def _caught_error(caught: dict[str, Any] | None) -> ErrorInfo:
    """The error the workflow's Catch recorded (`{"Error", "Cause"}`), as the event's error."""
    caught = caught or {}
    error_name = str(caught.get("Error", "TransientError"))
    try:
        cause = json.loads(caught.get("Cause") or "{}")
    except (TypeError, ValueError):
        cause = {}
    message = cause.get("errorMessage") if isinstance(cause, dict) else None
    return ErrorInfo(
        code=error_name,
        message=(str(message) if message else f"the poll failed with {error_name} after its retries")[:1000],
        category=_CAUGHT_CATEGORY.get(error_name, "transient"),
        retryable=True,
    )


def _last_provider_status(state: LoopState) -> str | None:
    """DashScope's task_status as it last answered it, or None if it never did. A loop state written before
    the state carried it (an execution in flight across the upgrade) has DashScope's last status in `status`,
    unless the relay's own THROTTLED replaced it: then it is not known."""
    if state.provider_status is not None:
        return state.provider_status
    return state.status if state.status != "THROTTLED" else None


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
