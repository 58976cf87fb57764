"""The sweeper's decisions, driven against a small DashScope of the tests' own (the list endpoint's
semantics as documented: creation-time windows, a status filter, newest first, pages): every ended task's
workflow is resumed exactly once, never while its task still runs, and the tasks the list cannot see are
probed instead."""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wan_relay.errors import ProtocolError
from wan_relay.policy import MAX_POLLS, MAX_WAIT_SECONDS, budget_left, fit_wait, next_wait
from wan_relay.sweeper import (
    MAX_WINDOW_SECONDS,
    SWEEPER_STALE_SECONDS,
    ListQuery,
    Page,
    Resume,
    Row,
    SweepConfig,
    Sweeper,
    after_fallback_poll,
    parse_page,
)

# 2026-01-09 09:18:17 UTC is 17:18:17 in China
EPOCH = 1_767_950_297


@dataclass
class Task:
    task_id: str
    created: float
    running_at: float
    end: float
    final: str = "SUCCEEDED"
    listed: bool = True  # False: the list never shows it (another region's key, a wrong zone)

    def status(self, t: float) -> str:
        if t >= self.end:
            return self.final
        return "RUNNING" if t >= self.running_at else "PENDING"


class ListEndpoint:
    """GET /api/v1/tasks/ of one account: tasks created in [start_time, end_time] (whole seconds),
    filtered on one status, newest first, `page_size` a page."""

    def __init__(self, tasks: list[Task], max_page_size: int = 100) -> None:
        self.tasks = sorted((t for t in tasks if t.listed), key=lambda t: t.created)
        self.created = [t.created for t in self.tasks]
        self.max_page_size = max_page_size
        self.queries = 0

    def page(self, query: ListQuery, t: float) -> Page:
        self.queries += 1
        lo = bisect.bisect_left(self.created, query.first)
        hi = bisect.bisect_left(self.created, query.last + 2)  # end_time is `last` + 1, included whole
        matching = [task for task in reversed(self.tasks[lo:hi])
                    if task.created <= t and (query.status is None or task.status(t) == query.status)]
        size = min(query.page_size, self.max_page_size)
        shown = matching[(query.page_no - 1) * size : query.page_no * size]
        rows = tuple(Row(task.task_id, task.status(t), int(task.created * 1000),
                         int(task.end * 1000) if t >= task.end else None) for task in shown)
        return Page(rows, len(matching), query.page_no, size)


@dataclass
class Run:
    resumes: list[tuple[str, str, float]]
    premature: list[tuple[str, float]]  # resumed as ended while the task still ran
    parked: int


def drive(tasks: list[Task], config: SweepConfig, *, grants: list[int] | None = None, latency: float = 0.15,
          tick: float = 0.25, until: float = 1200.0, endpoint: ListEndpoint | None = None,
          hints: list[tuple[float, str] | tuple[float, str, float]] | None = None) -> Run:
    """The sweeper's host, in the tests' virtual time: parks each task's workflow half a second after
    its submission, gives the sweeper what the budget grants each tick (cycling `grants`), answers its
    queries after `latency`, hands it the `hints` (virtual time, task id and, when it was taken earlier
    than delivered, that time: DashScope's task-finished notifications) when their time comes, and parks
    a workflow again (blind) when its resume found the task running, with the wait its own loop would take
    (the wait policy at the task's age), as the relay parks it."""
    sweeper = Sweeper(config)
    hints = sorted(hints or [])
    endpoint = endpoint or ListEndpoint(tasks)
    by_id = {task.task_id: task for task in tasks}
    parks = sorted((task.created + 0.5 - EPOCH, task.task_id, False, None) for task in tasks)
    answers: list[tuple[float, ListQuery, float]] = []
    resumes, premature = [], []
    done: set[str] = set()
    grants = grants or [config.rate]
    step = 0
    t = 0.0
    while t < until and len(done) < len(tasks):
        while parks and parks[0][0] <= t:
            at, task_id, blind, wait = parks.pop(0)
            sweeper.park(task_id, "image", EPOCH + at, blind=blind, probe_after=wait)
        while hints and hints[0][0] <= t:
            at, task_id, *taken = hints.pop(0)
            sweeper.hint(task_id, EPOCH + (taken[0] if taken else at))
        for arrival, query, asked in [a for a in answers if a[0] <= t]:
            answers.remove((arrival, query, asked))
            sweeper.on_page(query, endpoint.page(query, EPOCH + asked), EPOCH + asked)
        actions = sweeper.plan(EPOCH + t, config.rate)
        for action in actions[: grants[step % len(grants)]]:
            sweeper.sent(action, EPOCH + t)
            if isinstance(action, ListQuery):
                answers.append((t + latency, action, t))
                continue
            task = by_id[action.task_id]
            resumes.append((action.task_id, action.reason, t))
            if task.status(EPOCH + t) in ("PENDING", "RUNNING"):
                if action.reason == "finished":
                    premature.append((action.task_id, t))
                wait = next_wait(kind="image", age_seconds=EPOCH + t - task.created)
                bisect.insort(parks, (t + 0.3, action.task_id, True, wait))
            else:
                done.add(action.task_id)
        step += 1
        t += tick
    return Run(resumes, premature, sweeper.parked)


def image_tasks(durations: list[float], spread: float = 20.0, seed: int = 1) -> list[Task]:
    rng = random.Random(seed)
    tasks = []
    for i, duration in enumerate(durations):
        created = EPOCH + rng.uniform(0, spread)
        tasks.append(Task(f"task-{i:04d}", created, created + min(rng.uniform(0, 2), duration / 2), created + duration))
    return tasks


