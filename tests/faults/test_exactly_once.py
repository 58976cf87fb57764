"""Nothing lost, nothing twice: the deployed workflow on moto's server, each Lambda attempt in a
process of its own that is really killed (os._exit) at a chosen step; Step Functions retries it as
its Retry says, and EmitCompletion puts the event.

What survives a crash is exactly what AWS would hold. The bucket is versioned: a second upload of the
same media would show as a second version; every event that reached the bus is counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from wan_relay_local.embedded_aws import EmbeddedAws
from wan_relay_local.lambda_bridge import InProcessLambdas
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope
from wan_relay_local.stack import EmbeddedStack, deploy_embedded_stack

from tests.conftest import API_KEY, drain_events, sample

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
# the crashed attempt's Lambda deadline, as register_lambda_context records it: long enough for an
# attempt to reach its kill point on a loaded machine (the transfers may use four fifths of it)
IN_PROGRESS_SECONDS = 6
EXECUTION_DEADLINE_SECONDS = 90


def _died(name: str, message: str) -> Exception:
    """An exception whose class name is the errorType Lambda reports, which Step Functions matches."""
    return type(name, (Exception,), {})(message)


class World:
    """The stack on an embedded moto server; the function's attempts run as killable processes."""

    def __init__(self, stack: EmbeddedStack, replay: ReplayDashScope, endpoint: str) -> None:
        self.stack = stack
        self.replay = replay
        self.endpoint = endpoint
        self.kill_points: list[str] = []  # the next attempts' kill points, in order; then none
        self.attempts: list[tuple[str, int]] = []  # the polls: (kill point, exit code)
        self.actions: list[str] = []  # the workflow's other calls of the function ("start", "claimed")
        self.s3 = boto3.client("s3")
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")
        self.s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})

    def attempt(self, state: dict[str, Any], _context: Any) -> dict[str, Any]:
        """The function, as moto's Lambda calls it: one process per attempt (the function's
        environment is this process's during the call)."""
        action = state.get("action") if isinstance(state, dict) else None
        if action == "after_trouble":  # a poll, with the error the workflow caught
            action = None
        # the kill points are the polls': the workflow's input check and claim inspection run as they are
        kill_point = self.kill_points.pop(0) if self.kill_points and action is None else "none"
        env = {**os.environ, "ATTEMPT_TIMEOUT_SECONDS": str(IN_PROGRESS_SECONDS)}
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults.attempt", kill_point, json.dumps(state)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        if action is None:
            self.attempts.append((kill_point, done.returncode))
        else:
            self.actions.append(action)
        if done.returncode == 137:
            raise _died("Runtime.ExitError", "RequestId: x Error: Runtime exited with error: exit status 137")
        lines = [line for line in done.stdout.splitlines()
                 if line.startswith("{") and '"level"' not in line and '"_aws"' not in line]
        answer = json.loads(lines[-1])
        if "errorType" in answer:
            raise _died(answer["errorType"], answer["errorMessage"])
        return answer

    def run(self, loop_input: dict[str, Any]) -> dict[str, Any]:
        execution = self.stack.start(loop_input)
        deadline = time.monotonic() + EXECUTION_DEADLINE_SECONDS
        while (described := self.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the execution did not end"
            time.sleep(0.1)
        return described

    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for version in self.s3.list_object_versions(Bucket=self.stack.bucket).get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts

    def unfinished_uploads(self) -> list:
        return self.s3.list_multipart_uploads(Bucket=self.stack.bucket).get("Uploads", [])

    def events(self) -> list[dict]:
        """The details of every completion event delivered so far."""
        return [event["detail"] for event in drain_events(self.sqs, self.stack.events_queue_url)]


@pytest.fixture
def world(monkeypatch) -> Iterator[World]:
    # Step Functions' retry back-off, shortened (not removed: a crashed attempt's record stays in
    # progress for IN_PROGRESS_SECONDS, and the retries must outlast it as they would in AWS)
    short = types.SimpleNamespace(sleep=lambda seconds: time.sleep(min(seconds, 1.0)), time=time.time,
                                  monotonic=time.monotonic)
    with (
        ReplayDashScope(api_key=API_KEY) as replay,
        EmbeddedAws() as aws,
        InProcessLambdas() as lambdas,
        mock.patch.object(retrier_decl, "time", short),
    ):
        stack = deploy_embedded_stack(
            environment={"DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY": API_KEY,
                         "ALLOWED_MEDIA_URLS": replay.origin},
            lambdas=lambdas,
        )
        world = World(stack, replay, aws.endpoint_url)
        lambdas.wrap(stack.function_name, lambda _handler: world.attempt)
        yield world


def video_task(world: World) -> str:
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    # Range support off: this is about the single-stream multipart path and its crash points
    media = Media(PatternBody(20 * MiB, seed="exactly-once"), content_type="video/mp4", ranges=False)
    answer = world.replay.rehost(answer, media={path: media})
    world.replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


@pytest.mark.parametrize(
    "kill_point", ["after-first-part", "after-upload-completed", "after-media-recorded", "before-answer"]
)
def test_a_crash_at_any_step_then_the_workflows_retry_lands_the_media_once_and_announces_it_once(
    world, kill_point
):
    task_id = video_task(world)
    world.kill_points = [kill_point]

    execution = world.run({"task_id": task_id, "context": {"run": kill_point}})

    assert execution["status"] == "SUCCEEDED"
    assert world.attempts[0] == (kill_point, 137)  # really killed
    assert all(code == 0 for _, code in world.attempts[1:])
    assert world.versions() == {f"wan/{task_id}/0.mp4": 1}
    assert world.unfinished_uploads() == []
    (event,) = world.events()
    assert event["status"] == "SUCCEEDED" and event["context"] == {"run": kill_point}
    assert event == json.loads(execution["output"])["event"]
    body = world.s3.get_object(Bucket=world.stack.bucket, Key=f"wan/{task_id}/0.mp4")["Body"].read()
    (item,) = event["media"]
    assert (item["size_bytes"], item["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_a_second_execution_for_a_finished_task_relays_nothing_again(world):
    task_id = video_task(world)
    assert world.run({"task_id": task_id})["status"] == "SUCCEEDED"
    first_events = world.events()

    # a duplicate `Wan Task Submitted` delivery: another execution name, same task
    duplicate = world.sfn.start_execution(stateMachineArn=world.stack.state_machine_arn,
                                          name=f"{task_id}-again", input=json.dumps({"task_id": task_id}))
    deadline = time.monotonic() + EXECUTION_DEADLINE_SECONDS
    while world.sfn.describe_execution(executionArn=duplicate["executionArn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    assert len(first_events) == 1 and world.events() == []
    assert world.versions() == {f"wan/{task_id}/0.mp4": 1}
    assert len(world.attempts) == 1  # the duplicate never polled
    assert world.actions == ["start", "start", "claimed"]
    assert world.sfn.describe_execution(executionArn=duplicate["executionArn"])["status"] == "SUCCEEDED"
