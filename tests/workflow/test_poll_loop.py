"""The wait loop as deployed: statemachine/poll_task.asl.json executed by moto with the real handler,
the resources and substitutions taken from template.yaml, DashScope replayed on loopback.

Wait states and retry back-offs are recorded, not slept (see conftest.py), so each test asserts the
waits the workflow asked for.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from wan_relay.models import (
    DEFAULT_EVENT_SOURCE,
    DEFAULT_SUBMIT_SOURCE,
    DETAIL_TYPE_COMPLETED,
    DETAIL_TYPE_SUBMITTED,
)
from wan_relay.policy import next_wait
from wan_relay.relay import ITEM_ATTEMPTS
from wan_relay_local.replay import Media, Reply
from wan_relay_local.stack import Template

from tests.conftest import sample

from .conftest import Sleeps, Workflow, polls_that_die

SOME_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf"
IMAGE_TASK = "f470bbfd-d955-4165-935b-d35b8e2a91c0"  # the task id of events/dashscope/wan2.6-t2i_succeeded.json


def china_time(seconds_ago: float) -> str:
    """A DashScope timestamp (China time, no zone) `seconds_ago` before now."""
    moment = datetime.now(UTC) + timedelta(hours=8) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def unfinished(name: str, task_id: str, *, submitted_seconds_ago: float = 30) -> dict[str, Any]:
    """A PENDING or RUNNING answer for `task_id`, submitted `submitted_seconds_ago`."""
    answer = copy.deepcopy(sample(name))
    answer["output"]["task_id"] = task_id
    answer["output"]["submit_time"] = china_time(submitted_seconds_ago)
    answer["output"].pop("scheduled_time", None)
    return answer


def succeeded_image(workflow: Workflow) -> dict[str, Any]:
    return workflow.replay.rehost(sample("wan2.6-t2i_succeeded"))


SERVICE_UNAVAILABLE = Reply(
    {"code": "ModelUnavailable", "message": "Model is unavailable, please try again later.", "request_id": "r-503"},
    status=503,
)


def only_event(workflow: Workflow) -> dict[str, Any]:
    events = workflow.completed_events()
    assert len(events) == 1, f"expected exactly one completion event, got {len(events)}"
    assert events[0]["source"] == DEFAULT_EVENT_SOURCE
    assert events[0]["detail-type"] == DETAIL_TYPE_COMPLETED
    return events[0]["detail"]


def test_pending_then_success_waits_as_the_policy_asks_and_relays_once(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(
        IMAGE_TASK,
        unfinished("pending", IMAGE_TASK),
        unfinished("running", IMAGE_TASK),
        succeeded_image(workflow),
    )

    execution = workflow.run({"task_id": IMAGE_TASK, "kind": "image", "model": "wan2.6-t2i", "context": {"sku": "A-1"}})

    assert execution["status"] == "SUCCEEDED"
    assert workflow.replay.polls(IMAGE_TASK) == 3
    # submitted 30 s ago: past an image's earliest finish, so the documented 5 s interval, twice
    assert sleeps.waits == [next_wait(kind="image", age_seconds=30)] * 2 == [5, 5]
    assert sleeps.waits == [r["wait_seconds"] for r in workflow.invocations() if not r["done"]]
    assert sleeps.retries == []
    detail = only_event(workflow)
    assert detail["status"] == "SUCCEEDED"
    assert detail["context"] == {"sku": "A-1"}
    assert detail["polls"] == 3
    (media,) = detail["media"]
    stored = workflow.objects()
    assert list(stored) == [media["key"]]
    assert media["key"].startswith(workflow.stack.media_prefix + IMAGE_TASK)
    assert hashlib.sha256(stored[media["key"]]).hexdigest() == media["sha256"]
    output = json.loads(execution["output"])
    assert output["done"] is True and output["event"]["event_id"] == detail["event_id"]


def test_provider_failure_emits_one_failed_event_and_stores_nothing(workflow: Workflow, sleeps: Sleeps) -> None:
    failed = sample("failed_output_code")
    task_id = failed["output"]["task_id"]
    workflow.replay.script(task_id, unfinished("running", task_id), failed)

    execution = workflow.run({"task_id": task_id})

    assert execution["status"] == "SUCCEEDED"
    assert "ReportFailure" not in workflow.visited(execution["executionArn"])
    detail = only_event(workflow)
    assert detail["status"] == "FAILED"
    assert detail["error"]["code"] == "DataInspectionFailed"
    assert detail["error"]["category"] == "provider"
    assert detail["media"] == []
    assert workflow.objects() == {}
    assert len(sleeps.waits) == 1


def test_a_dashscope_outage_is_waited_out_with_jittered_backoff_then_relayed(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    workflow.replay.script(IMAGE_TASK, SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert workflow.replay.polls(IMAGE_TASK) == 3
    answers = workflow.invocations()
    assert [(a["done"], a["troubles"]) for a in answers] == [(False, 1), (False, 2), (True, 2)]
    assert answers[1]["last_error"]["code"] == "ModelUnavailable"
    # the relay's back-off, in the workflow's Wait state: full jitter under 2 s, then under 4 s
    assert len(sleeps.waits) == 2 and 1 <= sleeps.waits[0] <= 2 and 1 <= sleeps.waits[1] <= 4
    assert sleeps.retries == []  # no Lambda retry: the poll itself answered
    assert "AfterTrouble" not in workflow.visited(execution["executionArn"])
    assert only_event(workflow)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("error_name", ["Lambda.Unknown", "Sandbox.Timedout", "Runtime.ExitError"])
def test_a_poll_whose_lambda_dies_is_retried_and_the_task_relayed_once(
    workflow: Workflow, sleeps: Sleeps, error_name: str
) -> None:
    """A function timeout or out-of-memory: Lambda reports no error of the relay's, only that it died."""
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die(error_name, "Task timed out after 900.00 seconds", attempts={1}))
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert [i.get("error") for i in workflow.polls()] == [error_name, None]
    assert len(sleeps.retries) == 1
    assert only_event(workflow)["status"] == "SUCCEEDED"
    assert len(workflow.objects()) == 1


