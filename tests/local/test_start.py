"""`wan-relay start TASK_ID --stack NAME`: the deployed stack's workflow, found from its outputs,
started (execution name = task id) and followed to its completion event. Deployed here on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from wan_relay_local.cli import main
from wan_relay_local.embedded_aws import EmbeddedAws
from wan_relay_local.lambda_bridge import InProcessLambdas
from wan_relay_local.replay import ReplayDashScope
from wan_relay_local.stack import EmbeddedStack, deploy_embedded_stack

from tests.conftest import API_KEY

from .conftest import assert_media_files_match, load_event
from .test_run import _script

STACK = "wan-relay-prod"


@pytest.fixture
def deployed(replay: ReplayDashScope) -> Iterator[EmbeddedStack]:
    """The stack on moto's server, and a CloudFormation stack of that name whose outputs point at it."""
    with EmbeddedAws(), InProcessLambdas() as lambdas:
        stack = deploy_embedded_stack(
            environment={"DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY": API_KEY,
                         "ALLOWED_MEDIA_URLS": replay.origin},
            lambdas=lambdas,
        )
        outputs = {"StateMachineArn": stack.state_machine_arn, "IdempotencyTableName": stack.idempotency_table,
                   "MediaBucket": stack.bucket}
        template = {
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
        boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        yield stack


def test_start_runs_the_deployed_workflow_and_prints_the_event(
    deployed: EmbeddedStack, replay: ReplayDashScope, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = _script(replay, "wan2.6-t2i_succeeded")

    code = main(["start", task_id, "--stack", STACK, "--poll-interval", "1", "--model", "wan2.6-t2i",
                 "--out", str(tmp_path), "--json"])

    out, progress = capsys.readouterr()
    assert code == 0
    sfn = boto3.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    assert execution["name"] == task_id
    detail = load_event(tmp_path / task_id)
    assert (detail["status"], detail["model"]) == ("SUCCEEDED", "wan2.6-t2i")
    assert_media_files_match(tmp_path / task_id, detail)
    # --json: the event alone on stdout, the progress on stderr (the "deployed" function runs in this
    # process here: its log lines, which Lambda would send to CloudWatch, land on stdout too)
    printed = [line for line in out.splitlines(keepends=True) if not line.startswith(('{"level"', '{"_aws"'))]
    assert json.loads("".join(printed)) == detail
    assert f"{task_id[:8]}… poll 1: PENDING, next poll in 1 s" in progress
    assert f"✓ {task_id[:8]}… SUCCEEDED: 1 image stored in s3://{deployed.bucket}/wan/{task_id}/" in progress


def test_start_follows_the_execution_already_running_for_the_task(
    deployed: EmbeddedStack, replay: ReplayDashScope, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_id = _script(replay, "wan2.5-t2i_partial")
    first = deployed.start({"task_id": task_id, "poll_interval_seconds": 1})
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the region as the AWS CLI and the other SDKs take it
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    code = main(["start", task_id, "--stack", STACK])

    out = capsys.readouterr().out
    assert code == 3  # PARTIAL
    assert f"an execution for {task_id} already exists: following {first}" in out
    assert f"! {task_id[:8]}… PARTIAL: 2 images stored" in out.splitlines()[-1]
    sfn = boto3.client("stepfunctions")
    assert len(sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]) == 1


def test_start_names_a_stack_that_does_not_exist(deployed: EmbeddedStack, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["start", "some-task", "--stack", "no-such-stack"])

    assert code == 2
    assert capsys.readouterr().err.startswith("wan-relay: cannot read stack 'no-such-stack'")
