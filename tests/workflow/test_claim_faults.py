"""InspectClaim when Step Functions does not answer DescribeExecution this time (a throttle, a 5xx, a
connection that broke), through the template's state machine on moto: the inspection is retried, and a
duplicate start of a task whose holder relayed it ends quietly, neither failed under a name the workflow
does not know nor reported as blocked by a stale claim."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
import wan_relay.runtime as runtime

from tests.faults.aws_faults import Injected, Unreachable

from .conftest import Sleeps, Workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image
from .test_task_lock import emitted_metrics, lock_of

#: the SDK's attempts at one call, as runtime.default_client configures them (the first and 5 retries)
SDK_ATTEMPTS = 6


@pytest.fixture(autouse=True)
def _no_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's retry delays are real sleeps; the retries themselves still happen."""
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)


def throttled(client: Any) -> Injected:
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return Injected(client, "DescribeExecution", 400, body, times=99, content_type="application/x-amz-json-1.0")


def unavailable(client: Any) -> Injected:
    body = json.dumps({"__type": "ServiceUnavailable", "message": "Service unavailable"}).encode()
    return Injected(client, "DescribeExecution", 503, body, times=99, content_type="application/x-amz-json-1.0")


def unreachable(client: Any) -> Unreachable:
    return Unreachable(client, "DescribeExecution")


@contextmanager
def first_inspection_faulted(fault: Callable[[Any], Any]) -> Iterator[list[Any]]:
    """The Step Functions client of the first claim inspection gets `fault` (at every SDK attempt); the
    inspections after it (each makes its client) reach Step Functions. Yields the faults made."""
    made: list[Any] = []
    real = runtime.default_client

    def default_client(service: str) -> Any:
        client = real(service)
        if service == "stepfunctions" and not made:
            made.append(fault(client))
        return client

    with mock.patch.object(runtime, "default_client", default_client):
        yield made


@pytest.mark.parametrize("fault", [throttled, unavailable, unreachable])
def test_a_duplicate_start_whose_inspection_fails_once_is_retried_and_ends_quietly(
    workflow: Workflow, sleeps: Sleeps, capsys: pytest.CaptureFixture[str], fault: Callable[[Any], Any]
) -> None:
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))
    holder = workflow.run({"task_id": IMAGE_TASK})
    assert holder["status"] == "SUCCEEDED" and only_event(workflow)
    capsys.readouterr()

    with first_inspection_faulted(fault) as faults:
        duplicate = workflow.run({"task_id": IMAGE_TASK}, name=f"{IMAGE_TASK}-again")

    assert faults and faults[0].calls == SDK_ATTEMPTS  # the fault did happen, the SDK's retries too
    assert duplicate["status"] == "SUCCEEDED", duplicate.get("error")
    visited = workflow.visited(duplicate["executionArn"])
    assert visited[-1] == "AlreadyClaimed" and visited.count("InspectClaim") == 1  # retried within the state
    assert workflow.actions().count("claimed") == 2 and len(sleeps.retries) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics.get("TasksAlreadyClaimed") == 1 and "TasksBlockedByStaleClaim" not in metrics
    assert workflow.completed_events() == []
    assert lock_of(workflow)["execution"]["S"] == holder["executionArn"]