# --- the list's request and answer ------------------------------------------------------------------------


def test_a_window_is_asked_in_china_time_whole_seconds_its_end_one_second_on():
    query = ListQuery(EPOCH, EPOCH + 59, "RUNNING", 2, 100)
    assert query.params() == {"start_time": "20260109171817", "end_time": "20260109171917", "page_no": "2",
                              "page_size": "100", "status": "RUNNING"}
    assert "status" not in ListQuery(EPOCH, EPOCH).params()


def test_a_documented_answer_is_read():
    page = parse_page({
        "total": 2, "total_page": 1, "page_no": 1, "page_size": 10, "request_id": "f6756b7e",
        "data": [
            {"task_id": "50e2ccea", "status": "RUNNING", "gmt_create": 1745568428109, "start_time": 1745568428138,
             "model_name": "wanx2.1-kf2v-plus", "region": "cn-beijing", "api_key_id": "15xxxx"},
            {"task_id": "3c777dbc", "status": "SUCCEEDED", "gmt_create": 1745568293253, "end_time": 1745568302481,
             "model_name": "wanx2.1-t2i-turbo"},
        ],
    })
    assert page.rows == (Row("50e2ccea", "RUNNING", 1745568428109), Row("3c777dbc", "SUCCEEDED", 1745568293253,
                                                                        1745568302481))
    assert (page.total, page.page_no, page.page_size, page.last) == (2, 1, 10, True)


def test_an_answer_that_does_not_give_its_page_size_is_read_with_the_size_asked_for():
    page = parse_page({"total": 250, "data": [{"task_id": "a", "status": "RUNNING", "gmt_create": 1}]}, 100)
    assert (page.page_size, page.page_no, page.last) == (100, 1, True)  # one row of a page of 100: the last


@pytest.mark.parametrize("answer", [
    [], "busy", {"data": "nope"}, {"data": [42]}, {"data": [{"task_id": "a"}]},
    {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded, please try again later."},
    {"data": [{"task_id": "a", "status": "RUNNING", "gmt_create": "1745568428109"}]},
    {"data": [], "total": -1}, {"data": [], "page_size": 0}, {"data": [], "total": True},
], ids=["list", "text", "data-not-array", "item-not-object", "no-status", "error-body", "time-as-text",
        "negative-total", "page-size-0", "boolean-total"])
def test_an_answer_of_another_shape_is_a_protocol_error(answer):
    with pytest.raises(ProtocolError):
        parse_page(answer)


# --- what it decides --------------------------------------------------------------------------------------


def test_each_ended_task_is_resumed_once_and_none_while_it_runs():
    tasks = image_tasks([8.5, 12, 20, 25, 33, 47, 60, 95, 119] * 5, spread=30)
    run = drive(tasks, SweepConfig(rate=10))
    assert run.premature == []
    assert sorted(task_id for task_id, reason, _ in run.resumes) == sorted(t.task_id for t in tasks)
    assert {reason for _, reason, _ in run.resumes} == {"finished"}
    assert run.parked == 0


def test_a_task_that_ends_before_its_first_look_is_found_ended_at_that_look():
    tasks = image_tasks([8.2, 9.0], spread=1)
    run = drive(tasks, SweepConfig(rate=10))
    assert [reason for _, reason, _ in run.resumes] == ["finished", "finished"]
    # no look before an image can be done (10 s); found at the first look, plus the batching wait
    assert all(11 <= t - (task.created - EPOCH) <= 15 for (_, _, t), task in zip(sorted(run.resumes), tasks,
                                                                                 strict=True))


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_task_probed_all_day_is_polled_on_its_own_loops_schedule_through_its_whole_budget(kind):
    """A task the list does not show, still running after a day: each probe finds it running and its
    workflow parks again with the wait its own loop would take (the wait policy at the task's age,
    stretched to last the budget, as the relay computes it); the sweeper probes it then. Its polls last
    the 24 h budget within the poll cap, as in poll mode, instead of reaching the cap within hours (a
    probe every first wait: 1.6 h for an image, and the task ended TIMED_OUT)."""
    sweeper = Sweeper(SweepConfig(rate=19))
    budget = 86_400
    polls = 1  # the poll that found it running and made it blind
    probes: list[float] = []

    def park_again(at: float) -> None:
        elapsed = at - EPOCH
        wait = fit_wait(next_wait(kind=kind, age_seconds=elapsed), elapsed_seconds=elapsed,
                        budget_seconds=budget, polls=polls)
        sweeper.park("hidden", kind, at + 0.3, blind=True, probe_after=wait)

    park_again(EPOCH + 10.0)
    now = EPOCH + 10.0
    while budget_left(elapsed_seconds=now - EPOCH, budget_seconds=budget, polls=polls + 1) > 0:
        now += 1.0
        for action in sweeper.plan(now, 19):
            assert action == Resume("hidden", "probe")
            sweeper.sent(action, now)
            probes.append(now - EPOCH)
            polls += 1
            park_again(now)
    assert polls <= MAX_POLLS
    assert probes[-1] > budget - 600  # still polled at the end of its budget, not timed out hours before
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert max(gaps) <= MAX_WAIT_SECONDS + 2  # and never left unpolled longer than its own loop would


def test_a_task_the_list_never_shows_is_probed_on_the_wait_policy_schedule():
    tasks = image_tasks([40.0, 30.0], spread=1)
    tasks[0].listed = False
    run = drive(tasks, SweepConfig(rate=10))
    hidden = [(reason, t) for task_id, reason, t in run.resumes if task_id == tasks[0].task_id]
    assert {reason for reason, _ in hidden} == {"probe"}
    assert hidden[-1][1] >= 40  # probed until it ended, then relayed by its own poll
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(hidden)]
    assert gaps and all(gap >= next_wait(kind="image", age_seconds=10) for gap in gaps)
    assert next(r for r in run.resumes if r[0] == tasks[1].task_id)[1] == "finished"