def test_an_outage_longer_than_the_budget_ends_timed_out_with_the_last_error(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    workflow.replay.script(IMAGE_TASK, Reply(SERVICE_UNAVAILABLE.body, status=503, delay=0.6))

    # a budget of a few answers' time: on a loaded machine one slow poll and the workflow's own steps
    # could spend a budget of 1 s before a second poll
    execution = workflow.run({"task_id": IMAGE_TASK, "timeout_seconds": 3})

    assert execution["status"] == "SUCCEEDED"
    assert "AfterTrouble" not in workflow.visited(execution["executionArn"])
    detail = only_event(workflow)
    # not FAILED: DashScope never said the task failed; the loop waited until its budget was spent
    assert detail["status"] == "TIMED_OUT"
    assert detail["error"]["code"] == "ModelUnavailable" and "503" in detail["error"]["message"]
    assert detail["error"]["retryable"] is True
    assert detail["polls"] == workflow.replay.polls(IMAGE_TASK) >= 2
    assert workflow.objects() == {}


def test_a_function_that_keeps_failing_is_waited_out_within_the_budget_then_relayed(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    """Lambda throttled or crashing past the quick retries: the Catch goes to AfterTrouble, which backs
    off and polls again, instead of ending a task that may run for hours."""
    # PollTask's try and 3 retries, then AfterTrouble's first try
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die("Lambda.TooManyRequestsException", "Rate Exceeded.", attempts=range(1, 6)))
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    visited = workflow.visited(execution["executionArn"])
    assert visited.count("AfterTrouble") == 1 and visited.count("WaitForTask") == 1
    after = [i["result"] for i in workflow.polls() if i["event"].get("action") == "after_trouble" and "result" in i]
    assert after[0]["last_error"]["code"] == "Lambda.TooManyRequestsException" and not after[0]["done"]
    assert only_event(workflow)["status"] == "SUCCEEDED"
    assert len(workflow.objects()) == 1


def test_a_function_throttled_past_every_retry_of_after_trouble_is_waited_out_and_counted(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    """Lambda throttled for minutes (a concurrency limit reached, a new account's low quota): PollTask's
    try and 3 retries, then AfterTrouble's try and 5 retries all fail. The execution does not fail with
    the task's lock held and no event: it waits five minutes (OutageWait) and AfterTrouble tries again;
    the pass counts against the poll cap as one."""
    # PollTask's 4 attempts, AfterTrouble's 6, then the first of its next pass's
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die("Lambda.TooManyRequestsException", "Rate Exceeded.", attempts=range(1, 12)))
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    visited = workflow.visited(execution["executionArn"])
    assert visited.count("OutageWait") == 1 and visited.count("AfterTrouble") == 2
    assert 300 in sleeps.waits
    event = only_event(workflow)
    # three passes: PollTask and AfterTrouble failed (counted by the workflow), AfterTrouble after the
    # outage (its answer a wait), the poll that found the task ended
    assert event["status"] == "SUCCEEDED" and event["polls"] == 3
    assert len(workflow.objects()) == 1


def test_a_function_throttled_past_every_retry_of_the_input_check_is_waited_out_and_the_task_relayed(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    """A burst of starts in an account of low concurrency: the input's check throttled past its retries
    (its try and 6 retries), and again after the first wait. Nothing is written yet; the execution
    does not fail (a task started by a `Wan Task Submitted` event would be lost): it holds the input,
    waits five minutes and checks it again, and the task is relayed with its one event."""
    workflow.lambdas.wrap(workflow.stack.function_name,
                          polls_that_die("Lambda.TooManyRequestsException", "Rate Exceeded.", attempts=range(1, 15),
                                         action="start"))
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK, "context": {"job": "j-1"}})

    assert execution["status"] == "SUCCEEDED"
    visited = workflow.visited(execution["executionArn"])
    assert visited[:7] == ["CheckInput", "HoldInput", "InputOutageWait", "CheckInputAgain", "CountInputOutage",
                           "InputOutageCap", "InputOutageWait"]
    assert visited.count("CheckInputAgain") == 2 and sleeps.waits[:2] == [300, 300]
    event = only_event(workflow)
    assert event["status"] == "SUCCEEDED" and event["context"] == {"job": "j-1"}  # the input as the caller gave it
    assert len(workflow.objects()) == 1
    # the task's budget counts from the execution's start, the outage's waits spent from it: it ends
    # inside the execution's own timeout however long the function could not run
    started = workflow.sfn.describe_execution(executionArn=execution["executionArn"])["startDate"]
    first_poll = workflow.polls()[0]["event"]
    assert first_poll["started_at"] == started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_exhausted_poll_budget_ends_with_one_timed_out_event(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK))

    execution = workflow.run({"task_id": IMAGE_TASK, "timeout_seconds": 1})

    assert execution["status"] == "SUCCEEDED"
    detail = only_event(workflow)
    assert detail["status"] == "TIMED_OUT"
    assert detail["error"]["code"] == "PollBudgetExhausted"
    # every wait is capped by the budget left (at most 1 s here), and each wait led to one more poll
    assert sleeps.waits and set(sleeps.waits) == {1}
    assert detail["polls"] == len(sleeps.waits) + 1 == workflow.replay.polls(IMAGE_TASK)


