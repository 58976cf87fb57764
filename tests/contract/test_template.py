"""template.yaml and the state machine agree with the code: the event contract, the function's
configuration, the error names the workflow matches, the hard stops, and least privilege."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from wan_relay import errors
from wan_relay.config import Config
from wan_relay.models import (
    DEFAULT_EVENT_SOURCE,
    DEFAULT_SUBMIT_SOURCE,
    DEFAULT_TIMEOUT_SECONDS,
    DETAIL_TYPE_COMPLETED,
    DETAIL_TYPE_SUBMITTED,
    SCHEMA_VERSION,
)
from wan_relay.policy import MAX_POLLS
from wan_relay.schema import completion_schema, to_draft4
from wan_relay_local.stack import Template

from tests.conftest import ROOT

ASL_FILE = ROOT / "statemachine" / "poll_task.asl.json"
#: the relay's errors the workflow must NOT catch: the execution fails under their name
UNCAUGHT = {"OperatorError", "ConfigurationError", "InvalidInput"}
#: Step Functions Standard's limit, and the history events one poll costs at most (Wait, Task, Choice)
HISTORY_LIMIT = 25_000
EVENTS_PER_POLL = 9

REQUIRED = {"DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf"}
TOKEN_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:task-finished-token-AbCdEf"


@pytest.fixture
def template() -> Template:
    stack = Template(parameters={**REQUIRED, "TaskFinishedTokenSecretArn": TOKEN_SECRET})
    # what a deployment would answer for the resources' Ref and GetAtt
    stack.refs.update({
        "MediaBucket": "wan-relay-mediabucket-1a2b3c",
        "IdempotencyTable": "wan-relay-IdempotencyTable-XYZ",
        "ParkedTasksTable": "wan-relay-ParkedTasksTable-XYZ",
        "SweeperFunction": "wan-relay-SweeperFunction-XYZ",
        "PollTaskFunction": "wan-relay-PollTaskFunction-XYZ",
        "PollTaskStateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:PollTask-XYZ",
        "TaskFinishedApi": "a1b2c3d4e5",
        "TaskFinishedFunction": "wan-relay-TaskFinishedFunction-XYZ",
    })
    stack.attributes.update({
        ("MediaBucket", "Arn"): "arn:aws:s3:::wan-relay-mediabucket-1a2b3c",
        ("IdempotencyTable", "Arn"): "arn:aws:dynamodb:us-east-1:123456789012:table/wan-relay-IdempotencyTable-XYZ",
        ("ParkedTasksTable", "Arn"): "arn:aws:dynamodb:us-east-1:123456789012:table/wan-relay-ParkedTasksTable-XYZ",
        ("SweeperFunction", "Arn"): "arn:aws:lambda:us-east-1:123456789012:function:wan-relay-SweeperFunction-XYZ",
        ("PollTaskFunction", "Arn"): "arn:aws:lambda:us-east-1:123456789012:function:wan-relay-PollTaskFunction-XYZ",
        ("StateMachineLogGroup", "Arn"): "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/x:*",
        ("SubmitDeadLetterQueue", "Arn"): "arn:aws:sqs:us-east-1:123456789012:wan-relay-SubmitDeadLetterQueue",
        ("PollTaskStateMachineTaskSubmitted", "Arn"): "arn:aws:events:us-east-1:123456789012:rule/submit",
    })
    return stack


@pytest.fixture
def asl() -> dict[str, Any]:
    return json.loads(ASL_FILE.read_text())


# --- the event contract -----------------------------------------------------------------------


def test_event_names_in_the_template_are_the_codes_constants(template: Template) -> None:
    contract = template.doc["Mappings"]["Contract"]["Events"]
    assert contract == {
        "CompletedDetailType": DETAIL_TYPE_COMPLETED,
        "SubmittedDetailType": DETAIL_TYPE_SUBMITTED,
        "SchemaVersion": SCHEMA_VERSION,
    }
    assert template.doc["Parameters"]["EventSource"]["Default"] == DEFAULT_EVENT_SOURCE
    assert json.loads(template.output("CompletionEventPattern")) == {
        "source": [DEFAULT_EVENT_SOURCE], "detail-type": [DETAIL_TYPE_COMPLETED],
    }


def test_the_registered_schema_is_the_generated_draft4_schema(template: Template) -> None:
    schema = template.properties("CompletedEventSchema")
    assert schema["Type"] == "JSONSchemaDraft4"  # the registry takes Draft 4 or OpenApi3 only
    registered = json.loads(schema["Content"])
    assert registered == json.loads((ROOT / "schemas" / "wan-task-completed.draft4.json").read_text()), (
        "template.yaml's CompletedEventSchema differs from schemas/: run `make template-schema`"
    )
    assert registered == json.loads(json.dumps(to_draft4(completion_schema())))


def test_submit_rule_hands_the_detail_to_the_workflow(template: Template) -> None:
    rule = template.properties("PollTaskStateMachine")["Events"]["TaskSubmitted"]
    assert rule["Type"] == "EventBridgeRule"
    props = template.resolve(rule["Properties"])
    assert props["InputPath"] == "$.detail"
    assert props["EventBusName"] == "default"
    assert props["Pattern"]["detail-type"] == [DETAIL_TYPE_SUBMITTED]
    assert props["Pattern"]["source"] == [DEFAULT_SUBMIT_SOURCE] != [DEFAULT_EVENT_SOURCE]
    assert "Arn" in props["DeadLetterConfig"]


# --- the function -----------------------------------------------------------------------------


def test_the_functions_environment_is_a_valid_relay_configuration(template: Template) -> None:
    env = template.function_environment("PollTaskFunction")
    config = Config.from_env(env)
    assert config.media_bucket == "wan-relay-mediabucket-1a2b3c"
    assert config.idempotency_table == "wan-relay-IdempotencyTable-XYZ"
    assert config.api_key_secret == REQUIRED["DashScopeApiKeySecretArn"] and config.api_key is None
    assert config.event_bus_name == "default" and config.event_source == DEFAULT_EVENT_SOURCE
    assert config.media_prefix == "wan/"
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(env)


def test_an_existing_bucket_is_used_as_given() -> None:
    stack = Template(parameters={**REQUIRED, "MediaBucketName": "my-media"})
    stack.refs.update({"IdempotencyTable": "t", "ParkedTasksTable": "p", "SweeperFunction": "s"})
    assert not stack.condition("CreateMediaBucket")
    assert stack.function_environment("PollTaskFunction")["MEDIA_BUCKET"] == "my-media"


def test_the_function_and_its_layer_target_python313_arm64(template: Template) -> None:
    function_globals = template.doc["Globals"]["Function"]
    assert (function_globals["Runtime"], function_globals["Architectures"]) == ("python3.13", ["arm64"])
    assert function_globals["Tracing"] == "Active"
    layer = template.resource("RelayLayer")
    # built by layers/relay/Makefile: python3.13 arm64 wheels and their bytecode (`make check-template`
    # runs the build and checks every module has an unchecked-hash .pyc for cpython-313)
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    makefile = (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    assert "build-RelayLayer:" in makefile and "--python-version 3.13" in makefile
    assert "--platform manylinux2014_aarch64" in makefile and "unchecked-hash" in makefile
    assert (ROOT / layer["Properties"]["ContentUri"] / "wan_relay" / "relay.py").is_file()
    function = template.properties("PollTaskFunction")
    assert (ROOT / function["CodeUri"] / "app.py").is_file()
    assert function["Layers"] == [{"Ref": "RelayLayer"}]
    pins = [line for line in (ROOT / "layers/relay/requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all("==" in line for line in pins), "every runtime dependency is pinned in one place"


# --- least privilege --------------------------------------------------------------------------

#: actions that have no resource-level permissions, so AWS requires Resource "*" for them
RESOURCE_STAR_ALLOWED = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
}


def allow_statements(template: Template, logical_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in template.properties(logical_id)["Policies"]:
        for statement in template.resolve(policy)["Statement"]:
            assert statement["Effect"] == "Allow"
            found.append(statement)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("logical_id", ["PollTaskFunction", "PollTaskStateMachine", "TaskFinishedFunction"])
def test_no_wildcard_actions_and_no_wildcard_resources_where_a_name_exists(template: Template, logical_id) -> None:
    for statement in allow_statements(template, logical_id):
        actions = as_list(statement["Action"])
        assert not [a for a in actions if a == "*" or a.endswith(":*")], statement
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= RESOURCE_STAR_ALLOWED, statement


def test_the_function_may_touch_only_its_prefix_its_secret_and_its_table(template: Template) -> None:
    grants: dict[str, list[Any]] = {}
    for statement in allow_statements(template, "PollTaskFunction"):
        for action in as_list(statement["Action"]):
            grants.setdefault(action, []).extend(r for r in as_list(statement["Resource"])
                                                 if r not in grants.get(action, []))
    media = ["arn:aws:s3:::wan-relay-mediabucket-1a2b3c/wan/*"]
    assert grants["s3:GetObject"] == grants["s3:PutObject"] == grants["s3:AbortMultipartUpload"] == media
    assert grants["secretsmanager:GetSecretValue"] == [REQUIRED["DashScopeApiKeySecretArn"]]
    assert "events:PutEvents" not in grants  # only the workflow's EmitCompletion puts the event
    table = [template.attributes[("IdempotencyTable", "Arn")]]
    assert grants["dynamodb:GetItem"] == grants["dynamodb:UpdateItem"] == table
    # and the parked workflows' tokens: ParkTask puts them, the sweeper reads and removes them
    assert grants["dynamodb:PutItem"] == [*table, template.attributes[("ParkedTasksTable", "Arn")]]
    assert "dynamodb:Scan" not in grants and "s3:ListBucketMultipartUploads" not in grants
    # listing: the task's media only, read back when a task's budget ran out in trouble
    (listing,) = [s for s in allow_statements(template, "PollTaskFunction") if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == "arn:aws:s3:::wan-relay-mediabucket-1a2b3c"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "wan/*"}}


def test_the_state_machine_may_invoke_its_function_put_on_its_bus_and_write_only_task_locks(
    template: Template,
) -> None:
    statements = {s["Sid"]: s for s in allow_statements(template, "PollTaskStateMachine")}
    invoke = statements["InvokeThePollFunction"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == template.attributes[("PollTaskFunction", "Arn")]
    events = statements["CompletionEvents"]
    assert events["Action"] == "events:PutEvents"
    assert events["Resource"] == "arn:aws:events:us-east-1:123456789012:event-bus/default"
    locks = statements["TaskLocks"]
    assert locks["Action"] == ["dynamodb:PutItem", "dynamodb:UpdateItem"]  # claim, then let expire
    assert locks["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["lock#*"]


def test_a_created_bucket_is_private_encrypted_tls_only_and_cleans_up_uploads(template: Template) -> None:
    bucket = template.properties("MediaBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    (deny,) = template.resolve(template.properties("MediaBucketPolicy")["PolicyDocument"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {"arn:aws:s3:::wan-relay-mediabucket-1a2b3c",
                                     "arn:aws:s3:::wan-relay-mediabucket-1a2b3c/*"}


def test_the_idempotency_table_is_keyed_by_id_with_ttl_on_expiration(template: Template) -> None:
    table = template.properties("IdempotencyTable")
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_every_log_group_has_a_retention_and_alarms_watch_failures(template: Template) -> None:
    resources = template.doc["Resources"]
    log_groups = {i: r for i, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert all("RetentionInDays" in g["Properties"] for g in log_groups.values())
    # each function's own log group made first, so it has a retention, and there whenever the function is
    named = {json.dumps(g["Properties"].get("LogGroupName")): g.get("Condition") for g in log_groups.values()}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            name = json.dumps({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"})
            assert name in named and named[name] == resource.get("Condition"), logical_id
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    metrics = {a["MetricName"] for a in alarms if "MetricName" in a} | {
        q["MetricStat"]["Metric"]["MetricName"] for a in alarms for q in a.get("Metrics", []) if "MetricStat" in q}
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "Errors", "TasksTimedOut"} <= metrics


# --- the state machine ------------------------------------------------------------------------


def test_the_definition_substitutions_are_exactly_what_the_asl_uses(template: Template) -> None:
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL_FILE.read_text()))
    given = set(template.properties("PollTaskStateMachine")["DefinitionSubstitutions"])
    assert used == given
    definition = json.loads(template.definition())
    assert definition["QueryLanguage"] == "JSONPath"


def test_every_task_has_a_timeout_and_capped_jittered_bounded_retries(asl: dict[str, Any]) -> None:
    tasks = {name: s for name, s in asl["States"].items() if s["Type"] == "Task"}
    assert set(tasks) == {"CheckInput", "CheckInputAgain", "ClaimTask", "InspectClaim", "PollTask", "ParkTask",
                          "AfterTrouble", "EmitCompletion", "ExpireLock"}
    for name, task in tasks.items():
        if name == "ParkTask":  # parked for the task's budget at most, and heartbeaten (the watchdog);
            # a failed park is not retried in place: AfterTrouble backs off (a pass's history stays small)
            assert task["TimeoutSecondsPath"] and task["HeartbeatSecondsPath"]
            assert "Retry" not in task and {c["Next"] for c in task["Catch"]} == {"PollTask", "AfterTrouble"}
            continue
        assert 0 < task["TimeoutSeconds"] <= 960, name
        assert task["Retry"], name
        for retrier in task["Retry"]:
            assert retrier["JitterStrategy"] == "FULL", name
            assert retrier["BackoffRate"] > 1 and retrier["MaxDelaySeconds"] <= 300, name
            assert 1 <= retrier["MaxAttempts"] <= 10, name


def test_the_loop_has_a_default_branch_and_hard_stops(asl: dict[str, Any]) -> None:
    choices = [s for s in asl["States"].values() if s["Type"] == "Choice"]
    assert choices and all("Default" in c for c in choices)
    # the workflow outlives the longest poll budget, which the handler ends with TIMED_OUT itself
    assert asl["TimeoutSeconds"] > DEFAULT_TIMEOUT_SECONDS
    assert MAX_POLLS * EVENTS_PER_POLL < HISTORY_LIMIT


def test_an_outage_of_the_function_ends_at_the_poll_cap_the_relay_keeps(asl: dict[str, Any]) -> None:
    """The workflow counts the passes the function could not answer (CountOutage) and stops them at the
    relay's own cap: a threshold past it would let the history outgrow what MAX_POLLS was sized for."""
    [cap] = asl["States"]["WithinPollCap"]["Choices"]
    assert cap["Variable"] == "$.outages.total" and cap["NumericGreaterThanEquals"] == MAX_POLLS - 1
    count = asl["States"]["CountOutage"]["Parameters"]
    assert count["total.$"] == "States.MathAdd($.polls, $.outages.n)"
    assert asl["States"][cap["Next"]]["Type"] == "Fail"


