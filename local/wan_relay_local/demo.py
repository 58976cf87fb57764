"""The demo's tasks: real-shaped DashScope answers (from `events/dashscope/`) replayed on loopback,
each going PENDING -> RUNNING -> its end, with real PNG images and a playable MP4 behind the URLs.

Only the demo shortens the waits: its tasks ask for a 1-second poll interval and are submitted "now".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wan_relay.normalize import CHINA_TIME

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


def script_burst(replay: ReplayDashScope, count: int = BURST_TASKS, *, prefix: str = "b0257") -> dict[str, float]:
    """Tasks on the replay's clock (PENDING, RUNNING, SUCCEEDED 3 to 6 s after now, listed as DashScope's
    list endpoint would list them), each with its own image: their ids, and in how many seconds each ends."""
    ends: dict[str, float] = {}
    for number in range(count):
        task_id = f"{prefix}{number:03d}-0000-4000-8000-{number:012d}"
        ends_after = 3 + 3 * number / count
        timeline = Timeline(datetime.now(UTC), ends_after)
        answer = timeline.final(sample("wan2.6-t2i_succeeded"))
        answer["output"]["task_id"] = task_id
        replay.add_task(task_id, serve_media(replay, answer, task_id), running_after=0.5, ends_after=ends_after)
        ends[task_id] = ends_after
    return ends


def task_finished_request(task_id: str, token: str, ended: datetime) -> dict[str, Any]:
    """DashScope's task-finished notification of `task_id` (Model Studio's documented event, complete, as
    Alibaba Cloud EventBridge's HTTP target POSTs it) as the stack's HTTP API hands it to the receiver."""
    event = {
        "specversion": "1.0", "id": f"demo-{task_id}", "source": "acs.dashscope",
        "type": "dashscope:System:AsyncTaskFinish", "datacontenttype": "application/json;charset=utf-8",
        "time": ended.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "aliyuneventbusname": "default",
        "aliyunregionid": "cn-beijing",
        "data": {"task_id": task_id, "task_status": "SUCCEEDED",
                 "end_time": ended.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S"),
                 "user_api_unique_key": "apikey:v1:aigc:text2image:image-synthesis:wan2.6-t2i"},
    }
    return {
        "version": "2.0", "routeKey": "POST /task-finished", "rawPath": "/task-finished", "rawQueryString": "",
        "headers": {"content-type": "application/json;charset=utf-8", "x-wan-relay-token": token},
        "body": json.dumps(event), "isBase64Encoded": False,
        "requestContext": {"http": {"method": "POST", "path": "/task-finished"}, "stage": "$default"},
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
