"""The task lock as AWS runs it, through the template's state machine on moto: the caller's input is
checked before anything is written, every lock carries its expiry from the moment it is written, an
expired lock (or this execution's own) is free to take, and a start that finds the lock taken says
whether that is a plain duplicate or a task blocked by a stale claim."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models import DynamoDBBackend
from wan_relay.relay import LOCK_MARGIN_SECONDS
from wan_relay_local.replay import Reply

from .conftest import Sleeps, Workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image

UNAUTHORIZED = Reply({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "r"}, status=401)


def lock_of(workflow: Workflow, task_id: str = IMAGE_TASK) -> dict[str, Any] | None:
    return workflow.dynamodb.get_item(
        TableName=workflow.stack.idempotency_table, Key={"id": {"S": f"lock#{task_id}"}}, ConsistentRead=True
    ).get("Item")


def table_items(workflow: Workflow) -> list[dict[str, Any]]:
    return workflow.dynamodb.scan(TableName=workflow.stack.idempotency_table)["Items"]


def emitted_metrics(output: str) -> dict[str, float]:
    """The Powertools metrics (EMF lines) the function printed, summed by name."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            values = record[metric["Name"]]
            found[metric["Name"]] = found.get(metric["Name"], 0) + sum(values if isinstance(values, list) else [values])
    return found


@pytest.mark.parametrize("loop_input", [
    {"task_id": IMAGE_TASK, "error": {"Error": "MediaTransferError", "Cause": "{}"}},  # a forged fate
    {"task_id": IMAGE_TASK, "polls": 3, "started_at": "2026-01-01T00:00:00Z"},  # relay state, not input
    {"task_id": IMAGE_TASK, "done": True, "event": {"status": "SUCCEEDED"}},
    {"task_id": IMAGE_TASK, "lock": {"now": 0, "expires_at": 1}},
    {"task_id": IMAGE_TASK, "timeout_seconds": "15"},  # a number in quotes
], ids=["error", "polls", "done-event", "lock", "quoted-number"])
def test_a_refused_input_writes_nothing_and_a_corrected_start_is_relayed(
    workflow: Workflow, sleeps: Sleeps, loop_input: dict[str, Any]
) -> None:
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    refused = workflow.run(loop_input, name=f"{IMAGE_TASK}-refused")

    assert refused["status"] == "FAILED" and refused["error"] == "InvalidInput"
    field = next(k for k in loop_input if k != "task_id")
    assert field in refused["cause"]  # the message names what is wrong
    assert workflow.visited(refused["executionArn"]) == ["CheckInput"]
    assert table_items(workflow) == [] and workflow.replay.polls(IMAGE_TASK) == 0
    assert workflow.completed_events() == []

    corrected = workflow.run({"task_id": IMAGE_TASK})

    assert corrected["status"] == "SUCCEEDED"
    assert only_event(workflow)["status"] == "SUCCEEDED"
    assert lock_of(workflow)["execution"]["S"] == corrected["executionArn"]


def test_a_task_id_too_long_for_the_lock_key_fails_as_invalid_input_before_anything_is_written(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    # a DynamoDB partition key is at most 2,048 bytes: ClaimTask would fail with a ValidationException
    execution = workflow.run({"task_id": "a" * 10_000}, name="ten-thousand")

    assert execution["status"] == "FAILED" and execution["error"] == "InvalidInput"
    assert "task_id" in execution["cause"] and len(execution["cause"]) < 1000
    assert table_items(workflow) == []


def test_every_lock_carries_its_expiry_from_the_moment_it_is_written(workflow: Workflow, sleeps: Sleeps) -> None:
    workflow.replay.script(IMAGE_TASK, UNAUTHORIZED)

    execution = workflow.run({"task_id": IMAGE_TASK, "timeout_seconds": 3600})

    assert execution["status"] == "FAILED" and execution["error"] == "OperatorError"
    lock = lock_of(workflow)
    assert lock["execution"]["S"] == execution["executionArn"]
    # the failed execution blocks its task for its budget plus the margin at most, then TTL frees it
    expires_in = int(lock["expiration"]["N"]) - time.time()
    assert 3600 + LOCK_MARGIN_SECONDS - 60 < expires_in <= 3600 + LOCK_MARGIN_SECONDS


def test_an_expired_lock_is_free_to_take(workflow: Workflow, sleeps: Sleeps) -> None:
    # TTL deletes expired items lazily (within days): an expired lock may still be there
    workflow.dynamodb.put_item(TableName=workflow.stack.idempotency_table, Item={
        "id": {"S": f"lock#{IMAGE_TASK}"},
        "execution": {"S": "arn:aws:states:us-east-1:123456789012:execution:wan-relay-poll-task:long-gone"},
        "expiration": {"N": str(int(time.time()) - 60)},
    })
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert execution["status"] == "SUCCEEDED"
    assert "InspectClaim" not in workflow.visited(execution["executionArn"])
    assert only_event(workflow)["status"] == "SUCCEEDED"
    assert lock_of(workflow)["execution"]["S"] == execution["executionArn"]


@pytest.fixture
def claim_lands_then_fails() -> Iterator[list[str]]:
    """The first write of a lock lands, then DynamoDB answers 500 (as a timeout after success would)."""
    failed: list[str] = []
    original = DynamoDBBackend.put_item

    def put_item(backend: DynamoDBBackend, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any):
        result = original(backend, table_name, item_attrs, *args, **kwargs)
        key = item_attrs.get("id", {}).get("S", "")
        if key.startswith("lock#") and not failed:
            failed.append(key)
            error = JsonRESTError("InternalServerError", "Internal server error")
            error.code = 500
            raise error
        return result

    with mock.patch.object(DynamoDBBackend, "put_item", put_item):
        yield failed


def test_claim_tasks_retry_after_a_write_that_landed_is_not_already_claimed(
    workflow: Workflow, sleeps: Sleeps, claim_lands_then_fails: list[str]
) -> None:
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    execution = workflow.run({"task_id": IMAGE_TASK})

    assert claim_lands_then_fails == [f"lock#{IMAGE_TASK}"]  # the fault did happen
    assert execution["status"] == "SUCCEEDED"
    visited = workflow.visited(execution["executionArn"])
    assert visited.count("ClaimTask") == 1 and "InspectClaim" not in visited  # retried within the state
    assert len(sleeps.retries) == 1
    assert only_event(workflow)["status"] == "SUCCEEDED"


def test_a_duplicate_start_is_counted_and_ends_quietly(workflow: Workflow, sleeps: Sleeps, capsys) -> None:
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))
    first = workflow.run({"task_id": IMAGE_TASK})
    assert first["status"] == "SUCCEEDED" and only_event(workflow)
    capsys.readouterr()

    duplicate = workflow.run({"task_id": IMAGE_TASK}, name=f"{IMAGE_TASK}-again")

    assert duplicate["status"] == "SUCCEEDED"
    assert workflow.visited(duplicate["executionArn"])[-1] == "AlreadyClaimed"
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics.get("TasksAlreadyClaimed") == 1 and "TasksBlockedByStaleClaim" not in metrics
    assert workflow.completed_events() == []


