"""The demo's tasks: real-shaped DashScope answers (from `events/dashscope/`) replayed on loopback,
each going PENDING -> RUNNING -> its end, with real PNG images and a playable MP4 behind the URLs.

Only the demo shortens the waits: its tasks ask for a 1-second poll interval and are submitted "now".
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from .lambda_bridge import ROOT
from .replay import Media, ReplayDashScope
from .sample_media import mp4_video, png_image

SAMPLES = ROOT / "events" / "dashscope"
#: the replay server's own key (not a secret)
DEMO_API_KEY = "sk-demo-replay-key"
DEMO_POLL_INTERVAL_SECONDS = 1
DEMO_TIMEOUT_SECONDS = 300
_CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class DemoTask:
    task_id: str
    model: str
    kind: str
    title: str
    #: the completion status the demo expects for this task
    expect: str
    context: dict[str, Any] = field(default_factory=dict)

    def loop_input(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "model": self.model,
            "context": self.context,
            "poll_interval_seconds": DEMO_POLL_INTERVAL_SECONDS,
            "timeout_seconds": DEMO_TIMEOUT_SECONDS,
        }


def _sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def _china(moment: datetime) -> str:
    return moment.astimezone(_CHINA).strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return [value] if isinstance(value, str) and re.match(r"^https?://", value) else []


class _Timeline:
    """One task's answers, with times around now: submitted, scheduled, ended."""

    def __init__(self, now: datetime, runs_for: float) -> None:
        self.submitted = now - timedelta(seconds=1)
        self.scheduled = now + timedelta(seconds=0.5)
        self.ended = now + timedelta(seconds=runs_for)

    def waiting(self, task_id: str, status: str) -> dict[str, Any]:
        answer = _sample("pending" if status == "PENDING" else "running")
        answer["output"].update(task_id=task_id, submit_time=_china(self.submitted))
        if status == "RUNNING":
            answer["output"]["scheduled_time"] = _china(self.scheduled)
        return answer

    def final(self, sample: str) -> dict[str, Any]:
        answer = copy.deepcopy(_sample(sample))
        output = answer["output"]
        output.update(submit_time=_china(self.submitted), scheduled_time=_china(self.scheduled),
                      end_time=_china(self.ended))
        expires = int((self.ended + timedelta(hours=24)).timestamp())
        return json.loads(re.sub(r"Expires=\d+", f"Expires={expires}", json.dumps(answer)))


def script_demo(replay: ReplayDashScope, now: datetime | None = None) -> list[DemoTask]:
    """Scripts the demo's tasks on `replay`; returns them in the order they are shown."""
    now = now or datetime.now(UTC)
    tasks: list[DemoTask] = []

    def add(sample: str, polls: list[str], *, model: str, kind: str, title: str, expect: str,
            context: dict[str, Any], runs_for: float) -> None:
        timeline = _Timeline(now, runs_for)
        final = timeline.final(sample)
        task_id = final["output"]["task_id"]
        media: dict[str, Media] = {}
        for number, url in enumerate(_urls(final)):
            path = urlsplit(url).path
            if path.endswith(".mp4"):
                media[path] = Media(mp4_video(f"{task_id}/{number}"), content_type="video/mp4")
            else:
                media[path] = Media(png_image(f"{task_id}/{number}"), content_type="image/png")
        replay.script(task_id, *[timeline.waiting(task_id, s) for s in polls], replay.rehost(final, media))
        tasks.append(DemoTask(task_id, model, kind, title, expect, context))

    add("wan2.6-t2i_succeeded", ["PENDING", "RUNNING"], model="wan2.6-t2i", kind="image",
        title="wan2.6 text-to-image", expect="SUCCEEDED",
        context={"pipeline": "catalogue-hero", "sku": "A-1029"}, runs_for=2)
    add("wan2.5-t2i_partial", ["PENDING", "RUNNING", "RUNNING"], model="wan2.5-t2i-preview", kind="image",
        title="wan2.5 three images, one refused", expect="PARTIAL",
        context={"pipeline": "moodboard"}, runs_for=3)
    add("wan2.7-i2v_succeeded", ["PENDING", "RUNNING", "RUNNING", "RUNNING"], model="wan2.7-i2v", kind="video",
        title="wan2.7 image-to-video", expect="SUCCEEDED",
        context={"pipeline": "trailers", "episode": 12}, runs_for=4)
    add("failed_output_code", ["PENDING", "RUNNING"], model="wan2.6-t2i", kind="image",
        title="a task DashScope refused", expect="FAILED",
        context={"pipeline": "catalogue-hero", "sku": "B-2040"}, runs_for=2)
    return tasks
