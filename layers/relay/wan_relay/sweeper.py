"""The sweeper's decisions: one per account, it finds the parked workflows' tasks that ended through
DashScope's list endpoint and says which workflows to resume. Pure and without I/O ("sans-I/O"): its
host (the sweeper's Lambda, the simulation in bench/fleet.py) asks `plan` what to do with the query
slots the account's budget (`wan_relay.budget`) grants, does it, and reports back (`sent`, `on_page`,
`failed`, `park`, `forget`).

What it draws on the budget, in this order:
1. List pages (`GET /api/v1/tasks/?start_time&end_time&status&page_no&page_size`): a page shows up to
   `page_size` tasks at once. Windows are ranges of creation seconds (China time, as DashScope reads
   them) around the parked tasks, sized to fit a page, read oldest first. A task is first *located* in a
   window without a status filter (its creation time is learned, and whether it runs); from then on it
   is watched in a *block* (running tasks of consecutive creation seconds, at most a page of them) read
   in windows filtered on `status=RUNNING`, which hold only unfinished tasks: a task seen RUNNING
   before and absent now has ended (statuses only move forward: PENDING, RUNNING, then a final one).
   A block is read again after the interval that minimises delay plus queries for the ends a second
   its reads found (`SweepConfig.query_worth_seconds`), not before a task can possibly be done; while
   more ended tasks are known than the budget resumes in a second, only the blocks most likely to hold
   ended tasks are read, enough to keep the resumes going.
2. One resume per ended task, earliest end first: the workflow's own poll is the task's one GET (the
   host reserves its slot and hands it over). Never twice: a task leaves the watch when resumed.
3. Probes of the tasks the list cannot see (never located, or whose inferred end proved wrong, or older
   than the list's 24 h window): the workflow is resumed for one poll, on the wait policy's schedule
   (`wan_relay.policy.next_wait`), and parks again if the task still runs.

The fallback, decided by the workflow itself: a parked workflow's watchdog (the park state's
HeartbeatSeconds) fires when the sweeper stops heartbeating it; the workflow then polls once through
the budget and, unless a sweeper has swept recently (`after_fallback_poll`), keeps polling on its own.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ProtocolError
from .models import TERMINAL_PROVIDER_STATUSES, Kind
from .normalize import CHINA_TIME
from .policy import EARLIEST_FINISH_SECONDS, next_wait

#: what DashScope's list accepts in one window: start_time and end_time at most 24 hours apart
MAX_WINDOW_SECONDS = 24 * 3600

#: a block's window spans less than this: DashScope refuses a window of more than 24 hours
MAX_BLOCK_SECONDS = MAX_WINDOW_SECONDS - 1

#: the park state's HeartbeatSeconds: a workflow the sweeper has not heartbeaten for this long polls itself
WATCHDOG_SECONDS = 300
#: the sweeper heartbeats every parked workflow this often (well inside the watchdog)
HEARTBEAT_EVERY_SECONDS = 100
#: a sweeper that swept within this long is alive: a fallback poll that finds the task running parks again
SWEEPER_STALE_SECONDS = 120
#: list pages that have all failed (429, an error, an answer `parse_page` rejects) for this many heartbeat
#: periods since the first of them, none answered since, make the sweeper blind: it beats no park and
#: stops advancing `swept_at` until a page is answered. A park's last beat then came at most a period
#: before, so its watchdog (three periods) fires between two and four periods after the list's first
#: failure (200-400 s by default) and its workflow polls on its own, through the budget; the workflows
#: that fell back see `swept_at` stale by then (two periods, more than `sweeper.SWEEPER_STALE_SECONDS` at
#: the default watchdog) and do not park again while the sweeper cannot see. An outage of less than two
#: periods makes no park fall back: the beats held back while blind are sent when a page is answered
BLIND_AFTER_PERIODS = 1.0
#: reads in a row that cannot tell whether a located task is still there (its row at a page boundary, on a
#: page shorter than it says, or rows out of order) before the next step: a block member is looked for in
#: an unfiltered window of its own creation second (the rows of a second past do not change, so that
#: window shows its row whatever its status); a task such windows keep not showing is resumed for its GET
UNSURE_READS_BEFORE_LOOK = 2


def china_stamp(epoch_seconds: int) -> str:
    """`YYYYMMDDhhmmss` in China time (UTC+8), the list endpoint's time format."""
    return datetime.fromtimestamp(epoch_seconds, UTC).astimezone(CHINA_TIME).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class ListQuery:
    """One page of one window: tasks created in the seconds `first`..`last` (epoch seconds, both included).

    `end_time` is sent as the second after `last`: the documentation does not say whether the end is
    inclusive, and a second too many only shows tasks that are used (not trusted for absence)."""

    first: int
    last: int
    status: str | None = None
    page_no: int = 1
    page_size: int = 100

    def params(self) -> dict[str, str]:
        params = {
            "start_time": china_stamp(self.first),
            "end_time": china_stamp(self.last + 1),
            "page_no": str(self.page_no),
            "page_size": str(self.page_size),
        }
        if self.status:
            params["status"] = self.status
        return params

    @property
    def window(self) -> tuple[int, int, str | None]:
        return (self.first, self.last, self.status)

    def next_page(self) -> ListQuery:
        return ListQuery(self.first, self.last, self.status, self.page_no + 1, self.page_size)


@dataclass(frozen=True)
class Row:
    task_id: str
    status: str
    created_ms: int
    ended_ms: int | None = None


@dataclass(frozen=True)
class Page:
    rows: tuple[Row, ...]
    total: int
    page_no: int
    page_size: int

    @property
    def last(self) -> bool:
        return self.page_no * self.page_size >= self.total or len(self.rows) < self.page_size


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"DashScope's task list has no integer `{name}`")
    return value


def parse_page(answer: Any, page_size: int = 100) -> Page:
    """A list answer (`{"total", "page_no", "page_size", "data": [...]}`) as a `Page`; `ProtocolError`
    for any other shape. Rows without a task id, a status or a creation time are an error, not skipped:
    a row the sweeper cannot read could be a task whose absence it would misread. `page_size` is the
    size asked for, taken when the answer does not say."""
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        # an error body ({"code", "message"}) read as an empty page would say every task had ended
        raise ProtocolError("DashScope's task list is not an object with a `data` array")
    rows = []
    for item in answer["data"]:
        if not isinstance(item, dict):
            raise ProtocolError("DashScope's task list holds an item that is not an object")
        task_id, status = item.get("task_id"), item.get("status")
        if not isinstance(task_id, str) or not isinstance(status, str):
            raise ProtocolError("DashScope's task list holds an item without task_id and status")
        ended = item.get("end_time")
        rows.append(Row(task_id, status, _integer(item.get("gmt_create"), "gmt_create"),
                        ended if isinstance(ended, int) and not isinstance(ended, bool) else None))
    total = _integer(answer.get("total", len(rows)), "total")
    page_no = _integer(answer.get("page_no", 1), "page_no")
    page_size = _integer(answer.get("page_size", page_size), "page_size")
    if page_no < 1 or page_size < 1 or total < 0:
        raise ProtocolError("DashScope's task list has a page number, page size or total out of range")
    return Page(tuple(rows), total, page_no, page_size)