@pytest.mark.parametrize("stack_parameters", [{"PollIntervalSeconds": "7", "PollBudgetSeconds": "3600"}])
def test_stack_poll_defaults_apply_unless_the_input_sets_its_own(workflow: Workflow, sleeps: Sleeps) -> None:
    other = "b2c3d4e5-0000-4c5d-8e9f-111122223333"
    for task_id in (IMAGE_TASK, other):
        succeeded = succeeded_image(workflow)
        succeeded["output"]["task_id"] = task_id
        workflow.replay.script(task_id, unfinished("pending", task_id), succeeded)

    workflow.run({"task_id": IMAGE_TASK})
    workflow.run({"task_id": other, "poll_interval_seconds": 3})

    assert sleeps.waits == [7, 3]
    first_poll = [i["event"] for i in workflow.polls() if not i["event"].get("polls")]
    assert [(e["timeout_seconds"], e["poll_interval_seconds"]) for e in first_poll] == [(3600, 7), (3600, 3)]


def submitted_event(loop_input: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": DETAIL_TYPE_SUBMITTED,
        "source": DEFAULT_SUBMIT_SOURCE,
        "account": "123456789012",
        "time": "2026-01-09T09:18:18Z",
        "region": "us-east-1",
        "resources": [],
        "detail": loop_input,
        **envelope,
    }