def test_pages_boundaries_that_move_under_it_never_make_it_resume_a_running_task():
    """Pages of 3 rows over dozens of tasks ending while they are read: rows shift between pages."""
    tasks = image_tasks([8 + (i * 7) % 50 for i in range(60)], spread=6, seed=3)
    run = drive(tasks, SweepConfig(rate=10, page_size=3), endpoint=ListEndpoint(tasks, max_page_size=3))
    assert run.premature == []
    assert len({task_id for task_id, reason, _ in run.resumes if reason == "finished"}) == len(tasks)


def test_a_task_that_joins_a_block_while_the_block_is_read_is_not_judged_by_that_read():
    """x was PENDING when its block's RUNNING page was asked, and seen RUNNING by another page answered
    first: its absence from the block's page says nothing."""
    second = EPOCH
    sweeper = Sweeper(SweepConfig(rate=10))
    sweeper.park("a", "image", second, created_ms=second * 1000)
    sweeper.park("x", "image", second, created_ms=second * 1000 + 500)
    [first_look] = sweeper.plan(second + 12, 10)
    sweeper.sent(first_look, second + 12)
    sweeper.on_page(first_look, Page((Row("x", "PENDING", second * 1000 + 500), Row("a", "RUNNING", second * 1000)),
                                     2, 1, 100), second + 12)
    queries = sweeper.plan(second + 200, 10)
    assert {q.status for q in queries} == {"RUNNING", None}  # a's block, and x's next look
    for query in queries:
        sweeper.sent(query, second + 200)
    block_read = next(q for q in queries if q.status == "RUNNING")
    look = next(q for q in queries if q.status is None)
    sweeper.on_page(look, Page((Row("x", "RUNNING", second * 1000 + 500), Row("a", "RUNNING", second * 1000)),
                               2, 1, 100), second + 200.1)
    sweeper.on_page(block_read, Page((Row("a", "RUNNING", second * 1000),), 1, 1, 100), second + 200)
    assert [a for a in sweeper.plan(second + 201, 10) if isinstance(a, Resume)] == []


def test_a_smaller_page_than_asked_for_is_what_it_plans_with_from_then_on():
    tasks = image_tasks([30.0] * 40, spread=2)
    endpoint = ListEndpoint(tasks, max_page_size=10)
    run = drive(tasks, SweepConfig(rate=10, page_size=100), endpoint=endpoint)
    assert run.premature == [] and run.parked == 0
    assert endpoint.queries < 60  # blocks of 9, not of 90 read page by page


def test_larger_pages_where_dashscope_serves_them_read_the_same_fleet_in_fewer_queries():
    """DashScopeListPageSize: a sweeper asking for pages of 300 where DashScope serves them reads the
    running tasks in fewer, fuller pages than one asking for 100, and still resumes each task once."""
    tasks = image_tasks([40.0 + (i % 30) for i in range(600)], spread=60)
    queries = {}
    for size in (100, 300):
        endpoint = ListEndpoint(tasks, max_page_size=300)
        run = drive(tasks, SweepConfig(rate=19, page_size=size), endpoint=endpoint)
        assert run.premature == [] and run.parked == 0
        queries[size] = endpoint.queries
    assert queries[300] < 0.6 * queries[100], queries


def test_a_resume_the_host_could_not_send_is_deferred_and_the_ones_behind_it_go_first():
    """Step Functions refused a resume: the host defers it; the next plans offer the ended tasks behind it
    (it would otherwise take a plan's first places until its back-off ended), then it again."""
    sweeper = Sweeper(SweepConfig(rate=2))
    for i in range(4):
        sweeper.park(f"t{i}", "image", EPOCH, created_ms=EPOCH * 1000)
    [query] = sweeper.plan(EPOCH + 12, 10)
    sweeper.sent(query, EPOCH + 12)
    sweeper.on_page(query, Page(tuple(Row(f"t{i}", "SUCCEEDED", EPOCH * 1000, (EPOCH + 5 + i) * 1000)
                                      for i in range(4)), 4, 1, 100), EPOCH + 12)
    assert sweeper.plan(EPOCH + 13, 2) == [Resume("t0", "finished"), Resume("t1", "finished")]
    sweeper.defer("t0", EPOCH + 20)  # refused; t1 went
    sweeper.sent(Resume("t1", "finished"), EPOCH + 13)
    assert sweeper.plan(EPOCH + 14, 2) == [Resume("t2", "finished"), Resume("t3", "finished")]
    assert sweeper.plan(EPOCH + 15, 2) == [Resume("t2", "finished"), Resume("t3", "finished")]  # not sent yet
    assert sweeper.plan(EPOCH + 20, 2) == [Resume("t0", "finished"), Resume("t2", "finished")]


