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
#: the demo's burst: images submitted at once, ending within a few seconds, relayed by a stack that
#: parks them (Waiting=park) through the account's sweeper, with DashScope's limit and the default budget
BURST_TASKS = 12
BURST_LIMIT_QPS = 20


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


def script_burst(replay: ReplayDashScope, count: int = BURST_TASKS) -> list[str]:
    """Tasks on the replay's clock (PENDING, RUNNING, SUCCEEDED 3 to 6 s after now, listed as DashScope's
    list endpoint would list them), each with its own image; their ids."""
    task_ids = []
    for number in range(count):
        task_id = f"b0257{number:03d}-0000-4000-8000-{number:012d}"
        timeline = Timeline(datetime.now(UTC), 3 + 3 * number / count)
        answer = timeline.final(sample("wan2.6-t2i_succeeded"))
        answer["output"]["task_id"] = task_id
        replay.add_task(task_id, serve_media(replay, answer, task_id), running_after=0.5,
                        ends_after=3 + 3 * number / count)
        task_ids.append(task_id)
    return task_ids


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