def test_operator_errors_are_never_retried_or_caught(asl: dict[str, Any]) -> None:
    for name, state in asl["States"].items():
        for rule in state.get("Retry", []) + state.get("Catch", []):
            assert not UNCAUGHT & set(rule["ErrorEquals"]), name
            assert "States.ALL" not in rule["ErrorEquals"], name


def test_the_error_names_the_workflow_matches_are_the_relays_error_classes(asl: dict[str, Any]) -> None:
    matched = {
        error
        for state in (asl["States"]["PollTask"], asl["States"]["AfterTrouble"])
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
        if "." not in error
    }
    assert matched == {"TransientError", "MediaTransferError", "ProtocolError"}
    for name in matched | UNCAUGHT:
        assert issubclass(getattr(errors, name), errors.WanRelayError), name
    (catch,) = asl["States"]["PollTask"]["Catch"]
    assert catch["Next"] == "AfterTrouble" and catch["ResultPath"] == "$.error"


def test_every_finished_task_passes_emit_completion_once_and_it_puts_the_decided_detail(
    asl: dict[str, Any], template: Template
) -> None:
    states = asl["States"]
    done = next(c for c in states["IsDone"]["Choices"] if c.get("BooleanEquals") is True)
    assert done["Next"] == "EmitCompletion" and states["AfterTrouble"]["Next"] == "IsDone"
    emit = states["EmitCompletion"]
    assert emit["Resource"] == "arn:${Partition}:states:::events:putEvents"  # the optimized integration: FailedEntry
    assert "Catch" not in emit and emit["Next"] == "ExpireLock"  # no path around the event
    into_expire = [name for name, s in states.items() if s.get("Next") == "ExpireLock"]
    assert into_expire == ["EmitCompletion"]
    (entry,) = emit["Parameters"]["Entries"]
    assert entry == {"EventBusName": "${EventBusName}", "Source": "${EventSource}",
                     "DetailType": "${CompletedDetailType}", "Detail.$": "$.event"}
    substitutions = template.properties("PollTaskStateMachine")["DefinitionSubstitutions"]
    assert template.resolve(substitutions["CompletedDetailType"]) == DETAIL_TYPE_COMPLETED
    assert template.resolve(substitutions["EventSource"]) == DEFAULT_EVENT_SOURCE
    refused, failed = emit["Retry"]
    assert refused["ErrorEquals"] == ["EventBridge.FailedEntry"]  # nothing was sent: always safe to retry
    # EventBridge failing for minutes (PutEvents throttled by the account's other producers, an incident) is
    # waited out: each retrier waits up to 5 minutes, 10 times; States.TaskFailed is any failed call
    # (Step Functions' error handling), States.Timeout its own name
    assert failed["ErrorEquals"] == ["States.TaskFailed", "States.Timeout"]
    for retrier, first in ((refused, 1), (failed, 2)):
        assert (retrier["IntervalSeconds"], retrier["BackoffRate"], retrier["MaxAttempts"],
                retrier["MaxDelaySeconds"]) == (first, 2, 10, 300)
    waits = [min(300, 2 * 2 ** attempt) for attempt in range(failed["MaxAttempts"])]
    assert 15 * 60 < sum(waits) < 20 * 60  # the README's "about 18 min at most"


