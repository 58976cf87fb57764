"""AWS's limits on the workflow as it runs: the execution history at the worst poll count, the state
payloads, the task lock's key, and the poll cap against the budget. moto enforces none of the history
or payload limits, so each test measures the real execution history moto records (which, event for
event, is the one AWS records: see `AWS_EVENTS_PER_ATTEMPT`) and does the arithmetic itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from wan_relay import policy
from wan_relay_local.replay import Reply
from wan_relay_local.stack import execution_name

from tests.conftest import sample
from tests.contract.test_aws_limits import (
    ASL_FILE,
    DYNAMODB_KEY_BYTES,
    LONGEST_TASK_ID,
    STATE_PAYLOAD_BYTES,
    context_at_cap,
    execution_name_problem,
    failed_answer,
    json_bytes,
    lambda_invoke_result,
)

from .conftest import Sleeps, Workflow, polls_that_die
from .test_poll_loop import IMAGE_TASK, only_event, unfinished

#: what AWS records for each attempt of a Task (`lambda:invoke`, and the other request-response
#: integrations): TaskScheduled, TaskStarted, then TaskSucceeded or TaskFailed. Seen in histories
#: recorded on AWS (localstack's snapshot tests/aws/services/stepfunctions/v2/scenarios/
#: test_base_scenarios.snapshot.json, test_lambda_service_invoke_with_retry_extended_input, 2023-10-24)
AWS_EVENTS_PER_ATTEMPT = 3
#: ... and for a callback task (`lambda:invoke.waitForTaskToken`, ParkTask) TaskSubmitted besides, once the
#: invocation returned and the task waits for its token
AWS_EVENTS_PER_CALLBACK_ATTEMPT = AWS_EVENTS_PER_ATTEMPT + 1
#: the longest task id the input accepts, valid characters only
LONGEST_VALID_TASK_ID = ("f470bbfd-" * 15)[:LONGEST_TASK_ID]


def history(workflow: Workflow, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = workflow.sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def state_visits(events: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Each time a state was entered: its name and the types of the events until the next state."""
    visits: list[tuple[str, list[str]]] = []
    for event in events:
        if event["type"].endswith("StateEntered"):
            visits.append((event["stateEnteredEventDetails"]["name"], []))
        if visits and not event["type"].startswith("Execution"):
            visits[-1][1].append(event["type"])
    return visits


