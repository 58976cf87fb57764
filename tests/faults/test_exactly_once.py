"""Nothing lost, nothing twice: an attempt killed at each step, then retried as Step Functions would.

Each attempt runs in its own process and is really killed (os._exit), against a moto server in
another process, so what survives the crash is exactly what AWS would hold. The bucket is versioned:
a second upload of the same media would show as a second version.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from wan_relay.models import DEFAULT_EVENT_SOURCE, DETAIL_TYPE_COMPLETED
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope

from tests.conftest import API_KEY, BUCKET, TABLE, sample

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
IN_PROGRESS_SECONDS = 3  # the crashed attempt's Lambda deadline, as register_lambda_context records it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


class World:
    def __init__(self, endpoint: str, replay: ReplayDashScope) -> None:
        self.endpoint = endpoint
        self.replay = replay
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        self.s3 = boto3.client("s3", **kw)
        self.sqs = boto3.client("sqs", **kw)
        events = boto3.client("events", **kw)
        ddb = boto3.client("dynamodb", **kw)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        ddb.create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )
        self.queue = self.sqs.create_queue(QueueName="completed")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="completed", EventPattern=json.dumps(
            {"source": [DEFAULT_EVENT_SOURCE], "detail-type": [DETAIL_TYPE_COMPLETED]}))
        events.put_targets(Rule="completed", Targets=[{"Id": "q", "Arn": arn}])

    def attempt(self, kill_point: str, state: dict) -> tuple[int, dict | None]:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "DASHSCOPE_BASE_URL": self.replay.base_url,
            "DASHSCOPE_API_KEY": API_KEY, "MEDIA_BUCKET": BUCKET, "IDEMPOTENCY_TABLE": TABLE,
            "ALLOWED_MEDIA_URLS": self.replay.origin, "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "wan-relay", "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
            "ATTEMPT_TIMEOUT_SECONDS": str(IN_PROGRESS_SECONDS),
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults.attempt", kill_point, json.dumps(state)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{") and '"level"' not in line
                 and '"_aws"' not in line]
        return done.returncode, (json.loads(lines[-1]) if lines else None)

    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for version in self.s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts

    def unfinished_uploads(self) -> list:
        return self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])

    def events(self) -> list[dict]:
        found = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"])["detail"])
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def world(moto_server):
    with ReplayDashScope(api_key=API_KEY) as replay:
        yield World(moto_server, replay)


def video_task(world: World) -> str:
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    # Range support off: this is about the single-stream multipart path and its crash points
    media = Media(PatternBody(20 * MiB, seed="exactly-once"), content_type="video/mp4", ranges=False)
    answer = world.replay.rehost(answer, media={path: media})
    world.replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


def retry_until_done(world: World, state: dict) -> dict:
    """Step Functions' Retry: an attempt that finds the crashed one still 'in progress' is retried later."""
    for _ in range(10):
        code, answer = world.attempt("none", state)
        assert code == 0, answer
        if answer and answer.get("errorType") == "TransientError" and "still working" in answer["errorMessage"]:
            time.sleep(1)
            continue
        return answer
    raise AssertionError("the retry never got past the crashed attempt's lock")


@pytest.mark.parametrize("kill_point", ["after-first-part", "after-last-upload", "before-answer"])
def test_a_crash_at_any_step_then_a_retry_lands_the_media_once_and_announces_it_once(world, kill_point):
    task_id = video_task(world)
    state = {"task_id": task_id, "context": {"run": kill_point}}

    code, _ = world.attempt(kill_point, state)
    assert code == 137  # really killed

    answer = retry_until_done(world, state)

    assert answer["done"] is True and answer["status"] == "SUCCEEDED"
    assert world.versions() == {f"wan/{task_id}/0.mp4": 1}
    assert world.unfinished_uploads() == []
    events = world.events()
    assert len(events) == 1
    assert events[0] == answer["event"]


def test_a_crash_right_after_eventbridge_accepted_the_event_resends_the_same_event_id_and_no_media(world):
    """The one window no design closes: EventBridge accepted the event and the process died before the
    ledger recorded it. The retry sends it again with the same event_id, the dedupe key subscribers use;
    the media is not uploaded again."""
    task_id = video_task(world)
    state = {"task_id": task_id}

    code, _ = world.attempt("after-put-events", state)
    assert code == 137
    answer = retry_until_done(world, state)

    events = world.events()
    assert [e["event_id"] for e in events] == [answer["event"]["event_id"]] * 2
    assert events[0]["media"] == events[1]["media"]
    assert world.versions() == {f"wan/{task_id}/0.mp4": 1}


def test_a_retried_poll_after_the_event_went_out_answers_with_that_event(world):
    task_id = video_task(world)
    first = retry_until_done(world, {"task_id": task_id})
    again = retry_until_done(world, {"task_id": task_id})
    assert again["event"] == first["event"]
    assert len(world.events()) == 1
    assert world.versions() == {f"wan/{task_id}/0.mp4": 1}