# --- the receiver of DashScope's task-finished notifications ------------------------------------------

RECEIVER = ("TaskFinishedApi", "TaskFinishedApiLogGroup", "TaskFinishedFunction", "TaskFinishedLogGroup")


def test_the_receiver_exists_only_when_its_token_secret_is_given(template: Template) -> None:
    assert template.condition("ReceivesTaskFinished")
    assert not Template(parameters=REQUIRED).condition("ReceivesTaskFinished")  # the default: no public endpoint
    conditioned = {i for i, r in template.doc["Resources"].items() if r.get("Condition") == "ReceivesTaskFinished"}
    assert conditioned == set(RECEIVER)
    assert template.doc["Outputs"]["TaskFinishedEndpoint"]["Condition"] == "ReceivesTaskFinished"
    assert template.output("TaskFinishedEndpoint") == (
        "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/task-finished")


def test_the_receiver_is_a_throttled_http_api_route_giving_payload_format_2(template: Template) -> None:
    from wan_relay.notifications import TOKEN_HEADER

    api = template.properties("TaskFinishedApi")
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0 and api["DefaultRouteSettings"][
        "ThrottlingBurstLimit"] > 0
    assert "$context.identity.sourceIp" in api["AccessLogSettings"]["Format"]
    assert "header" not in api["AccessLogSettings"]["Format"] and TOKEN_HEADER not in api["AccessLogSettings"]["Format"]
    (event,) = template.properties("TaskFinishedFunction")["Events"].values()
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {"ApiId": {"Ref": "TaskFinishedApi"}, "Method": "POST", "Path": "/task-finished",
                                   "PayloadFormatVersion": "2.0"}
    function = template.properties("TaskFinishedFunction")
    assert (ROOT / function["CodeUri"] / "app.py").is_file() and function["Layers"] == [{"Ref": "RelayLayer"}]
    env = template.function_environment("TaskFinishedFunction")
    assert env["TASK_FINISHED_TOKEN_SECRET"] == TOKEN_SECRET
    assert env["PARKED_TABLE"] == "wan-relay-ParkedTasksTable-XYZ" and env["DASHSCOPE_ACCOUNT"] == "default"


def test_the_receiver_may_read_its_token_and_write_its_accounts_hints_only(template: Template) -> None:
    statements = {s["Sid"]: s for s in allow_statements(template, "TaskFinishedFunction")}
    assert set(statements) == {"TaskFinishedToken", "TaskFinishedHints"}
    assert statements["TaskFinishedToken"]["Action"] == "secretsmanager:GetSecretValue"
    assert statements["TaskFinishedToken"]["Resource"] == TOKEN_SECRET
    hints = statements["TaskFinishedHints"]
    assert hints["Action"] == "dynamodb:PutItem"
    assert hints["Resource"] == template.attributes[("ParkedTasksTable", "Arn")]
    assert hints["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["hint#default"]}}


def test_the_sweeper_may_read_the_hints_but_remove_only_its_parks(template: Template) -> None:
    statements = {s["Sid"]: s for s in allow_statements(template, "SweeperFunction")}
    assert statements["TaskFinishedHints"]["Action"] == "dynamodb:Query"
    assert statements["TaskFinishedHints"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["hint#default"]}}
    assert statements["ParkedWorkflows"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["default"]}}
