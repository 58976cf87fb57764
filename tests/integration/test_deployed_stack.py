"""The first real deploy's smoke test: a deployed stack and the real DashScope relay one image task
and one video task end to end: the objects in S3 (their bytes hash to the event's sha256), exactly
one completion event on the stack's bus, and no lock left without an expiry. Opt-in, never needed
for CI; `make integration` runs it (docs/deploy.md, "First deploy: a checklist"):

    WAN_RELAY_STACK=wan-relay \
    WAN_RELAY_IMAGE_TASK_ID=<an image task that SUCCEEDED in the last 24 h> \
    WAN_RELAY_VIDEO_TASK_ID=<a video task that SUCCEEDED in the last 24 h> \
    DASHSCOPE_API_KEY=sk-... [DASHSCOPE_BASE_URL=...] AWS_PROFILE=... AWS_REGION=... make integration

The tasks must come from the DashScope region the stack polls (its DashScopeBaseUrl). The relay's
own configuration comes from the stack; the key here only checks the real answers normalize.
Each run leaves the media in the bucket (where a pipeline would find it) and, to keep a rerun
possible, deletes the lock its own execution took; it creates and deletes a queue and a rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import jsonschema
import pytest
from wan_relay.config import DEFAULT_BASE_URL
from wan_relay.dashscope import DashScopeClient
from wan_relay.idempotency import RECORD_TTL_SECONDS
from wan_relay.normalize import normalize
from wan_relay.schema import completion_schema

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("WAN_RELAY_INTEGRATION") != "1",
                       reason="real-cloud test: opt in with WAN_RELAY_INTEGRATION=1 (make integration)"),
]

#: EventBridge: "incoming events might not immediately start matching to new or updated rules"
RULE_SETTLE_SECONDS = 30
#: a second delivery of the event, if any, would come within this after the first
DUPLICATE_WINDOW_SECONDS = 60
EXECUTION_DEADLINE_SECONDS = 20 * 60
TASKS = {"image": "WAN_RELAY_IMAGE_TASK_ID", "video": "WAN_RELAY_VIDEO_TASK_ID"}


def need(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"WAN_RELAY_INTEGRATION=1 needs {name} (see docs/deploy.md, First deploy: a checklist)")
    return value


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    stack = boto3.client("cloudformation").describe_stacks(StackName=need("WAN_RELAY_STACK"))["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@pytest.fixture
def subscriber(outputs: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A queue receiving the stack's completion events, as a subscriber would wire it (the rule's
    target and the queue policy allowing EventBridge to send, for this rule only); yields the queue
    URL and the rule's event pattern, then removes both."""
    name = f"wan-relay-it-{uuid.uuid4().hex[:8]}"
    bus = outputs["EventBusName"]
    events, sqs = boto3.client("events"), boto3.client("sqs")
    pattern = outputs["CompletionEventPattern"]
    rule_arn = events.put_rule(Name=name, EventBusName=bus, EventPattern=pattern)["RuleArn"]
    queue_url = ""
    try:
        account, region = rule_arn.split(":")[4], rule_arn.split(":")[3]
        queue_arn = f"arn:aws:sqs:{region}:{account}:{name}"
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }]}
        queue_url = sqs.create_queue(QueueName=name, Attributes={"Policy": json.dumps(policy)})["QueueUrl"]
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
        time.sleep(RULE_SETTLE_SECONDS)
        yield queue_url, pattern
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["queue"])
        events.delete_rule(Name=name, EventBusName=bus)
        if queue_url:
            sqs.delete_queue(QueueUrl=queue_url)