def test_a_start_blocked_by_a_stale_claim_fails_by_name_and_is_counted_apart(
    workflow: Workflow, sleeps: Sleeps, capsys
) -> None:
    workflow.replay.script(IMAGE_TASK, UNAUTHORIZED, succeeded_image(workflow))
    holder = workflow.run({"task_id": IMAGE_TASK})
    assert holder["status"] == "FAILED"  # the operator error: its lock stays until it expires
    capsys.readouterr()

    blocked = workflow.run({"task_id": IMAGE_TASK}, name=f"{IMAGE_TASK}-blocked")

    assert blocked["status"] == "FAILED" and blocked["error"] == "TaskBlockedByStaleClaim"
    assert workflow.visited(blocked["executionArn"])[-1] == "ClaimBlocked"
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics.get("TasksBlockedByStaleClaim") == 1 and "TasksAlreadyClaimed" not in metrics
    assert workflow.replay.polls(IMAGE_TASK) == 1 and workflow.completed_events() == []
    assert lock_of(workflow)["execution"]["S"] == holder["executionArn"]  # the blocked start took nothing


def lock_as_0_1_0_wrote_it(workflow: Workflow, holder: str) -> None:
    """0.1.0's ClaimTask wrote the lock without `expiration` (its ExpireLock set one once the task was
    relayed): a holder that ended without relaying the task left a lock that never expires."""
    workflow.dynamodb.put_item(TableName=workflow.stack.idempotency_table,
                               Item={"id": {"S": f"lock#{IMAGE_TASK}"}, "execution": {"S": holder}})


def test_a_lock_without_expiry_whose_holder_failed_gets_the_expiry_a_lock_has_at_most(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    workflow.replay.script(IMAGE_TASK, UNAUTHORIZED, succeeded_image(workflow))
    holder = workflow.run({"task_id": IMAGE_TASK})
    assert holder["status"] == "FAILED"
    lock_as_0_1_0_wrote_it(workflow, holder["executionArn"])

    blocked = workflow.run({"task_id": IMAGE_TASK}, name=f"{IMAGE_TASK}-blocked")

    assert blocked["status"] == "FAILED" and blocked["error"] == "TaskBlockedByStaleClaim"
    lock = lock_of(workflow)
    assert lock["execution"]["S"] == holder["executionArn"]  # still the holder's: a redrive may come
    started = workflow.sfn.describe_execution(executionArn=holder["executionArn"])["startDate"]
    assert int(lock["expiration"]["N"]) == int(started.timestamp()) + 86_400 + LOCK_MARGIN_SECONDS


def test_a_lock_without_expiry_whose_holder_is_gone_expires_and_the_next_start_relays_the_task(
    workflow: Workflow, sleeps: Sleeps
) -> None:
    """A holder Step Functions no longer knows (executions are kept 90 days) relays nothing: its lock gets
    an expiry of now, and the start after the one that found it relays the task."""
    gone = workflow.stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":long-gone"
    lock_as_0_1_0_wrote_it(workflow, gone)
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    blocked = workflow.run({"task_id": IMAGE_TASK}, name=f"{IMAGE_TASK}-blocked")
    assert blocked["error"] == "TaskBlockedByStaleClaim"
    assert int(lock_of(workflow)["expiration"]["N"]) <= time.time()
    time.sleep(1.1)  # ClaimTask takes a lock that expired before its own second
    relayed = workflow.run({"task_id": IMAGE_TASK})

    assert relayed["status"] == "SUCCEEDED"
    assert only_event(workflow)["status"] == "SUCCEEDED"
    assert lock_of(workflow)["execution"]["S"] == relayed["executionArn"]
