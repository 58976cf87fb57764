"""Key rotation through the real state machine: the key is rotated (secret and DashScope) while the
task runs and the function's container stays warm; the task still ends with one SUCCEEDED event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from wan_relay_local.lambda_bridge import InProcessLambdas
from wan_relay_local.replay import ReplayDashScope
from wan_relay_local.stack import deploy_embedded_stack

from .conftest import Sleeps, Workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image, unfinished

OLD_KEY = "sk-old-0123456789abcdef-ROTATED-AWAY"
NEW_KEY = "sk-new-fedcba9876543210-CURRENT"
SECRET_NAME = "wan-relay/dashscope-api-key"


@pytest.fixture
def keyed_workflow(sleeps: Sleeps) -> Iterator[Workflow]:
    """The stack as deployed: the function reads its key from the secret the template names."""
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with ReplayDashScope(api_key=OLD_KEY) as replay, mock_aws(config=config), InProcessLambdas() as lambdas:
        secret_arn = boto3.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"api_key": OLD_KEY}))["ARN"]
        stack = deploy_embedded_stack(
            environment={"DASHSCOPE_BASE_URL": replay.base_url, "ALLOWED_MEDIA_URLS": replay.origin},
            lambdas=lambdas, parameters={"DashScopeApiKeySecretArn": secret_arn},
        )
        yield Workflow(stack=stack, lambdas=lambdas, replay=replay)


def test_a_key_rotated_mid_task_still_ends_with_one_succeeded_event(keyed_workflow: Workflow) -> None:
    workflow = keyed_workflow
    workflow.replay.script(IMAGE_TASK, unfinished("pending", IMAGE_TASK), succeeded_image(workflow))
    assert "DASHSCOPE_API_KEY" not in workflow.stack.function_environment

    def rotate_after_the_first_poll(handler: Any) -> Any:
        def poll(event: dict[str, Any], context: Any) -> Any:
            answer = handler(event, context)
            if "action" not in event and not answer["done"]:  # the operator rotates the key while the task runs
                boto3.client("secretsmanager").put_secret_value(
                    SecretId=SECRET_NAME, SecretString=json.dumps({"api_key": NEW_KEY}))
                workflow.replay.api_key = NEW_KEY
            return answer
        return poll

    workflow.lambdas.wrap(workflow.stack.function_name, rotate_after_the_first_poll)

    execution = workflow.run({"task_id": IMAGE_TASK, "kind": "image"})

    assert execution["status"] == "SUCCEEDED"
    asked = [r for r in workflow.replay.requests if r["path"].startswith("/api/")]
    # first poll with the old key; second: the cached old key refused, the secret read afresh, the new key
    assert [r["authorized"] for r in asked] == [True, False, True]
    assert [i.get("error") for i in workflow.polls()] == [None, None]
    detail = only_event(workflow)
    assert detail["status"] == "SUCCEEDED" and len(detail["media"]) == 1
    assert workflow.objects().keys() == {detail["media"][0]["key"]}
