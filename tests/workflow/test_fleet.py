"""The park, through the real state machine (statemachine/poll_task.asl.json on moto, the real handler):
a waiting workflow parks on its task token and asks DashScope nothing until the sweeper resumes it; a
resume hands over the slot of the account's budget its GET is sent at; a resume for a task that still
runs parks it again, marked blind; a park nobody heartbeats falls back to polling on its own, and parks
again once a sweeper is alive; every park's heartbeat is inside its timeout, and a task whose budget the
watchdog would outlast does not park. Here the test plays the sweeper's part (SendTaskSuccess,
SendTaskHeartbeat, the liveness item); tests/workflow/test_fleet_run.py runs the sweeper itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from wan_relay.budget import MICROS
from wan_relay.fleet import Fleet
from wan_relay.registry import Parked, Registry
from wan_relay_local.replay import ReplayDashScope

from .conftest import Sleeps, Workflow, deployed_workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image, unfinished
from .test_task_lock import emitted_metrics

WATCHDOG_SECONDS = 3  # the configuration's smallest (the template's MinValue, 60, is not checked by the embedded
# stack): the fallback shows within a test's time


@pytest.fixture
def parking(replay: ReplayDashScope, sleeps: Sleeps) -> Iterator[Workflow]:
    parameters = {"Waiting": "park", "ParkWatchdogSeconds": str(WATCHDOG_SECONDS)}
    with deployed_workflow(replay, parameters, parks=True) as deployed:
        yield deployed
        # a test that failed may leave a parked execution: stopped, it cannot act in the next test's AWS
        for execution in deployed.sfn.list_executions(
                stateMachineArn=deployed.stack.state_machine_arn, statusFilter="RUNNING")["executions"]:
            deployed.sfn.stop_execution(executionArn=execution["executionArn"])


def parks(workflow: Workflow) -> list[Parked]:
    return list(Registry(workflow.dynamodb, workflow.stack.parked_table, "default").since())


def parked(workflow: Workflow, count: int, within: float = 10.0) -> Parked:
    """Wait until the registry holds `count` parks of this test's task; the newest."""
    deadline = time.monotonic() + within
    while len(found := parks(workflow)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"expected {count} parks, found {len(found)}")
        time.sleep(0.02)
    assert len(found) == count
    # moto honours a task token only once the park's invocation has returned (TaskSubmitted); AWS from
    # the moment it issues it. A sweeper's first look comes seconds later; this test's comes at once.
    while sum(e["type"] == "TaskSubmitted" for e in workflow.sfn.get_execution_history(
            executionArn=found[-1].execution, maxResults=1000)["events"]) < count:
        if time.monotonic() > deadline:
            pytest.fail("the park's invocation did not return")
        time.sleep(0.02)
    return found[-1]


def resume(workflow: Workflow, park: Parked, reason: str, *, slot_in: float = 0.2) -> int:
    slot = int((time.time() + slot_in) * MICROS)
    workflow.sfn.send_task_success(taskToken=park.token, output=json.dumps({"reason": reason, "get_at_us": slot}))
    return slot


def sweeper_swept(workflow: Workflow, seconds_ago: float) -> None:
    workflow.dynamodb.put_item(TableName=workflow.stack.idempotency_table, Item={
        "id": {"S": "sweeper#default"}, "swept_at": {"N": str(time.time() - seconds_ago)},
    })


def state_names(workflow: Workflow, execution_arn: str) -> list[str]:
    return [name for name in workflow.visited(execution_arn) if name not in ("CheckInput", "ClaimTask")]


