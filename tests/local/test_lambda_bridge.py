"""The in-process Lambda bridge beside the threads of moto and the embedded sweeper: setting a function's
environment for each invocation must not break a thread that reads the process environment meanwhile
(moto's executions and botocore's proxy lookup copy os.environ when they make a client)."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import zipfile
from typing import Any

import boto3
import pytest
from moto import mock_aws
from wan_relay_local.lambda_bridge import InProcessLambdas

VARIABLES = {f"WAN_RELAY_BRIDGE_{n}": str(n) for n in range(50)}
INVOCATIONS = 200


def _function(name: str) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("app.py", "def handler(event, context): return event\n")
    boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.13", Handler="app.handler", Code={"ZipFile": archive.getvalue()},
        Role=f"arn:aws:iam::123456789012:role/{name}",
    )


def _sees(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {name: os.environ.get(name) for name in VARIABLES}


def test_a_thread_copying_the_environment_never_fails_while_functions_run() -> None:
    failures: list[BaseException] = []
    stop = threading.Event()

    def copy_the_environment() -> None:
        while not stop.is_set():
            try:
                dict(os.environ)
            except KeyError as exc:  # a variable removed between listing the keys and reading one
                failures.append(exc)

    with mock_aws(config={"lambda": {"use_docker": False}}), InProcessLambdas() as lambdas:
        _function("bridge")
        lambdas.register("bridge", _sees, VARIABLES)
        reader = threading.Thread(target=copy_the_environment)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # the threads take turns often, as two cores' worth of them would
        reader.start()
        try:
            seen = [json.load(boto3.client("lambda").invoke(FunctionName="bridge")["Payload"])
                    for _ in range(INVOCATIONS)]
        finally:
            stop.set()
            reader.join()
            sys.setswitchinterval(switch)

    assert failures == []
    assert seen == [VARIABLES] * INVOCATIONS  # each invocation saw its function's environment
    assert not set(VARIABLES) & set(os.environ)  # and the process's is as it was once the bridge closed


def test_functions_of_one_bridge_set_the_same_variables() -> None:
    with InProcessLambdas() as lambdas:
        lambdas.register("first", _sees, {"STAGE": "a", "TABLE": "t1"})
        lambdas.register("second", _sees, {"STAGE": "b", "TABLE": "t2"})  # other values: fine
        with pytest.raises(ValueError, match="other environment variables"):
            # a variable only "third" sets would stay visible to the others' later invocations
            lambdas.register("third", _sees, {"STAGE": "c", "EXTRA": "x"})