@dataclass(frozen=True)
class Resume:
    """Resume a parked workflow: `finished` (the list saw its task end) or `probe` (poll once, park again
    if it still runs)."""

    task_id: str
    reason: str


Action = ListQuery | Resume


@dataclass(frozen=True)
class SweepConfig:
    """The sweeper's knobs. `rate` is the account's budget (queries a second)."""

    rate: int = 19
    page_size: int = 100
    #: share of a page planned for our own tasks: room for the account's other callers' tasks
    fill: float = 0.9
    #: first look at a parked task (no status filter) this long after it parked: a burst's parks share pages
    locate_after_seconds: float = 1.0
    #: a task due for an unfiltered look waits up to this long for others, unless a page's worth is due
    locate_batch_seconds: dict[str, float] = field(default_factory=lambda: {"image": 2.0, "video": 6.0})
    #: how long before it parked a task may have been created, widened after each look that missed it
    locate_slack_seconds: tuple[int, ...] = (3, 120, 1800)
    #: how often a block of running tasks is read: every sqrt(2 x query_worth / ends a second), the
    #: interval that minimises delay plus queries when a query is worth `query_worth_seconds` of delay;
    #: the ends a second are learnt from the blocks' reads (ends over task-seconds watched, by age)
    query_worth_seconds: float = 20.0
    #: and never more often than the minimum, nor less often than `max_look_fraction` of the age
    min_look_seconds: dict[str, float] = field(default_factory=lambda: {"image": 1.5, "video": 3.0})
    max_look_fraction: float = 0.15
    max_look_seconds: float = 60.0
    #: task-seconds of watching a kind and age needs before its ends a second are trusted, and kept
    exposure_needed: float = 300.0
    exposure_kept: float = 100_000.0
    #: no list pages while the ended tasks known but not resumed fill this many seconds of the budget,
    #: and at most this share of the slots while there are any
    backlog_seconds: float = 8.0
    backlog_list_share: float = 0.25
    #: the share of the slots list pages may take at all: the rest is the ended tasks' GETs
    list_share: float = 0.5
    #: tasks created longer ago than this are probed: the list window is 24 h at most
    list_horizon_seconds: float = MAX_WINDOW_SECONDS - 600
    heartbeat_every_seconds: float = HEARTBEAT_EVERY_SECONDS
    #: a hint (DashScope's task-finished notification) for a task not parked is kept this long, as its
    #: workflow may park after its task ended; and at most this many (the account's other callers' tasks
    #: are hinted too, and never park here)
    hint_kept_seconds: float = 3600.0
    max_hints_kept: int = 100_000
    #: while hints brought at least `pushed_share` of the last ends (of `pushed_ends_seen`, once there are
    #: `pushed_ends_needed`), the list is the backstop for the notifications lost: a block's reads then
    #: follow the ends no hint brought, and are bounded by these instead of `max_look_*`
    pushed_share: float = 0.8
    pushed_ends_seen: int = 100
    pushed_ends_needed: int = 10
    pushed_loss_floor: float = 0.01
    #: (bench/fleet.py, 3 videos a second, 1% of notifications lost: 0.3 and 60 s keep a lost task's wait
    #: within about a minute at 1.13 queries per task; 1.0 and 300 s spare 0.08 queries a task more, but a
    #: lost task waited up to 9 minutes)
    pushed_max_look_fraction: float = 0.3
    pushed_max_look_seconds: float = 60.0
    #: and a task's first look waits this long after its park: most tasks are hinted before, and need none
    pushed_first_look_seconds: dict[str, float] = field(default_factory=lambda: {"image": 15.0, "video": 90.0})