def test_a_task_another_window_locates_while_its_own_is_read_is_still_watched_and_resumed():
    """B parked 4.4 s after its creation (a cold start), so its own first window misses it; the window of
    A, in flight at the same time, shows B's row (its end second, asked for on purpose). B's own window then
    settles it as located elsewhere: it is watched in a block and resumed when it ends (it stayed "flying",
    never read again nor resumed, until its park timed out a day later)."""
    sweeper = Sweeper(SweepConfig(rate=10))
    sweeper.park("A", "image", EPOCH + 0.7)
    [a_window] = sweeper.plan(EPOCH + 12.7, 10)
    sweeper.sent(a_window, EPOCH + 12.7)  # its answer is slow
    sweeper.park("B", "image", EPOCH + 5.5)
    [b_window] = sweeper.plan(EPOCH + 17.5, 10)
    sweeper.sent(b_window, EPOCH + 17.5)
    sweeper.on_page(a_window, Page((Row("B", "RUNNING", (EPOCH + 1) * 1000 + 100),
                                    Row("A", "RUNNING", EPOCH * 1000 + 200)), 2, 1, 100), EPOCH + 12.7)
    sweeper.on_page(b_window, Page((), 0, 1, 100), EPOCH + 17.5)  # B is not in its own window
    t = EPOCH + 18.0
    while not (reads := [q for q in sweeper.plan(t, 10) if isinstance(q, ListQuery)]):
        t += 0.5
        assert t < EPOCH + 120, "B is never read again"
    [block] = reads
    assert block.status == "RUNNING" and block.first <= EPOCH + 1 <= block.last
    sweeper.sent(block, t)
    sweeper.on_page(block, Page((Row("A", "RUNNING", EPOCH * 1000 + 200),), 1, 1, 100), t)  # B ended
    assert Resume("B", "finished") in sweeper.plan(t + 0.2, 10)


def test_a_later_page_that_fails_is_asked_again_without_starting_the_window_over():
    """Pages answered 429 now and then (the account's other callers): a window of several pages is read
    through, page by page, instead of from its first page again at each failure."""
    sweeper = Sweeper(SweepConfig(rate=10, page_size=2))
    for i in range(4):
        sweeper.park(f"t{i}", "image", EPOCH + 0.5)
    [first] = sweeper.plan(EPOCH + 12, 10)
    sweeper.sent(first, EPOCH + 12)
    rows = [Row(f"t{i}", "RUNNING", EPOCH * 1000 + 100 * i) for i in reversed(range(4))]
    sweeper.on_page(first, Page(tuple(rows[:2]), 4, 1, 2), EPOCH + 12)
    [second] = sweeper.plan(EPOCH + 12.2, 10)
    assert second.page_no == 2
    sweeper.sent(second, EPOCH + 12.2)
    sweeper.failed(second, EPOCH + 12.2)  # throttled
    assert sweeper.plan(EPOCH + 12.4, 10) == [second]  # page 2 again, not page 1
    sweeper.sent(second, EPOCH + 12.4)
    sweeper.on_page(second, Page(tuple(rows[2:]), 4, 2, 2), EPOCH + 12.4)
    assert all(sweeper._watches[f"t{i}"].state == "blocked" for i in range(4))  # the window was read through


def test_a_located_task_absent_from_an_unordered_window_of_several_pages_is_not_taken_for_ended():
    """Rows out of order across pages (the order is undocumented): a row may have moved between pages, so
    the absence of a located task from such a window says nothing; it is looked for again, not resumed."""
    sweeper = Sweeper(SweepConfig(rate=10, page_size=2))
    sweeper.park("p", "image", EPOCH + 0.5, created_ms=EPOCH * 1000 + 300)
    [first] = sweeper.plan(EPOCH + 12, 10)
    assert first.status is None and first.first <= EPOCH <= first.last
    sweeper.sent(first, EPOCH + 12)
    sweeper.on_page(first, Page((Row("x1", "RUNNING", EPOCH * 1000 + 500), Row("x2", "RUNNING", EPOCH * 1000 + 100)),
                                3, 1, 2), EPOCH + 12)
    [second] = sweeper.plan(EPOCH + 12.2, 10)
    sweeper.sent(second, EPOCH + 12.2)
    later_row = Row("x3", "RUNNING", EPOCH * 1000 + 900)  # after an older one: not newest first
    sweeper.on_page(second, Page((later_row,), 3, 2, 2), EPOCH + 12.2)
    assert not [a for a in sweeper.plan(EPOCH + 12.4, 10) if isinstance(a, Resume)]
    assert sweeper._watches["p"].state == "scheduled"


def test_a_task_whose_row_stays_at_a_page_boundary_of_its_block_is_found_ended_in_its_own_second():
    """Another caller's long tasks fill a page or more of the block's seconds: once our task ends, its row
    would sit between the same two pages of the RUNNING window at every read, which can never show it
    gone. After two such reads it is read unfiltered in its own second, whose rows no longer change."""
    others = [Task(f"other-{i:02d}", EPOCH + 0.01 * (i + 1), EPOCH, EPOCH + 9000) for i in range(19)]
    ours = Task("ours", EPOCH + 0.095, EPOCH + 1, EPOCH + 40)  # newest first: the first row of page 2
    endpoint = ListEndpoint([*others, ours], max_page_size=10)
    run = drive([ours], SweepConfig(rate=10, page_size=10), endpoint=endpoint, until=600)
    [(task_id, reason, at)] = run.resumes
    assert (task_id, reason) == ("ours", "finished")
    assert at < 40 + 30  # two more block reads and one page, not the next invocation's fresh look
    assert run.parked == 0


