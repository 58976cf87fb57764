"""The DashScope API key never appears in logs (DEBUG and Powertools' event logging included),
events, exceptions or the state machine's history, even when a server echoes it back."""

from __future__ import annotations

import json
import logging
import sys
import time

import boto3
import pytest
from moto import mock_aws
from wan_relay.relay import logger as relay_logger
from wan_relay_local.lambda_bridge import FUNCTIONS, FakeContext, InProcessLambdas, load_handler
from wan_relay_local.replay import ReplayDashScope, Reply
from wan_relay_local.stack import deploy_embedded_stack

from tests.conftest import BUCKET, sample

SECRET_KEY = "sk-live-7f3a9c1e5b2d4f6a8c0e-TOPSECRET"
SECRET_NAME = "wan-relay/dashscope-api-key"
ECHO = {"code": "InvalidParameter", "message": "bad header: {authorization}", "request_id": "echo"}


@pytest.fixture
def world(monkeypatch):
    with ReplayDashScope(api_key=SECRET_KEY) as replay, mock_aws(
        config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ), InProcessLambdas() as lambdas:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"api_key": SECRET_KEY})
        )
        env = {
            "DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY_SECRET": SECRET_NAME, "MEDIA_BUCKET": BUCKET,
            "ALLOWED_MEDIA_URLS": replay.origin, "ALLOW_LOOPBACK_MEDIA_ADDRESSES": "true",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            "POWERTOOLS_LOGGER_LOG_EVENT": "true", "POWERTOOLS_DEBUG": "true",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield replay, lambdas, env


def log_at_debug_as_a_fresh_container(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    # in Lambda the layer's child loggers are made after POWERTOOLS_LOG_LEVEL is set; here they were
    # imported earlier, so give them the level a fresh Lambda container would
    relay_logger.setLevel(logging.DEBUG)
    # and, like a fresh container, the handler's Powertools logger writes at DEBUG to this stdout (an
    # earlier test in this process may have set it up, bound to that test's captured stdout)
    service_logger = logging.getLogger("wan-relay")
    service_logger.setLevel(logging.DEBUG)
    for handler in service_logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stdout  # not setStream: it flushes the old stream, closed with its test


def histories(env, lambdas, tasks) -> list[str]:
    """Each task through the real workflow, whose history records every input, output and error: the
    history and the execution's description, as text."""
    secret_arn = boto3.client("secretsmanager").describe_secret(SecretId=SECRET_NAME)["ARN"]
    stack_env = {k: v for k, v in env.items() if k != "DASHSCOPE_API_KEY_SECRET"}
    stack = deploy_embedded_stack(environment=stack_env, lambdas=lambdas,
                                  parameters={"DashScopeApiKeySecretArn": secret_arn})
    sfn = boto3.client("stepfunctions")
    texts = []
    for task in tasks:
        execution = stack.start({"task_id": task})
        deadline = time.monotonic() + 30
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        texts.append(json.dumps(sfn.get_execution_history(executionArn=execution)["events"], default=str))
        texts.append(json.dumps(described, default=str))
    return texts


def test_the_key_from_secrets_manager_never_reaches_logs_events_errors_or_history(world, capsys, caplog):
    replay, lambdas, env = world
    log_at_debug_as_a_fresh_container(caplog)
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    good = answer["output"]["task_id"]
    replay.script(good, sample("pending"), answer)
    echoed = "echo-task-1"
    replay.script(echoed, Reply(ECHO, status=400))
    unauthorized = "bad-key-task"
    replay.script(unauthorized, Reply({"code": "InvalidApiKey", "message": "key {authorization} invalid"}, status=401))

    # the Lambda handler directly, with DEBUG logs and event logging on
    handler = load_handler(FUNCTIONS / "poll_task")
    context = FakeContext(function_name="poll", invoked_function_arn="arn:aws:lambda:us-east-1:1:function:poll")
    results = [handler({"task_id": good, "poll_interval_seconds": 1}, context)]
    results.append(handler({**results[0], "polls": 1}, context))
    errors = []
    for task in (echoed, unauthorized):
        try:
            handler({"task_id": task}, context)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc!r} {exc.args}")

    # and through the real workflow
    history = histories(env, lambdas, (unauthorized, echoed))
    assert [e["error"] for e in lambdas.invocations if e.get("error")] == ["OperatorError", "InvalidInput"]

    captured = capsys.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text, json.dumps(results), *errors, *history])
    assert "task completed" in everything and "\"level\":\"DEBUG\"" in everything  # DEBUG logs were captured
    assert len(errors) == 2 and "<redacted>" in everything  # the echo really happened, and was scrubbed
    assert "InvalidApiKey" in everything and "OperatorError" in everything
    assert SECRET_KEY not in everything
    assert "TOPSECRET" not in everything


def test_the_key_echoed_in_a_task_answer_never_reaches_the_event_logs_errors_or_history(world, capsys, caplog):
    """DashScope answers 200 for a task that failed, with its reason and the prompts in the answer: a key
    written into a prompt, or echoed by a hostile or careless server, is there bare, or JSON-escaped."""
    replay, lambdas, env = world
    log_at_debug_as_a_fresh_container(caplog)
    failed = sample("failed_output_code")
    failed["output"].update(message=f"the header x-api-key {SECRET_KEY} is not valid here",
                            orig_prompt=f"a cat; key={SECRET_KEY}")
    failed_id = failed["output"]["task_id"]
    replay.script(failed_id, failed)
    succeeded = replay.rehost(sample("wan2.6-t2i_succeeded"))
    succeeded_id = succeeded["output"]["task_id"]
    succeeded["output"]["actual_prompt"] = "a cat, " + SECRET_KEY
    escaped = SECRET_KEY.replace("-", "\\u002d")  # what a JSON writer may send: the same text decoded
    body = json.dumps(succeeded).replace(SECRET_KEY, escaped).encode()
    assert SECRET_KEY.encode() not in body and escaped.encode() in body
    replay.script(succeeded_id, Reply(body, raw=True, headers={"Content-Type": "application/json"}))

    handler = load_handler(FUNCTIONS / "poll_task")
    context = FakeContext(function_name="poll", invoked_function_arn="arn:aws:lambda:us-east-1:1:function:poll")
    results = [handler({"task_id": task}, context) for task in (failed_id, succeeded_id)]
    history = histories(env, lambdas, (failed_id, succeeded_id))

    events = [result["event"] for result in results]
    assert [event["status"] for event in events] == ["FAILED", "SUCCEEDED"]
    assert events[0]["error"]["code"] == "DataInspectionFailed"
    assert events[0]["error"]["message"] == "the header x-api-key <redacted> is not valid here"
    assert events[1]["prompt"]["actual"] == "a cat, <redacted>" and len(events[1]["media"]) == 1
    captured = capsys.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text, json.dumps(results), *history])
    assert "\"level\":\"DEBUG\"" in everything and "DataInspectionFailed" in everything
    assert SECRET_KEY not in everything and "TOPSECRET" not in everything
