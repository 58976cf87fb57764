"""The permission contract: every AWS call the stack makes while it runs is allowed by the IAM policy
of the principal that makes it, as AWS would decide it (moto decides nothing: see iam_requests.py).

A few representative runs of the real workflow on moto are recorded once: images with several items,
a video through each upload path (s3transfer's stream, ranged.py's parts), a provider failure, a poll
that dies after its first part and is retried, a duplicate start, the key read from Secrets Manager.
The mutation tests then show the check fails when a needed statement is removed, narrowed or given
a condition the request cannot meet, and the s3:prefix grant the stack shipped with is denied.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from unittest import mock

import boto3
import botocore.client
import pytest
from moto import mock_aws
from wan_relay.ingest import MediaBucket, MediaStreamer
from wan_relay_local.lambda_bridge import FakeContext, InProcessLambdas, load_handler
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope
from wan_relay_local.stack import deploy_embedded_stack

from tests.conftest import API_KEY, ROOT, sample
from tests.unit.test_notifications import notification, request

from .conftest import Workflow, recorded_sleeps
from .iam_requests import (
    Call,
    FunctionCalls,
    Request,
    Unsupported,
    evaluate,
    requests_for,
    state_machine_calls,
    task_integrations,
)
from .test_fleet import parked

MiB = 1024 * 1024
RECEIVER_TOKEN = "T0kenOfTheReceiver0123456789abcdefABCDEF"  # a test token
ORIGINAL_LISTING = "original listing"


@dataclass
class Recorded:
    calls: list[Call]
    statements: dict[str, list[dict[str, Any]]]  # principal -> its identity policy's statements
    principal_arns: dict[str, str]
    account: str
    partition_keys: dict[str, str]
    integrations: dict[str, tuple[str, str]]
    bucket: str
    prefix: str

    def requests(self, scenario: str | None = None) -> list[Request]:
        found = []
        for call in self.calls:
            if (scenario is None and call.scenario != ORIGINAL_LISTING) or call.scenario == scenario:
                found += requests_for(call, account=self.account, principal_arn=self.principal_arns[call.principal],
                                      partition_keys=self.partition_keys)
        return found

    def denied(self, statements: Mapping[str, list[dict[str, Any]]] | None = None,
               scenario: str | None = None) -> list[str]:
        statements = statements or self.statements
        return [f"{request}: {decision.why}" for request in self.requests(scenario)
                if not (decision := evaluate(statements[request.call.principal], request)).allowed]


def _with_task_id(answer: dict[str, Any], task_id: str) -> dict[str, Any]:
    answer = copy.deepcopy(answer)
    answer["output"]["task_id"] = task_id
    return answer


def _video(replay: ReplayDashScope, name: str, task_id: str, *, ranges: bool) -> str:
    answer = sample(name)
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    media = Media(PatternBody(20 * MiB, seed=task_id), content_type="video/mp4", ranges=ranges)
    replay.script(task_id, replay.rehost(_with_task_id(answer, task_id), media={path: media}))
    return task_id


@contextmanager
def _dies_after_its_first_part() -> Iterator[None]:
    """The next attempt dies (Runtime.ExitError) right after S3 took its first part."""
    make_api_call = botocore.client.BaseClient._make_api_call
    died = []

    def call(client: Any, operation: str, params: Mapping[str, Any]) -> Any:
        answer = make_api_call(client, operation, params)
        if operation == "UploadPart" and not died:
            died.append(operation)
            raise type("Runtime.ExitError", (Exception,), {})("the attempt died after its first part")
        return answer

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", call):
        yield


@contextmanager
def _dies_on_the_second_item() -> Iterator[None]:
    died = type("Runtime.OutOfMemory", (Exception,), {})
    store = MediaStreamer.store

    def dies(self: MediaStreamer, task_id: str, ref: Any, deadline: float | None = None) -> Any:
        if ref.index == 1:
            raise died("Runtime exited with error: signal: killed")
        return store(self, task_id, ref, deadline)

    with mock.patch.object(MediaStreamer, "store", dies):
        yield


def _listing_stale_uploads(bucket: MediaBucket, item: str) -> None:
    """What the relay did before issue 11: list the bucket's unfinished uploads under the item's key."""
    for upload in bucket.s3.list_multipart_uploads(Bucket=bucket.name, Prefix=item).get("Uploads", []):
        if upload["Key"].startswith(f"{item}."):
            bucket.s3.abort_multipart_upload(Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"])


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with (
        pytest.MonkeyPatch.context() as env,
        ReplayDashScope(api_key=API_KEY) as replay,
        recorded_sleeps(),
        mock_aws(config=config),
        InProcessLambdas() as lambdas,
    ):
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # the key in Secrets Manager, as deployed (the other workflow tests hand it over in plain text)
        secret = boto3.client("secretsmanager").create_secret(Name="dashscope-key", SecretString=API_KEY)["ARN"]
        stack = deploy_embedded_stack(
            environment={"DASHSCOPE_BASE_URL": replay.base_url, "ALLOWED_MEDIA_URLS": replay.origin},
            lambdas=lambdas, parameters={"DashScopeApiKeySecretArn": secret},
        )
        assert "DASHSCOPE_API_KEY" not in stack.function_environment
        workflow = Workflow(stack=stack, lambdas=lambdas, replay=replay)
        function_calls = FunctionCalls()
        lambdas.wrap(stack.function_name, function_calls.wrap)
        sfn_calls: list[Call] = []

        def run(scenario: str, loop_input: dict[str, Any], name: str | None = None) -> None:
            function_calls.scenario = scenario
            execution = workflow.run(loop_input, name=name)
            assert execution["status"] == "SUCCEEDED", (scenario, execution)
            history = workflow.sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
            sfn_calls.extend(state_machine_calls(history["events"], stack.region, scenario))

        with function_calls.recording():
            images = replay.rehost(sample("wan2.6-image_interleaved_succeeded"))
            replay.script(images["output"]["task_id"], images)
            run("images, several items", {"task_id": images["output"]["task_id"]})
            run("video, one stream", {"task_id": _video(replay, "wan2.7-i2v_succeeded", "video-stream", ranges=False)})
            run("video, ranged parts", {"task_id": _video(replay, "wan2.1-t2v_succeeded", "video-ranged", ranges=True)})
            failed = sample("failed_output_code")
            replay.script(failed["output"]["task_id"], failed)
            run("provider failure", {"task_id": failed["output"]["task_id"]})
            crashed = _video(replay, "wan2.7-i2v_succeeded", "video-crashed", ranges=False)
            with _dies_after_its_first_part():
                run("retry after a crash", {"task_id": crashed})
            run("duplicate start", {"task_id": images["output"]["task_id"]}, name="duplicate-start")
            # a lock 0.1.0 left without an expiry, its holder long gone: the start that finds it gives it one
            gone = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":long-gone"
            workflow.dynamodb.put_item(TableName=stack.idempotency_table,
                                       Item={"id": {"S": "lock#unexpiring"}, "execution": {"S": gone}})
            function_calls.scenario = "a lock 0.1.0 left"
            blocked = workflow.run({"task_id": "unexpiring"}, name="unexpiring-blocked")
            assert blocked["error"] == "TaskBlockedByStaleClaim", blocked
            sfn_calls.extend(state_machine_calls(workflow.sfn.get_execution_history(
                executionArn=blocked["executionArn"], maxResults=1000)["events"], stack.region, "a lock 0.1.0 left"))
            several = _with_task_id(replay.rehost(sample("wan2.6-image_interleaved_succeeded")), "dies-on-item-1")
            replay.script("dies-on-item-1", several)
            with _dies_on_the_second_item():  # the budget runs out in trouble: the media is read back from S3
                run("budget spent in trouble", {"task_id": "dies-on-item-1", "timeout_seconds": 2})
            with mock.patch.object(MediaBucket, "abort_stale_uploads", _listing_stale_uploads):
                run(ORIGINAL_LISTING, {"task_id": _video(replay, "wan2.7-i2v_succeeded", "listing", ranges=False)})

        # a second stack in the same account that parks (Waiting=park): the park, the budget, the wake,
        # the sweeper's list page, resume and registry; and the receiver of task-finished notifications
        token = boto3.client("secretsmanager").create_secret(Name="task-finished-token",
                                                              SecretString=RECEIVER_TOKEN)["ARN"]
        fleet = deploy_embedded_stack(
            environment={"DASHSCOPE_BASE_URL": replay.base_url, "ALLOWED_MEDIA_URLS": replay.origin},
            lambdas=lambdas, parameters={"DashScopeApiKeySecretArn": secret, "TaskFinishedTokenSecretArn": token},
            prefix="fleet", parks=True,
        )
        fleet_workflow = Workflow(stack=fleet, lambdas=lambdas, replay=replay)
        fleet_calls = FunctionCalls(principal="fleet function")
        lambdas.wrap(fleet.function_name, fleet_calls.wrap)
        sweeper_calls = FunctionCalls(principal="sweeper", thread_name="embedded-sweeper")
        with fleet_calls.recording(), sweeper_calls.recording():
            answer = _with_task_id(replay.rehost(sample("wan2.6-t2i_succeeded")), "parked-image")
            replay.add_task("parked-image", answer, running_after=0.5, ends_after=1.0)
            started = fleet.start({"task_id": "parked-image", "kind": "image"})
            parked(fleet_workflow, 1)  # no sweeper runs yet: the park wakes one (its async invoke) ...
            # ... while the last minute's run still holds the lease for 2.5 s: the new run asks for it
            fleet_workflow.dynamodb.put_item(TableName=fleet.idempotency_table, Item={
                "id": {"S": "sweeper#default"}, "holder": {"S": "the-last-minutes-run"},
                "lease_until": {"N": repr(time.time() + 2.5)}})
            with fleet.sweeping():  # ... which, here, is the embedded sweeper's thread
                execution = fleet_workflow.finish(started)
            assert execution["status"] == "SUCCEEDED", execution
            assert "ParkTask" in fleet_workflow.visited(execution["executionArn"])
            history = fleet_workflow.sfn.get_execution_history(executionArn=execution["executionArn"],
                                                               maxResults=1000)
            sfn_calls.extend(
                replace(call, principal="fleet state machine")
                for call in state_machine_calls(history["events"], fleet.region, "parked, resumed by the sweeper"))

        # DashScope's notification of that task's end, as Alibaba Cloud EventBridge POSTs it to the HTTP API
        receiver_calls = FunctionCalls(principal="receiver", scenario="task-finished notification")
        with receiver_calls.recording(), pytest.MonkeyPatch.context() as receiver_env:
            for name, value in fleet.receiver_environment.items():
                receiver_env.setenv(name, value)
            handler = receiver_calls.wrap(load_handler(ROOT / "functions" / "task_finished"))
            answer = handler(request(notification(task_id="parked-image"), token=RECEIVER_TOKEN), FakeContext(
                function_name="fleet-task-finished", invoked_function_arn="arn:aws:lambda:::function:x"))
            assert answer["statusCode"] == 200, answer

        iam = boto3.client("iam")
        lambda_client = workflow.stack.client("lambda")
        roles = {
            "function": lambda_client.get_function(FunctionName=stack.function_name)["Configuration"]["Role"],
            "state machine": workflow.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["roleArn"],
            "fleet function": lambda_client.get_function(FunctionName=fleet.function_name)["Configuration"]["Role"],
            "fleet state machine": workflow.sfn.describe_state_machine(
                stateMachineArn=fleet.state_machine_arn)["roleArn"],
            "sweeper": lambda_client.get_function(FunctionName="fleet-sweeper")["Configuration"]["Role"],
            "receiver": lambda_client.get_function(FunctionName="fleet-task-finished")["Configuration"]["Role"],
        }
        statements = {}
        for principal, arn in roles.items():
            role = arn.rsplit("/", 1)[-1]
            assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
            statements[principal] = [
                statement
                for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]
                for statement in iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]["Statement"]
            ]
        definition = json.loads(workflow.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)[
            "definition"])
        yield Recorded(
            calls=function_calls.calls + fleet_calls.calls + sweeper_calls.calls + receiver_calls.calls + sfn_calls,
            statements=statements,
            principal_arns=roles,
            account=stack.account_id,
            partition_keys={
                name: next(k["AttributeName"] for k in workflow.dynamodb.describe_table(TableName=name)["Table"][
                    "KeySchema"] if k["KeyType"] == "HASH")
                for name in (stack.idempotency_table, fleet.idempotency_table, fleet.parked_table)},
            integrations=task_integrations(definition),
            bucket=stack.bucket,
            prefix=stack.media_prefix,
        )


def test_every_call_the_stack_makes_is_allowed_by_its_principals_own_policy(recorded: Recorded) -> None:
    denied = recorded.denied()

    assert denied == [], "\n".join(denied)


def test_the_runs_exercise_every_integration_of_the_definition_and_every_kind_of_function_call(
    recorded: Recorded,
) -> None:
    state_machine = {(c.service, c.operation) for c in recorded.calls if c.principal == "state machine"}
    unexercised = {state: call for state, call in recorded.integrations.items() if call not in state_machine}
    assert unexercised == {}, f"Task states no recorded run reached: add a run that does: {unexercised}"
    actions = {r.action for r in recorded.requests() if r.call.principal == "function"}
    assert actions >= {
        "secretsmanager:GetSecretValue", "s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload",
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "s3:ListBucket", "states:DescribeExecution",
    }
    # the lock 0.1.0 left: given an expiry, in the lock's own partition
    assert {r.context["dynamodb:leadingkeys"][0] for r in recorded.requests()
            if r.call.principal == "function" and r.action == "dynamodb:UpdateItem"} >= {"lock#unexpiring"}
    # the park: the token in the registry, every GET at a slot of the account's budget, the sweeper woken
    assert {(r.action, r.resource.rsplit("/", 1)[-1]) for r in recorded.requests()
            if r.call.principal == "fleet function"} >= {
        ("dynamodb:PutItem", "fleet-parked-tasks"), ("dynamodb:UpdateItem", "fleet-idempotency"),
        ("dynamodb:GetItem", "fleet-idempotency"),
    }
    assert "lambda:InvokeFunction" in {r.action for r in recorded.requests() if r.call.principal == "fleet function"}
    assert {r.action for r in recorded.requests() if r.call.principal == "sweeper"} >= {
        "secretsmanager:GetSecretValue", "dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:GetItem",
        "dynamodb:UpdateItem", "states:SendTaskSuccess",
    }
    # it asked for the lease the last minute's run held (a write of `asked_at` on the lease's item)
    assert any(c.principal == "sweeper" and c.operation == "UpdateItem"
               and c.params.get("UpdateExpression") == "SET asked_at = :now" for c in recorded.calls)
    # the sweeper reads the parks and the hints, each in its own partition of the registry's table
    assert {r.context["dynamodb:leadingkeys"][0] for r in recorded.requests()
            if r.call.principal == "sweeper" and r.action == "dynamodb:Query"} == {"default", "hint#default"}
    # the receiver: its token, and the hint in its account's partition of the registry's table
    receiver = [r for r in recorded.requests() if r.call.principal == "receiver"]
    assert {r.action for r in receiver} == {"secretsmanager:GetSecretValue", "dynamodb:PutItem"}
    assert {r.context["dynamodb:leadingkeys"][0] for r in receiver if r.action == "dynamodb:PutItem"} == {
        "hint#default"}
    operations = {c.operation for c in recorded.calls if c.principal == "function" and c.service == "s3"}
    assert {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "HeadObject"} <= operations
    assert "ListMultipartUploads" not in {c.operation for c in recorded.calls if c.scenario != ORIGINAL_LISTING}


# --- the check fails where AWS would refuse -------------------------------------------------------


def _without(sid: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    return lambda statements: [s for s in statements if s.get("Sid") != sid]


def _changed(sid: str, change: Callable[[dict[str, Any]], None]) -> Callable[[list[dict[str, Any]]], list[dict]]:
    def mutate(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        statements = copy.deepcopy(statements)
        change(next(s for s in statements if s.get("Sid") == sid))
        return statements

    return mutate


MUTATIONS = {
    "the secret's grant removed": (
        "function", _without("DashScopeKey"), "secretsmanager:GetSecretValue"),
    "the media grant narrowed to images": (
        "function", _changed("MediaObjects", lambda s: s.update(Resource=s["Resource"].replace("*", "*.png"))),
        "s3:PutObject on arn:aws:s3:::wan-relay-media-123456789012/wan/video-stream/0.mp4"),
    "a condition on a key PutObject does not carry": (
        "function", _changed("MediaObjects", lambda s: s.update(Condition={"StringLike": {"s3:prefix": "wan/*"}})),
        "s3:PutObject"),
    "the records narrowed to the media records": (
        "function", _changed("IdempotencyRecords", lambda s: s["Condition"]["ForAllValues:StringLike"].update(
            {"dynamodb:LeadingKeys": ["wan-relay.media#*"]})),
        "'dynamodb:leadingkeys': ['wan-relay.completion#"),
    "the function's invoke grant removed": (
        "state machine", _without("InvokeThePollFunction"), "lambda:InvokeFunction"),
    "the task locks' grant removed": (
        "state machine", _without("TaskLocks"), "dynamodb:PutItem"),
    "the sweeper's resume grant removed": (
        "sweeper", _without("ResumeParkedWorkflows"), "states:SendTaskSuccess"),
    "the registry narrowed to another account's parks": (
        "sweeper", _changed("ParkedWorkflows", lambda s: s["Condition"]["ForAllValues:StringEquals"].update(
            {"dynamodb:LeadingKeys": ["another-account"]})), "dynamodb:Query"),
    "the receiver's token grant removed": (
        "receiver", _without("TaskFinishedToken"), "secretsmanager:GetSecretValue"),
    "the receiver's hints narrowed to the account's parks": (
        "receiver", _changed("TaskFinishedHints", lambda s: s["Condition"]["ForAllValues:StringEquals"].update(
            {"dynamodb:LeadingKeys": ["default"]})), "'dynamodb:leadingkeys': ['hint#default']"),
    "the park's grant removed": (
        "fleet function", _without("ParkedWorkflows"), "dynamodb:PutItem"),
    "the wake's grant removed": (
        "fleet function", _without("WakeTheSweeper"), "lambda:InvokeFunction"),
    "the bus narrowed to another bus": (
        "state machine", _changed("CompletionEvents", lambda s: s.update(Resource=s["Resource"] + "-other")),
        "events:PutEvents"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_missing_or_wrongly_narrowed_grant_is_reported_as_a_denied_call(recorded: Recorded, mutation: str) -> None:
    principal, mutate, expected = MUTATIONS[mutation]
    statements = {**recorded.statements, principal: mutate(recorded.statements[principal])}

    denied = recorded.denied(statements)

    assert any(expected in line for line in denied), "\n".join(denied) or "nothing denied"
    assert all(f"{principal}:" in line for line in denied)


def test_a_condition_operator_the_check_cannot_evaluate_fails_the_test_rather_than_allowing(
    recorded: Recorded,
) -> None:
    dated = _changed("DashScopeKey", lambda s: s.update(
        Condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}))
    statements = {**recorded.statements, "function": dated(recorded.statements["function"])}

    with pytest.raises(Unsupported, match="DateLessThan"):
        recorded.denied(statements)


def test_the_s3_prefix_grant_the_stack_shipped_with_denies_the_listing_it_was_meant_for(recorded: Recorded) -> None:
    # template.yaml's StaleUploadsUnderPrefix statement before issue 11, as deployed here
    original = {
        "Sid": "StaleUploadsUnderPrefix", "Effect": "Allow", "Action": "s3:ListBucketMultipartUploads",
        "Resource": f"arn:aws:s3:::{recorded.bucket}",
        "Condition": {"StringLike": {"s3:prefix": f"{recorded.prefix}*"}},
    }
    statements = {**recorded.statements, "function": [*recorded.statements["function"], original]}

    denied = recorded.denied(statements, scenario=ORIGINAL_LISTING)

    assert denied, "the listing was allowed"
    assert all("s3:ListBucketMultipartUploads" in line for line in denied)
    assert "StaleUploadsUnderPrefix (action and resource match, its Condition does not hold)" in denied[0]