def test_a_page_shorter_than_its_total_says_proves_no_absence():
    """A last page with fewer rows than the page size and the total promise (a page served smaller than
    the size it echoes, or a list that changed between its count and its rows): the rows it did not show
    are not known, so a located task missing from it is looked for again, not resumed as ended."""
    sweeper = Sweeper(SweepConfig(rate=10, page_size=4))
    sweeper.park("p", "image", EPOCH + 0.5, created_ms=EPOCH * 1000 + 300)
    [query] = sweeper.plan(EPOCH + 20, 10)
    sweeper.sent(query, EPOCH + 20)
    shown = (Row("x2", "RUNNING", EPOCH * 1000 + 900), Row("x1", "RUNNING", EPOCH * 1000 + 500))
    sweeper.on_page(query, Page(shown, 6, 1, 4), EPOCH + 20)  # 2 rows of a page of 4, of 6
    assert not [a for a in sweeper.plan(EPOCH + 20.2, 10) if isinstance(a, Resume)]
    assert sweeper._watches["p"].state == "scheduled"
    # the rows not shown are older than those shown (newest first): a task newer than them was not hidden
    sweeper = Sweeper(SweepConfig(rate=10, page_size=4))
    sweeper.park("q", "image", EPOCH + 0.5, created_ms=EPOCH * 1000 + 950)
    [query] = sweeper.plan(EPOCH + 20, 10)
    sweeper.sent(query, EPOCH + 20)
    sweeper.on_page(query, Page(shown, 6, 1, 4), EPOCH + 20)
    assert [a for a in sweeper.plan(EPOCH + 20.2, 10) if isinstance(a, Resume)] == [Resume("q", "finished")]


def test_a_located_task_a_list_keeps_not_showing_costs_two_looks_then_its_get_decides():
    """Every answer for its window is a page smaller than it says (a row of a page of 3, total 3) and
    never shows the task: after two looks its workflow is resumed for its GET to decide, as for a task the
    list lost, instead of being looked for again, a page every few seconds, until its park times out."""
    sweeper = Sweeper(SweepConfig(rate=10, page_size=3))
    created_ms = EPOCH * 1000 + 852
    sweeper.park("p", "image", EPOCH + 0.5, created_ms=created_ms)
    pages, resumes, t = 0, [], EPOCH + 0.5
    while not resumes and t < EPOCH + 3600:
        for action in sweeper.plan(t, 10):
            sweeper.sent(action, t)
            if isinstance(action, Resume):
                resumes.append(action)
            else:
                pages += 1
                newer = Row("x-newer", "RUNNING", created_ms + 700)
                sweeper.on_page(action, Page((newer,), 3, action.page_no, 3), t)
        t += 0.5
    assert resumes == [Resume("p", "finished")]
    assert pages == 2


def test_an_empty_last_page_hides_only_the_rows_after_the_ones_shown():
    """Page 1 full and newest first, page 2 empty while the total promises a row more (a stale count):
    a row not shown can only be older than page 1's last, so a task newer than that, absent from page 1,
    has ended."""
    sweeper = Sweeper(SweepConfig(rate=10, page_size=3))
    sweeper.park("p", "image", EPOCH + 0.5, created_ms=EPOCH * 1000 + 950)
    [query] = sweeper.plan(EPOCH + 20, 10)
    sweeper.sent(query, EPOCH + 20)
    rows = tuple(Row(f"x{i}", "RUNNING", EPOCH * 1000 + ms) for i, ms in enumerate((999, 980, 900)))
    sweeper.on_page(query, Page(rows, 4, 1, 3), EPOCH + 20)
    [second] = sweeper.plan(EPOCH + 20.2, 10)
    assert second.page_no == 2
    sweeper.sent(second, EPOCH + 20.2)
    sweeper.on_page(second, Page((), 4, 2, 3), EPOCH + 20.2)
    assert [a for a in sweeper.plan(EPOCH + 20.4, 10) if isinstance(a, Resume)] == [Resume("p", "finished")]


