"""Against the real clouds: a deployed stack and the real DashScope. Opt-in, never needed for CI.

    WAN_RELAY_INTEGRATION=1 WAN_RELAY_STACK=wan-relay WAN_RELAY_TASK_ID=<a task that SUCCEEDED in the
    last 24 h> DASHSCOPE_API_KEY=sk-... [DASHSCOPE_BASE_URL=...] AWS_PROFILE=... make integration

Each test reads only what its variables name; the relay's own configuration comes from the stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import boto3
import jsonschema
import pytest
from wan_relay.config import DEFAULT_BASE_URL
from wan_relay.dashscope import DashScopeClient
from wan_relay.normalize import normalize
from wan_relay.schema import completion_schema

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("WAN_RELAY_INTEGRATION") != "1",
                       reason="real-cloud test: opt in with WAN_RELAY_INTEGRATION=1"),
]


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"WAN_RELAY_INTEGRATION=1 needs {name}")
    return value


def test_the_real_dashscope_answer_normalizes():
    client = DashScopeClient(os.environ.get("DASHSCOPE_BASE_URL", DEFAULT_BASE_URL), need("DASHSCOPE_API_KEY"))
    task = normalize(client.get_task(need("WAN_RELAY_TASK_ID")), expected_task_id=need("WAN_RELAY_TASK_ID"))
    assert task.status in {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN", "SUSPENDED"}
    if task.status == "SUCCEEDED":
        assert task.media and all(m.expires_at for m in task.media)


def test_the_deployed_stack_relays_a_real_task_into_s3():
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in boto3.client("cloudformation").describe_stacks(StackName=need("WAN_RELAY_STACK"))["Stacks"][0][
            "Outputs"
        ]
    }
    task_id = need("WAN_RELAY_TASK_ID")
    sfn = boto3.client("stepfunctions")
    # a fresh execution name: an earlier run of this test may hold the task id for 90 days
    execution = sfn.start_execution(
        stateMachineArn=outputs["StateMachineArn"], name=f"{task_id[:40]}-it-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"task_id": task_id, "context": {"integration": True}}),
    )["executionArn"]
    deadline = time.monotonic() + 20 * 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish in 20 minutes"
        time.sleep(5)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    output = json.loads(described["output"])
    if "event" not in output:
        pytest.fail("the task was already claimed by another execution: delete lock#<task_id> to rerun")
    event = output["event"]
    jsonschema.validate(event, completion_schema())
    assert event["status"] in {"SUCCEEDED", "PARTIAL"}, event["error"]
    s3 = boto3.client("s3")
    for item in event["media"]:
        body = s3.get_object(Bucket=item["bucket"], Key=item["key"])["Body"]
        digest = hashlib.sha256()
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
        assert digest.hexdigest() == item["sha256"]