def test_a_wan_task_submitted_event_starts_the_loop_with_its_detail(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK), succeeded_image(workflow))
    loop_input = {"task_id": IMAGE_TASK, "kind": "image", "context": {"pipeline": "catalogue-hero"}}
    event = submitted_event(loop_input)

    # the event as a producer puts it on the bus: accepted (the submit rule exists, without a target here)
    put = workflow.events.put_events(
        Entries=[{"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(loop_input),
                  "EventBusName": workflow.stack.bus_name}]
    )
    assert put["FailedEntryCount"] == 0
    assert workflow.completed_events() == []  # the completion rule does not take submit events
    # what the rule's target does with it, from the template's pattern and InputPath
    assert workflow.stack.submission_input(event) == loop_input
    execution = workflow.finish(workflow.stack.start_from_event(event))

    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["input"]) == loop_input
    detail = only_event(workflow)
    assert detail["task_id"] == IMAGE_TASK
    assert detail["context"] == {"pipeline": "catalogue-hero"}


@pytest.mark.parametrize(
    "event",
    [
        submitted_event({"task_id": IMAGE_TASK}, **{"detail-type": DETAIL_TYPE_COMPLETED}),
        submitted_event({"task_id": IMAGE_TASK}, source="someone.else"),
        # the completion events' source cannot start polls: who may announce results may not submit
        submitted_event({"task_id": IMAGE_TASK}, source=DEFAULT_EVENT_SOURCE),
        submitted_event({"context": {"no": "task id"}}),
    ],
    ids=["completion-event", "other-source", "completion-source", "no-task-id"],
)
def test_other_events_start_nothing(workflow: Workflow, event: dict[str, Any]) -> None:
    assert workflow.stack.submission_input(event) is None
    assert workflow.stack.start_from_event(event) is None


def test_a_second_start_for_the_same_task_is_refused(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK), succeeded_image(workflow))
    first = workflow.run({"task_id": IMAGE_TASK})
    assert first["status"] == "SUCCEEDED"
    assert only_event(workflow)["status"] == "SUCCEEDED"
    polls = workflow.replay.polls(IMAGE_TASK)

    # a caller's StartExecution: the execution name is the task id
    with pytest.raises(ClientError) as refused:
        workflow.stack.start({"task_id": IMAGE_TASK})
    assert refused.value.response["Error"]["Code"] == "ExecutionAlreadyExists"

    # a duplicate `Wan Task Submitted` delivery: EventBridge names the execution itself
    duplicate = workflow.finish(workflow.stack.start_from_event(submitted_event({"task_id": IMAGE_TASK})))
    assert duplicate["status"] == "SUCCEEDED"
    assert workflow.visited(duplicate["executionArn"]) == [
        "CheckInput", "ClaimTask", "InspectClaim", "ClaimVerdict", "AlreadyClaimed"]
    assert workflow.replay.polls(IMAGE_TASK) == polls
    assert workflow.completed_events() == []
    lock = workflow.dynamodb.get_item(
        TableName=workflow.stack.idempotency_table, Key={"id": {"S": f"lock#{IMAGE_TASK}"}}
    )["Item"]
    assert lock["execution"]["S"] == first["executionArn"]
    # the task is over: the lock expires with the task's idempotency records, about 48 h from now
    expires_in = int(lock["expiration"]["N"]) - datetime.now(UTC).timestamp()
    assert 47 * 3600 < expires_in <= 48 * 3600