def transitions(definition: dict[str, Any], *, with_catch: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, state in definition["States"].items():
        targets = {state.get("Next"), state.get("Default")} | {c["Next"] for c in state.get("Choices", [])}
        if with_catch:
            targets |= {c["Next"] for c in state.get("Catch", [])}
        edges[name] = {t for t in targets if t}
    return edges


def on_a_cycle(edges: dict[str, set[str]]) -> set[str]:
    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(edges[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += edges[name]
        return seen

    return {name for name in edges if name in reachable(name)}


def retries_allowed(state: dict[str, Any]) -> int:
    """Every retry a Task state's retriers allow in one visit (MaxAttempts defaults to 3)."""
    return sum(rule.get("MaxAttempts", 3) for rule in state.get("Retry", []))


def test_the_poll_cap_keeps_the_worst_history_within_25000_events(workflow: Workflow, sleeps: Sleeps) -> None:
    """Measured on a real execution history: a pending poll, a throttled poll (HTTP 429), a poll whose
    first attempt dies (Lambda's timeout) and is retried, then the end. From the costs measured and the
    retriers in the definition, the worst history at MAX_POLLS: every poll using every retry."""
    throttled = Reply({"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded.",
                       "request_id": "r-429"}, status=429, headers={"Retry-After": "1"})
    workflow.replay.script(
        IMAGE_TASK, unfinished("pending", IMAGE_TASK), throttled, unfinished("running", IMAGE_TASK),
        workflow.replay.rehost(sample("wan2.6-t2i_succeeded")),
    )
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die("Sandbox.Timedout", "Task timed out after 900.00 seconds", attempts={3}))
    execution = workflow.run({"task_id": IMAGE_TASK})
    assert execution["status"] == "SUCCEEDED" and only_event(workflow)["polls"] == 4

    events = history(workflow, execution["executionArn"])
    visits = state_visits(events)
    polls = [kinds for name, kinds in visits if name == "PollTask"]
    assert [len(kinds) for kinds in polls] == [5, 5, 5 + AWS_EVENTS_PER_ATTEMPT, 5]  # the 3rd retried once
    assert polls[2][1:-1] == ["TaskScheduled", "TaskStarted", "TaskFailed", "TaskScheduled", "TaskStarted",
                              "TaskSucceeded"]
    clean_task = len(polls[0])
    per_attempt = len(polls[2]) - clean_task
    by_type: dict[str, int] = {}  # the events a visit without retries costs, by the state's type
    definition = json.loads(ASL_FILE.read_text())
    for name, kinds in visits:
        by_type.setdefault(definition["States"][name]["Type"], len(kinds))
    assert by_type["Task"] == clean_task and per_attempt == AWS_EVENTS_PER_ATTEMPT
    assert len(events) == 2 + sum(len(kinds) for _, kinds in visits)  # ExecutionStarted, ExecutionSucceeded

    def worst(name: str) -> int:
        state = definition["States"][name]
        assert state["Type"] in by_type, f"no {state['Type']} state was measured: extend the scenario"
        if state["Type"] == "Task" and state["Resource"].endswith(".waitForTaskToken"):
            return by_type["Task"] + 1 + AWS_EVENTS_PER_CALLBACK_ATTEMPT * retries_allowed(state)
        return by_type[state["Type"]] + (per_attempt * retries_allowed(state) if state["Type"] == "Task" else 0)

    by_type.setdefault("Fail", 1)  # FailStateEntered, then ExecutionFailed (counted with the execution's 2)
    by_type.setdefault("Pass", by_type["Wait"])  # PassStateEntered, PassStateExited, as a Wait's two
    cycles = on_a_cycle(transitions(definition, with_catch=True))
    # the function's outage at the start: a cycle of its own, before the loop, held to a count of waits
    at_start = {"InputOutageWait", "CheckInputAgain", "CountInputOutage", "InputOutageCap"}
    assert at_start <= cycles
    [cap] = definition["States"]["InputOutageCap"]["Choices"]
    assert cap["Variable"] == "$.outages" and definition["States"]["HoldInput"]["Parameters"]["outages"] == 1
    waits_at_start = cap["NumericGreaterThanEquals"] - 1  # one failed check counted before the first wait
    loop = cycles - at_start
    assert "PollTask" in loop and "AfterTrouble" in loop
    # every pass through the loop is counted against the cap once: PollTask's answer, or, when PollTask
    # failed past its retries, AfterTrouble's (a Catch into the loop that no answer counted would not be),
    # or, when AfterTrouble failed past its retries too, the workflow's own count (CountOutage, which the
    # relay folds into its polls, and WithinPollCap holds to the cap while the function cannot run)
    outage = {"CountOutage", "WithinPollCap", "OutageWait"}
    assert loop == {"PollTask", "AfterTrouble", "IsDone", "WaitForTask", "ParkTask"} | outage
    # one pass waits once: in WaitForTask or in ParkTask (a park that fails goes to AfterTrouble, which
    # counts the pass it starts), or in OutageWait after AfterTrouble failed
    waits = {"WaitForTask", "ParkTask"}
    worst_per_poll = sum(worst(name) for name in loop - waits - outage) + max(worst(name) for name in waits)
    worst_per_outage = worst("AfterTrouble") + sum(worst(name) for name in outage)
    assert worst_per_outage <= worst_per_poll
    worst_outside = (2 + sum(worst(name) for name in definition["States"] if name not in loop | at_start)
                     + waits_at_start * sum(worst(name) for name in at_start))
    assert worst_per_poll <= policy.WORST_EVENTS_PER_POLL
    assert worst_outside <= policy.WORST_EVENTS_OUTSIDE_POLLS
    assert worst_outside + policy.MAX_POLLS * worst_per_poll <= policy.HISTORY_EVENT_LIMIT, (
        f"at most {(policy.HISTORY_EVENT_LIMIT - worst_outside) // worst_per_poll} polls fit"
    )


# --- the task lock and the task id's length ------------------------------------------------------


def lock_items(workflow: Workflow) -> list[dict[str, Any]]:
    items = workflow.dynamodb.scan(TableName=workflow.stack.idempotency_table)["Items"]
    return [item for item in items if item["id"]["S"].startswith("lock#")]


def test_the_longest_task_id_is_relayed_under_a_valid_execution_name(workflow: Workflow, sleeps: Sleeps) -> None:
    task_id = LONGEST_VALID_TASK_ID
    answer = copy.deepcopy(sample("wan2.6-t2i_succeeded"))
    answer["output"]["task_id"] = task_id
    workflow.replay.script(task_id, workflow.replay.rehost(answer))

    execution = workflow.run({"task_id": task_id})

    assert execution["status"] == "SUCCEEDED"
    assert execution["name"] == execution_name(task_id) and execution_name_problem(execution["name"]) is None
    assert only_event(workflow)["task_id"] == task_id
    (lock,) = lock_items(workflow)
    assert lock["id"]["S"] == f"lock#{task_id}" and len(lock["id"]["S"].encode()) <= DYNAMODB_KEY_BYTES
    assert "expiration" in lock


@pytest.mark.parametrize("length", [LONGEST_TASK_ID + 1, 10_000], ids=["129", "10000"])
def test_a_task_id_too_long_fails_as_invalid_input_and_takes_no_lock(
    workflow: Workflow, sleeps: Sleeps, length: int
) -> None:
    """A 10,000-character id made ClaimTask's key (`lock#<id>`) too long for DynamoDB: the execution
    failed with DynamoDB.ValidationException; a 129-character one took the lock and then failed."""
    execution = workflow.run({"task_id": "x" * length})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "InvalidInput"
    assert lock_items(workflow) == []
    assert workflow.replay.requests == []


# --- the poll cap against the budget ----------------------------------------------------------


class FakeClock:
    """The relay's clock, moved on by every Wait state as if it had slept."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.waits: list[int] = []
        clock = self

        class Now(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return datetime.now(tz) + clock.offset

        self.datetime = Now

    def wait(self, env: Any, wait_seconds: int) -> None:  # WaitFunction._wait_interval, its `self` left out
        self.waits.append(wait_seconds)
        self.offset += timedelta(seconds=wait_seconds)


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    clock = FakeClock()
    with (
        mock.patch("wan_relay.relay.datetime", clock.datetime),
        mock.patch.object(WaitFunction, "_wait_interval", clock.wait),
    ):
        yield clock


def test_a_one_second_interval_uses_its_whole_budget_within_the_poll_cap(
    workflow: Workflow, sleeps: Sleeps, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small cap, so the loop runs into it in a few polls: the waits start at the caller's second
    and stretch so the last poll the cap allows comes at the end of the budget, not minutes in."""
    monkeypatch.setattr(policy, "MAX_POLLS", 12)
    budget = 1800
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK))

    execution = workflow.run({"task_id": IMAGE_TASK, "poll_interval_seconds": 1, "timeout_seconds": budget})

    assert execution["status"] == "SUCCEEDED"
    detail = only_event(workflow)
    assert detail["status"] == "TIMED_OUT" and detail["polls"] <= 12
    assert fake_clock.waits[:4] == [1, 1, 1, 1]
    assert sum(fake_clock.waits) >= budget - 5  # the budget's seconds ran out, not the polls
    assert max(fake_clock.waits) <= policy.MAX_WAIT_SECONDS