@dataclass(eq=False)
class _Watch:
    """One parked workflow's task, as the sweeper follows it. `state` says where it is:
    - "scheduled": not seen running yet; its next unfiltered look is due at `next_look`;
    - "ready": due, waiting for a window; "taken": in a window offered to the host; "flying": in a
      window being read (`in_flight`);
    - "blocked": seen RUNNING: it lives in a block (`block`) and is looked at with it;
    - "ended": the list saw it end (or no longer run): its workflow is to be resumed;
    - "probing": the list cannot see it: its workflow polls on the wait policy's schedule.
    Heap entries carry the `version` they were pushed with: any later change makes them stale."""

    task_id: str
    kind: Kind | None
    parked_at: float
    state: str = "scheduled"
    version: int = 0
    created_ms: int | None = None
    alive_at: float | None = None
    next_look: float = 0.0
    next_probe: float = 0.0
    misses: int = 0
    #: reads in a row that may have hidden it (UNSURE_READS_BEFORE_LOOK): its block's, then its own second's
    unsure: int = 0
    lo: int = 0  # while not located: the creation seconds it may have
    hi: int = 0
    in_flight: tuple[int, int, str | None] | None = None
    block: _Block | None = None
    blind: bool = False
    #: the wait its workflow's own loop would take before the next poll: a probe is due that long after
    #: the park (a workflow parks again after each probe, so the task's age is not the park's)
    probe_after: float | None = None
    #: its resume is not offered before this (the host's resume was refused: `defer`)
    not_before: float = 0.0

    def span(self) -> tuple[int, int]:
        """The creation seconds it may have: exact once located, else the seconds before its park not
        yet read without it."""
        if self.created_ms is not None:
            return (self.created_ms // 1000, self.created_ms // 1000)
        return (self.lo, self.hi)

    def age(self, now: float) -> float:
        start = self.created_ms / 1000 if self.created_ms is not None else self.parked_at
        return max(0.0, now - start)


@dataclass(eq=False)
class _Block:
    """Running tasks created in consecutive seconds `first`..`last`, read together in one window
    filtered on RUNNING and on one schedule: tasks read together stay together, so no task is read
    more often than its block."""

    first: int
    last: int
    members: set[str] = field(default_factory=set)
    next_look: float = 0.0
    version: int = 0
    #: the window being read, and the members it was asked for
    flying: tuple[int, int, str | None] | None = None
    reading: frozenset[str] = frozenset()
    #: when it was last read (or its first member seen running)
    read_at: float | None = None
    #: ended tasks a read in flight is expected to find (while the budget, not the looking, sets the pace)
    expected: float = 0.0
    #: ends a second expected among its members, as of its last read
    rate: float = 0.0

    @property
    def window(self) -> tuple[int, int, str | None]:
        return (self.first, self.last, "RUNNING")


class _Sorted:
    """A sorted multiset of integers with range counts (creation seconds)."""

    def __init__(self) -> None:
        self._items: list[int] = []

    def add(self, value: int) -> None:
        bisect.insort(self._items, value)

    def discard(self, value: int) -> None:
        i = bisect.bisect_left(self._items, value)
        if i < len(self._items) and self._items[i] == value:
            del self._items[i]

    def count(self, first: int, last: int) -> int:
        return bisect.bisect_right(self._items, last) - bisect.bisect_left(self._items, first)

    def drop_below(self, value: int) -> None:
        del self._items[: bisect.bisect_left(self._items, value)]

    def next_after(self, value: int) -> int | None:
        i = bisect.bisect_right(self._items, value)
        return self._items[i] if i < len(self._items) else None

    def next_before(self, value: int) -> int | None:
        i = bisect.bisect_left(self._items, value)
        return self._items[i - 1] if i > 0 else None


class _Index:
    """Task ids by an integer second, sorted: the tasks a window covers."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str]] = []

    def add(self, second: int, task_id: str) -> None:
        bisect.insort(self._items, (second, task_id))

    def discard(self, second: int, task_id: str) -> None:
        i = bisect.bisect_left(self._items, (second, task_id))
        if i < len(self._items) and self._items[i] == (second, task_id):
            del self._items[i]

    def between(self, first: int, last: int) -> list[str]:
        lo = bisect.bisect_left(self._items, (first, ""))
        hi = bisect.bisect_left(self._items, (last + 1, ""))
        return [task_id for _, task_id in self._items[lo:hi]]

    def count(self, first: int, last: int) -> int:
        return bisect.bisect_left(self._items, (last + 1, "")) - bisect.bisect_left(self._items, (first, ""))


@dataclass
class _WindowRead:
    """What the pages of one window read so far showed."""

    seen: set[str] = field(default_factory=set)
    #: creation ms ranges where a row may have been skipped: if a task left a filtered set between two
    #: pages, the rows after it moved up by a place and the one at the page boundary was never shown
    unsure: list[tuple[int, int]] = field(default_factory=list)
    boundary_ms: int | None = None
    direction: int = 0  # -1 newest first, +1 oldest first, 0 not known yet
    ordered: bool = True

    def take(self, page: Page, window_ms: tuple[int, int]) -> None:
        for row in page.rows:
            self.seen.add(row.task_id)
        created = [row.created_ms for row in page.rows]
        steps = {(b > a) - (b < a) for a, b in itertools.pairwise(created)} - {0}
        if self.boundary_ms is not None and created and created[0] != self.boundary_ms:
            steps.add(1 if created[0] > self.boundary_ms else -1)
        if len(steps) > 1 or (self.direction and steps and steps != {self.direction}):
            self.ordered = False
        elif steps:
            self.direction = steps.pop()
        if page.page_no > 1 and self.boundary_ms is not None:
            if created:
                self.unsure.append((min(created[0], self.boundary_ms), max(created[0], self.boundary_ms)))
            elif self.direction == 0:
                self.unsure.append(window_ms)
            elif self.direction < 0:
                self.unsure.append((window_ms[0], self.boundary_ms))
            else:
                self.unsure.append((self.boundary_ms, window_ms[1]))
        if created:
            self.boundary_ms = created[-1]
        if page.last and (page.page_no - 1) * page.page_size + len(page.rows) < page.total:
            # fewer rows than the page size and the total say (a list that changed between its count and
            # its rows, or a page smaller than the size it echoes): what was not shown is not known
            if self.boundary_ms is None or self.direction == 0:
                self.unsure.append(window_ms)
            elif self.direction < 0:
                self.unsure.append((window_ms[0], self.boundary_ms))
            else:
                self.unsure.append((self.boundary_ms, window_ms[1]))

    def may_have_missed(self, created_ms: int, pages: int) -> bool:
        if pages > 1 and not self.ordered:
            return True
        return any(lo <= created_ms <= hi for lo, hi in self.unsure)


class Sweeper:
    """The watch over one account's parked workflows. One host drives it (not thread-safe).

    `plan` offers actions; the ones the host does not report `sent` before the next `plan` are offered
    again (the budget may have granted fewer slots than offered)."""

    def __init__(self, config: SweepConfig | None = None) -> None:
        self.config = config or SweepConfig()
        self._watches: dict[str, _Watch] = {}
        self._tiebreak = itertools.count()
        # heaps of (key, tiebreak, version, item); an entry whose version is not the item's is stale
        self._due: list[tuple[float, int, int, str]] = []
        self._ready: list[tuple[int, int, int, str]] = []
        self._ended: list[tuple[float, int, int, str]] = []
        self._probes: list[tuple[float, int, int, str]] = []
        #: (due, tiebreak, task id, the watch it was pushed for): a task parked again has a new watch
        self._beats: list[tuple[float, int, str, _Watch]] = []
        self._blocks: list[_Block] = []  # by `first`; they never overlap
        self._block_due: list[tuple[float, int, int, _Block]] = []
        self._located = _Index()  # watched tasks by creation second
        self._unlocated = _Index()  # watched tasks not located yet, by park second
        self._listed = _Sorted()  # creation seconds of our tasks the list has shown (the last day)
        self._continuations: dict[tuple[int, int, str | None], ListQuery] = {}
        self._reads: dict[tuple[int, int, str | None], _WindowRead] = {}
        self._pages: dict[tuple[int, int, str | None], int] = {}
        #: windows being read, and when their first page was asked
        self._flying: dict[tuple[int, int, str | None], float] = {}
        #: the tasks an unfiltered window in flight was asked for: settled by it whatever is learnt of
        #: them meanwhile (another window may locate one outside it)
        self._window_members: dict[tuple[int, int, str | None], list[str]] = {}
        self._flying_blocks: dict[tuple[int, int, str | None], _Block] = {}
        #: actions offered by the last `plan` and not reported sent yet, with what to give back
        self._offered: dict[Action, Any] = {}
        self._ended_count = 0
        #: what the blocks' reads found, by kind and age: task-seconds watched running, and ends among
        #: them (the ends a second to expect of a running task of that age: a hazard rate)
        self._exposure: dict[tuple[str, int], float] = {}
        self._ends_found: dict[tuple[str, int], float] = {}
        #: the page size DashScope actually serves (it echoes it): the documentation gives no maximum
        self._page_size = self.config.page_size
        #: hints for tasks not parked when they came, oldest first: task id -> (hinted at, its end); an
        #: OrderedDict, whose oldest goes in O(1) (a dict's first key is found past the slots deleted before it)
        self._hints: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        #: hints that ended a watched task, kept ones included
        self.hinted = 0
        #: how the last ends were learnt: True by a hint, False by the list
        self._recent_ends: collections.deque[bool] = collections.deque(maxlen=self.config.pushed_ends_seen)

    # --- the host's reports -----------------------------------------------------------------------

    def park(self, task_id: str, kind: Kind | None, parked_at: float, *, created_ms: int | None = None,
             blind: bool = False, first_beat_at: float | None = None, probe_after: float | None = None) -> None:
        """A workflow parked (its token is in the registry). `blind`: the list is not trusted for this
        task (a resume it caused found the task running): it is probed on the wait policy's schedule.
        `first_beat_at`: its first heartbeat, when not one period after the park (a host that takes
        over parks heartbeaten by its predecessor spreads their first beats over a period).
        `probe_after`: the wait the workflow's own loop would take before its next poll (the wait policy
        at the task's age, stretched to last its budget): a probe is due that long after the park;
        without it, the policy's wait at the park's age."""
        self._drop(task_id)
        watch = _Watch(task_id, kind, parked_at, blind=blind, probe_after=probe_after)
        watch.lo, watch.hi = int(parked_at) - self.config.locate_slack_seconds[0], int(parked_at)
        self._watches[task_id] = watch
        self._unlocated.add(int(parked_at), task_id)
        if first_beat_at is None:
            first_beat_at = parked_at + self.config.heartbeat_every_seconds
        heapq.heappush(self._beats, (first_beat_at, next(self._tiebreak), task_id, watch))
        if created_ms is not None:
            self._locate(watch, created_ms)
        if blind:
            self._probe_later(watch, parked_at)
        else:
            # the first look locates the task and may find it ended: not before it can be (nor sooner
            # than a moment after the park, so a burst's parks share pages)
            self._schedule(watch, max(parked_at + self.config.locate_after_seconds, self._earliest_end(watch)))
        kept = self._hints.pop(task_id, None)
        if kept is not None:
            self.hint(task_id, kept[0], ended_at=kept[1])

    def hint(self, task_id: str, hinted_at: float, *, ended_at: float | None = None) -> bool:
        """DashScope's task-finished notification says `task_id` ended (`hinted_at`: when it came). The
        workflow is resumed as if the list had seen the end, and its GET decides: a wrong hint costs one
        GET and a blind re-park. A hint older than a blind park is the one that caused it, or earlier:
        it says nothing of the task now. A hint for a task not parked is kept for `hint_kept_seconds`
        (its workflow may park later). Whether a watched task was ended by it."""
        end = ended_at if ended_at is not None else hinted_at
        watch = self._watches.get(task_id)
        if watch is None:
            self._hints[task_id] = (hinted_at, end)
            self._hints.move_to_end(task_id)
            while len(self._hints) > self.config.max_hints_kept:
                self._hints.popitem(last=False)
            return False
        if watch.state == "ended" or (watch.blind and hinted_at < watch.parked_at):
            return False
        self._end(watch, end, hinted=True)
        self.hinted += 1
        return True

    def hint_earlier(self, task_id: str, hinted_at: float, *, ended_at: float | None = None) -> bool:
        """A hint older than every one given so far (a host reading the last hour's newest first): for a
        watched task, as `hint`; for a task not parked, kept behind the others (the first to go), unless a
        newer hint of the task is kept or the store is full (it would go first). Whether a watched task
        was ended by it."""
        if task_id in self._watches:
            return self.hint(task_id, hinted_at, ended_at=ended_at)
        if task_id not in self._hints and len(self._hints) < self.config.max_hints_kept:
            self._hints[task_id] = (hinted_at, ended_at if ended_at is not None else hinted_at)
            self._hints.move_to_end(task_id, last=False)
        return False

    def drop_kept_hints(self) -> None:
        """Lets go of every hint kept for a task not parked (a host about to read them all again)."""
        self._hints.clear()

    @property
    def hints_kept(self) -> int:
        """How many hints of tasks not parked are kept (at most `max_hints_kept`)."""
        return len(self._hints)

    def defer(self, task_id: str, until: float) -> None:
        """The host could not resume `task_id` (Step Functions refused): its resume is not offered again
        before `until`, and the resumes behind it go first meanwhile."""
        watch = self._watches.get(task_id)
        if watch is not None:
            watch.not_before = until

    def forget(self, task_id: str) -> None:
        """The workflow is no longer parked (resumed and gone on, or ended otherwise)."""
        self._drop(task_id)

    def sent(self, action: Action, at: float) -> None:
        """The host carried out `action`: a query sent at `at`, or a workflow resumed."""
        offer = self._offered.pop(action, None)
        if isinstance(action, Resume):
            self._drop(action.task_id)
            return
        self._continuations.pop(action.window, None)
        if action.page_no > 1:
            return
        self._reads[action.window] = _WindowRead()
        self._pages[action.window] = 0
        self._flying[action.window] = at
        if offer is not None and offer[0] == "block":
            block = offer[1]
            block.flying = action.window
            block.reading = frozenset(block.members)
            self._flying_blocks[action.window] = block
            return
        members = []
        for watch in self._covered(action):
            if watch.state in ("scheduled", "ready", "taken"):
                self._set(watch, "flying")
                watch.in_flight = action.window
                members.append(watch.task_id)
        self._window_members[action.window] = members

    def failed(self, query: ListQuery, at: float) -> None:
        """A list query got no usable answer (throttled, an error): its window is read again later. A
        later page of a window is asked again, the pages read kept (the boundary between two pages is
        judged whatever time passed between them): starting the window over at each failure, a window of
        many pages would seldom be read through while some pages fail."""
        if query.page_no > 1 and query.window in self._reads:
            self._continuations[query.window] = query
            return
        self._continuations.pop(query.window, None)
        self._reads.pop(query.window, None)
        self._pages.pop(query.window, None)
        self._flying.pop(query.window, None)
        block = self._flying_blocks.pop(query.window, None)
        if block is not None:
            block.flying = None
            self._schedule_block(block, at + min(self.config.min_look_seconds.values()))
            return
        for watch in self._window_watches(query):
            self._schedule(watch, at + self._min_look(watch))

    def on_page(self, query: ListQuery, page: Page, at: float) -> None:
        """A page of `query`'s window, as DashScope answered it at `at`."""
        read = self._reads.setdefault(query.window, _WindowRead())
        self._pages[query.window] = self._pages.get(query.window, 0) + 1
        self._page_size = min(self._page_size, page.page_size)
        read.take(page, (query.first * 1000, (query.last + 1) * 1000 - 1))
        for row in page.rows:
            self._observe(row, at)
        if page.last:
            self._complete(query, read, at)
        else:
            self._continuations[query.window] = query.next_page()

    def heartbeats(self, now: float, limit: int) -> list[str]:
        """Parked workflows to heartbeat now (SendTaskHeartbeat: an API call, not a DashScope query)."""
        due: list[str] = []
        while self._beats and self._beats[0][0] <= now and len(due) < limit:
            _, _, task_id, watch = heapq.heappop(self._beats)
            if self._watches.get(task_id) is watch:  # not forgotten, nor parked again since
                heapq.heappush(self._beats, (now + self.config.heartbeat_every_seconds, next(self._tiebreak),
                                             task_id, watch))
                due.append(task_id)
        return due

    # --- what it decides --------------------------------------------------------------------------

    def plan(self, now: float, limit: int) -> list[Action]:
        """Up to `limit` actions in priority order: list pages, then resumes of ended tasks (earliest end
        first), then probes. Each action the host carries out takes one query slot; the ones it does not
        report `sent` are offered again by the next `plan`."""
        self._take_back_offers()
        self._listed.drop_below(int(now) - MAX_WINDOW_SECONDS)
        while self._hints and next(iter(self._hints.values()))[0] < now - self.config.hint_kept_seconds:
            self._hints.popitem(last=False)
        actions: list[Action] = []
        if self._ended_count < self.config.rate * self.config.backlog_seconds:
            continuations = sorted(self._continuations.values(), key=lambda q: (q.first, q.page_no))
            for query in continuations[:limit]:
                actions.append(query)
                self._offered[query] = ("page", None)
            pages = max(1, math.ceil(limit * self.config.list_share))
            if self._ended_count:
                pages = max(1, math.ceil(limit * self.config.backlog_list_share))
            # saturated: the watched tasks end faster than the budget resumes them
            saturated = sum(b.rate for b in self._blocks) > self.config.rate
            if saturated or self._ended_count > self.config.rate:
                # more ended tasks known than a second of the budget resumes: the budget, not the
                # looking, sets the pace. Read only the blocks most likely to hold ended tasks, enough
                # to keep the backlog filled.
                blocks = self._best_blocks(now, self.config.rate * self.config.backlog_seconds - self._ended_count)
            else:
                blocks = self._due_blocks(now)
            windows = blocks + self._due_windows(now, pages - len(actions))
            windows.sort(key=lambda pair: pair[0].first)
            for query, offer in windows:
                if len(actions) < pages:
                    actions.append(query)
                    self._offered[query] = offer
                else:
                    self._give_back(offer)
        for resume, key in self._pop_resumes(self._ended, "ended", "finished", None, now, limit - len(actions)):
            actions.append(resume)
            self._offered[resume] = ("ended", key)
        for resume, key in self._pop_resumes(self._probes, "probing", "probe", now, now, limit - len(actions)):
            actions.append(resume)
            self._offered[resume] = ("probing", key)
        return actions

    @property
    def _cap(self) -> int:
        """Our tasks planned into one page: room left for the account's other callers' tasks."""
        return max(1, int(self._page_size * self.config.fill))

    @property
    def parked(self) -> int:
        return len(self._watches)

    @property
    def listed(self) -> int:
        """Parked workflows whose task the list is to find (not ended, not probed with a GET)."""
        return sum(1 for watch in self._watches.values() if watch.state not in ("ended", "probing"))

    @property
    def backlog(self) -> int:
        """Ended tasks known and not resumed yet."""
        return self._ended_count

    # --- states and queues ------------------------------------------------------------------------

    def _set(self, watch: _Watch, state: str) -> None:
        if watch.state == "ended":
            self._ended_count -= 1
        if state == "ended":
            self._ended_count += 1
        if watch.block is not None and state != "blocked":
            watch.block.members.discard(watch.task_id)
            watch.block = None
        watch.state = state
        watch.version += 1
        if state != "flying":
            watch.in_flight = None

    def _push(self, heap: list[Any], key: Any, watch: _Watch) -> None:
        heapq.heappush(heap, (key, next(self._tiebreak), watch.version, watch.task_id))

    def _valid(self, entry: tuple[Any, int, int, str], state: str) -> _Watch | None:
        watch = self._watches.get(entry[3])
        return watch if watch is not None and watch.version == entry[2] and watch.state == state else None

    def _pop_resumes(self, heap: list[tuple[float, int, int, str]], state: str, reason: str,
                     due: float | None, now: float, limit: int) -> list[tuple[Resume, float]]:
        """Up to `limit` resumes from `heap`, in its order, of entries due by `due` (None: all); the ones
        deferred past `now` stay in it."""
        taken: list[tuple[Resume, float]] = []
        deferred = []
        while heap and len(taken) < limit and (due is None or heap[0][0] <= due):
            entry = heapq.heappop(heap)
            watch = self._valid(entry, state)
            if watch is None:
                continue
            if watch.not_before > now:
                deferred.append(entry)
                continue
            watch.version += 1  # out of the heap until given back
            taken.append((Resume(watch.task_id, reason), entry[0]))
        for entry in deferred:
            heapq.heappush(heap, entry)
        return taken

    def _take_back_offers(self) -> None:
        """Offers the host did not take return to their queues."""
        for action, offer in self._offered.items():
            if offer[0] == "page":
                self._continuations[action.window] = action
            elif offer[0] in ("ended", "probing"):
                watch = self._watches.get(action.task_id)
                if watch is not None and watch.state == offer[0]:
                    self._push(self._ended if offer[0] == "ended" else self._probes, offer[1], watch)
            else:
                self._give_back(offer)
        self._offered = {}

    def _give_back(self, offer: tuple[str, Any]) -> None:
        if offer[0] == "block":
            block = offer[1]
            if block.flying is None and block in self._blocks:
                self._schedule_block(block, block.next_look)
        elif offer[0] == "window":
            for watch in offer[1]:
                if watch.state == "taken" and watch.task_id in self._watches:
                    self._make_ready(watch)

    def _make_ready(self, watch: _Watch) -> None:
        self._set(watch, "ready")
        self._push(self._ready, watch.span()[0], watch)

    def _schedule(self, watch: _Watch, when: float) -> None:
        self._set(watch, "scheduled")
        watch.next_look = when
        self._push(self._due, when, watch)

    def _probe_later(self, watch: _Watch, now: float) -> None:
        self._set(watch, "probing")
        if watch.probe_after is not None:
            watch.next_probe = max(now, watch.parked_at + watch.probe_after)
        else:
            watch.next_probe = now + next_wait(kind=watch.kind, age_seconds=watch.age(now))
        self._push(self._probes, watch.next_probe, watch)

    def _end(self, watch: _Watch, estimated_end: float, *, hinted: bool = False) -> None:
        """The task ended (a list page or a hint says so): its workflow is to be resumed. A task the list
        cannot see (probing) is ended by a hint only: the list's view of it is not trusted."""
        if watch.state == "ended" or (watch.state == "probing" and not hinted):
            return
        self._set(watch, "ended")
        self._push(self._ended, estimated_end, watch)
        self._recent_ends.append(hinted)

    def _locate(self, watch: _Watch, created_ms: int) -> None:
        if watch.created_ms is not None:
            return
        self._unlocated.discard(int(watch.parked_at), watch.task_id)
        watch.created_ms = created_ms
        watch.misses = 0
        self._located.add(created_ms // 1000, watch.task_id)
        if watch.state == "ready":
            self._make_ready(watch)  # its span, the ready heap's key, is exact now

    def _drop(self, task_id: str) -> None:
        watch = self._watches.get(task_id)
        if watch is None:
            return
        self._set(watch, "ended")  # leaves its block
        self._ended_count -= 1
        del self._watches[task_id]
        if watch.created_ms is None:
            self._unlocated.discard(int(watch.parked_at), task_id)
        else:
            self._located.discard(watch.created_ms // 1000, task_id)

    # --- what a page says -------------------------------------------------------------------------

    def _observe(self, row: Row, at: float) -> None:
        watch = self._watches.get(row.task_id)
        if watch is None or watch.state in ("ended", "probing"):
            return
        if watch.created_ms is None:
            self._locate(watch, row.created_ms)
            self._listed.add(row.created_ms // 1000)
        if row.status in TERMINAL_PROVIDER_STATUSES:
            self._end(watch, row.ended_ms / 1000 if row.ended_ms is not None else at)
            return
        watch.alive_at = at
        if row.status == "RUNNING" and watch.state in ("scheduled", "ready"):
            self._join_block(watch, at)
        elif row.status == "RUNNING" and watch.state in ("taken", "flying"):
            watch.next_look = -1.0  # joins a block once its window is settled

    def _covered(self, query: ListQuery) -> list[_Watch]:
        """The tasks not in a block whose state a full read of the unfiltered `query` settles."""
        covered = [self._watches[t] for t in self._located.between(query.first, query.last)]
        covered = [w for w in covered if w.state not in ("blocked", "ended", "probing")]
        for task_id in self._unlocated.between(query.first, query.last):
            watch = self._watches[task_id]
            first, last = watch.span()
            if first >= query.first and last <= query.last and watch.state not in ("ended", "probing"):
                covered.append(watch)
        return covered

    def _complete(self, query: ListQuery, read: _WindowRead, at: float) -> None:
        """Every page of the window is read: settle what it covered."""
        pages = self._pages.pop(query.window, 1)
        self._reads.pop(query.window, None)
        asked_at = self._flying.pop(query.window, at)
        block = self._flying_blocks.pop(query.window, None)
        if block is not None:
            self._settle_block(block, read, pages, at)
            return
        slack = self.config.locate_slack_seconds
        for watch in self._window_watches(query):
            first, last = watch.span()
            if not (query.first <= first and last <= query.last):
                # located outside this window meanwhile (another window showed it): it says nothing of it
                if watch.next_look == -1.0:
                    self._join_block(watch, at)
                else:
                    self._schedule(watch, max(self._look_time([watch], at), self._earliest_end(watch)))
                continue
            if watch.task_id in read.seen:
                watch.unsure = 0
                if watch.next_look == -1.0:
                    self._join_block(watch, at)
                else:  # PENDING
                    self._schedule(watch, max(self._look_time([watch], at), self._earliest_end(watch)))
            elif watch.created_ms is not None and read.may_have_missed(watch.created_ms, pages):
                watch.unsure += 1
                if watch.unsure < UNSURE_READS_BEFORE_LOOK:
                    self._schedule(watch, at + self._min_look(watch))  # at a page boundary: looked for again
                else:
                    # a list that keeps not showing it (pages smaller than they say, rows out of order):
                    # its workflow's GET decides, as for a task the list lost
                    watch.unsure = 0
                    self._end(watch, at)
            elif watch.created_ms is not None:
                # located, and gone from a window that shows every status: the list lost it (expired);
                # the workflow's poll finds out what became of it
                self._end(watch, at)
            else:
                watch.misses += 1
                if watch.misses >= len(slack) or watch.age(at) > self.config.list_horizon_seconds:
                    self._probe_later(watch, at)
                else:
                    watch.lo = int(watch.parked_at) - slack[watch.misses]
                    self._schedule(watch, at + self.config.locate_after_seconds)
        # a task parked before the window was asked for, and not in it, was created after it
        for task_id in self._unlocated.between(query.first, query.last + slack[0]):
            watch = self._watches[task_id]
            if (task_id not in read.seen and watch.parked_at <= asked_at
                    and query.first <= watch.lo <= query.last < watch.hi):
                watch.lo = query.last + 1
                if watch.state == "ready":
                    self._make_ready(watch)

    def _window_watches(self, query: ListQuery) -> list[_Watch]:
        """The watches still flying in `query`'s unfiltered window: those it was asked for and not settled
        otherwise since (ended by another page, a hint, forgotten, parked again)."""
        watches = [self._watches.get(task_id) for task_id in self._window_members.pop(query.window, ())]
        return [w for w in watches if w is not None and w.state == "flying" and w.in_flight == query.window]

    # --- blocks of running tasks ------------------------------------------------------------------

    def _join_block(self, watch: _Watch, now: float) -> None:
        """A task seen RUNNING joins the block of its creation second, or a neighbour with room, or a
        block of its own."""
        second = watch.created_ms // 1000  # type: ignore[operator]
        i = bisect.bisect_right([b.first for b in self._blocks], second) - 1
        home = self._blocks[i] if i >= 0 and self._blocks[i].last >= second else None
        if home is None:
            neighbours = [b for b in (self._blocks[i] if i >= 0 else None,
                                      self._blocks[i + 1] if i + 1 < len(self._blocks) else None)
                          if b is not None and b.flying is None and len(b.members) < self._cap
                          and max(b.last, second) - min(b.first, second) < MAX_BLOCK_SECONDS]
            if neighbours:
                home = min(neighbours, key=lambda b: min(abs(b.first - second), abs(b.last - second)))
                home.first, home.last = min(home.first, second), max(home.last, second)
            else:
                home = _Block(second, second, read_at=now)  # its first member was just seen running
                self._blocks.insert(i + 1, home)
                self._schedule_block(home, self._look_time([watch], now))
        self._set(watch, "blocked")
        watch.block = home
        home.members.add(watch.task_id)

    def _schedule_block(self, block: _Block, when: float) -> None:
        block.next_look = when
        block.version += 1
        heapq.heappush(self._block_due, (when, next(self._tiebreak), block.version, block))

    def _due_blocks(self, now: float) -> list[tuple[ListQuery, tuple[str, Any]]]:
        windows = []
        while self._block_due and self._block_due[0][0] <= now:
            _, _, version, block = heapq.heappop(self._block_due)
            if version != block.version or block.flying is not None or block not in self._blocks:
                continue
            if not block.members:
                self._blocks.remove(block)
                continue
            block.version += 1  # out of the heap until read or given back
            windows.append((ListQuery(block.first, block.last, "RUNNING", 1, self._page_size),
                            ("block", block)))
        return windows

    def _best_blocks(self, now: float, wanted: float) -> list[tuple[ListQuery, tuple[str, Any]]]:
        """The blocks expected to hold the most ended tasks (ends per task-second, members, seconds since
        read), until they and the blocks being read are expected to hold `wanted`."""
        def expected(block: _Block) -> float:
            running = [self._watches[t] for t in block.members]
            return min(len(running), self._ends_a_second(running, now) * (now - (block.read_at or now)))

        wanted -= sum(b.expected for b in self._flying_blocks.values())
        ranked = sorted((b for b in self._blocks if b.flying is None and b.members), key=expected, reverse=True)
        windows: list[tuple[ListQuery, tuple[str, Any]]] = []
        for block in ranked:
            if wanted <= 0:
                break
            block.expected = expected(block)
            wanted -= block.expected
            block.version += 1  # out of the due heap until read or given back
            windows.append((ListQuery(block.first, block.last, "RUNNING", 1, self._page_size), ("block", block)))
        return windows

    def _settle_block(self, block: _Block, read: _WindowRead, pages: int, at: float) -> None:
        """A block's RUNNING window is read: a member asked for and not shown has ended (it was running
        before, and statuses only move forward), unless a page boundary may have hidden it."""
        block.flying = None
        block.expected = 0.0
        ended: set[str] = {t for t in block.reading if t not in block.members}  # seen ending on other pages
        for task_id in sorted(block.reading & block.members):  # sorted: the same run decides the same way
            watch = self._watches[task_id]
            if task_id in read.seen:
                watch.unsure = 0
            elif watch.created_ms is not None and not read.may_have_missed(watch.created_ms, pages):
                self._end(watch, ((watch.alive_at or at) + at) / 2)
                ended.add(task_id)
            else:
                watch.unsure += 1
                if watch.unsure >= UNSURE_READS_BEFORE_LOOK:
                    # the same boundary at every read (a page or more of another caller's long tasks in
                    # the block's seconds): its own second, unfiltered, shows its row whatever its status
                    watch.unsure = 0
                    self._schedule(watch, at)
        if block.read_at is not None and at > block.read_at:
            self._learn(block, ended, at - block.read_at, at)
        block.read_at = at
        block.reading = frozenset()
        if not block.members:
            self._blocks.remove(block)
            return
        self._schedule_block(block, self._block_look_time(block, at))
        self._merge_small(block)

    def _merge_small(self, block: _Block) -> None:
        """Blocks thin out as their tasks end. A block just read takes the oldest tasks of the next
        younger block until its page is full (a block emptied so goes), so that pages stay full and the
        blocks few."""
        i = self._blocks.index(block)
        if i + 1 >= len(self._blocks):
            return
        younger = self._blocks[i + 1]
        if younger.flying is not None or len(block.members) >= self._cap:
            return
        room = self._cap - len(block.members)
        moving = sorted(younger.members, key=lambda t: (self._watches[t].created_ms or 0, t))[:room]
        if not moving or (self._watches[moving[-1]].created_ms or 0) // 1000 - block.first >= MAX_BLOCK_SECONDS:
            return
        for task_id in moving:
            younger.members.discard(task_id)
            block.members.add(task_id)
            self._watches[task_id].block = block
        block.last = max(block.last, (self._watches[moving[-1]].created_ms or 0) // 1000)
        if younger.members:
            younger.first = block.last + 1
            # tasks created in the boundary second stay together: they are one window's rows
            straddling = [t for t in younger.members if (self._watches[t].created_ms or 0) // 1000 <= block.last]
            for task_id in straddling:
                younger.members.discard(task_id)
                block.members.add(task_id)
                self._watches[task_id].block = block
        if not younger.members:
            self._blocks.remove(younger)
        self._schedule_block(block, min(block.next_look, younger.next_look if younger.members else block.next_look))

    # --- unfiltered windows: tasks not seen running yet -------------------------------------------

    def _due_windows(self, now: float, limit: int) -> list[tuple[ListQuery, tuple[str, Any]]]:
        """Up to `limit` unfiltered windows over the due tasks not seen running, oldest first, each sized
        to fit a page, with the due tasks each one takes."""
        while self._due and self._due[0][0] <= now:
            watch = self._valid(heapq.heappop(self._due), "scheduled")
            if watch is None:
                continue
            if watch.age(now) > self.config.list_horizon_seconds:
                self._probe_later(watch, now)
            elif (watch.created_ms is None and watch.misses == 0 and self.pushed
                  and now < (later := watch.parked_at + self.config.pushed_first_look_seconds[watch.kind or "image"])):
                self._schedule(watch, later)
            else:
                self._make_ready(watch)
        windows: list[tuple[ListQuery, tuple[str, Any]]] = []
        waiting: list[_Watch] = []  # due, but a window being read or planned overlaps theirs: after it
        while len(windows) < limit and (head := self._ready_head()) is not None:
            heapq.heappop(self._ready)
            self._set(head, "taken")
            first, last = head.span()
            busy = [w for w in (*self._flying, *(q.window for q, _ in windows)) if w[2] is None]
            if any(a <= last and first <= b for a, b, _ in busy):
                waiting.append(head)
                continue
            members = [head]
            while (following := self._ready_head()) is not None:
                candidate = max(last, following.span()[1])
                if (candidate - first >= MAX_WINDOW_SECONDS or self._rows(first, candidate) > self._cap
                        or any(a <= candidate and last < b for a, b, _ in busy)):
                    break
                heapq.heappop(self._ready)
                self._set(following, "taken")
                last = candidate
                members.append(following)
            patience = self.config.locate_batch_seconds.get(head.kind or "image", 2.0)
            if self._rows(first, last) < self._cap // 2 and min(w.next_look for w in members) + patience > now:
                waiting += members  # a fuller page soon: wait for the tasks that fall due next
                continue
            windows.append((ListQuery(first, last, None, 1, self._page_size), ("window", members)))
        for watch in waiting:
            self._make_ready(watch)
        return windows

    def _ready_head(self) -> _Watch | None:
        """The oldest task waiting for an unfiltered window (stale entries dropped)."""
        while self._ready:
            watch = self._valid(self._ready[0], "ready")
            if watch is not None:
                return watch
            heapq.heappop(self._ready)
        return None

    def _rows(self, first: int, last: int) -> int:
        """Rows an unfiltered window shows, as far as the sweeper knows: its own tasks created there."""
        return self._listed.count(first, last) + self._unlocated.count(first, last)

    # --- when to look -----------------------------------------------------------------------------

    def _min_look(self, watch: _Watch) -> float:
        return self.config.min_look_seconds.get(watch.kind or "image", 1.5)

    def _earliest_end(self, watch: _Watch) -> float:
        """No task ends sooner than its kind allows after its creation (`policy.EARLIEST_FINISH_SECONDS`)."""
        start = watch.created_ms / 1000 if watch.created_ms is not None else watch.parked_at
        return start + EARLIEST_FINISH_SECONDS[watch.kind or "image"]

    def _look_time(self, group: list[_Watch], now: float) -> float:
        """When to look again at tasks just seen running. Reading them every I seconds costs 1/I queries
        a second and delays the ones that end by I/2 on average: with `rate` ends a second expected
        among them, I = sqrt(2 x query_worth / rate) minimises the sum."""
        ages = sorted(w.age(now) for w in group)
        median = max(1.0, ages[len(ages) // 2])
        rate = self._ends_a_second(group, now)
        interval = math.sqrt(2 * self.config.query_worth_seconds / rate) if rate > 0 else math.inf
        return now + self._bounded(interval, median, group)

    @staticmethod
    def _age_bucket(age: float) -> int:
        return int(math.log(max(age, 1.0)) / math.log(1.2))

    def _ends_a_second(self, group: list[_Watch], now: float) -> float:
        """Ends a second to expect among these running tasks, that no hint will bring: for each, the ends
        per task-second that the blocks' reads found among running tasks of its kind and age (a hinted
        task leaves its block before the read); where they have watched too little yet, one end per task
        per age (the longer a task has run, the less likely it is to end in the next second), times the
        share of the last ends that no hint brought."""
        unhinted = self._unhinted_share()

        def rate(watch: _Watch) -> float:
            age = max(1.0, watch.age(now))
            key = (watch.kind or "image", self._age_bucket(age))
            watched = self._exposure.get(key, 0.0)
            return self._ends_found[key] / watched if watched >= self.config.exposure_needed else unhinted / age

        return math.fsum(rate(watch) for watch in group)  # exact: the same whatever order the group is in

    def _learn(self, block: _Block, ended: set[str], elapsed: float, at: float) -> None:
        """A block read `elapsed` seconds after the last one: its members watched that long, at their age
        then, and the ones that ended meanwhile. A member the read could not tell about counts as watched
        without an end: leaving it out was measured worse (1,000 videos: 5.5 s against 5.3 s)."""
        for task_id in sorted(block.reading):  # the halving below makes the sum depend on the order
            watch = self._watches.get(task_id)
            if watch is None or watch.created_ms is None:
                continue
            key = (watch.kind or "image", self._age_bucket(watch.age(at) - elapsed / 2))
            self._exposure[key] = self._exposure.get(key, 0.0) + elapsed
            self._ends_found[key] = self._ends_found.get(key, 0.0) + (task_id in ended)
            if self._exposure[key] > self.config.exposure_kept:  # recent reads weigh more
                self._exposure[key] /= 2
                self._ends_found[key] /= 2

    def _block_look_time(self, block: _Block, now: float) -> float:
        members = [self._watches[t] for t in block.members]
        block.rate = self._ends_a_second(members, now)
        return self._look_time(members, now)

    def _bounded(self, interval: float, age: float, group: list[_Watch]) -> float:
        if self.pushed:
            longest = min(self.config.pushed_max_look_seconds, age * self.config.pushed_max_look_fraction)
        else:
            longest = min(self.config.max_look_seconds, age * self.config.max_look_fraction)
        return max(min(interval, longest), min(self._min_look(w) for w in group))

    def _unhinted_share(self) -> float:
        """The share of ends the list must find: all of them, unless the notifications arrive; then the
        share of the last ends they did not bring, and never less than the assumed loss."""
        if not self.pushed:
            return 1.0
        return max(self.config.pushed_loss_floor, 1 - sum(self._recent_ends) / len(self._recent_ends))

    @property
    def pushed(self) -> bool:
        """Whether the notifications arrive: hints brought most of the last ends."""
        ends = self._recent_ends
        return len(ends) >= self.config.pushed_ends_needed and sum(ends) >= self.config.pushed_share * len(ends)


def after_fallback_poll(sweeper_swept_at: float | None, now: float) -> str:
    """A workflow whose watchdog fired polled its task and found it still running: "park" again if a
    sweeper swept recently (the watchdog fired for another reason), else "poll" on its own, on the wait
    policy's schedule, through the budget."""
    if sweeper_swept_at is not None and now - sweeper_swept_at <= SWEEPER_STALE_SECONDS:
        return "park"
    return "poll"


def sweeper_blind(blind_since: float | None, now: float, heartbeat_every_seconds: float) -> bool:
    """Whether a sweeper whose list pages have all failed since `blind_since` (None: a page was answered
    since the last failure) is blind now (`BLIND_AFTER_PERIODS`)."""
    return blind_since is not None and now - blind_since >= BLIND_AFTER_PERIODS * heartbeat_every_seconds
