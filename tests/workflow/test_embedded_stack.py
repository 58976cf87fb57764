"""The embedded stack is template.yaml's stack: the same bucket settings, table, function environment
and definition, so what the workflow tests prove holds for what `sam deploy` creates."""

from __future__ import annotations

import json

from wan_relay.models import (
    DEFAULT_EVENT_SOURCE,
    DEFAULT_SUBMIT_SOURCE,
    DETAIL_TYPE_COMPLETED,
    DETAIL_TYPE_SUBMITTED,
)

from tests.conftest import ROOT

from .conftest import Workflow


def test_the_media_bucket_has_the_templates_protections(workflow: Workflow) -> None:
    s3 = workflow.stack.client("s3")
    bucket = workflow.stack.bucket
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_the_idempotency_table_expires_records_and_keeps_backups(workflow: Workflow) -> None:
    dynamodb = workflow.stack.client("dynamodb")
    table = workflow.stack.idempotency_table
    key_schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    assert key_schema == [{"AttributeName": "id", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == ("expiration", "ENABLED")
    backups = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_the_function_runs_with_the_stacks_resources_and_the_callers_settings(workflow: Workflow) -> None:
    stack = workflow.stack
    env = workflow.stack.client("lambda").get_function_configuration(FunctionName=stack.function_name)["Environment"]
    variables = env["Variables"]
    assert variables["MEDIA_BUCKET"] == stack.bucket
    assert variables["IDEMPOTENCY_TABLE"] == stack.idempotency_table
    assert "EVENT_BUS_NAME" not in variables  # the workflow puts the event, not the function
    assert variables["EVENT_SOURCE"] == DEFAULT_EVENT_SOURCE
    assert variables["DASHSCOPE_BASE_URL"] == workflow.replay.base_url  # the caller's, over the template's
    assert variables["DASHSCOPE_API_KEY_SECRET"].startswith("arn:aws:secretsmanager:")
    assert variables == stack.function_environment


def test_the_state_machine_runs_the_repositorys_definition_with_its_substitutions(workflow: Workflow) -> None:
    definition = workflow.stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=workflow.stack.state_machine_arn
    )["definition"]
    assert "${" not in definition
    deployed = json.loads(definition)
    source = json.loads((ROOT / "statemachine" / "poll_task.asl.json").read_text())
    assert deployed["States"].keys() == source["States"].keys()
    assert deployed["States"]["PollTask"]["Parameters"]["FunctionName"] == workflow.stack.function_arn
    assert deployed["States"]["ClaimTask"]["Parameters"]["TableName"] == workflow.stack.idempotency_table
    (entry,) = deployed["States"]["EmitCompletion"]["Parameters"]["Entries"]
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == (
        workflow.stack.bus_name, DEFAULT_EVENT_SOURCE, DETAIL_TYPE_COMPLETED
    )


def test_the_event_rules_use_the_templates_patterns(workflow: Workflow) -> None:
    events = workflow.stack.client("events")
    stack = workflow.stack
    assert stack.completion_pattern == {"source": [DEFAULT_EVENT_SOURCE], "detail-type": [DETAIL_TYPE_COMPLETED]}
    assert stack.submit_rule_pattern["detail-type"] == [DETAIL_TYPE_SUBMITTED]
    assert stack.submit_rule_pattern["source"] == [DEFAULT_SUBMIT_SOURCE]
    rule = events.describe_rule(Name=stack.submit_rule_name, EventBusName=stack.bus_name)
    assert json.loads(rule["EventPattern"]) == stack.submit_rule_pattern
    # no Step Functions target in moto: it would make every put_events on this bus fail
    assert events.list_targets_by_rule(Rule=stack.submit_rule_name, EventBusName=stack.bus_name)["Targets"] == []
