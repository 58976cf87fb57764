"""The demo's tasks: real-shaped DashScope answers (from `events/dashscope/`) replayed on loopback,
each going PENDING -> RUNNING -> its end, with real PNG images and a playable MP4 behind the URLs.

Only the demo shortens the waits: its tasks ask for a 1-second poll interval and are submitted "now".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .replay import ReplayDashScope
from .scenarios import Timeline, sample, serve_media

#: the replay server's own key (not a secret)
DEMO_API_KEY = "sk-demo-replay-key"
DEMO_POLL_INTERVAL_SECONDS = 1
DEMO_TIMEOUT_SECONDS = 300


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


def script_demo(replay: ReplayDashScope, now: datetime | None = None) -> list[DemoTask]:
    """Scripts the demo's tasks on `replay`; returns them in the order they are shown."""
    now = now or datetime.now(UTC)
    tasks: list[DemoTask] = []

    def add(name: str, polls: list[str], *, model: str, kind: str, title: str, expect: str,
            context: dict[str, Any], runs_for: float) -> None:
        timeline = Timeline(now, runs_for)
        final = timeline.final(sample(name))
        task_id = final["output"]["task_id"]
        replay.script(task_id, *[timeline.waiting(task_id, s) for s in polls], serve_media(replay, final, task_id))
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