def _events_for(queue_url: str, task_id: str, wait: float) -> list[dict[str, Any]]:
    """The completion events for `task_id` the queue receives within `wait` seconds."""
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=10)
        for message in answer.get("Messages", []):
            event = json.loads(message["Body"])
            if event.get("detail", {}).get("task_id") == task_id:
                found.append(event)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def _lock(outputs: dict[str, str], task_id: str) -> dict[str, Any] | None:
    return boto3.client("dynamodb").get_item(
        TableName=outputs["IdempotencyTableName"], Key={"id": {"S": f"lock#{task_id}"}}, ConsistentRead=True,
    ).get("Item")


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_the_real_dashscope_answer_normalizes(kind: str) -> None:
    task_id = need(TASKS[kind])
    client = DashScopeClient(os.environ.get("DASHSCOPE_BASE_URL", DEFAULT_BASE_URL), need("DASHSCOPE_API_KEY"))
    task = normalize(client.get_task(task_id), expected_task_id=task_id)
    assert task.status == "SUCCEEDED", f"{TASKS[kind]} must name a task that SUCCEEDED in the last 24 h"
    assert task.media and all(m.expires_at for m in task.media)
    assert {m.type for m in task.media} == {kind}


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_the_deployed_stack_relays_a_real_task_end_to_end(
    kind: str, outputs: dict[str, str], subscriber: tuple[str, str]
) -> None:
    task_id = need(TASKS[kind])
    queue_url, _ = subscriber
    if (earlier := _lock(outputs, task_id)) is not None:
        pytest.fail(f"{task_id} was relayed already (lock#{task_id}, by {earlier['execution']['S']}): give a new "
                    f"task, or delete the lock to relay it again: aws dynamodb delete-item --table-name "
                    f"{outputs['IdempotencyTableName']} --key '{{\"id\": {{\"S\": \"lock#{task_id}\"}}}}'")
    sfn = boto3.client("stepfunctions")
    # a fresh execution name: an earlier run of this test holds the task id as a name for 90 days
    execution = sfn.start_execution(
        stateMachineArn=outputs["StateMachineArn"], name=f"{task_id[:40]}-it-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"task_id": task_id, "kind": kind, "context": {"integration": True}}),
    )["executionArn"]
    try:
        deadline = time.monotonic() + EXECUTION_DEADLINE_SECONDS
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"{execution} did not finish in {EXECUTION_DEADLINE_SECONDS} s"
            time.sleep(5)
        assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
        output = json.loads(described["output"])
        assert "event" in output, f"{execution} ended without an event (AlreadyClaimed?): {output}"
        event = output["event"]
        jsonschema.validate(event, completion_schema())
        assert (event["status"], event["kind"]) == ("SUCCEEDED", kind), event.get("error")

        # the objects: under the stack's prefix, and their bytes are the ones the event announces
        s3 = boto3.client("s3")
        for item in event["media"]:
            assert item["bucket"] == outputs["MediaBucket"]
            assert item["key"].startswith(f"{outputs['MediaPrefix']}{task_id}/")
            stored = s3.get_object(Bucket=item["bucket"], Key=item["key"])
            digest = hashlib.sha256()
            for chunk in stored["Body"].iter_chunks(1024 * 1024):
                digest.update(chunk)
            assert (digest.hexdigest(), stored["ContentLength"], stored["ContentType"]) == (
                item["sha256"], item["size_bytes"], item["content_type"])

        # the one event: delivered to a subscriber, once, with the detail the execution decided
        delivered = _events_for(queue_url, task_id, DUPLICATE_WINDOW_SECONDS)
        assert [e["detail"] for e in delivered] == [event]

        # no lock left without an expiry: it lapses with the task's idempotency records
        lock = _lock(outputs, task_id)
        if lock is not None:
            expires_in = int(lock["expiration"]["N"]) - time.time()
            assert 0 < expires_in <= RECORD_TTL_SECONDS + 3600, lock
    finally:
        # a rerun may relay the same task again: the lock this execution took goes (and only that one)
        with contextlib.suppress(boto3.client("dynamodb").exceptions.ConditionalCheckFailedException):
            boto3.client("dynamodb").delete_item(
                TableName=outputs["IdempotencyTableName"], Key={"id": {"S": f"lock#{task_id}"}},
                ConditionExpression="execution = :mine", ExpressionAttributeValues={":mine": {"S": execution}},
            )
