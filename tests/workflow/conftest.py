"""The world of the workflow tests: the stack of template.yaml on moto with the state machine really
executed, the real handler running in-process, DashScope replayed on loopback, and every Wait state and
retry back-off recorded instead of slept."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
import wan_relay.relay as relay_module
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from wan_relay_local.lambda_bridge import InProcessLambdas
from wan_relay_local.replay import ReplayDashScope
from wan_relay_local.stack import EmbeddedStack, deploy_embedded_stack

from tests.conftest import API_KEY, drain_events

EXECUTION_DEADLINE_SECONDS = 20


@dataclass
class Sleeps:
    """The seconds the workflow asked to wait, in order: Wait states and retry back-offs, and the relay's
    pauses between tries of a media item."""

    waits: list[int] = field(default_factory=list)
    retries: list[float] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)  # the relay's own, between tries of a media item


@contextmanager
def recorded_sleeps() -> Iterator[Sleeps]:
    recorded = Sleeps()

    def wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
        recorded.waits.append(wait_seconds)

    # the retrier calls `time.sleep` through its module's `time`: replace that name only, not the
    # process-wide function the replay server and the tests themselves use
    fake_time = types.SimpleNamespace(sleep=recorded.retries.append, time=time.time, monotonic=time.monotonic)
    with (
        mock.patch.object(WaitFunction, "_wait_interval", wait_interval),
        mock.patch.object(retrier_decl, "time", fake_time),
        mock.patch.object(relay_module, "_pause", recorded.pauses.append),
    ):
        yield recorded


@pytest.fixture
def sleeps() -> Iterator[Sleeps]:
    with recorded_sleeps() as recorded:
        yield recorded


@dataclass
class Workflow:
    stack: EmbeddedStack
    lambdas: InProcessLambdas
    replay: ReplayDashScope

    def __post_init__(self) -> None:
        self.sfn = self.stack.client("stepfunctions")
        self.sqs = self.stack.client("sqs")
        self.s3 = self.stack.client("s3")
        self.events = self.stack.client("events")
        self.dynamodb = self.stack.client("dynamodb")

    def run(self, loop_input: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        """StartExecution (named after the task, as callers do) and wait for the execution to end."""
        return self.finish(self.stack.start(loop_input, name=name))

    def finish(self, execution_arn: str) -> dict[str, Any]:
        deadline = time.monotonic() + EXECUTION_DEADLINE_SECONDS
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                pytest.fail(f"execution {execution_arn} still RUNNING after {EXECUTION_DEADLINE_SECONDS} s")
            time.sleep(0.02)

    def visited(self, execution_arn: str) -> list[str]:
        """The names of the states the execution entered, in order."""
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]

    def completed_events(self) -> list[dict[str, Any]]:
        """Every completion event delivered so far, each checked against the published schema."""
        return drain_events(self.sqs, self.stack.events_queue_url)

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=self.stack.bucket).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=self.stack.bucket, Key=o["Key"])["Body"].read() for o in listing}

    def polls(self) -> list[dict[str, Any]]:
        """The function's invocations that were polls (not the input check or a claim inspection)."""
        return [i for i in self.lambdas.invocations if is_poll(i["event"])]

    def actions(self) -> list[str]:
        """The workflow's other calls of the function, in order: "start", "claimed"."""
        return [i["event"]["action"] for i in self.lambdas.invocations if not is_poll(i["event"])]

    def invocations(self, key: str = "result") -> list[dict[str, Any]]:
        return [i[key] for i in self.polls() if key in i]


def is_poll(event: Any) -> bool:
    """A call of the function that polls the task: PollTask's (the loop state itself) or AfterTrouble's."""
    return not isinstance(event, dict) or event.get("action") in (None, "after_trouble")


def polls_that_die(error_name: str, message: str, *, attempts: Collection[int],
                   action: str | None = None) -> Callable[[Any], Any]:
    """For `Workflow.lambdas.wrap`: the function's poll attempts numbered in `attempts` (1-based, counting
    PollTask's and AfterTrouble's calls, not the input check's or a claim inspection's; with `action`,
    the calls of that action instead, e.g. "start", the input's checks) die with `error_name`, the
    errorType Lambda reports (a timeout, a crash, a throttle): the exception's name."""
    died = type(error_name, (Exception,), {})

    def wrap(handler: Any) -> Any:
        calls = [0]

        def run(event: dict[str, Any], context: Any) -> Any:
            if (is_poll(event) if action is None else event.get("action") == action):
                calls[0] += 1
                if calls[0] in attempts:
                    raise died(message)
            return handler(event, context)

        return run

    return wrap


@pytest.fixture
def stack_parameters() -> dict[str, str]:
    """template.yaml parameter overrides; a test parametrizes this to deploy other settings."""
    return {}


@contextmanager
def deployed_workflow(replay: ReplayDashScope, parameters: dict[str, str] | None = None, *,
                      parks: bool = False) -> Iterator[Workflow]:
    """The stack of template.yaml on an in-process moto whose state machines really execute."""
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config), InProcessLambdas() as lambdas:
        stack = deploy_embedded_stack(
            environment={
                "DASHSCOPE_BASE_URL": replay.base_url,
                "DASHSCOPE_API_KEY": API_KEY,
                "ALLOWED_MEDIA_URLS": replay.origin,
            },
            lambdas=lambdas,
            parameters=parameters or {},
            parks=parks,
        )
        yield Workflow(stack=stack, lambdas=lambdas, replay=replay)


@pytest.fixture
def workflow(replay: ReplayDashScope, sleeps: Sleeps, stack_parameters: dict[str, str]) -> Iterator[Workflow]:
    with deployed_workflow(replay, stack_parameters) as deployed:
        yield deployed