def test_a_parked_workflow_asks_nothing_until_resumed_then_relays_at_the_slot_it_was_given(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image", "model": "wan2.6-t2i"})

    park = parked(parking, 1)
    assert (park.task_id, park.kind, park.blind, park.execution) == (IMAGE_TASK, "image", False, execution)
    time.sleep(0.3)  # parked: nothing is asked, no state runs
    assert parking.replay.polls(IMAGE_TASK) == 0
    assert parking.actions() == ["start", "park"]

    slot = resume(parking, park, "finished")
    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert parking.replay.polls(IMAGE_TASK) == 1
    (asked_at,) = parking.replay.query_times
    assert asked_at * MICROS >= slot  # not before the slot the sweeper reserved for it
    assert only_event(parking)["status"] == "SUCCEEDED"
    assert state_names(parking, execution) == [
        "FirstWait", "ParkTask", "PollTask", "IsDone", "EmitCompletion", "ExpireLock", "Relayed"]


def test_a_resume_for_a_task_that_still_runs_parks_it_again_as_blind(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    resume(parking, parked(parking, 1), "finished")  # the list was wrong: the task still runs
    again = parked(parking, 2)
    assert again.blind is True  # the sweeper probes it from now on, instead of trusting the list
    # ... when its own loop would poll next: the wait the poll that found it running computed
    [*_, entered] = [json.loads(e["stateEnteredEventDetails"]["input"]) for e in parking.sfn.get_execution_history(
        executionArn=execution, maxResults=1000)["events"]
        if e.get("stateEnteredEventDetails", {}).get("name") == "ParkTask"]
    assert again.wait_seconds == entered["wait_seconds"] > 0
    resume(parking, again, "probe")

    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert parking.replay.polls(IMAGE_TASK) == 2
    assert only_event(parking)["polls"] == 2
    assert "WaitForTask" not in state_names(parking, execution)


def test_a_park_nobody_heartbeats_falls_back_to_polling_on_its_own(parking: Workflow, sleeps: Sleeps) -> None:
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    parked(parking, 1)  # ... and no sweeper ever swept: after the watchdog, the workflow polls itself
    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert state_names(parking, execution) == [
        "FirstWait", "ParkTask", "PollTask", "IsDone", "WaitForTask", "PollTask", "IsDone",
        "EmitCompletion", "ExpireLock", "Relayed"]
    assert len(sleeps.waits) == 1  # the wait policy's, between its own polls
    assert len(parks(parking)) == 1  # it did not park again: nobody would resume it
    assert only_event(parking)["status"] == "SUCCEEDED"


def test_after_its_watchdog_a_workflow_parks_again_while_a_sweeper_is_alive(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), succeeded_image(parking))
    sweeper_swept(parking, seconds_ago=5)
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    parked(parking, 1)
    again = parked(parking, 2, within=WATCHDOG_SECONDS + 10)  # the watchdog fired, it polled, it parked
    assert again.blind is False  # the list is still trusted: the sweeper only missed a heartbeat
    assert parking.replay.polls(IMAGE_TASK) == 1
    resume(parking, again, "finished")

    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert only_event(parking)["polls"] == 2


def test_heartbeats_keep_a_park_past_its_watchdog(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    park = parked(parking, 1)
    beating_until = time.monotonic() + WATCHDOG_SECONDS * 2
    while time.monotonic() < beating_until:
        try:
            parking.sfn.send_task_heartbeat(taskToken=park.token)
        except parking.sfn.exceptions.InvalidToken:
            # moto takes heartbeats only once the park's invocation has returned (AWS from the start)
            assert parking.replay.polls(IMAGE_TASK) == 0
        time.sleep(WATCHDOG_SECONDS / 6)
    assert parking.replay.polls(IMAGE_TASK) == 0  # still parked, twice its watchdog later

    resume(parking, park, "finished")
    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert state_names(parking, execution).count("PollTask") == 1


def test_every_query_of_a_parking_stack_takes_a_slot_of_the_accounts_budget(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    resume(parking, parked(parking, 1), "finished", slot_in=-5)  # a slot long gone: the poll reserves its own
    resume(parking, parked(parking, 2), "probe")
    assert parking.finish(execution)["status"] == "SUCCEEDED"

    item: dict[str, Any] = parking.dynamodb.get_item(
        TableName=parking.stack.idempotency_table, Key={"id": {"S": "budget#default"}})["Item"]
    first, _ = parking.replay.query_times
    # the expired slot was replaced by one reserved in the budget, which now lies past that query
    assert int(item["next_free_us"]["N"]) > first * MICROS


def test_the_last_poll_of_a_task_whose_budget_ran_out_takes_a_slot_of_the_accounts_budget_too(
    parking: Workflow,
) -> None:
    # a budget the watchdog would outlast: the workflow polls on its own until its budget runs out, then
    # asks once more to decide (TIMED_OUT, or the task's end); that GET is the account's too
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK))
    slots: list[bool] = []
    take_slot = Fleet.take_slot

    def counted(fleet: Fleet, handed_us: int | None = None) -> bool:
        slots.append(take_slot(fleet, handed_us))
        return slots[-1]

    with mock.patch.object(Fleet, "take_slot", counted):
        ended = parking.run({"task_id": IMAGE_TASK, "kind": "image", "timeout_seconds": 1})
    assert ended["status"] == "SUCCEEDED" and only_event(parking)["status"] == "TIMED_OUT"
    # every GET at a slot granted, the last one's too (on a loaded machine the first poll may come after the
    # budget's end already, and be the last)
    assert len(parking.replay.query_times) == len(slots) >= 1 and all(slots)


def test_a_resume_that_is_not_the_sweepers_shape_is_taken_as_a_park_without_one_and_the_get_decides(
    parking: Workflow,
) -> None:
    # whoever holds the token may send any output; failing the execution would fail every redrive alike
    # (a redrive runs PollTask again with the same input), and the lock would keep the task from a restart
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})

    park = parked(parking, 1)
    forged = {"reason": "finished", "done": True, "event": {"status": "FAILED"}}
    parking.sfn.send_task_success(taskToken=park.token, output=json.dumps(forged))

    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert parking.replay.polls(IMAGE_TASK) == 1  # one GET, at a slot of its own: DashScope's answer decides
    assert only_event(parking)["status"] == "SUCCEEDED"  # not the forged one

