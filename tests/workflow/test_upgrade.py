"""An upgrade updates the state machine in place (it is not named, so nothing replaces it: see
tests/contract/test_release.py): an execution started before the upgrade finishes on the definition it
started with, while its polls run the new function. Here the last release's definition (0.1.0,
`git show 635bc1e:statemachine/poll_task.asl.json`) runs against this release's function on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from wan_relay.normalize import iso_z
from wan_relay_local.replay import ReplayDashScope

from .conftest import Sleeps, Workflow, deployed_workflow, polls_that_die
from .test_poll_loop import IMAGE_TASK, SERVICE_UNAVAILABLE, only_event, succeeded_image, unfinished

RELEASED_DEFINITION = Path(__file__).parent / "asl-0.1.0.json"


def released_state_machine(workflow: Workflow) -> str:
    """The 0.1.0 definition with this stack's substitutions, as the stack had it before the upgrade."""
    stack = workflow.stack
    substitutions = {
        "PollTaskFunctionArn": stack.function_arn,
        "IdempotencyTableName": stack.idempotency_table,
        "PollBudgetSeconds": "86400",
        "PollIntervalSeconds": "null",
        "EventBusName": stack.bus_name,
        "EventSource": stack.completion_pattern["source"][0],
        "CompletedDetailType": stack.completion_pattern["detail-type"][0],
    }
    text = RELEASED_DEFINITION.read_text()
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    role = workflow.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["roleArn"]
    return workflow.sfn.create_state_machine(name="released-poll-task", definition=text,
                                             roleArn=role)["stateMachineArn"]


def run_on(workflow: Workflow, machine: str, loop_input: dict[str, Any]) -> dict[str, Any]:
    started = workflow.sfn.start_execution(stateMachineArn=machine, name=loop_input["task_id"],
                                           input=json.dumps(loop_input))
    return workflow.finish(started["executionArn"])


@pytest.fixture(params=["park", "poll"])
def upgraded(request: pytest.FixtureRequest, replay: ReplayDashScope, sleeps: Sleeps) -> Iterator[Workflow]:
    """The stack after the upgrade: `Waiting` as the upgrade leaves it (park, the new default) or set."""
    with deployed_workflow(replay, {"Waiting": request.param}, parks=request.param == "park") as deployed:
        yield deployed


def test_an_execution_of_the_last_release_is_relayed_by_the_new_function(upgraded: Workflow) -> None:
    workflow = upgraded
    machine = released_state_machine(workflow)
    workflow.replay.script(IMAGE_TASK, unfinished("running", IMAGE_TASK), SERVICE_UNAVAILABLE,
                           succeeded_image(workflow))

    execution = run_on(workflow, machine, {"task_id": IMAGE_TASK, "context": {"order": 7}})

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    detail = only_event(workflow)
    assert detail["status"] == "SUCCEEDED" and detail["context"] == {"order": 7}
    assert [m["key"] for m in detail["media"]] == [f"wan/{IMAGE_TASK}/0.png"]
    assert workflow.visited(execution["executionArn"])[-3:] == ["EmitCompletion", "ExpireLock", "Relayed"]


def test_an_execution_of_the_last_release_whose_polls_keep_failing_gets_one_failure_event(upgraded: Workflow) -> None:
    """0.1.0's ReportFailure, after PollTask's retries, asks the function for the task's failure event and
    puts it: the new function must answer it done, not with a back-off the old definition cannot wait."""
    workflow = upgraded
    machine = released_state_machine(workflow)
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die("Runtime.ExitError", "signal: killed", attempts=set(range(1, 7))))

    execution = run_on(workflow, machine, {"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert "ReportFailure" in workflow.visited(execution["executionArn"])
    detail = only_event(workflow)
    assert detail["status"] == "FAILED" and detail["error"]["code"] == "Runtime.ExitError"


def test_a_loop_state_the_last_release_wrote_is_polled_on_by_the_new_function(upgraded: Workflow) -> None:
    """An execution mid-loop at the upgrade carries a state 0.1.0's function wrote (every field of its
    LoopState, serialized): the new function's next poll reads it and relays the task."""
    workflow = upgraded
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))
    written_by_0_1_0 = {
        "task_id": IMAGE_TASK, "kind": "image", "model": None, "context": {"order": 7},
        "poll_interval_seconds": None, "timeout_seconds": 86400, "polls": 3,
        "started_at": iso_z(datetime.now(UTC) - timedelta(minutes=1)), "throttled": 0, "done": False,
        "status": "RUNNING", "wait_seconds": 10, "event": None, "records_expire_at": None, "error": None,
    }

    invoked = boto3.client("lambda").invoke(FunctionName=workflow.stack.function_name,
                                            Payload=json.dumps(written_by_0_1_0).encode())
    answer = json.loads(invoked["Payload"].read())

    assert answer["done"] is True and answer["polls"] == 4
    assert answer["event"]["status"] == "SUCCEEDED" and answer["event"]["context"] == {"order": 7}