def test_tasks_created_more_than_a_day_apart_are_never_read_in_one_window():
    """DashScope refuses a window of more than 24 hours (the replay answers 400): a block never stretches
    to cover running tasks created further apart (it did, and the window was refused at every read)."""
    created = {"A": EPOCH * 1000 + 500, "B": (EPOCH + 86_500) * 1000 + 500}
    sweeper = Sweeper(SweepConfig(rate=19))
    sweeper.park("A", "video", EPOCH + 1.0, created_ms=created["A"])
    windows = []
    for t in [EPOCH + 61.0 + 30 * i for i in range(5)] + [EPOCH + 86_561.0 + 30 * i for i in range(5)]:
        if t > EPOCH + 86_501 and "B" not in sweeper._watches:
            sweeper.park("B", "video", EPOCH + 86_501.0, created_ms=created["B"])
        for query in [a for a in sweeper.plan(t, 19) if isinstance(a, ListQuery)]:
            sweeper.sent(query, t)
            windows.append(query)
            rows = tuple(Row(task_id, "RUNNING", ms) for task_id, ms in created.items()
                         if task_id in sweeper._watches and query.first <= ms // 1000 <= query.last + 1)
            sweeper.on_page(query, Page(rows, len(rows), 1, 100), t)
    assert any(q.first <= EPOCH + 86_500 <= q.last for q in windows)  # B was read ...
    assert all(q.last + 1 - q.first <= MAX_WINDOW_SECONDS for q in windows)  # ... never with A in one window


def test_while_ended_tasks_wait_for_the_budget_it_asks_for_no_list_pages():
    sweeper = Sweeper(SweepConfig(rate=2, backlog_seconds=1.0))
    for i in range(5):
        sweeper.park(f"t{i}", "image", EPOCH, created_ms=EPOCH * 1000)
    [query] = sweeper.plan(EPOCH + 12, 10)  # the first look: 10 s after creation, 2 s batching
    sweeper.sent(query, EPOCH + 12)
    sweeper.on_page(query, Page(tuple(Row(f"t{i}", "SUCCEEDED", EPOCH * 1000) for i in range(5)), 5, 1, 100),
                    EPOCH + 12)
    sweeper.park("late", "image", EPOCH + 5, created_ms=(EPOCH + 5) * 1000)
    actions = sweeper.plan(EPOCH + 30, 10)
    assert actions == [Resume(f"t{i}", "finished") for i in range(5)]  # "late" is due, but the backlog is full


def test_actions_the_budget_did_not_grant_are_offered_again():
    sweeper = Sweeper(SweepConfig(rate=10))
    for i in range(3):
        sweeper.park(f"t{i}", "image", EPOCH, created_ms=EPOCH * 1000)
    [query] = sweeper.plan(EPOCH + 12, 10)
    sweeper.sent(query, EPOCH + 12)
    sweeper.on_page(query, Page(tuple(Row(f"t{i}", "FAILED", EPOCH * 1000) for i in range(3)), 3, 1, 100),
                    EPOCH + 12)
    first = sweeper.plan(EPOCH + 13, 10)
    sweeper.sent(first[0], EPOCH + 13)  # the budget granted one slot
    again = sweeper.plan(EPOCH + 14, 10)
    assert first == [Resume(f"t{i}", "finished") for i in range(3)]
    assert again == first[1:]
    for action in again:
        sweeper.sent(action, EPOCH + 14)
    assert sweeper.plan(EPOCH + 15, 10) == [] and sweeper.parked == 0


def test_a_throttled_list_query_is_asked_again():
    sweeper = Sweeper(SweepConfig(rate=10))
    sweeper.park("t0", "image", EPOCH, created_ms=EPOCH * 1000)
    [query] = sweeper.plan(EPOCH + 12, 10)
    sweeper.sent(query, EPOCH + 12)
    sweeper.failed(query, EPOCH + 12)
    assert sweeper.plan(EPOCH + 16, 10) == [query]


def test_every_parked_workflow_is_heartbeaten_well_inside_its_watchdog():
    sweeper = Sweeper(SweepConfig(heartbeat_every_seconds=100))
    sweeper.park("a", "video", EPOCH)
    sweeper.park("b", "video", EPOCH + 50)
    assert sweeper.heartbeats(EPOCH + 99, 10) == []
    assert sweeper.heartbeats(EPOCH + 100, 10) == ["a"]
    sweeper.forget("b")
    assert sweeper.heartbeats(EPOCH + 200, 10) == ["a"]


def test_a_park_taken_over_from_another_host_has_its_first_beat_when_told():
    sweeper = Sweeper(SweepConfig(heartbeat_every_seconds=100))
    sweeper.park("old", "video", EPOCH - 250, first_beat_at=EPOCH + 40)  # not due at once, 150 s overdue
    assert sweeper.heartbeats(EPOCH + 39, 10) == []
    assert sweeper.heartbeats(EPOCH + 40, 10) == ["old"]
    assert sweeper.heartbeats(EPOCH + 140, 10) == ["old"]


def test_a_workflow_parked_again_is_heartbeaten_on_its_new_schedule_only():
    sweeper = Sweeper(SweepConfig(heartbeat_every_seconds=100))
    sweeper.park("a", "video", EPOCH)
    sweeper.park("a", "video", EPOCH + 30)  # resumed for a probe and parked again
    assert sweeper.heartbeats(EPOCH + 100, 10) == []
    assert sweeper.heartbeats(EPOCH + 130, 10) == ["a"]
    assert sweeper.heartbeats(EPOCH + 230, 10) == ["a"]  # once a period, not once per park


def test_a_fallback_poll_parks_again_only_while_a_sweeper_sweeps():
    assert after_fallback_poll(EPOCH, EPOCH + SWEEPER_STALE_SECONDS) == "park"
    assert after_fallback_poll(EPOCH, EPOCH + SWEEPER_STALE_SECONDS + 1) == "poll"
    assert after_fallback_poll(None, EPOCH) == "poll"


# --- DashScope's task-finished notifications (hints) ------------------------------------------------------


def test_a_hinted_task_is_resumed_at_once_and_the_list_is_asked_less():
    """Hinted a second after their ends, tasks are resumed on the next plan, each once. Once hints bring
    most ends, the list is the backstop for lost ones: blocks that find no ends are read less often, and
    a task's first look waits (most tasks are hinted before it): far fewer list pages than the same
    fleet without hints."""
    tasks = image_tasks([12 + (i * 37) % 190 for i in range(120)], spread=30, seed=5)
    hints = [(task.end - EPOCH + 1.0, task.task_id) for task in tasks]
    without = ListEndpoint(tasks)
    drive(tasks, SweepConfig(rate=10), endpoint=without)
    endpoint = ListEndpoint(tasks)
    run = drive(tasks, SweepConfig(rate=10), endpoint=endpoint, hints=hints)
    assert run.premature == [] and run.parked == 0
    assert sorted(task_id for task_id, _, _ in run.resumes) == sorted(task.task_id for task in tasks)
    by_id = {task.task_id: task for task in tasks}
    assert all(at - (by_id[task_id].end - EPOCH) <= 1.0 + 0.25 for task_id, _, at in run.resumes)
    assert endpoint.queries < 0.8 * without.queries


def test_when_the_notifications_stop_the_list_finds_the_ends_as_soon_as_without_them():
    """Hints for the tasks that end in the first 90 s, none after (the Alibaba rule deleted, the endpoint
    down): the reads find ends again, so they come as often as without notifications; the tasks ending
    after two minutes wait no longer for it."""
    tasks = image_tasks([12 + (i * 37) % 190 for i in range(300)], spread=60, seed=7)
    by_id = {task.task_id: task for task in tasks}

    def late_delays(hints: list[tuple[float, str]]) -> list[float]:
        run = drive(tasks, SweepConfig(rate=10), hints=hints)
        assert sorted(task_id for task_id, _, _ in run.resumes) == sorted(by_id)
        return [at - (by_id[task_id].end - EPOCH) for task_id, _, at in run.resumes
                if by_id[task_id].end - EPOCH >= 120]

    stopped = late_delays([(task.end - EPOCH + 1.0, task.task_id) for task in tasks if task.end - EPOCH < 90])
    never = late_delays([])
    assert sum(stopped) / len(stopped) <= 1.1 * sum(never) / len(never)
    assert max(stopped) <= max(never)


def test_a_hint_that_comes_before_the_park_is_kept_until_the_workflow_parks():
    sweeper = Sweeper(SweepConfig(rate=10))
    assert sweeper.hint("fast", EPOCH + 4) is False  # not parked yet: kept
    sweeper.park("fast", "image", EPOCH + 6)
    assert sweeper.plan(EPOCH + 6, 10) == [Resume("fast", "finished")]
    assert sweeper.hinted == 1


def test_hints_for_tasks_that_never_park_are_let_go_after_an_hour_and_beyond_the_cap():
    sweeper = Sweeper(SweepConfig(rate=10, hint_kept_seconds=3600, max_hints_kept=3))
    for i in range(5):
        sweeper.hint(f"other-{i}", EPOCH + i)  # another caller's tasks in the same account
    sweeper.plan(EPOCH + 3600 + 2.5, 10)  # other-2 is an hour and a half second old: gone
    for task_id in ("other-0", "other-1", "other-2", "other-3"):
        sweeper.park(task_id, "image", EPOCH + 3600 + 3)
    assert [a for a in sweeper.plan(EPOCH + 3600 + 3, 10) if isinstance(a, Resume)] == [Resume("other-3", "finished")]


def test_beyond_the_cap_the_oldest_hint_goes_first_and_a_task_hinted_again_counts_as_new():
    sweeper = Sweeper(SweepConfig(rate=10, max_hints_kept=3))
    for i in range(4):
        sweeper.hint(f"t-{i}", EPOCH + i)  # t-0 goes
    sweeper.hint("t-1", EPOCH + 5)  # hinted again: now the newest
    sweeper.hint("t-4", EPOCH + 6)  # t-2 goes, not t-1
    assert sweeper.hints_kept == 3
    for i in range(5):
        sweeper.park(f"t-{i}", "image", EPOCH + 7)
    resumed = {a.task_id for a in sweeper.plan(EPOCH + 7, 10) if isinstance(a, Resume)}
    assert resumed == {"t-1", "t-3", "t-4"}


def test_hints_read_newest_first_are_kept_behind_the_newer_ones_until_the_store_is_full():
    """A host's first read goes newest first: each hint is older than those before it, so it is kept
    behind them (the first to go by age or by the cap), never over a newer hint of the same task, and
    not at all once the store is full (it would be the first to go)."""
    sweeper = Sweeper(SweepConfig(rate=10, hint_kept_seconds=3600, max_hints_kept=3))
    sweeper.park("watched", "image", EPOCH)
    sweeper.hint_earlier("new", EPOCH + 30)
    assert sweeper.hint_earlier("watched", EPOCH + 25) is True  # a parked task's hint ends it, as `hint`
    [resume] = sweeper.plan(EPOCH + 26, 10)
    assert resume == Resume("watched", "finished")
    sweeper.sent(resume, EPOCH + 26)
    sweeper.hint_earlier("mid", EPOCH + 20)
    sweeper.hint_earlier("new", EPOCH + 5)  # older than the one kept: ignored
    sweeper.hint_earlier("old", EPOCH + 10)
    sweeper.hint_earlier("older", EPOCH + 1)  # full: dropped
    assert sweeper.hints_kept == 3
    sweeper.hint("newest", EPOCH + 40)  # over the cap: "old" goes, the oldest kept
    sweeper.plan(EPOCH + 3600 + 25, 10)  # an hour after "mid": gone by age, "new" (30) stays
    for task_id in ("new", "mid", "old", "older", "newest"):
        sweeper.park(task_id, "image", EPOCH + 3600 + 26)
    resumed = {a.task_id for a in sweeper.plan(EPOCH + 3600 + 26, 10) if isinstance(a, Resume)}
    assert resumed == {"new", "newest"}


def test_a_wrong_hint_costs_one_resume_and_a_blind_park_that_the_same_hint_does_not_resume_again():
    """A forged (or early) hint resumes a running task's workflow: its GET finds it running and it parks
    again, blind; reading the same hint again (a new invocation reads the last hour's) resumes nothing,
    and the task is probed on the wait policy's schedule until it ends."""
    tasks = image_tasks([200.0], spread=1)
    [task] = tasks
    run = drive(tasks, SweepConfig(rate=10), hints=[(15.0, task.task_id), (15.0, task.task_id),
                                                    (40.0, task.task_id, 15.0)])
    finished = [at for task_id, reason, at in run.resumes if reason == "finished"]
    assert len(finished) == 1 and run.premature == [(task.task_id, finished[0])]
    probes = [at for _, reason, at in run.resumes if reason == "probe"]
    assert probes and probes[-1] >= task.end - EPOCH and run.parked == 0


fleets = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=15),  # submitted
        st.floats(min_value=8, max_value=120),  # duration
        st.floats(min_value=0, max_value=3),  # time PENDING
        st.sampled_from(["SUCCEEDED", "FAILED", "CANCELED"]),
        st.booleans(),  # ours (parked) or another caller's task in the same account
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=60, deadline=None)
@given(fleet=fleets, page_size=st.integers(min_value=2, max_value=12),
       grants=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=8).filter(any),
       deliveries=st.lists(st.floats(min_value=-1, max_value=30), max_size=8))