def test_every_park_beats_inside_its_timeout_and_a_task_near_its_budget_polls_on_its_own(
    parking: Workflow, sleeps: Sleeps,
) -> None:
    # the States Language: a state's HeartbeatSeconds must be smaller than its TimeoutSeconds (moto runs
    # either way); the park's come from the loop state, so the relay keeps the rule
    parking.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), succeeded_image(parking))
    roomy = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image", "timeout_seconds": 120})
    resume(parking, parked(parking, 1), "finished")  # still runs: parked again, with less budget left
    resume(parking, parked(parking, 2), "probe")
    assert parking.finish(roomy)["status"] == "SUCCEEDED"
    scheduled = [e["taskScheduledEventDetails"] for e in parking.sfn.get_execution_history(
        executionArn=roomy, maxResults=1000)["events"] if e["type"] == "TaskScheduled"
        and e["taskScheduledEventDetails"]["resource"] == "invoke.waitForTaskToken"]
    assert len(scheduled) == 2
    assert all(0 < s["heartbeatInSeconds"] < s["timeoutInSeconds"] <= 120 for s in scheduled), scheduled

    # a budget the watchdog and its margin would outlast: polling on its own, its last poll is not late
    other = "short-budget-task"
    answer = succeeded_image(parking)
    answer["output"]["task_id"] = other
    parking.replay.script(other, unfinished("running", other), answer)
    short = parking.run({"task_id": other, "kind": "image", "timeout_seconds": WATCHDOG_SECONDS + 60})
    assert short["status"] == "SUCCEEDED"
    assert "ParkTask" not in parking.visited(short["executionArn"])
    assert parking.replay.polls(other) == 2


def test_a_resumed_workflow_reports_how_long_before_its_slot_it_was_ready(
    parking: Workflow, capsys: pytest.CaptureFixture[str],
) -> None:
    # the sweeper reserves a resume's GET slot a lead ahead (an assumption about AWS's latency): the metric
    # shows operators whether workflows reach it in time
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})
    resume(parking, parked(parking, 1), "finished", slot_in=3.0)
    assert parking.finish(execution)["status"] == "SUCCEEDED"

    emitted = emitted_metrics(capsys.readouterr().out)
    assert 1.0 < emitted["ResumeSlotLead"] <= 3.0  # ready before its slot, by the lead less the resume's own way
    assert emitted["ResumeSlotLateness"] == 0


