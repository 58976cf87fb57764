"""What a new Lambda container loads: a poll that finds the task still running (most polls) loads
nothing that only a finished task needs, nothing of pydantic anywhere (a finished task is relayed where
it cannot be imported), and the layer brings no AWS SDK of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import distribution

from wan_relay_local.lambda_bridge import FUNCTIONS
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, ROOT, sample

#: modules only the end of a task needs (ingest, idempotency ledger), and the X-Ray SDK
TERMINAL_ONLY = (
    "wan_relay.ingest", "wan_relay.ranged", "wan_relay.idempotency", "wan_relay.public_addresses",
    "aws_lambda_powertools.utilities.idempotency", "boto3.s3.transfer", "aws_xray_sdk",
)
#: the models are msgspec's: importing pydantic and building its validators was most of a cold start
PYDANTIC = ("pydantic", "pydantic_core")

#: a new container: `before` runs first, then the handler is imported and called once per event, then
#: `after` may put what it saw in `seen`
_NEW_CONTAINER = """
import json, sys
{before}
sys.path.insert(0, {function_dir!r})
import app
from wan_relay_local.lambda_bridge import FakeContext  # after the handler: the handler's imports are its own

context = FakeContext(function_name="poll", invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:poll")
answers = [app.lambda_handler(event, context) for event in {events!r}]
modules = sorted(sys.modules)
seen = {{}}
{after}
print(json.dumps({{"answers": answers, "modules": modules, **seen}}))
"""

#: pydantic made unimportable (`import pydantic` raises ImportError), and an AWS account (moto, in
#: the same process) with the media bucket and the idempotency table
_NO_PYDANTIC_AND_AN_ACCOUNT = """
sys.modules.update(dict.fromkeys({pydantic!r}))
from moto import mock_aws
mock_aws().start()
import boto3
boto3.client("s3").create_bucket(Bucket="media")
boto3.client("dynamodb").create_table(
    TableName="idempotency", KeySchema=[{{"AttributeName": "id", "KeyType": "HASH"}}],
    AttributeDefinitions=[{{"AttributeName": "id", "AttributeType": "S"}}], BillingMode="PAY_PER_REQUEST")
"""
_WHAT_LANDED = """
records = boto3.client("dynamodb").scan(TableName="idempotency")["Items"]
seen = {
    "objects": [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="media").get("Contents", [])],
    "records": sorted(record["id"]["S"].split("#")[0] for record in records),
}
"""


def in_a_new_container(replay: ReplayDashScope, events: list[dict], before: str = "", after: str = "",
                       **env_overrides: str) -> dict:
    """The handler imported and called, in a fresh interpreter, as Lambda does (tracing active)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "DASHSCOPE_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "poll", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "wan-relay", "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
        "DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY": API_KEY, "MEDIA_BUCKET": "unused",
        "IDEMPOTENCY_TABLE": "unused", "ALLOWED_MEDIA_URLS": replay.origin, "ALLOW_LOOPBACK_MEDIA_ADDRESSES": "true",
        **env_overrides,
    })
    code = _NEW_CONTAINER.format(function_dir=str(FUNCTIONS / "poll_task"), events=events, before=before,
                                 after=after)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_poll_that_finds_the_task_running_loads_nothing_only_a_finished_task_needs():
    running = sample("running")
    task_id = running["output"]["task_id"]
    with ReplayDashScope(api_key=API_KEY) as replay:
        replay.script(task_id, running)
        result = in_a_new_container(replay, [{"task_id": task_id}])

    (answer,) = result["answers"]
    assert answer["done"] is False and answer["status"] == "RUNNING"
    loaded = [m for m in result["modules"] if m.startswith(TERMINAL_ONLY)]
    assert loaded == [], "the typical poll loaded what only a finished task needs"
    assert [m for m in result["modules"] if m.split(".")[0] in PYDANTIC] == []


def test_a_finished_task_is_relayed_and_retried_without_pydantic_installed():
    """The layer does not install pydantic (the development environment has it, for moto's server):
    the whole terminal path, Powertools Idempotency included, works where it cannot be imported."""
    with ReplayDashScope(api_key=API_KEY) as replay:
        answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
        task_id = answer["output"]["task_id"]
        replay.script(task_id, answer)
        result = in_a_new_container(
            replay, [{"task_id": task_id}] * 2,  # the second: a retry of the same poll
            before=_NO_PYDANTIC_AND_AN_ACCOUNT.format(pydantic=PYDANTIC), after=_WHAT_LANDED,
            MEDIA_BUCKET="media", IDEMPOTENCY_TABLE="idempotency",
        )

    first, retry = result["answers"]
    assert first["done"] is True and first["status"] == "SUCCEEDED"
    assert [m["key"] for m in first["event"]["media"]] == result["objects"] == [f"wan/{task_id}/0.png"]
    assert result["records"] == ["wan-relay.completion", "wan-relay.media"]
    assert retry["event"] == first["event"]  # read back from the idempotency record


def _requirement_names(requirements: list[str]) -> list[str]:
    """Distribution names of requirement lines, extras and markers for other Pythons left out."""
    names = []
    for line in requirements:
        line, _, marker = line.partition(";")
        if marker.strip() and "extra ==" in marker:
            continue
        name = re.split(r"[\s\[<>=!~]", line.strip(), maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def test_the_layer_brings_no_aws_sdk_to_shadow_the_runtimes():
    pins = [line for line in (ROOT / "layers/relay/requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert not any("[" in line for line in pins), "no extras: they are where the X-Ray SDK and botocore came from"
    seen: set[str] = set()
    todo = _requirement_names(pins)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_requirement_names(distribution(name).requires or []))
    assert seen.isdisjoint({"boto3", "botocore", "s3transfer", "aws-xray-sdk"}), sorted(seen)
