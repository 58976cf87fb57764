"""The deployed receiver of DashScope's task-finished notifications, over the real HTTP API: what moto
cannot show (API Gateway's payload format 2.0 as AWS builds it, the route, the stage, the function's
role in a real account). Opt-in, with the notifications on (`TaskFinishedTokenSecretArn` set); `make
integration` runs it with the stack's name:

    WAN_RELAY_STACK=wan-relay AWS_PROFILE=... AWS_REGION=... make integration

It reads the token from the stack's secret as the receiver does (plain text, or JSON in a
`x-wan-relay-token` or `token` field), posts Model Studio's documented event for a task id of its own (no
workflow waits for it: the sweeper keeps the hint an hour, then the TTL removes it), finds the hint item
among those written since just before the post (every page: a busy account's hour of hints is more than a
page, and the TTL deletes late), and deletes it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import boto3
import pytest
import requests
from wan_relay.notifications import TOKEN_HEADER
from wan_relay.registry import HINT_PARTITION_PREFIX
from wan_relay.runtime import SecretToken

from tests.unit.test_notifications import notification

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("WAN_RELAY_INTEGRATION") != "1",
                       reason="real-cloud test: opt in with WAN_RELAY_INTEGRATION=1 (make integration)"),
]


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    name = os.environ.get("WAN_RELAY_STACK", "").strip()
    if not name:
        pytest.fail("WAN_RELAY_INTEGRATION=1 needs WAN_RELAY_STACK (see docs/deploy.md)")
    cloudformation = boto3.client("cloudformation")
    description = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", "")) for p in
                  description.get("Parameters", [])}
    if "TaskFinishedEndpoint" not in outputs:
        pytest.skip("the stack's task-finished notifications are off (TaskFinishedTokenSecretArn is empty)")
    table = cloudformation.describe_stack_resource(StackName=name, LogicalResourceId="ParkedTasksTable")[
        "StackResourceDetail"]["PhysicalResourceId"]
    token = SecretToken(parameters["TaskFinishedTokenSecretArn"]).current()
    return {"endpoint": outputs["TaskFinishedEndpoint"], "table": table, "token": token,
            "account": parameters.get("DashScopeAccount") or "default"}


def post(stack: dict[str, Any], body: Any, token: str | None) -> requests.Response:
    headers = {"content-type": "application/json;charset=utf-8"}
    if token is not None:
        headers[TOKEN_HEADER] = token
    return requests.post(stack["endpoint"], data=json.dumps(body), headers=headers, timeout=30)


def test_a_request_without_the_token_or_with_a_wrong_one_is_refused(stack: dict[str, Any]) -> None:
    event = notification(task_id=str(uuid.uuid4()))
    assert post(stack, event, None).status_code == 401
    assert post(stack, event, stack["token"] + "x").status_code == 401
    assert requests.get(stack["endpoint"], headers={TOKEN_HEADER: stack["token"]}, timeout=30).status_code in (
        404, 405)  # the route is POST only: API Gateway answers 404 for another method, the receiver 405


def hints_since(stack: dict[str, Any], after: float) -> list[dict[str, Any]]:
    """The hint items written after `after` (epoch seconds), every page, strongly consistent."""
    pages = boto3.client("dynamodb").get_paginator("query").paginate(
        TableName=stack["table"], KeyConditionExpression="account = :a AND parked > :after",
        ExpressionAttributeValues={":a": {"S": HINT_PARTITION_PREFIX + stack["account"]},
                                   ":after": {"S": f"{round(after * 1000):013d}#"}},
        ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def test_a_documented_notification_is_kept_as_a_hint_in_the_accounts_partition(stack: dict[str, Any]) -> None:
    task_id = f"wan-relay-it-{uuid.uuid4()}"
    posted_at = time.time()
    answer = post(stack, notification(task_id=task_id), stack["token"])
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = []
    for _ in range(10):  # the write happened before the answer; a strongly consistent read sees it
        # the receiver's clock sets the item's sort key: a minute of margin for the clocks' difference
        items = [item for item in hints_since(stack, posted_at - 60) if item["task_id"]["S"] == task_id]
        if items:
            break
        time.sleep(1)
    try:
        assert len(items) == 1
        assert items[0]["status"]["S"] == "SUCCEEDED" and int(items[0]["expiration"]["N"]) > time.time()
    finally:
        dynamodb = boto3.client("dynamodb")
        for item in items:
            dynamodb.delete_item(TableName=stack["table"], Key={"account": item["account"], "parked": item["parked"]})