def test_a_resumed_workflow_late_for_its_slot_reports_how_late_never_a_negative_lead(
    parking: Workflow, capsys: pytest.CaptureFixture[str],
) -> None:
    # CloudWatch has no percentiles for a metric with any negative value: lateness is a metric of its own
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})
    resume(parking, parked(parking, 1), "finished", slot_in=-5.0)
    assert parking.finish(execution)["status"] == "SUCCEEDED"

    emitted = emitted_metrics(capsys.readouterr().out)
    assert emitted["ResumeSlotLead"] == 0
    assert 5.0 <= emitted["ResumeSlotLateness"] < 8.0


# --- AWS refusing the fleet's calls past the SDK's retries ------------------------------------------


@contextmanager
def refusing(operation: str, code: str, applies: Callable[[dict[str, Any]], bool],
             times: int = 1) -> Iterator[list[str]]:
    """The next `times` calls of `operation` whose parameters `applies` to raise `code`, as a boto3 client
    raises it once its retries are spent: every park of an account writes one partition of the registry
    and every poll one budget item, which a burst can throttle in AWS (moto never does)."""
    real = BaseClient._make_api_call
    refused: list[str] = []

    def call(client: Any, name: str, params: dict[str, Any]) -> Any:
        if name == operation and len(refused) < times and applies(params):
            refused.append(name)
            raise ClientError({"Error": {"Code": code, "Message": "Rate exceeded."}}, name)
        return real(client, name, params)

    with mock.patch.object(BaseClient, "_make_api_call", call):
        yield refused


def test_a_park_dynamodb_throttles_past_the_sdks_retries_is_waited_out_and_the_task_relayed(parking: Workflow) -> None:
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    with refusing("PutItem", "ProvisionedThroughputExceededException",
                  lambda params: params.get("TableName") == parking.stack.parked_table) as refused:
        execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})
        ended = parking.finish(execution)
    assert refused == ["PutItem"]
    assert ended["status"] == "SUCCEEDED"  # not failed under an error name the workflow does not know
    assert state_names(parking, execution)[:3] == ["FirstWait", "ParkTask", "AfterTrouble"]
    assert only_event(parking)["status"] == "SUCCEEDED"


def test_a_budget_slot_dynamodb_throttles_past_the_sdks_retries_is_waited_out_and_the_task_relayed(
    parking: Workflow,
) -> None:
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})
    park = parked(parking, 1)
    with refusing("UpdateItem", "ThrottlingException",
                  lambda params: params.get("Key", {}).get("id", {}).get("S", "").startswith("budget#")) as refused:
        resume(parking, park, "finished", slot_in=-5)  # a slot long gone: the poll reserves its own
        ended = parking.finish(execution)
    assert refused == ["UpdateItem"]
    assert ended["status"] == "SUCCEEDED"
    assert parking.replay.polls(IMAGE_TASK) == 1  # asked once, at a slot the retried poll reserved
    assert only_event(parking)["status"] == "SUCCEEDED"


def test_a_sweeper_lambda_refuses_to_wake_leaves_the_park_standing(parking: Workflow) -> None:
    # the park is in the registry: the sweeper's schedule finds it within a minute, or the watchdog fires
    parking.replay.script(IMAGE_TASK, succeeded_image(parking))
    with refusing("Invoke", "TooManyRequestsException",
                  lambda params: "sweeper" in params.get("FunctionName", "")) as refused:
        execution = parking.stack.start({"task_id": IMAGE_TASK, "kind": "image"})
        park = parked(parking, 1)
    assert refused == ["Invoke"]
    resume(parking, park, "finished")
    assert parking.finish(execution)["status"] == "SUCCEEDED"
    assert state_names(parking, execution)[:3] == ["FirstWait", "ParkTask", "PollTask"]
    assert only_event(parking)["status"] == "SUCCEEDED"