def test_any_fleet_each_ended_task_is_resumed_exactly_once_and_never_early(fleet, page_size, grants, deliveries):
    """`deliveries`: the task-finished notifications' delays after the ends, cycled over the tasks (a
    negative one: lost; none at all: no push), so some tasks are hinted, some twice, some before they
    park, and the rest found by the list."""
    tasks, ours = [], []
    for i, (submitted, duration, pending, final, parked) in enumerate(fleet):
        created = EPOCH + submitted
        task = Task(f"task-{i:03d}", created, created + min(pending, duration), created + duration, final)
        tasks.append(task)
        if parked:
            ours.append(task)
    endpoint = ListEndpoint(tasks, max_page_size=page_size)
    delays = itertools.cycle(deliveries) if deliveries else iter(())
    hints = [(task.end - EPOCH + delay, task.task_id) for task, delay in zip(tasks, delays, strict=False) if delay >= 0]
    hints += hints[::3]  # delivered twice
    run = drive(ours, SweepConfig(rate=6, page_size=page_size), grants=grants, endpoint=endpoint, until=3000,
                hints=hints)
    assert run.premature == []
    finished = [task_id for task_id, reason, _ in run.resumes if reason == "finished"]
    assert len(finished) == len(set(finished)) == len(ours)
    assert run.parked == 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), page_size=st.integers(min_value=2, max_value=8))
