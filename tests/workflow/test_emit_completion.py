"""The completion event is put by the workflow (EmitCompletion), not by the poll function: however often
the function is retried, the event goes out once; an entry EventBridge refuses is retried, never
reported as sent; a bus that refuses the workflow fails the execution with the event kept for a redrive.

EventBridge's answers are injected into moto's events backend, which the state machine's
`events:putEvents` integration calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from moto.core.exceptions import JsonRESTError
from moto.events.models import EventsBackend

from .conftest import Sleeps, Workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image, unfinished


class BusFaults:
    """The next `times` PutEvents calls fail: either each entry is refused (FailedEntryCount) or the
    call raises `error`. Nothing refused reaches a rule."""

    def __init__(self) -> None:
        self.calls = 0
        self.times = 0
        self.error: JsonRESTError | None = None

    def put_events(self, original: Any, backend: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls > self.times:
            return original(backend, events)
        if self.error is not None:
            raise self.error
        return [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error."} for _ in events]


@pytest.fixture
def bus_faults() -> Iterator[BusFaults]:
    faults = BusFaults()
    original = EventsBackend.put_events

    def put_events(backend: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return faults.put_events(original, backend, events)

    with mock.patch.object(EventsBackend, "put_events", put_events):
        yield faults


def history_events(workflow: Workflow, execution_arn: str) -> list[dict[str, Any]]:
    return workflow.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def test_a_poll_that_dies_after_deciding_the_event_is_retried_and_the_event_goes_out_once(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    """The function lands the media and decides the event, then dies before Step Functions hears its
    answer (a timeout, an out-of-memory kill): the retry answers with the same event, sent once."""
    first_answers: list[dict[str, Any]] = []

    def dies_after_answering_once(handler):
        def run(event, context):
            answer = handler(event, context)
            if answer.get("done") and not first_answers:
                first_answers.append(answer)
                raise type("Runtime.ExitError", (Exception,), {})("Runtime exited with error: signal: killed")
            return answer

        return run

    workflow.lambdas.wrap(workflow.stack.function_name, dies_after_answering_once)
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK), succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert [i.get("error") for i in workflow.polls()] == [None, "Runtime.ExitError", None]
    detail = only_event(workflow)
    assert detail == first_answers[0]["event"]  # the decision of the attempt that died, not a new one
    versions = workflow.s3.list_object_versions(Bucket=workflow.stack.bucket).get("Versions", [])
    assert [v["Key"] for v in versions] == [f"wan/{IMAGE_TASK}/0.png"]  # stored once


def test_an_entry_eventbridge_refuses_is_retried_and_sent_once(
    workflow: Workflow, sleeps: Sleeps, bus_faults: BusFaults
) -> None:
    bus_faults.times = 1
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert bus_faults.calls == 2
    assert len(workflow.polls()) == 1  # the retry is EmitCompletion's: no second poll
    assert len(sleeps.retries) == 1 and 0 <= sleeps.retries[0] <= 1  # FailedEntry: 1 s, full jitter
    failed = [e for e in history_events(workflow, execution["executionArn"]) if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == ["EventBridge.FailedEntry"]
    detail = only_event(workflow)
    assert detail["status"] == "SUCCEEDED" and detail["task_id"] == IMAGE_TASK
    output = json.loads(execution["output"])
    assert output["emitted"]["event_bridge_id"]  # the id EventBridge gave the event, for tracing


def test_a_bus_that_refuses_the_workflow_fails_the_execution_by_name_with_the_event_kept_for_a_redrive(
    workflow: Workflow, sleeps: Sleeps, bus_faults: BusFaults
) -> None:
    bus_faults.times = 99
    bus_faults.error = JsonRESTError("AccessDeniedException", "not authorized to perform: events:PutEvents")
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "FAILED"
    assert "AccessDeniedException" in execution["error"] + execution.get("cause", "")
    # AWS names this failure EventBridge.AccessDeniedException and retries it 10 times (States.TaskFailed);
    # moto's interpreter turns an error answer of a service integration into States.Runtime, which no
    # retrier matches, so how often it was tried is not asserted here
    assert workflow.completed_events() == []
    assert len(workflow.objects()) == 1  # the media is stored; a redrive after the fix sends the event
    history = history_events(workflow, execution["executionArn"])
    entered = [e["stateEnteredEventDetails"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-1]["name"] == "EmitCompletion"
    assert json.loads(entered[-1]["input"])["event"]["status"] == "SUCCEEDED"
    lock = workflow.dynamodb.get_item(
        TableName=workflow.stack.idempotency_table, Key={"id": {"S": f"lock#{IMAGE_TASK}"}}
    )["Item"]
    # still claimed (nobody else relays the task until the redrive), until the lock's own expiry: the
    # task's budget (24 h) plus the two-hour margin, not the 48 h of a finished task's records
    expires_in = int(lock["expiration"]["N"]) - time.time()
    assert 24 * 3600 < expires_in <= 26 * 3600




def test_eventbridge_refusing_entries_for_minutes_is_waited_out_and_the_event_sent_once(
    workflow: Workflow, sleeps: Sleeps, bus_faults: BusFaults
) -> None:
    """EventBridge refusing the entry for minutes (InternalFailure, ThrottlingException: other producers of
    the account using its PutEvents quota, an incident): the retries wait up to 5 minutes each, 10 of them,
    about 13 minutes at most in all; the call after them sends the event, once. (A failed call, rather than
    a refused entry, is States.TaskFailed on AWS, retried likewise; moto's interpreter reports it as
    States.Runtime, so that retrier is checked, exactly, in tests/contract/test_template.py only.)"""
    bus_faults.times = 10
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert bus_faults.calls == 11
    caps = [min(300, 2 ** attempt) for attempt in range(10)]  # IntervalSeconds 1, BackoffRate 2, full jitter
    assert len(sleeps.retries) == 10 and all(0 <= r <= cap for r, cap in zip(sleeps.retries, caps, strict=True))
    assert sum(caps) > 13 * 60
    assert len(workflow.polls()) == 1  # the function is not asked again: the event is the one it decided
    detail = only_event(workflow)
    assert detail["status"] == "SUCCEEDED" and detail["task_id"] == IMAGE_TASK


def test_eventbridge_refusing_entries_past_the_retries_fails_the_execution_with_the_event_kept(
    workflow: Workflow, sleeps: Sleeps, bus_faults: BusFaults
) -> None:
    bus_faults.times = 10_000
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "FAILED" and execution["error"] == "EventBridge.FailedEntry"
    assert bus_faults.calls == 11
    assert workflow.completed_events() == []
    history = history_events(workflow, execution["executionArn"])
    entered = [e["stateEnteredEventDetails"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-1]["name"] == "EmitCompletion"  # a redrive runs it again
    assert json.loads(entered[-1]["input"])["event"]["status"] == "SUCCEEDED"