def test_an_operator_error_fails_the_execution_by_name_without_an_event(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(
        IMAGE_TASK,
        Reply({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "r-401"}, status=401),
    )

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "OperatorError"
    assert "InvalidApiKey" in execution["cause"] or "401" in execution["cause"]
    assert "AfterTrouble" not in workflow.visited(execution["executionArn"])
    assert workflow.replay.polls(IMAGE_TASK) == 1  # not retried: retrying a bad key cannot help
    assert sleeps.retries == []
    assert workflow.completed_events() == []


def test_media_that_keeps_failing_to_transfer_is_announced_as_unavailable(workflow: Workflow, sleeps: Sleeps) -> None:
    answer = sample("wan2.6-t2i_succeeded")
    url_path = "/1d/7a/20260109/f470bbfd.png"
    assert url_path in json.dumps(answer)
    workflow.replay.script(
        IMAGE_TASK, workflow.replay.rehost(answer, media={url_path: Media(b"never sent", fault="reset")})
    )

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    visited = workflow.visited(execution["executionArn"])
    assert "AfterTrouble" not in visited and visited[-3:] == ["EmitCompletion", "ExpireLock", "Relayed"]
    # tried within the one poll, a few seconds apart (ITEM_ATTEMPTS), not the task's budget
    assert [i.get("error") for i in workflow.polls()] == [None]
    assert len(sleeps.pauses) == ITEM_ATTEMPTS - 1 and sleeps.retries == []
    detail = only_event(workflow)
    assert detail["status"] == "MEDIA_UNAVAILABLE"
    assert detail["error"]["category"] == "media" and detail["failures"][0]["index"] == 0
    assert detail["provider_status"] == "SUCCEEDED" and detail["request_id"]  # what was known is kept
    assert detail["timing"]["submitted_at"] and detail["polls"] == 1
    assert workflow.objects() == {}


@pytest.mark.parametrize("stack_parameters", [{
    "CreateEventBus": "true",
    "SubmitterPrincipalArns": "arn:aws:iam::123456789012:role/pipeline,arn:aws:iam::210987654321:role/partner",
}])
def test_a_stack_with_its_own_bus_takes_submissions_and_announces_results_there(
    workflow: Workflow, sleeps: Sleeps, stack_parameters: dict[str, str]
) -> None:
    stack = workflow.stack
    assert stack.bus_name == "wan-relay-events"
    rule = workflow.events.describe_rule(Name=stack.submit_rule_name, EventBusName=stack.bus_name)
    assert json.loads(rule["EventPattern"])["source"] == [DEFAULT_SUBMIT_SOURCE]
    # the bus policy names who may put `Wan Task Submitted`, and denies that detail-type to everybody else
    template = Template(parameters={**stack_parameters, "DashScopeApiKeySecretArn": SOME_SECRET})
    template.refs["RelayEventBus"] = stack.bus_name
    template.attributes[("RelayEventBus", "Arn")] = f"arn:aws:events:us-east-1:123456789012:event-bus/{stack.bus_name}"
    allow, deny = (template.resolve(template.properties(name)["Statement"])
                   for name in ("RelayEventBusPolicy", "RelayEventBusDenyOthers"))
    assert allow["Principal"]["AWS"] == deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/pipeline", "arn:aws:iam::210987654321:role/partner"]
    assert allow["Condition"]["StringEquals"]["events:detail-type"] == [DETAIL_TYPE_SUBMITTED]
    assert deny["Effect"] == "Deny" and deny["Condition"]["StringEquals"]["events:detail-type"] == [
        DETAIL_TYPE_SUBMITTED]
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.finish(stack.start_from_event(submitted_event({"task_id": IMAGE_TASK})))

    assert execution["status"] == "SUCCEEDED"
    assert only_event(workflow)["status"] == "SUCCEEDED"  # delivered by a rule on the stack's bus


def test_media_stored_before_the_function_kept_dying_is_in_the_timed_out_event(
    workflow: Workflow, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second image kills the function every time (out of memory, say): the budget runs out in
    trouble, and the event still names the first image, which is in S3."""
    from wan_relay.ingest import MediaStreamer

    died = type("Runtime.OutOfMemory", (Exception,), {})
    store = MediaStreamer.store

    def dies_on_the_second_image(self, task_id, ref, deadline=None):
        if ref.index == 1:
            raise died("Runtime exited with error: signal: killed")
        return store(self, task_id, ref, deadline)

    monkeypatch.setattr(MediaStreamer, "store", dies_on_the_second_image)
    answer = workflow.replay.rehost(sample("wan2.6-image_interleaved_succeeded"))
    task_id = answer["output"]["task_id"]
    workflow.replay.script(task_id, answer)

    execution = workflow.run({"task_id": task_id, "timeout_seconds": 2})

    assert execution["status"] == "SUCCEEDED"
    assert "AfterTrouble" in workflow.visited(execution["executionArn"])
    detail = only_event(workflow)
    assert detail["status"] == "TIMED_OUT" and detail["error"]["code"] == "Runtime.OutOfMemory"
    stored = workflow.objects()
    assert [m["key"] for m in detail["media"]] == list(stored) == [f"wan/{task_id}/0.png"]
    (media,) = detail["media"]
    assert media["sha256"] == hashlib.sha256(stored[media["key"]]).hexdigest()
    assert media["index"] == 0 and media["type"] == "image" and media["size_bytes"] == len(stored[media["key"]])
