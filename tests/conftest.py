"""The world the tests run in: a moto AWS account and a DashScope replayed on loopback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# before the project's modules are imported: Powertools reads these when its loggers are made
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "wan-relay")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "WanRelay")

import jsonschema
import pytest
from moto import mock_aws
from wan_relay.config import Config
from wan_relay.relay import Relay
from wan_relay.runtime import build_relay, default_clients
from wan_relay.schema import completion_schema
from wan_relay_local.replay import ReplayDashScope

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
BUCKET = "wan-media-test"
TABLE = "wan-relay-idempotency"
API_KEY = "sk-test-0123456789abcdef-SECRET"



def sample(name: str) -> dict[str, Any]:
    """A DashScope answer from events/dashscope/."""
    return json.loads((EVENTS / "dashscope" / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def replay() -> Iterator[ReplayDashScope]:
    with ReplayDashScope(api_key=API_KEY) as server:
        yield server


class Account:
    """A moto account with the media bucket (versioned: a second upload of the same media shows)."""

    def __init__(self) -> None:
        # the clients production builds (standard retry mode), shared with the relay under test
        self.s3, self.dynamodb = default_clients()
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def create_idempotency_table(self) -> str:
        """The table as template.yaml declares it: partition key `id`, TTL on `expiration`."""
        ddb = self.dynamodb
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
        )
        return TABLE

    def versions(self) -> dict[str, int]:
        """How many versions each key has (the bucket is versioned: a re-upload shows)."""
        listing = self.s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
        counts: dict[str, int] = {}
        for version in listing:
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}

    def unfinished_uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


@pytest.fixture
def account() -> Iterator[Account]:
    with mock_aws():
        yield Account()


COMPLETION_SCHEMA = completion_schema()


def drain_events(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every EventBridge event a subscriber's queue received so far (each taken off the queue), each
    checked against the published schema: duplicates show as duplicates."""
    found = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            event = json.loads(message["Body"])
            jsonschema.validate(event["detail"], COMPLETION_SCHEMA)
            found.append(event)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def completion(state: dict[str, Any]) -> dict[str, Any]:
    """The completion event a finished poll answers with (the workflow's EmitCompletion puts exactly
    this detail on the bus), checked against the published schema."""
    assert state["done"] is True, state
    jsonschema.validate(state["event"], COMPLETION_SCHEMA)
    return state["event"]


def relay_config(replay: ReplayDashScope, **overrides: str) -> Config:
    env = {
        "DASHSCOPE_BASE_URL": replay.base_url,
        "DASHSCOPE_API_KEY": API_KEY,
        "MEDIA_BUCKET": BUCKET,
        "ALLOWED_MEDIA_URLS": replay.origin,
        "ALLOW_LOOPBACK_MEDIA_ADDRESSES": "true",  # the replay's media is on 127.0.0.1
        **overrides,
    }
    return Config.from_env(env)


@pytest.fixture
def pauses() -> list[float]:
    """The pauses the relay took between tries of a media item, recorded instead of slept."""
    return []


@pytest.fixture
def make_relay(replay: ReplayDashScope, account: Account, pauses: list[float]):
    def make(idempotent: bool = False, **overrides: str) -> Relay:
        if idempotent:
            overrides.setdefault("IDEMPOTENCY_TABLE", account.create_idempotency_table())
        config = relay_config(replay, **overrides)
        relay = build_relay(
            config, api_key=API_KEY, s3=account.s3, dynamodb=account.dynamodb
        )
        relay.sleep = pauses.append
        return relay

    return make


@pytest.fixture
def relay(make_relay) -> Relay:
    return make_relay()
