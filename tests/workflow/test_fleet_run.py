"""The fleet end to end on the real state machine (statemachine/poll_task.asl.json on moto, the real
handler): a burst of tasks parks, the account's sweeper (its host, as the sweeper's Lambda runs it)
finds the ended tasks through the list endpoint and resumes their workflows, every query of the stack
inside a budget that DashScope's own limit, set lower here, would answer 429 if it were passed."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from wan_relay.normalize import CHINA_TIME
from wan_relay.notifications import FixedToken, receive
from wan_relay.registry import Hints, Registry
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, sample
from tests.unit.test_notifications import notification, request

from .conftest import deployed_workflow, recorded_sleeps

TASKS = 60
#: the account's limit as the stand-in enforces it (429 above it; issue 13 asks for 2 a second), and the
#: stack's budget one under it, as the default 19 is under DashScope's 20: the margin takes what arrives a
#: little after its slot
LIMIT_QPS = 2
BUDGET_QPS = 1
DEADLINE_SECONDS = 150


def test_a_burst_of_parked_tasks_is_relayed_once_each_without_a_single_429() -> None:
    rng = random.Random(13)
    with (
        ReplayDashScope(api_key=API_KEY, rate_limit_qps=LIMIT_QPS) as replay,
        recorded_sleeps(),
        deployed_workflow(replay, {"Waiting": "park", "DashScopeQueryBudget": str(BUDGET_QPS)}, parks=True) as flow,
        flow.stack.sweeping(),
    ):
        final = replay.rehost(sample("wan2.6-t2i_succeeded"))
        task_ids = [f"burst-{n:02d}-{rng.getrandbits(32):08x}" for n in range(TASKS)]
        executions = []
        for task_id in task_ids:  # tasks submitted within a second or two, ending within 10 s
            replay.add_task(task_id, final, running_after=0.5, ends_after=rng.uniform(3, 10))
            executions.append(flow.stack.start({"task_id": task_id, "kind": "image", "model": "wan2.6-t2i"}))

        deadline = time.monotonic() + DEADLINE_SECONDS
        while flow.sfn.list_executions(stateMachineArn=flow.stack.state_machine_arn, statusFilter="RUNNING")[
                "executions"] and time.monotonic() < deadline:
            time.sleep(0.5)

        statuses = Counter(flow.sfn.describe_execution(executionArn=arn)["status"] for arn in executions)
        assert statuses == {"SUCCEEDED": TASKS}
        # not one query over the account's limit: list pages and GETs together
        assert replay.throttled == 0, replay.crowding()
        assert replay.max_queries_in_any_second() <= LIMIT_QPS
        events = flow.completed_events()
        assert sorted(e["detail"]["task_id"] for e in events) == sorted(task_ids)  # one event each
        assert {e["detail"]["status"] for e in events} == {"SUCCEEDED"}
        # one GET per task: its workflow waited parked, never polling on its own
        assert [replay.polls(task_id) for task_id in task_ids] == [1] * TASKS
        assert [poll["error"] for poll in flow.polls() if "error" in poll] == []
        resumes = [poll["event"].get("resume") or {} for poll in flow.polls()]
        assert [r for r in resumes if r.get("Error")] == []  # no watchdog fired: every poll was a resume
        # a resume whose slot had passed (a loaded machine) may find the budget spoken for: that workflow
        # waits unasked (WaitForTask) and takes a later slot; any other unfinished poll would be a GET more
        assert {poll["result"]["status"] for poll in flow.polls() if not poll["result"]["done"]} <= {"THROTTLED"}
        # every park was resumed and removed
        assert list(Registry(flow.dynamodb, flow.stack.parked_table, "default").since()) == []


def test_with_task_finished_notifications_a_burst_is_resumed_by_them_and_relayed_once_each() -> None:
    """Half the burst, each task's end notified a moment after it (DashScope's task-finished notification
    as Alibaba Cloud EventBridge POSTs it, taken by the receiver into the stack's table), one in ten
    notifications lost: every task relayed once with one GET, most workflows resumed by their hint, the
    rest by the list."""
    rng = random.Random(17)
    with (
        ReplayDashScope(api_key=API_KEY, rate_limit_qps=LIMIT_QPS) as replay,
        recorded_sleeps(),
        deployed_workflow(replay, {"Waiting": "park", "DashScopeQueryBudget": str(BUDGET_QPS)}, parks=True) as flow,
        contextlib.ExitStack() as sweeping,
    ):
        sweeps = sweeping.enter_context(flow.stack.sweeping())
        hints = Hints(flow.dynamodb, flow.stack.parked_table, "default")
        answers: list[int] = []

        def notify(task_id: str) -> None:
            ended = datetime.now(UTC).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")
            event = request(notification(task_id=task_id, task_status="SUCCEEDED", end_time=ended), token="t0ken")
            answers.append(receive(event, tokens=FixedToken("t0ken"), hints=hints, clock=time.time).status)
        final = replay.rehost(sample("wan2.6-t2i_succeeded"))
        task_ids = [f"pushed-{n:02d}-{rng.getrandbits(32):08x}" for n in range(TASKS // 2)]
        executions, timers = [], []
        for n, task_id in enumerate(task_ids):
            ends_after = rng.uniform(3, 10)
            replay.add_task(task_id, final, running_after=0.5, ends_after=ends_after)
            executions.append(flow.stack.start({"task_id": task_id, "kind": "image", "model": "wan2.6-t2i"}))
            if n % 10 != 9:
                timers.append(threading.Timer(ends_after + 0.3, notify, (task_id,)))
                timers[-1].start()

        deadline = time.monotonic() + DEADLINE_SECONDS
        while flow.sfn.list_executions(stateMachineArn=flow.stack.state_machine_arn, statusFilter="RUNNING")[
                "executions"] and time.monotonic() < deadline:
            time.sleep(0.5)
        for timer in timers:
            timer.cancel()
        assert answers == [200] * len(timers)

        statuses = Counter(flow.sfn.describe_execution(executionArn=arn)["status"] for arn in executions)
        assert statuses == {"SUCCEEDED": len(task_ids)}
        assert replay.throttled == 0, replay.crowding()
        assert replay.max_queries_in_any_second() <= LIMIT_QPS
        events = flow.completed_events()
        assert sorted(e["detail"]["task_id"] for e in events) == sorted(task_ids)
        assert [replay.polls(task_id) for task_id in task_ids] == [1] * len(task_ids)
        resumes = [poll["event"].get("resume") or {} for poll in flow.polls()]
        assert [r for r in resumes if r.get("Error")] == []
        # the hints reached the sweeper and resumed most workflows (the list may see an end first)
        sweeping.close()  # the sweeper's run ends and answers its summary
        assert sum(sweep["resumes"] for sweep in sweeps) == len(task_ids)
        assert sum(sweep["hinted"] for sweep in sweeps) >= len(task_ids) // 2
        assert list(Registry(flow.dynamodb, flow.stack.parked_table, "default").since()) == []
