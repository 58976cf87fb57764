"""The embedded pipeline: moto's server on loopback, the stack of `template.yaml` on it, the real
handler and the real workflow; start an execution per task, follow it, collect what it produced.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3

from .embedded_aws import EmbeddedAws
from .follow import Outcome, PollSeen, follow_execution
from .function_log import use_service_name
from .lambda_bridge import InProcessLambdas
from .results import CompletionEvents, save_result
from .stack import EmbeddedStack, deploy_embedded_stack, execution_name

#: what the relay reads from the environment and the embedded function receives from the caller's;
#: the names of the resources (bucket, bus, table) always come from the embedded stack
RELAY_VARIABLES = (
    "DASHSCOPE_BASE_URL",
    "DASHSCOPE_API_KEY",
    "ALLOWED_MEDIA_URLS",
    "ALLOW_LOOPBACK_MEDIA_ADDRESSES",
    "MAX_MEDIA_BYTES",
    "MEDIA_PREFIX",
    "EVENT_SOURCE",
)


def relay_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in RELAY_VARIABLES if environ.get(name, "").strip()}


class EmbeddedPipeline:
    """Context manager: an embedded AWS with the stack deployed, ready to relay tasks."""

    def __init__(self, environment: Mapping[str, str], *, parks: bool = False) -> None:
        """`parks`: the stack's workflows park (the template's default `Waiting`) and its sweeper runs."""
        self._environment = dict(environment)
        self._parks = parks
        self._sweeping = contextlib.ExitStack()
        self._aws = EmbeddedAws()
        self._lambdas = InProcessLambdas()
        self.stack: EmbeddedStack | None = None
        self.events: CompletionEvents | None = None
        self._clients: dict[str, Any] = {}

    def __enter__(self) -> EmbeddedPipeline:
        use_service_name()  # the handler module makes its Logger and Metrics at import
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
        # the interpreter logs each failed state with its whole parse tree; the history holds the same
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        self._aws.__enter__()
        try:
            self._lambdas.__enter__()
            self.stack = deploy_embedded_stack(environment=self._environment, lambdas=self._lambdas,
                                               parks=self._parks)
            if self._parks:
                self._sweeping.enter_context(self.stack.sweeping())
            self._clients = {name: boto3.client(name) for name in ("stepfunctions", "s3", "sqs")}
            self.events = CompletionEvents(self._clients["sqs"], self.stack.events_queue_url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._sweeping.close()
            self._lambdas.__exit__()
        finally:
            self._aws.__exit__()

    def start(self, loop_input: Mapping[str, Any]) -> str:
        """Starts the workflow for a task, the execution named after it."""
        assert self.stack is not None
        answer = self._clients["stepfunctions"].start_execution(
            stateMachineArn=self.stack.state_machine_arn,
            name=execution_name(str(loop_input["task_id"])),
            input=json.dumps(dict(loop_input)),
        )
        return answer["executionArn"]

    def follow(self, execution_arn: str, task_id: str, on_poll: Callable[[PollSeen], None]) -> Outcome:
        return follow_execution(self._clients["stepfunctions"], execution_arn, task_id=task_id, on_poll=on_poll)

    def emitted(self, task_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The completion event EventBridge delivered for the task (envelope and detail), or None."""
        assert self.events is not None
        return self.events.wait_for(task_id, timeout)

    def save(self, out_dir: Path, detail: dict[str, Any]) -> list[Path]:
        return save_result(out_dir, detail, self._clients["s3"])