# --- state payloads -----------------------------------------------------------------------------


def payload_sizes(events: list[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """Every state input and output, task parameters and task result in a history, as UTF-8 bytes,
    keyed by the event's id (a TaskScheduled event names no state: a key without the id would keep only
    the last of them); a Lambda task's result in the envelope AWS gives it (moto records the payload alone)."""
    for event in events:
        for name, details in event.items():
            if not name.endswith("EventDetails"):
                continue
            for field in ("input", "output", "parameters"):
                if field not in details:
                    continue
                value = json.loads(details[field])
                if event["type"] == "TaskSucceeded" and details.get("resourceType") == "lambda":
                    value = lambda_invoke_result(value["Payload"])
                yield f"#{event['id']} {event['type']} {details.get('name', '')} {field}", json_bytes(value)


def test_a_task_with_everything_at_its_cap_keeps_every_state_within_256_kib(
    workflow: Workflow, sleeps: Sleeps, parameters_limit: None
) -> None:
    task_id = LONGEST_VALID_TASK_ID
    workflow.replay.script(task_id, unfinished("running", task_id), failed_answer(task_id, "p", 190_000))

    execution = workflow.run({"task_id": task_id, "model": "m" * 128, "context": context_at_cap("p")})

    assert execution["status"] == "SUCCEEDED"
    assert only_event(workflow)["status"] == "FAILED"
    sizes = dict(payload_sizes(history(workflow, execution["executionArn"])))
    largest = max(sizes, key=sizes.get)
    assert sizes[largest] <= STATE_PAYLOAD_BYTES, largest
    # the final answer carries the detail at its cap (the context once, in the event): near the limit
    assert sizes[largest] > 180 * 1024


#: the largest input the workflow promises to relay, 254 KiB of JSON. CheckInput hands the input to the
#: function wrapped (`{"FunctionName", "Payload": {"action", "input", "defaults", "started_at"}}`) and Step
#: Functions takes at most 256 KiB of a task's parameters (TaskScheduledEventDetails.parameters, 262,144
#: bytes); the 2 KiB left hold the wrapper at its longest, and the error an outage of the check keeps
#: beside the held input (CheckInputAgain's Catch)
INPUT_CEILING_BYTES = 254 * 1024
#: the longest ARN a function of the stack can have: the longest partition and region names, and a
#: function name at Lambda's 64 characters (CloudFormation names it after the stack, cut to fit)
LONGEST_FUNCTION_ARN = "arn:aws-us-gov:lambda:ap-southeast-7:123456789012:function:" + "f" * 64


@pytest.fixture
def parameters_limit() -> Iterator[None]:
    """What AWS does and moto does not: a task whose parameters (the state's input after Parameters
    processing) are over 256 KiB is not scheduled; the state fails with States.DataLimitExceeded (Step
    Functions developer guide, *Error names*). Measured as `json_bytes` does, never below AWS's count."""
    schedule = StateTaskService._before_eval_execution

    def checked(self: StateTaskService, env: Any, resource_runtime_part: Any, raw_parameters: dict[str, Any],
                state_credentials: Any) -> None:
        if json_bytes(json.loads(to_json_str(raw_parameters))) > STATE_PAYLOAD_BYTES:  # as the history records them
            error = StatesErrorNameType.StatesStatesDataLimitExceeded
            raise FailureEventException(FailureEvent(
                env=env, error_name=StatesErrorName(typ=error), event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                    error=error.to_name(), cause=f"The state '{self.name}' has parameters over the size limit.",
                    resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                )),
            ))
        schedule(self, env, resource_runtime_part, raw_parameters, state_credentials)

    with mock.patch.object(StateTaskService, "_before_eval_execution", checked):
        yield


