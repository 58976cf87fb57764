"""The local tools' world: the `wan-relay` console script as a user runs it, and what it leaves behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from wan_relay.models import DEFAULT_EVENT_SOURCE, DETAIL_TYPE_COMPLETED

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "wan-task-completed.schema.json").read_text())
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def wan_relay() -> Path:
    """The console script `make run` calls: the one installed beside this interpreter (.venv/bin)."""
    script = Path(sys.executable).parent / "wan-relay"
    assert script.exists(), f"{script} is missing: install the project with `pip install -e '.[dev]'` (make does)"
    return script


def user_environment(**extra: str) -> dict[str, str]:
    """A shell's environment without any AWS or DashScope setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DASHSCOPE_", "MOTO_", "POWERTOOLS_"))}
    env.update(extra)
    return env


def load_event(folder: Path) -> dict[str, Any]:
    """`event.json`, checked against the published schema."""
    detail = json.loads((folder / "event.json").read_text())
    jsonschema.validate(detail, SCHEMA)
    return detail


def assert_media_files_match(folder: Path, detail: dict[str, Any]) -> None:
    """Each stored item is in the folder, with the size and SHA-256 the event announces."""
    for item in detail["media"]:
        data = (folder / Path(item["key"]).name).read_bytes()
        assert len(data) == item["size_bytes"]
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        if item["type"] == "image":
            assert data.startswith(PNG_SIGNATURE)
        else:
            assert_playable_mp4(data)


def mp4_boxes(data: bytes) -> dict[bytes, bytes]:
    boxes, offset = {}, 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes[kind] = data[offset + 8 : offset + size]
        offset += size
    return boxes


def assert_playable_mp4(data: bytes) -> None:
    """An MP4 with an H.264 track whose first sample is an IDR picture where the index says."""
    boxes = mp4_boxes(data)
    assert list(boxes)[:3] == [b"ftyp", b"moov", b"mdat"]
    moov = boxes[b"moov"]
    assert b"avc1" in moov and b"avcC" in moov
    offset = struct.unpack(">I", moov[moov.index(b"stco") + 12 : moov.index(b"stco") + 16])[0]
    nal_length = struct.unpack(">I", data[offset : offset + 4])[0]
    assert 0 < nal_length < len(data)
    assert data[offset + 4] & 0x1F == 5  # an IDR slice


def subscribe_queue() -> str:
    """A subscriber on the default bus of the account boto3 points at: a rule copying completion
    events to a new queue; returns the queue's URL."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue_url = sqs.create_queue(QueueName="completed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="completed", EventPattern=json.dumps(
        {"source": [DEFAULT_EVENT_SOURCE], "detail-type": [DETAIL_TYPE_COMPLETED]}))
    events.put_targets(Rule="completed", Targets=[{"Id": "q", "Arn": queue_arn}])
    return queue_url


def replay_guide(replay: subprocess.Popen[str]) -> tuple[list[str], dict[str, str]]:
    """What a running `wan-relay replay` prints before it serves: its lines, and the variables it says
    to export."""
    guide = []
    for line in replay.stdout:  # type: ignore[union-attr]
        guide.append(line)
        if line.startswith("Any other task id"):
            break
    return guide, dict(re.findall(r"^  export (\w+)=(\S+)$", "".join(guide), re.MULTILINE))
