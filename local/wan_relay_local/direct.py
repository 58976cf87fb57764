"""`wan-relay run --aws`: the wait loop run in this process against an AWS account, without a stack.

It does what the workflow does around the handler: checks the input first, as CheckInput does, waits
as the relay's policy says between polls, retries a failed poll as the state machine's Retry does (the
same retriers, read from `statemachine/poll_task.asl.json`), and hands errors it catches back to the
relay, which backs off within the task's budget or decides the end, as AfterTrouble does. Its caller
then puts the event, as EmitCompletion does (here without Step Functions' exactly-once state
execution: a crash right after the put would send it again)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from wan_relay.errors import WanRelayError

from .follow import PollSeen
from .lambda_bridge import ROOT

ASL = ROOT / "statemachine" / "poll_task.asl.json"

#: used when the workflow definition is not beside the package (an install without the sources)
_FALLBACK_RETRY: list[dict[str, Any]] = [
    {"ErrorEquals": ["TransientError", "MediaTransferError", "ProtocolError"], "IntervalSeconds": 5,
     "BackoffRate": 2, "MaxAttempts": 3, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"},
]
_FALLBACK_CATCH = ["TransientError", "MediaTransferError", "ProtocolError"]


class WorkflowPolicy:
    """The Retry and Catch of the workflow's poll state."""

    def __init__(self, retriers: list[dict[str, Any]], caught: list[str]) -> None:
        self.retriers = retriers
        self.caught = caught

    @classmethod
    def from_asl(cls, state: str = "PollTask") -> WorkflowPolicy:
        try:
            definition = json.loads(ASL.read_text())
        except (OSError, ValueError):
            return cls(_FALLBACK_RETRY, _FALLBACK_CATCH)
        poll = definition["States"][state]
        caught = [name for catcher in poll.get("Catch", []) for name in catcher["ErrorEquals"]]
        return cls(poll.get("Retry", []), caught)

    def retry_delay(self, error: str, attempts: dict[int, int], rng: random.Random) -> float | None:
        """Seconds before retrying after `error`, or None when its retrier is used up (or none matches).
        `attempts` counts the retries per retrier since the state was entered."""
        for index, retrier in enumerate(self.retriers):
            names = retrier["ErrorEquals"]
            if error not in names and "States.ALL" not in names:
                continue
            done = attempts.get(index, 0)
            if done >= int(retrier.get("MaxAttempts", 3)):
                return None
            attempts[index] = done + 1
            delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** done
            delay = min(delay, float(retrier.get("MaxDelaySeconds", delay)))
            return rng.uniform(0, delay) if retrier.get("JitterStrategy") == "FULL" else delay
        return None

    def catches(self, error: str) -> bool:
        return error in self.caught or "States.ALL" in self.caught


def run_loop(
    relay: Any,
    loop_input: dict[str, Any],
    *,
    on_poll: Callable[[PollSeen], None] = lambda seen: None,
    policy: WorkflowPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Polls until the relay answers `done`; returns the final loop state (its `event` is the detail).

    An error the workflow neither retries nor catches (OperatorError, ConfigurationError,
    InvalidInput...) is raised, as it would fail the execution.
    """
    policy = policy or WorkflowPolicy.from_asl()
    rng = rng or random.Random()  # noqa: S311 - jitter
    state = relay.handle({"action": "start", "input": dict(loop_input)})  # as the workflow's CheckInput
    task_id = str(state.get("task_id"))
    attempts: dict[int, int] = {}
    while True:
        try:
            state = relay.handle(state)
        except WanRelayError as exc:
            error = type(exc).__name__
            on_poll(PollSeen(task_id=task_id, polls=0, status=None, wait_seconds=None, done=False, error=error))
            delay = policy.retry_delay(error, attempts, rng)
            if delay is not None:
                sleep(delay)
                continue
            if not policy.catches(error):
                raise
            cause = json.dumps({"errorType": error, "errorMessage": exc.message})
            caught = {**state, "error": {"Error": error, "Cause": cause}}
            state = relay.handle({"action": "after_trouble", "state": caught})
        attempts = {}
        on_poll(PollSeen(
            task_id=task_id, polls=int(state.get("polls") or 0), status=state.get("status"),
            wait_seconds=state.get("wait_seconds"), done=bool(state.get("done")),
        ))
        if state.get("done"):
            return state
        sleep(float(state.get("wait_seconds") or 1))