def test_a_crowded_account_each_ended_task_is_resumed_exactly_once_and_never_early(seed, page_size):
    """Hundreds of tasks submitted within seconds, half of them other callers', on pages of a few rows:
    tasks end between the pages of every window."""
    rng = random.Random(seed)
    tasks = []
    for i in range(rng.randint(100, 300)):
        created = EPOCH + rng.uniform(0, 5)
        duration = rng.uniform(8, 60)
        tasks.append(Task(f"task-{i:03d}", created, created + rng.uniform(0, 2), created + duration,
                          rng.choice(["SUCCEEDED", "FAILED"])))
    ours = [task for task in tasks if rng.random() < 0.5]
    grants = [rng.randint(0, 8) for _ in range(7)] + [3]
    run = drive(ours, SweepConfig(rate=8, page_size=page_size), grants=grants,
                endpoint=ListEndpoint(tasks, max_page_size=page_size), until=3000)
    assert run.premature == []
    finished = [task_id for task_id, reason, _ in run.resumes if reason == "finished"]
    assert len(finished) == len(set(finished)) == len(ours)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), page_size=st.integers(min_value=2, max_value=8))
def test_beside_another_callers_long_tasks_each_end_is_found_by_the_list_within_two_minutes(seed, page_size):
    """Another caller's tasks that run for an hour or more share the seconds of ours, on pages of a few
    rows: a RUNNING window of those seconds never empties, and its page boundaries stay where they are.
    Each of our ended tasks is still found ended by the list, well before the next sweeper invocation's
    fresh look (a minute) would have to rescue it."""
    rng = random.Random(seed)
    others = []
    for i in range(rng.randint(page_size, 40)):
        created = EPOCH + rng.uniform(0, 5)
        others.append(Task(f"other-{i:03d}", created, created + 0.5, created + rng.uniform(3600, 9000)))
    ours = []
    for i in range(rng.randint(1, 40)):
        created = EPOCH + rng.uniform(0, 5)
        ours.append(Task(f"task-{i:03d}", created, created + rng.uniform(0, 2), created + rng.uniform(8, 120),
                         rng.choice(["SUCCEEDED", "FAILED"])))
    run = drive(ours, SweepConfig(rate=6, page_size=page_size),
                endpoint=ListEndpoint(others + ours, max_page_size=page_size), until=900)
    assert run.premature == []
    ends = {task.task_id: task.end - EPOCH for task in ours}
    found = {task_id: at for task_id, reason, at in run.resumes if reason == "finished"}
    assert sorted(found) == sorted(ends)  # every one, once (a dict keeps one per task: counted below)
    assert len(run.resumes) == len(ours)
    assert max(at - ends[task_id] for task_id, at in found.items()) < 120
