"""The sweeper's host: runs one account's `Sweeper` (its decisions, `wan_relay.sweeper`) for one Lambda
invocation of about a minute, and does the I/O it decides: reads the parks from the registry, takes the
account's query budget, reads list pages from DashScope, resumes and heartbeats the parked workflows.
It also reads the hints, DashScope's task-finished notifications (`registry.Hints`), and hands them to
the Sweeper, which resumes a hinted task without a list page.

One sweeper per account: a lease item `sweeper#<account>` in the idempotency table, taken with a
conditional write, renewed every few seconds (its `swept_at` tells the workflows the sweeper is alive
and sees the list: `sweeper.after_fallback_poll`) and released at the end. An invocation reads every
park on its first read and spreads their first heartbeats over the time it has left (at most a heartbeat
period), each park at its own place in the spread (`beat_phase`), the same in every invocation while each
beats them all: one minute's invocation beats a park about a minute after the last one did. An invocation
that cannot beat them all writes where in that order it stopped (the lease's `beat_from`), and the next
one's spread starts there: a round robin, so the parks one missed go first in the next.

A sweeper that runs but cannot read the list (every page failing: DashScope answering 5xx, 4xx or 429,
or a shape `parse_page` rejects) must not hold the parks: once no page has been answered since the first
that failed, for `BLIND_AFTER_PERIODS` heartbeat periods, it is *blind*: it beats no park and stops
advancing `swept_at`, so each park's watchdog fires and its workflow polls on its own, and does not park
again until the sweeper sees. The first failure's instant is kept on the lease item (`blind_since`): an
outage outlasts the invocations.

List pages go to DashScope at their budget slots from a small thread pool (a slow answer does not hold
up the next slot); the answers, and every other report to the Sweeper, are given from the loop's thread
only: the Sweeper is not thread-safe. A resume (SendTaskSuccess) is sent as soon as its slot is granted,
the slot reserved `RESUME_LEAD_SECONDS` ahead: the resumed workflow's poll sends its GET at that slot.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from . import metrics as metric_names
from .budget import MICROS, Budget, DynamoDBBudget, slot_verdict
from .dashscope import DashScopeClient
from .errors import BudgetSpent, OperatorError, ThrottledError, WanRelayError
from .registry import CURSOR_OVERLAP_MS, HINT_KEPT_SECONDS, Hints, Parked, Registry
from .service_errors import error_code
from .sweeper import ListQuery, Resume, SweepConfig, Sweeper, parse_page, sweeper_blind

logger = Logger(child=True)

#: a resumed workflow's GET slot is reserved this far ahead: SendTaskSuccess, the transition and the
#: poll function's invocation come first (bench/fleet.py measures the design with the same lead)
RESUME_LEAD_SECONDS = 0.3
#: how often the loop plans
TICK_SECONDS = 0.2
#: how often the registry is read for new parks
READ_EVERY_SECONDS = 1.0
#: the lease: how long one write holds it, how often it is renewed, how long a new invocation waits for it
LEASE_SECONDS = 30.0
RENEW_EVERY_SECONDS = 10.0
LEASE_WAIT_SECONDS = 15.0
#: a start waiting for the lease asks for it once a second: an ask older than this is from one that gave up
ASK_FRESH_SECONDS = 2.5
#: a lease this close to its end, not renewed, stops the loop: another sweeper may take it at its end
LEASE_MARGIN_SECONDS = 5.0
#: the lease item's TTL: a day after its last write
LEASE_TTL_SECONDS = 86_400
#: Step Functions' answers to a token whose task is over: the workflow moved on (its watchdog fired, it
#: ended, or the token is not one): SendTaskSuccess's and SendTaskHeartbeat's errors in the API reference
DEAD_TOKEN_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
#: with nothing parked and nothing in flight for this long the invocation ends (at once if its first read
#: finds nothing): an idle account costs a start a minute, not a running function; a park wakes it again
#: (`wan_relay.fleet.Fleet.wake_sweeper`)
IDLE_EXIT_SECONDS = 20.0
#: the first beats a run plans fall this long before its end: the ones due last are sent before it ends
BEAT_MARGIN_SECONDS = 5.0
#: a park this young whose heartbeat is answered InvalidToken is not taken for dead: moto takes heartbeats
#: only once the park's invocation has returned (AWS accepts a token from the moment it is issued)
YOUNG_PARK_SECONDS = 5.0
#: list pages in flight at once. A page is planned only while a thread is free for it, so it goes at its
#: slot: queued behind slow answers it would go late and crowd the next slots (DashScope's limit counts
#: arrivals). Eight answers of up to 0.8 s keep up with ten pages a second (half a budget of 19), within
#: the 10 connections requests pools per host
LIST_THREADS = 8
#: SendTaskSuccess calls at once (the resumes; heartbeats have threads of their own, so a resume never
#: waits behind them)
AWS_THREADS = 8
#: heartbeats sent a second at most (in bursts of at most HEARTBEAT_BURST), topped up as they are
#: answered: under Step Functions' SendTaskHeartbeat refill (300 a second in most regions, 500 in the
#: largest, from a bucket of 1,500 / 3,000); a minute's spread of 10,000 parks asks about 180 a second
HEARTBEATS_PER_SECOND = 250
HEARTBEAT_BURST = 50
#: the SendTaskHeartbeat round trip the heartbeat threads are sized for. A thread sends one beat at a time,
#: so the beats go at most HEARTBEAT_THREADS / round trip a second: eight threads kept up with 10,000
#: parks only while Step Functions answered within 44 ms (found in review). Within this bound the beats
#: reach HEARTBEATS_PER_SECOND; a slower Step Functions lowers the rate in proportion
HEARTBEAT_ROUND_TRIP_SECONDS = 0.2
#: heartbeats in flight at once, each on a thread of its own (sent when due, never queued behind others):
#: the rate times the round trip
HEARTBEAT_THREADS = math.ceil(HEARTBEATS_PER_SECOND * HEARTBEAT_ROUND_TRIP_SECONDS)
#: the Step Functions client's pooled connections: one for each thread that calls it (botocore keeps 10
#: by default, and a call past the pool opens a connection of its own, closed after it: a TLS handshake
#: each time)
STEP_FUNCTIONS_CONNECTIONS = AWS_THREADS + HEARTBEAT_THREADS
#: a resume Step Functions refused (not for a dead token: AccessDenied, a 5xx, throttling past botocore's
#: retries) is not given a slot of the budget again for this long, doubled at each refusal up to the cap:
#: a refusal that lasts does not spend the slots the workflows' own polls need
RESUME_RETRY_SECONDS = 2.0
RESUME_RETRY_MAX_SECONDS = 60.0
#: a tick waits this long at most for its resumes' answers: Step Functions slow to answer (each call may
#: take the client's SWEEPER_CALL_SECONDS, queued behind heartbeats) must not hold the loop, which renews
#: the lease. An answer that comes later is reported at a later tick; its resume is not offered meanwhile
RESUME_WAIT_SECONDS = 2.0
#: while blind, a list page goes this often at most: enough to see the list answer again within seconds,
#: and the budget is left to the workflows that fell back to polling on their own (a fleet's many blocks,
#: each looked at again every few seconds, would otherwise spend it on pages that fail)
BLIND_PAGE_EVERY_SECONDS = 5.0


def _no_slot() -> bool:
    """A list page refused for a rotated key gets no slot to be asked again at once (see `_act`)."""
    return False


def beat_phase(task_id: str, beat_from: float = 0.0) -> float:
    """Where in a spread of first heartbeats a task's beat falls, in [0, 1): a hash of its id, so the same
    in every invocation whatever else is parked (a place in the registry's order moves as parks come and
    go), and parks spread evenly; the order rotated to start at `beat_from` (where the last invocation's
    beats stopped, `Lease.beat_from`)."""
    return (zlib.crc32(task_id.encode()) / 2**32 - beat_from) % 1.0


@dataclass
class Counts:
    """What one invocation did (its summary and its metrics)."""

    list_queries: int = 0
    throttled: int = 0
    list_errors: int = 0
    resumes: int = 0
    heartbeats: int = 0
    dead_tokens: int = 0
    #: DashScope's task-finished notifications that ended a watched task (the rest: other callers' tasks,
    #: tasks ended already, or kept until their workflow parks)
    hinted: int = 0


class Lease:
    """The account's one-sweeper lease: an item `sweeper#<account>` (key attribute `id`) with `holder`,
    `lease_until` and `swept_at` (epoch seconds) and the table's TTL attribute `expiration`; `asked_at`
    when a start waits for it; `blind_since` while the list's pages fail (the first failure with none
    answered since: `BLIND_AFTER_PERIODS`), read by the next holder when it takes the lease.
    `swept_at` is written by the renewals and the release only while the holder says it sweeps (it is not
    blind), so the workflows see a sweeper that cannot read the list as one that stopped. `beat_from`:
    where in the heartbeats' order (`beat_phase`) the last holder's beats stopped, written by the release
    and read by the next holder when it takes the lease (its spread starts there).

    The hand-over: a start that finds the lease held asks for it (`ask`, once a second while it waits),
    and the holder gives it up at its next renewal (`asked`). The schedule's starts come a minute apart and
    each sweeps a minute, so they hand over at once; a start a park woke comes at any second, and without
    the hand-over the schedule's next start, waiting LEASE_WAIT_SECONDS, gave up before the woken one
    ended, leaving the account without a sweeper until the start after (up to 45 s: found in review)."""

    def __init__(self, client: Any, table: str, account: str, holder: str, clock: Callable[[], float]) -> None:
        self._client = client
        self._table = table
        self._key = {"id": {"S": f"sweeper#{account}"}}
        self.holder = holder
        self._clock = clock
        #: until when this holder holds it, as far as it knows (0: not held)
        self.until = 0.0
        #: when this holder took it, and whether a start asked for it since (as of the last renewal)
        self.taken_at: float | None = None
        self.asked = False
        #: since when the list's pages fail, none answered since (the item's `blind_since`, read when
        #: taken; the holder keeps it up to date and the renewals write it)
        self.blind_since: float | None = None
        #: where the heartbeats' spread starts, in [0, 1) (the item's `beat_from`, read when taken; the
        #: holder sets where its beats stopped, and the release writes it)
        self.beat_from = 0.0

    def take(self) -> bool:
        """Take it if nobody holds it, its holder let it lapse, or it is ours already."""
        # the item may exist without a lease: a park that woke the sweeper noted it there (`woken_at`)
        free = "attribute_not_exists(lease_until) OR lease_until < :now OR holder = :me"
        # neither `swept_at` nor `blind_since` is written: whether the list is seen is not known yet
        taken = self._write(free, self._clock() + LEASE_SECONDS, swept=None)
        if taken and self.taken_at is None:
            self.taken_at = self._clock()
        return taken

    def renew(self, *, swept: bool = True) -> bool:
        """Hold it longer, say whether the sweeper swept now (`swept`: False while it is blind, `swept_at`
        is left as it was) and since when the list fails (`blind_since`); False if another holder has it.
        `asked` then says whether a start asked for it since this holder took it."""
        return self._write("holder = :me", self._clock() + LEASE_SECONDS, swept=swept)

    def ask(self) -> None:
        """Say a start waits for it (a write of `asked_at` alone: the holder's conditions are untouched)."""
        self._client.update_item(
            TableName=self._table, Key=self._key, UpdateExpression="SET asked_at = :now",
            ExpressionAttributeValues={":now": {"N": repr(self._clock())}},
        )

    def release(self, *, swept: bool = True) -> None:
        """Give it up, writing `beat_from` with the rest (only while this holder has it)."""
        self._write("holder = :me", None, swept=swept, beat_from=True)
        self.until = 0.0

    def _write(self, condition: str, until: float | None, *, swept: bool | None, beat_from: bool = False) -> bool:
        """`swept` None: neither `swept_at` nor `blind_since` is written (the take), and `blind_since` and
        `beat_from` are read from the item. `beat_from`: the holder's `beat_from` is written."""
        now = self._clock()
        sets, removes = ["holder = :me", "lease_until = :until", "expiration = :expires"], []
        if beat_from:
            sets.append("beat_from = :beat_from")
        if swept:
            sets.append("swept_at = :now")
        if swept is not None and self.blind_since is not None:  # `blind_since` as the holder knows it
            sets.append("blind_since = :blind")
        elif swept is not None:
            removes.append("blind_since")
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        values = {
            ":me": {"S": self.holder},
            ":until": {"N": repr(now if until is None else until)},
            ":expires": {"N": str(int(now) + LEASE_TTL_SECONDS)},
            ":now": {"N": repr(now)},
            ":blind": {"N": repr(self.blind_since)},
            ":beat_from": {"N": repr(self.beat_from)},
        }
        # DynamoDB refuses a value the expressions do not use
        values = {name: value for name, value in values.items() if name in update or name in condition}
        try:
            answer = self._client.update_item(
                TableName=self._table, Key=self._key, UpdateExpression=update, ConditionExpression=condition,
                ExpressionAttributeValues=values, ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        if until is not None:
            self.until = until
        if swept is None:
            blind_since = answer.get("Attributes", {}).get("blind_since", {}).get("N")
            self.blind_since = None if blind_since is None else float(blind_since)
            self.beat_from = float(answer.get("Attributes", {}).get("beat_from", {}).get("N", "0"))
        asked_at = answer.get("Attributes", {}).get("asked_at", {}).get("N")
        self.asked = (asked_at is not None and self.taken_at is not None and float(asked_at) > self.taken_at
                      and now - float(asked_at) <= ASK_FRESH_SECONDS)
        return True


class SweepHost:
    """One invocation of one account's sweeper. Takes its clients: `dynamodb` (the budget, the lease and
    the registry), `stepfunctions` (SendTaskSuccess, SendTaskHeartbeat) and the DashScope client."""

    def __init__(
        self,
        *,
        dynamodb: Any,
        stepfunctions: Any,
        dashscope: DashScopeClient,
        idempotency_table: str,
        parked_table: str,
        account: str,
        budget: Budget,
        sweeper: Sweeper | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Any = None,
    ) -> None:
        self.sweeper = sweeper or Sweeper(SweepConfig(rate=budget.rate))
        self.registry = Registry(dynamodb, parked_table, account)
        self.hints = Hints(dynamodb, parked_table, account)
        self.lease = Lease(dynamodb, idempotency_table, account, holder or str(uuid.uuid4()), clock)
        self._bucket = DynamoDBBudget(dynamodb, idempotency_table, account, budget, clock=clock)
        self._budget = budget
        self._sfn = stepfunctions
        self._dashscope = dashscope
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self.counts = Counts()
        #: the parks watched, by task id; the registry keys read lately (the overlap reads them again)
        self._parks: dict[str, Parked] = {}
        self._seen: dict[str, float] = {}
        self._cursor_ms: int | None = None
        #: the hints read lately (the overlap reads them again), and where the next read starts
        self._hints_seen: dict[str, float] = {}
        self._hint_cursor_ms: int | None = None
        self._lists: dict[Future[Any], tuple[ListQuery, float]] = {}
        self._beats: dict[Future[Any], Parked] = {}
        #: resumes (SendTaskSuccess) a tick did not see answered within RESUME_WAIT_SECONDS
        self._resuming: dict[Future[Any], tuple[Resume, Parked]] = {}
        #: when the last list page was sent
        self._page_sent_at = -math.inf
        self._operator_error: OperatorError | None = None
        self._stopping = False
        self._until = math.inf
        #: resumes Step Functions refused, by task id: how many times, and not before when again
        self._refused: dict[str, tuple[int, float]] = {}
        #: parks whose DeleteItem failed: tried again at the next read
        self._undeleted: list[Parked] = []
        #: heartbeats that may be sent now (HEARTBEATS_PER_SECOND), as of when
        self._beat_allowance = float(HEARTBEAT_BURST)
        self._beat_allowance_at = clock()
        #: whether the last check found the sweeper blind (its change is logged)
        self._was_blind = False
        #: the parks given a place in a spread of first beats whose beat is not sent yet, by task id: their
        #: place (`beat_phase`); the first of them left at the end is where the next run's spread starts
        self._unbeaten: dict[str, float] = {}

    # --- the invocation ---------------------------------------------------------------------------

    def stop(self) -> None:
        """End the run at its next tick, as when its time is up (from another thread: a local run's end)."""
        self._stopping = True

    def run(self, until: float) -> dict[str, Any]:
        """Sweep until `until` (epoch seconds), holding the account's lease; a summary of what was done.
        Without the lease (another sweeper holds it past the wait) it returns at once, having done nothing.
        An operator error DashScope answered (a refused key) is raised at the end, after the lease is
        released, so that the invocation fails under its name."""
        self._until = until
        if not self._take_lease(min(until, self._clock() + LEASE_WAIT_SECONDS)):
            logger.info("another sweeper holds the account's lease")
            return {"lease": False, "parked": 0, **asdict(self.counts)}
        lists, aws = ThreadPoolExecutor(LIST_THREADS, "sweep-list"), ThreadPoolExecutor(AWS_THREADS, "sweep-aws")
        beats = ThreadPoolExecutor(HEARTBEAT_THREADS, "sweep-beat")
        with lists, aws, beats:
            try:
                self._loop(until, lists, aws, beats)
            finally:
                # released first: a start waiting for it (LEASE_WAIT_SECONDS) must not wait for this run's
                # calls in flight (a list page may take its 10 s); their answers only settle this run's
                # books. Each step on its own: DynamoDB failing one (throttled past the client's tries)
                # must not keep the lease held for its 30 s, nor lose the invocation's metrics.
                self._finally("release the lease", self._release)
                wait([*self._lists, *self._beats, *self._resuming])
                self._finally("report the answers", self._settle)
        self.counts.hinted = self.sweeper.hinted
        summary = {"lease": True, "parked": self.sweeper.parked, **asdict(self.counts)}
        self._finally("emit the metrics", self._emit_metrics)
        logger.info("swept", extra=summary)
        if self._operator_error is not None:
            raise self._operator_error
        return summary

    def _release(self) -> None:
        """Release the lease, with where this run's beats stopped: the place of the first beat it planned
        and did not send (the next run's spread starts there, so the parks this run missed go first);
        where the last run's started if it sent them all (each park at the same place every minute)."""
        left = [(place, task_id) for task_id, place in self._unbeaten.items() if task_id in self._parks]
        if left:
            self.lease.beat_from = beat_phase(min(left)[1])
        self.lease.release(swept=not self.blind(self._clock()))

    @staticmethod
    def _finally(step: str, call: Callable[[], None]) -> None:
        try:
            call()
        except (ClientError, BotoCoreError) as exc:
            logger.warning("a step of the sweep's end failed",
                           extra={"step": step, "code": error_code(exc) or type(exc).__name__})

    def _take_lease(self, give_up_at: float) -> bool:
        """The previous minute's invocation releases the lease at its end: ask once a second until then."""
        while not self._try_take():
            if self._clock() + 1.0 > give_up_at:
                return False
            try:
                self.lease.ask()  # a holder a park woke, out of step with the schedule, hands it over
            except (ClientError, BotoCoreError) as exc:
                logger.warning("the lease could not be asked for",
                               extra={"code": error_code(exc) or type(exc).__name__})
            self._sleep(1.0)
        return True

    def _try_take(self) -> bool:
        try:
            return self.lease.take()
        except (ClientError, BotoCoreError) as exc:  # throttled past the client's tries: a second later
            logger.warning("the lease could not be taken", extra={"code": error_code(exc) or type(exc).__name__})
            return False

    def _idle(self) -> bool:
        return not (self.sweeper.parked or self._lists or self._beats or self._resuming)

    def _loop(self, until: float, lists: ThreadPoolExecutor, aws: ThreadPoolExecutor,
              beats: ThreadPoolExecutor) -> None:
        next_read = next_renew = self._clock()
        busy_at = next_read - IDLE_EXIT_SECONDS  # a first read that finds nothing ends the invocation
        while (now := self._clock()) < until and not self._stopping:
            if now >= next_renew:
                renewed = self._renew()
                if renewed is None:
                    return
                if renewed:  # else tried again at the next tick
                    next_renew = now + RENEW_EVERY_SECONDS
            if now >= self.lease.until - LEASE_MARGIN_SECONDS:
                logger.warning("the sweeper's lease could not be renewed in time; stopping")
                return
            try:
                if now >= next_read:
                    next_read = now + READ_EVERY_SECONDS
                    self._read_parks(now)
                    self._read_hints(now)
                self._settle()
                self._act(now, lists, aws)
                if not self._idle():
                    busy_at = now
                elif now - busy_at >= IDLE_EXIT_SECONDS:
                    logger.info("nothing parked: the sweep ends until a park wakes it")
                    return
            except (ClientError, BotoCoreError) as exc:  # DynamoDB still failing after botocore's retries
                logger.warning("a sweep failed; trying again", extra={"code": error_code(exc) or type(exc).__name__})
            self._beat_until(now + TICK_SECONDS, beats)

    def _renew(self) -> bool | None:
        """True if renewed, False if it could not be (tried again at the next tick: the lease lasts
        LEASE_SECONDS), None if another sweeper took it or a start asked for it (the run ends and
        releases it)."""
        try:
            if self.lease.renew(swept=not self.blind(self._clock())):
                if self.lease.asked:
                    logger.info("a start waits for the account's lease; handing it over")
                    return None
                return True
        except (ClientError, BotoCoreError) as exc:
            logger.warning("the lease could not be renewed", extra={"code": error_code(exc) or type(exc).__name__})
            return False
        logger.warning("another sweeper took the account's lease; stopping")
        return None

    # --- the registry -----------------------------------------------------------------------------

    def _read_parks(self, now: float) -> None:
        """The parks written since the last read (all of them on the first), each once; a task parked
        again replaces its older park. A park read on the first read is one the previous invocation may
        have heartbeaten lately or not at all, and one whose first beat (a period after its park) would
        come after this run is one the next invocation may beat only late in its own spread: both are
        beaten at their place (`beat_phase`, the order starting where the last run's beats stopped) in a
        spread over what is left of this run (at most a period), so that no park waits longer than a period
        and the hand-over between two beats."""
        undeleted, self._undeleted = self._undeleted, []
        for parked in undeleted:
            self._delete(parked)
        first = self._cursor_ms is None
        after = None if first else self._cursor_ms - CURSOR_OVERLAP_MS  # type: ignore[operator]
        # the first read takes the whole partition: eventually consistent, half the read units (a park too
        # recent for it is in the next read, strongly consistent, which goes back CURSOR_OVERLAP_MS)
        fresh = [parked for parked in self.registry.since(after, consistent=not first) if parked.key not in self._seen]
        self._cursor_ms = round(now * 1000)
        period = self.sweeper.config.heartbeat_every_seconds
        spread = max(0.0, min(period, self._until - BEAT_MARGIN_SECONDS - now))
        for parked in fresh:
            self._seen[parked.key] = parked.parked_at
            known = self._parks.get(parked.task_id)
            if known is not None and known.parked_at >= parked.parked_at:
                self._delete(parked)  # an older park of a task that parked again since
                continue
            if known is not None:
                self._delete(known)
            self._refused.pop(parked.task_id, None)  # a new park, a new token: no back-off inherited
            self._unbeaten.pop(parked.task_id, None)  # nor the place of a beat planned for the old one
            self._parks[parked.task_id] = parked
            kind = parked.kind if parked.kind in ("image", "video") else None
            late = parked.parked_at + period > now + spread
            first_beat = None
            if first or late:
                place = self._unbeaten[parked.task_id] = beat_phase(parked.task_id, self.lease.beat_from)
                first_beat = now + spread * place
            self.sweeper.park(parked.task_id, kind, parked.parked_at, blind=parked.blind,  # type: ignore[arg-type]
                              first_beat_at=first_beat, probe_after=parked.wait_seconds)
        horizon = (self._cursor_ms - CURSOR_OVERLAP_MS) / 1000 - 1
        self._seen = {key: at for key, at in self._seen.items() if at >= horizon}

    def _read_hints(self, now: float) -> None:
        """DashScope's task-finished notifications taken since the last read, each once; on the first read
        those of the last `HINT_KEPT_SECONDS` (a hint the last invocation had no park for, or had no slot
        left to resume, is not lost with it), newest first and no more than the Sweeper keeps: a flood (a
        leaked token, up to the stage's 100 a second: 360,000 in the hour) costs at most that many items
        read, a page at a time. Read after the parks, so a hint finds its park."""
        first = self._hint_cursor_ms is None
        if first:
            # a first read that failed part way is read again whole: what it kept goes, or the hints that
            # came since, the newest, would be put behind it (`hint_earlier`), the first to go
            self.sweeper.drop_kept_hints()
            hints = itertools.islice(self.hints.since(round((now - HINT_KEPT_SECONDS) * 1000), newest_first=True),
                                     self.sweeper.config.max_hints_kept)
        else:
            hints = self.hints.since(self._hint_cursor_ms - CURSOR_OVERLAP_MS)  # type: ignore[operator]
        # the keys the next read's overlap may bring again: the older ones are not kept (a read that fails
        # part way is read again from the same cursor, and hands the Sweeper its first hints twice: harmless)
        horizon = (round(now * 1000) - CURSOR_OVERLAP_MS) / 1000 - 1
        for hint in hints:
            if hint.key in self._hints_seen:
                continue
            if hint.hinted_at >= horizon:
                self._hints_seen[hint.key] = hint.hinted_at
            if first:
                self.sweeper.hint_earlier(hint.task_id, hint.hinted_at, ended_at=hint.ended_at)
            else:
                self.sweeper.hint(hint.task_id, hint.hinted_at, ended_at=hint.ended_at)
        self._hint_cursor_ms = round(now * 1000)
        self.counts.hinted = self.sweeper.hinted
        self._hints_seen = {key: at for key, at in self._hints_seen.items() if at >= horizon}

    def _let_go(self, task_id: str) -> None:
        """The workflow is resumed, or gone on without the sweeper: neither watched nor registered."""
        self.sweeper.forget(task_id)
        self._refused.pop(task_id, None)
        parked = self._parks.pop(task_id, None)
        if parked is not None:
            self._delete(parked)

    def _delete(self, parked: Parked) -> None:
        """Remove a park from the registry; if DynamoDB fails (throttled past botocore's retries), try again
        at the next read. The task is not watched any more either way: a park left over is read again only
        by the next invocation, whose heartbeat or resume meets a dead token and removes it (or its TTL)."""
        try:
            self.registry.remove(parked)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("a park could not be deleted; tried again at the next read",
                           extra={"code": error_code(exc) or type(exc).__name__})
            self._undeleted.append(parked)

    # --- the budget's slots -----------------------------------------------------------------------

    def _act(self, now: float, lists: ThreadPoolExecutor, aws: ThreadPoolExecutor) -> None:
        """Plan, reserve, and carry out what the budget grants, in plan order (list pages, then resumes)."""
        actions = self.sweeper.plan(now, self._budget.capacity)
        # as many pages as there are threads free to send them at their slots; the others are offered again
        queries = [a for a in actions if isinstance(a, ListQuery)][: LIST_THREADS - len(self._lists)]
        if queries and self.blind(now):  # one page now and then, to see when the list answers again
            queries = queries[:1] if now - self._page_sent_at >= BLIND_PAGE_EVERY_SECONDS else []
        # a resume refused lately waits, unsent (the next plan offers it again), without a slot
        resumes = [a for a in actions if isinstance(a, Resume) and self._refused.get(a.task_id, (0, now))[1] <= now]
        if queries:
            # the key read and a connection open for each page before their slots are reserved: a page that
            # opened its connection after its slot would arrive late, among the next slots' queries (and
            # connections opened after the reservation could outlast the first slots). Best effort: a key
            # that cannot be read fails the pages themselves, where a failed page is handled
            with contextlib.suppress(WanRelayError):
                self._dashscope.ready(connections=len(queries))
        query_slots = self._bucket.reserve(len(queries)).slots_us if queries else ()
        resume_slots: tuple[int, ...] = ()
        if resumes and len(query_slots) == len(queries):
            lead_us = round((now + RESUME_LEAD_SECONDS) * MICROS)
            resume_slots = self._bucket.reserve(len(resumes), not_before_us=lead_us).slots_us
        sending: dict[Future[Any], tuple[Resume, Parked]] = {}
        for resume, slot in zip(resumes, resume_slots, strict=False):
            parked = self._parks[resume.task_id]  # the park this resume ends: the workflow may park again
            sending[aws.submit(self._resume, parked, resume, slot)] = (resume, parked)
        for query, slot_us in zip(queries, query_slots, strict=False):
            self._sleep_until(slot_us / MICROS)
            at = self._clock()
            if slot_verdict(slot_us, round(at * MICROS), self._budget.interval_us // 2) == "expired":
                continue  # late: sending now could crowd the next slot; offered again by the next plan
            self.sweeper.sent(query, at)
            self._page_sent_at = at
            # a page refused for a rotated key is not asked again here: planned again at a slot of its own
            page = lists.submit(self._dashscope.list_tasks, query.params(), slot_to_ask_again=_no_slot)
            self._lists[page] = (query, at)
            self.counts.list_queries += 1
        answered, unanswered = wait(sending, timeout=RESUME_WAIT_SECONDS)
        for future in answered:
            self._resumed(*sending[future], future)
        for future in unanswered:  # reported when answered (`_settle`); not offered again meanwhile
            self._resuming[future] = sending[future]
            self.sweeper.defer(sending[future][0].task_id, math.inf)

    def _resume(self, parked: Parked, resume: Resume, slot_us: int) -> None:
        output = json.dumps({"reason": resume.reason, "get_at_us": slot_us})
        self._sfn.send_task_success(taskToken=parked.token, output=output)

    def _resumed(self, resume: Resume, parked: Parked, future: Future[Any]) -> None:
        code = self._failure(future.exception())
        if self._parks.get(resume.task_id) is not parked:
            # answered after the workflow parked again (it went on, found its task running): the new park
            # is watched, and settled, on its own
            if code is None:
                self.counts.resumes += 1
            return
        if code is None:
            self.sweeper.sent(resume, self._clock())
            self.counts.resumes += 1
            self._let_go(resume.task_id)
        elif code in DEAD_TOKEN_CODES:
            self.counts.dead_tokens += 1
            self._let_go(resume.task_id)
        else:  # not reported sent: the next plan offers it again, sent once the back-off is over
            refusals = self._refused.get(resume.task_id, (0, 0.0))[0] + 1
            wait_for = min(RESUME_RETRY_MAX_SECONDS, RESUME_RETRY_SECONDS * 2 ** (refusals - 1))
            self._refused[resume.task_id] = (refusals, self._clock() + wait_for)
            self.sweeper.defer(resume.task_id, self._clock() + wait_for)  # the resumes behind it go first
            logger.warning("a resume failed; it is offered again", extra={"code": code, "after_seconds": wait_for})

    @staticmethod
    def _failure(exc: BaseException | None) -> str | None:
        """None for success, else the error's code (or its type's name)."""
        if exc is None:
            return None
        if isinstance(exc, ClientError | BotoCoreError):
            return error_code(exc) or type(exc).__name__
        raise exc

    # --- heartbeats and list answers --------------------------------------------------------------

    def blind(self, now: float) -> bool:
        """Whether the list's pages have all failed for `BLIND_AFTER_PERIODS` heartbeat periods since the
        first of them, none answered since (then no park is beaten and `swept_at` is not advanced)."""
        if self.lease.blind_since is not None and self._cursor_ms is not None and not (
                self._lists or self.sweeper.listed):
            # the registry read, and no park the list is to find (none, or only ended and probed ones): the
            # list hides nothing, and a park made from now on is looked for afresh (a failure left standing
            # with no page to ask would never be cleared)
            self.lease.blind_since = None
        since = self.lease.blind_since
        blind = sweeper_blind(since, now, self.sweeper.config.heartbeat_every_seconds)
        if blind != self._was_blind:
            self._was_blind = blind
            if blind:
                logger.warning("the task list keeps failing: no park is heartbeaten, the workflows poll on "
                               "their own until a page is answered", extra={"since": since})
            else:
                logger.info("the task list is answered again: the parks are heartbeaten")
        return blind

    def _heartbeat(self, beats: ThreadPoolExecutor) -> None:
        """Send the heartbeats due, as many as there are free HEARTBEAT_THREADS and HEARTBEATS_PER_SECOND
        allows; none while blind (they stay due, and go when a page is answered)."""
        now = self._clock()
        if self.blind(now):
            return
        elapsed = max(0.0, now - self._beat_allowance_at)
        self._beat_allowance = min(float(HEARTBEAT_BURST), self._beat_allowance + elapsed * HEARTBEATS_PER_SECOND)
        self._beat_allowance_at = now
        room = min(int(self._beat_allowance), HEARTBEAT_THREADS - len(self._beats))
        due = self.sweeper.heartbeats(now, max(0, room))
        self._beat_allowance -= len(due)
        for task_id in due:
            self._unbeaten.pop(task_id, None)
            parked = self._parks[task_id]
            self._beats[beats.submit(self._sfn.send_task_heartbeat, taskToken=parked.token)] = parked

    def _beat_until(self, instant: float, beats: ThreadPoolExecutor) -> None:
        """Until the next tick, send the heartbeats due, more as those in flight are answered (a batch a
        tick would be too few: sixteen a tick are 80 a second, at most 4,400 parks in a minute's spread)."""
        while True:
            self._heartbeat(beats)
            if not self._beats or (ahead := instant - self._clock()) <= 0:
                break
            wait(self._beats, timeout=ahead, return_when=FIRST_COMPLETED)
            self._settle_beats()
        self._sleep_until(instant)

    def _settle(self) -> None:
        """Report the list answers, heartbeats and late resumes that came back (from the loop's thread)."""
        self._settle_beats()
        self._settle_lists()
        for future in [f for f in self._resuming if f.done()]:
            self._resumed(*self._resuming.pop(future), future)

    def _settle_beats(self) -> None:
        for future in [f for f in self._beats if f.done()]:
            parked = self._beats.pop(future)
            code = self._failure(future.exception())
            if code is None:
                self.counts.heartbeats += 1
            elif code in DEAD_TOKEN_CODES and not (
                    code == "InvalidToken" and self._clock() - parked.parked_at < YOUNG_PARK_SECONDS):
                self.counts.dead_tokens += 1
                if self._parks.get(parked.task_id) is parked:
                    self._let_go(parked.task_id)
            else:  # the next beat is a period later, well inside the watchdog
                logger.warning("a heartbeat failed", extra={"code": code})

    def _settle_lists(self) -> None:
        for future in [f for f in self._lists if f.done()]:
            query, at = self._lists.pop(future)
            try:
                page = parse_page(future.result(), query.page_size)
            except WanRelayError as exc:
                self.sweeper.failed(query, at)
                if self.lease.blind_since is None:
                    self.lease.blind_since = at
                if isinstance(exc, BudgetSpent):
                    logger.info("a list page is asked again at its next slot, with the rotated key")
                    continue
                if isinstance(exc, ThrottledError):
                    self.counts.throttled += 1
                else:
                    self.counts.list_errors += 1
                    if isinstance(exc, OperatorError) and self._operator_error is None:
                        self._operator_error = exc
                logger.warning("a list page failed", extra={"code": exc.code})
                continue
            self.lease.blind_since = None
            self.sweeper.on_page(query, page, at)

    # --- time and metrics -------------------------------------------------------------------------

    def _sleep_until(self, instant: float) -> None:
        ahead = instant - self._clock()
        if ahead > 0:
            self._sleep(ahead)

    def _emit_metrics(self) -> None:
        if self._metrics is None:
            return
        for metric, value in (
            (metric_names.SWEEPER_LIST_QUERIES, self.counts.list_queries),
            (metric_names.SWEEPER_THROTTLED, self.counts.throttled),
            (metric_names.SWEEPER_LIST_ERRORS, self.counts.list_errors),
            (metric_names.SWEEPER_RESUMES, self.counts.resumes),
            (metric_names.SWEEPER_DEAD_TOKENS, self.counts.dead_tokens),
            (metric_names.SWEEPER_PARKED, self.sweeper.parked),
            (metric_names.SWEEPER_HINTED, self.counts.hinted),
        ):
            self._metrics.add_metric(name=metric.name, unit=metric.unit, value=value)