def raw_context(total_bytes: int) -> dict[str, Any]:
    """A loop input of about `total_bytes` (never more), nearly all of it context."""
    loop_input = {"task_id": IMAGE_TASK, "context": {"blob": "z" * (total_bytes - 80)}}
    assert total_bytes - 80 < json_bytes(loop_input) <= total_bytes
    return loop_input


def scheduled_parameters(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in events if e["type"] == "TaskScheduled"]


@pytest.mark.parametrize(("loop_input", "dies", "through"), [
    pytest.param(raw_context(140_000), {"attempts": {1, 2, 3}}, "AfterTrouble", id="failed-first-poll"),
    pytest.param(raw_context(INPUT_CEILING_BYTES), {}, "PollTask", id="input-at-the-ceiling"),
    # the check's first visit and retries (7 calls), then CheckInputAgain's (7, its Catch keeping the
    # error beside the held input), then a check that runs
    pytest.param(raw_context(INPUT_CEILING_BYTES), {"attempts": set(range(1, 15)), "action": "start"},
                 "CountInputOutage", id="input-at-the-ceiling-checked-after-an-outage"),
])
def test_a_large_context_keeps_every_state_within_256_kib(
    workflow: Workflow, sleeps: Sleeps, parameters_limit: None, loop_input: dict[str, Any], dies: dict[str, Any],
    through: str,
) -> None:
    """A context over its cap is carried as a marker; an input up to the ceiling never fails the execution
    with States.DataLimitExceeded (no event, the lock kept): not at CheckInput's wrapper, not on a
    failed poll, not while an outage holds it."""
    workflow.replay.script(IMAGE_TASK, workflow.replay.rehost(sample("wan2.6-t2i_succeeded")))
    if dies:  # past the retries: the Catch hands the state on (AfterTrouble, or HoldInput and the wait)
        workflow.lambdas.wrap(workflow.stack.function_name,
                              polls_that_die("Sandbox.Timedout", "Task timed out after 900.00 seconds", **dies))

    execution = workflow.run(loop_input)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert through in workflow.visited(execution["executionArn"])
    assert only_event(workflow)["context"]["_truncated"] is True
    events = history(workflow, execution["executionArn"])
    too_large = {where: size for where, size in payload_sizes(events) if size > STATE_PAYLOAD_BYTES}
    assert too_large == {}
    # and in a deployment, whose function's ARN, defaults and start time may be longer than here
    check = scheduled_parameters(events)[0]
    assert check["Payload"]["input"] == loop_input
    longest = {"FunctionName": LONGEST_FUNCTION_ARN, "Payload": {
        **check["Payload"], "started_at": "2026-12-09T09:18:18.123Z",
        "defaults": {"timeout_seconds": 86_400, "poll_interval_seconds": 3_600},  # the template's maxima
    }}
    assert json_bytes(longest) <= STATE_PAYLOAD_BYTES


def test_an_input_too_large_to_check_fails_as_invalid_input_and_takes_no_lock(
    workflow: Workflow, sleeps: Sleeps, parameters_limit: None
) -> None:
    """An input StartExecution takes (up to 256 KiB) that CheckInput's wrapper pushes over the limit of a
    task's parameters: States.DataLimitExceeded, which CheckInput catches by name (States.ALL would not)
    and refuses as an invalid input is, before the function runs: no lock, so a smaller start is relayed."""
    loop_input = raw_context(STATE_PAYLOAD_BYTES)

    execution = workflow.run(loop_input)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "InvalidInput" and "too large" in execution["cause"]
    assert workflow.lambdas.invocations == []
    assert lock_items(workflow) == []
    assert workflow.replay.requests == []
