"""Follows a Step Functions execution of the poll workflow through its history: each poll as it
happens (status, next wait), each failed invocation about to be retried, and how it ended.

Works the same against moto and a deployed stack: it reads only `GetExecutionHistory`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: the states whose output is the loop state the relay answered
POLL_STATES = ("PollTask", "AfterTrouble")


@dataclass(frozen=True)
class PollSeen:
    """One answer of the poll function, or one failed invocation of it."""

    task_id: str
    polls: int
    status: str | None
    wait_seconds: int | None
    done: bool
    #: the error name of a failed invocation (retried or caught by the workflow); None for an answer
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How an execution ended."""

    execution_arn: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    output: dict[str, Any] | None
    error: str | None = None
    cause: str | None = None

    @property
    def event(self) -> dict[str, Any] | None:
        """The completion event's detail the relay published, as the loop state carries it."""
        event = (self.output or {}).get("event")
        return event if isinstance(event, dict) else None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events
        kwargs["nextToken"] = token


def polls_in(events: list[dict[str, Any]], task_id: str) -> list[tuple[int, PollSeen]]:
    """The polls and failed invocations in history events, with their event ids."""
    seen: list[tuple[int, PollSeen]] = []
    for event in events:
        kind = event.get("type")
        if kind == "TaskStateExited" and event.get("stateExitedEventDetails", {}).get("name") in POLL_STATES:
            state = _json(event["stateExitedEventDetails"].get("output"))
            if isinstance(state, dict):
                seen.append((event["id"], PollSeen(
                    task_id=str(state.get("task_id", task_id)),
                    polls=int(state.get("polls") or 0),
                    status=state.get("status"),
                    wait_seconds=state.get("wait_seconds"),
                    done=bool(state.get("done")),
                )))
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut"):
            details = event.get("taskFailedEventDetails") or event.get("lambdaFunctionFailedEventDetails") \
                or event.get("taskTimedOutEventDetails") or {}
            if details.get("resourceType", "lambda") == "lambda":
                seen.append((event["id"], PollSeen(
                    task_id=task_id, polls=0, status=None, wait_seconds=None, done=False,
                    error=str(details.get("error") or "States.TaskFailed"),
                )))
    return seen


def follow_execution(
    sfn: Any,
    execution_arn: str,
    *,
    task_id: str,
    on_poll: Callable[[PollSeen], None] = lambda seen: None,
    every: float = 0.25,
    slowest: float = 5.0,
    timeout: float | None = None,
) -> Outcome:
    """Reads the history until the execution ends, calling `on_poll` once for each poll, in order.

    Checks every `every` seconds, backing off to `slowest` while nothing happens (a real task can
    wait minutes between polls); `timeout` (seconds) raises TimeoutError.
    """
    reported: set[int] = set()
    started = time.monotonic()
    pause = every
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        news = [(i, s) for i, s in polls_in(_history(sfn, execution_arn), task_id) if i not in reported]
        for event_id, seen in news:
            reported.add(event_id)
            on_poll(seen)
        status = description["status"]
        if status != "RUNNING":
            output = _json(description.get("output"))
            return Outcome(
                execution_arn=execution_arn,
                status=status,
                output=output if isinstance(output, dict) else None,
                error=description.get("error"),
                cause=description.get("cause"),
            )
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"execution {execution_arn} still running after {timeout:.0f} s")
        pause = every if news else min(slowest, pause * 1.5)
        time.sleep(pause)
