"""Makes moto's Lambda run the project's real handler in-process.

moto's Docker-free Lambda (`{"lambda": {"use_docker": False}}`) only echoes payloads. While
`InProcessLambdas` is active, an invocation of a registered function loads `functions/<fn>/app.py`,
runs its handler with the function's environment, and reports an exception the way Lambda does
(`x-amz-function-error: Unhandled`, `{"errorType", "errorMessage"}`) so the state machine's Retry
and Catch match on the error's class name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"

Handler = Callable[[Any, Any], Any]


@dataclass
class FakeContext:
    """What the handler reads from Lambda's context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 900.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(function_dir: str | Path, module: str = "app", attribute: str = "lambda_handler") -> Handler:
    """A fresh copy of a function's handler module (module-level caches start empty)."""
    path = Path(function_dir) / f"{module}.py"
    name = f"wan_relay_fn_{Path(function_dir).name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    loaded: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return getattr(loaded, attribute)


@dataclass
class _Registered:
    handler: Handler
    environment: dict[str, str]


class InProcessLambdas:
    """Registry of handlers that moto's Lambda calls instead of echoing; a context manager."""

    def __init__(self) -> None:
        self._functions: dict[str, _Registered] = {}
        self._lock = threading.Lock()  # one invocation at a time: os.environ is process-wide
        self._patch: Any = None
        #: the variables an invocation added to os.environ, removed only when the bridge closes: removing a
        #: key while another thread copies the environment (moto's executions making clients, botocore's and
        #: requests' proxy lookup) raises KeyError in that thread, failing its state as States.Runtime
        self._added: set[str] = set()
        self.invocations: list[dict[str, Any]] = []

    def register(self, function_name: str, handler: Handler, environment: dict[str, str] | None = None) -> None:
        """A function whose invocations run `handler` with `environment` set. Functions of one bridge set
        the same variables (values may differ), so none sees a variable only another's sets."""
        environment = dict(environment or {})
        others = {frozenset(f.environment) for n, f in self._functions.items() if n != function_name}
        if others and others != {frozenset(environment)}:
            raise ValueError(f"{function_name} sets other environment variables than the functions before it")
        self._functions[function_name] = _Registered(handler, environment)

    def wrap(self, function_name: str, wrapper: Callable[[Handler], Handler]) -> None:
        """Puts `wrapper(handler)` in place of a registered handler, same environment (fault injection)."""
        registered = self._functions[function_name]
        self._functions[function_name] = _Registered(wrapper(registered.handler), registered.environment)

    def __enter__(self) -> InProcessLambdas:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        bridge = self
        original = LambdaSimpleBackend.invoke

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any,
                   response_headers: Any) -> Any:
            name = function_name.split(":function:")[-1].split(":")[0]
            registered = bridge._functions.get(name)
            if registered is None:
                return original(backend, function_name, qualifier, body, headers, response_headers)
            arn = f"arn:aws:lambda:{backend.region_name}:{backend.account_id}:function:{name}"
            return bridge._call(registered, name, arn, body, response_headers)

        self._patch = mock.patch.object(LambdaSimpleBackend, "invoke", invoke)
        self._patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None
        with self._lock:
            for key in self._added:
                os.environ.pop(key, None)
            self._added.clear()

    @contextmanager
    def _environment(self, values: dict[str, str]) -> Iterator[None]:
        """`values` set for one invocation; a variable that was set before is put back after it (a write, safe
        beside a reader), one that was not stays until the bridge closes."""
        saved = {key: os.environ[key] for key in values if key in os.environ and key not in self._added}
        self._added.update(key for key in values if key not in os.environ)
        os.environ.update(values)
        try:
            yield
        finally:
            os.environ.update(saved)

    def _call(self, registered: _Registered, name: str, arn: str, body: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        with self._lock, self._environment(registered.environment):
            record: dict[str, Any] = {"function": name, "event": event}
            try:
                result = registered.handler(event, FakeContext(function_name=name, invoked_function_arn=arn))
            except Exception as exc:
                response_headers["x-amz-function-error"] = "Unhandled"
                record["error"] = type(exc).__name__
                self.invocations.append(record)
                return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
            record["result"] = result
            self.invocations.append(record)
            return json.dumps(result).encode()


