"""The operator dashboard and the alarms watch exactly the metrics the stack emits.

What the code emits is observed, not declared: every completion status, a throttled poll, an outage, a
transfer tried again, a duplicate start and one blocked by a stale claim run through the deployed
workflow on moto with the real handler, and the function's EMF lines are read back; the state machine's
own metrics would be its putMetricData states. Both sides are compared with the
one list (wan_relay.metrics), the dashboard generated from it, and the template's alarms.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from wan_relay import metrics
from wan_relay.metrics import Metric
from wan_relay.models import CompletionStatus
from wan_relay_local.replay import Media, ReplayDashScope, Reply
from wan_relay_local.stack import Template

from tests.conftest import API_KEY, ROOT, sample
from tests.contract.completed_samples import SCENARIOS

ASL_FILE = ROOT / "statemachine" / "poll_task.asl.json"
REQUIRED = {"DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf"}
FUNCTION_NAME = "wan-relay-PollTaskFunction-XYZ"
SWEEPER_FUNCTION_NAME = "wan-relay-SweeperFunction-XYZ"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:PollTaskStateMachine-wan-relay-XYZ"
#: the AWS metrics the dashboard may graph, by namespace: (dimension, the resources that name it, metrics).
#: Step Functions: docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html (execution
#: metrics, dimension StateMachineArn); Lambda: docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
#: (FunctionName; ConcurrentExecutions is emitted for every function, read with Maximum; AsyncEventsDropped,
#: of the asynchronous invocation metrics: events dropped unrun, past their maximum age or throttled)
AWS_METRICS = {
    "AWS/States": ("StateMachineArn", {STATE_MACHINE_ARN}, {
        "ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsAborted",
        "ExecutionsTimedOut", "ExecutionTime",
    }),
    "AWS/Lambda": ("FunctionName", {FUNCTION_NAME, SWEEPER_FUNCTION_NAME}, {
        "Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "AsyncEventsDropped",
    }),
}
#: the outcomes issue 12.7 asks an alarm for
ALARMED = {"TasksFailed", "TasksMediaUnavailable", "TasksTimedOut", "TasksBlockedByStaleClaim"}

#: a metric as CloudWatch tells it apart: namespace, name and the names of its dimensions
Series = tuple[str, str, tuple[str, ...]]


def deployed_as(stack_name: str) -> Template:
    """The template as CloudFormation resolves it for a stack of that name, with realistic physical names."""
    stack = Template(parameters=REQUIRED, stack_name=stack_name)
    resources = stack.doc["Resources"]
    stack.refs.update({"PollTaskFunction": FUNCTION_NAME.replace("wan-relay", stack_name, 1),
                       "PollTaskStateMachine": STATE_MACHINE_ARN.replace("wan-relay", stack_name),
                       "SweeperFunction": f"{stack_name}-SweeperFunction-XYZ",
                       "IdempotencyTable": f"{stack_name}-IdempotencyTable-XYZ",
                       "ParkedTasksTable": f"{stack_name}-ParkedTasksTable-XYZ",
                       "MediaBucket": f"{stack_name}-mediabucket-xyz"})
    stack.attributes[("SubmitDeadLetterQueue", "QueueName")] = f"{stack_name}-SubmitDeadLetterQueue-XYZ"
    stack.attributes.update({
        (alarm, "Arn"): f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{stack_name}-{alarm}"
        for alarm, resource in resources.items() if resource["Type"] == "AWS::CloudWatch::Alarm"
    })
    return stack


@pytest.fixture(scope="module")
def template() -> Template:
    return deployed_as("wan-relay")


def powertools_settings(template: Template) -> dict[str, str]:
    variables = template.resolve(template.doc["Globals"]["Function"]["Environment"]["Variables"])
    return {"namespace": variables["POWERTOOLS_METRICS_NAMESPACE"], "service": variables["POWERTOOLS_SERVICE_NAME"]}


@pytest.fixture(scope="module")
def settings(template: Template) -> dict[str, str]:
    return powertools_settings(template)


def dashboard_of(template: Template) -> dict[str, Any]:
    """The body CloudFormation would send, with realistic names for what !Sub fills in."""
    return json.loads(template.resolve(template.properties("OperationsDashboard")["DashboardBody"]))


@pytest.fixture(scope="module")
def dashboard(template: Template) -> dict[str, Any]:
    return dashboard_of(template)


def graphed(dashboard: dict[str, Any]) -> Iterator[list[Any]]:
    for widget in dashboard["widgets"]:
        if widget["type"] == "metric":
            yield from widget["properties"]["metrics"]


def series_of(entry: list[Any]) -> tuple[Series, dict[str, str]]:
    """A metric widget's entry ([namespace, name, dim, value, ..., {options}]) as a series and its dimensions."""
    namespace, name, *rest = entry
    pairs = [part for part in rest if not isinstance(part, dict)]
    dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
    return (namespace, name, tuple(sorted(dimensions))), dimensions


def listed(metric: Metric, namespace: str) -> Series:
    return (namespace, metric.name, tuple(sorted(metric.dimensions)))


# --- what the code emits ----------------------------------------------------------------------


SERVICE_UNAVAILABLE = Reply({"code": "ModelUnavailable", "message": "Model is unavailable.", "request_id": "r-503"},
                            status=503)
THROTTLED = Reply({"code": "Throttling", "message": "Requests rate limit exceeded.", "request_id": "r-429"},
                  status=429)
INVALID_KEY = Reply({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "r-401"},
                    status=401)


def _image(workflow: Any, *before: Reply, media: dict[str, Media] | None = None) -> str:
    answer = workflow.replay.rehost(sample("wan2.6-t2i_succeeded"), media=media)
    workflow.replay.script(answer["output"]["task_id"], *before, answer)
    return answer["output"]["task_id"]


def _sample_scenario(name: str) -> Callable[[Any], None]:
    def run(workflow: Any) -> None:
        assert workflow.run(SCENARIOS[name](workflow.replay))["status"] == "SUCCEEDED"

    return run


def _throttled_then_an_outage_then_succeeded_then_a_second_start(workflow: Any) -> None:
    task_id = _image(workflow, THROTTLED, SERVICE_UNAVAILABLE)
    assert workflow.run({"task_id": task_id})["status"] == "SUCCEEDED"
    assert workflow.run({"task_id": task_id}, name="second-start")["status"] == "SUCCEEDED"  # refused: a duplicate


def _media_that_keeps_failing_to_transfer(workflow: Any) -> None:
    task_id = _image(workflow, media={"/1d/7a/20260109/f470bbfd.png": Media(b"never sent", fault="reset")})
    assert workflow.run({"task_id": task_id})["status"] == "SUCCEEDED"  # MEDIA_UNAVAILABLE after the retries


def _a_start_blocked_by_the_lock_of_a_failed_execution(workflow: Any) -> None:
    task_id = _image(workflow, INVALID_KEY)
    assert workflow.run({"task_id": task_id})["status"] == "FAILED"  # an operator error keeps its lock
    blocked = workflow.run({"task_id": task_id}, name="after-the-failure")
    assert (blocked["status"], blocked["error"]) == ("FAILED", "TaskBlockedByStaleClaim")


def _parked_then_resumed_while_the_budget_is_spoken_for(workflow: Any) -> None:
    from tests.workflow.test_fleet import parked, resume

    task_id = _image(workflow)
    execution = workflow.stack.start({"task_id": task_id})
    park = parked(workflow, 1)
    # another caller of the account holds the budget's next 1.5 s: more than a reservation reaches ahead
    workflow.dynamodb.put_item(TableName=workflow.stack.idempotency_table, Item={
        "id": {"S": "budget#default"}, "next_free_us": {"N": str(int((time.time() + 1.5) * 1_000_000))}})
    resume(workflow, park, "finished", slot_in=-5)
    assert workflow.finish(execution)["status"] == "SUCCEEDED"


_parked_then_resumed_while_the_budget_is_spoken_for.parks = True  # type: ignore[attr-defined]

#: every completion status, media stored and transfers tried again, a throttled poll and an outage, a
#: duplicate start and one blocked by a stale claim
RUNS: list[Callable[[Any], None]] = [
    *(_sample_scenario(name) for name in ("partial_images", "failed", "canceled", "unknown", "timed_out")),
    _throttled_then_an_outage_then_succeeded_then_a_second_start,
    _media_that_keeps_failing_to_transfer,
    _a_start_blocked_by_the_lock_of_a_failed_execution,
    _parked_then_resumed_while_the_budget_is_spoken_for,
]


def emf_series(lines: str) -> dict[Series, dict[str, Any]]:
    """Every metric in the EMF lines a function printed: its series, unit and dimension values."""
    found: dict[Series, dict[str, Any]] = {}
    for line in lines.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if not isinstance(record, dict) or "_aws" not in record:
                continue
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for dimension_set in directive["Dimensions"]:
                    for metric in directive["Metrics"]:
                        values = record[metric["Name"]]
                        found[(directive["Namespace"], metric["Name"], tuple(sorted(dimension_set)))] = {
                            "unit": metric["Unit"],
                            "dimensions": {name: record[name] for name in dimension_set},
                            "values": values if isinstance(values, list) else [values],
                        }
    return found


@pytest.fixture(scope="module")
def emitted_by_function() -> dict[Series, dict[str, Any]]:
    """Each run in a fresh stack, as in a new container (the cold-start flag reset), EMF read from stdout."""
    from aws_lambda_powertools.metrics.provider import cold_start

    from tests.workflow.conftest import deployed_workflow, recorded_sleeps

    statuses: set[str] = set()
    printed = io.StringIO()
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in credentials.items():
            env.setenv(name, value)
        for run in RUNS:
            cold_start.reset_cold_start_flag()
            with (ReplayDashScope(api_key=API_KEY) as replay, recorded_sleeps(),
                  deployed_workflow(replay, {"Waiting": "park"} if getattr(run, "parks", False) else None,
                                    parks=getattr(run, "parks", False)) as workflow,
                  contextlib.redirect_stdout(printed)):
                run(workflow)
                statuses.update(event["detail"]["status"] for event in workflow.completed_events())
    assert statuses == set(CompletionStatus.__origin__.__args__), "the runs must end with every status"
    return emf_series(printed.getvalue())


def put_by_state_machine(definition: dict[str, Any]) -> dict[Series, dict[str, Any]]:
    """The metrics the state machine's putMetricData states put (the SDK integration's parameters)."""
    found: dict[Series, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        if str(state.get("Resource")).split(":states:::", 1)[-1] != "aws-sdk:cloudwatch:putMetricData":
            continue
        parameters = state["Parameters"]
        assert "Namespace" in parameters, f"{name}: a literal Namespace, so the dashboard can be checked"
        for datum in parameters["MetricData"]:
            assert "MetricName" in datum, f"{name}: a literal MetricName, so the dashboard can be checked"
            dimensions = {d["Name"]: d["Value"] for d in datum.get("Dimensions", [])}
            found[(parameters["Namespace"], datum["MetricName"], tuple(sorted(dimensions)))] = {
                "unit": datum.get("Unit"), "dimensions": dimensions,
            }
    return found


# --- the list, the code and the dashboard agree -----------------------------------------------


def test_every_metric_the_function_emits_is_listed_with_its_unit_and_dimensions(emitted_by_function, settings):
    by_series = {listed(m, settings["namespace"]): m for m in metrics.ALL if m.source == "function"}
    emitted = {series: seen for series, seen in emitted_by_function.items() if series[0] == settings["namespace"]}
    assert set(emitted) == set(by_series), "emitted by the function vs listed in wan_relay/metrics.py"
    for series, seen in emitted.items():
        assert seen["unit"] == by_series[series].unit, series
        assert seen["dimensions"]["service"] == settings["service"], series


def test_every_metric_read_as_a_percentile_is_never_negative(emitted_by_function, dashboard, template, settings):
    # CloudWatch has no percentile statistics for a metric when any of its values is negative (GetMetricStatistics,
    # ExtendedStatistics): the graph would stay empty. The runs include a resume that reached its slot late.
    read_as_percentile = {
        series_of(entry)[0] for entry in graphed(dashboard)
        if entry[0] == settings["namespace"] and re.fullmatch(r"p\d+(\.\d+)?", entry[-1]["stat"])
    } | {
        series_of(entry)[0] for entry, stat in alarm_metrics(template)
        if entry[0] == settings["namespace"] and re.fullmatch(r"p\d+(\.\d+)?", stat)
    }
    assert listed(metrics.RESUME_SLOT_LATENESS, settings["namespace"]) in read_as_percentile
    for series in read_as_percentile:
        values = emitted_by_function[series]["values"]
        assert values and min(values) >= 0, (series, values)


def test_every_metric_the_state_machine_puts_is_listed(settings):
    put = put_by_state_machine(json.loads(ASL_FILE.read_text()))
    listed_here = {listed(m, settings["namespace"]): m for m in metrics.ALL if m.source == "state machine"}
    assert set(put) <= set(listed_here), "a putMetricData state puts a metric wan_relay/metrics.py does not list"
    for series, seen in put.items():
        assert seen["unit"] == listed_here[series].unit, series
        assert seen["dimensions"]["service"] == settings["service"], series


def test_every_metric_listed_for_the_state_machine_is_put_by_it(settings):
    put = put_by_state_machine(json.loads(ASL_FILE.read_text()))
    wanted = {listed(m, settings["namespace"]) for m in metrics.ALL if m.source == "state machine"}
    assert wanted <= set(put)


def test_every_own_metric_on_the_dashboard_or_in_an_alarm_is_a_listed_one(dashboard, template, settings):
    known = {listed(m, settings["namespace"]) for m in metrics.ALL}
    on_dashboard = {series_of(entry)[0] for entry in graphed(dashboard) if entry[0] == settings["namespace"]}
    in_alarms = {series_of(entry)[0] for entry in alarm_entries(template) if entry[0] == settings["namespace"]}
    assert on_dashboard | in_alarms <= known


def test_every_listed_metric_is_graphed_or_alarmed(dashboard, template, settings):
    used = {series_of(entry)[0] for entry in [*graphed(dashboard), *alarm_entries(template)]}
    unused = {listed(m, settings["namespace"]) for m in metrics.ALL} - used
    assert not unused, "emitted but watched by no widget and no alarm"


def test_the_dashboard_names_the_stack_s_function_service_and_state_machine(dashboard, settings):
    for entry in graphed(dashboard):
        (namespace, name, _), dimensions = series_of(entry)
        if namespace == settings["namespace"]:
            assert dimensions["service"] == settings["service"]
            if "function_name" in dimensions:  # Powertools' ColdStart: the Lambda context's function name
                assert dimensions["function_name"] == FUNCTION_NAME
        else:
            dimension, values, known = AWS_METRICS[namespace]
            assert name in known, f"{namespace} {name} is not a metric AWS documents"
            assert set(dimensions) == {dimension} and dimensions[dimension] in values, entry


def alarm_metrics(template: Template, only: str | None = None) -> Iterator[tuple[list[Any], str]]:
    """Each metric an alarm reads (its own, or each of its metric math's), in the dashboard's entry form with
    dimensions resolved, and the statistic it reads; of every alarm, or `only` that one."""
    for logical_id, resource in template.doc["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm" or only not in (None, logical_id):
            continue
        props = resource["Properties"]
        read = [(props, props.get("Statistic") or props.get("ExtendedStatistic"))] if "MetricName" in props else [
            (query["MetricStat"]["Metric"], query["MetricStat"]["Stat"])
            for query in props["Metrics"] if "MetricStat" in query]
        for metric, stat in read:
            dimensions = [part for d in metric.get("Dimensions", [])
                          for part in (d["Name"], template.resolve(d["Value"]))]
            yield [metric["Namespace"], metric["MetricName"], *dimensions], stat


def alarm_entries(template: Template) -> Iterator[list[Any]]:
    for entry, _ in alarm_metrics(template):
        yield entry


def test_the_outcomes_an_operator_must_see_have_alarms_that_notify_the_alarm_topic(template, settings):
    alarms = [r["Properties"] for r in template.doc["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    own = {a["MetricName"]: a for a in alarms if a.get("Namespace") == settings["namespace"]}
    assert set(own) >= ALARMED
    for name in ALARMED:
        assert template.resolve(own[name]["Dimensions"]) == [{"Name": "service", "Value": settings["service"]}]
        assert own[name]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and own[name]["Threshold"] == 1
    for alarm in alarms:
        notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["AlarmActions"] == notify


# --- the alarms as CloudWatch evaluates them ----------------------------------------------------

COMPARISONS = {"GreaterThanOrEqualToThreshold": float.__ge__, "GreaterThanThreshold": float.__gt__,
               "LessThanThreshold": float.__lt__, "LessThanOrEqualToThreshold": float.__le__}


def alarm_breaches(template: Template, alarm: str, sums: dict[str, float | None]) -> bool:
    """Whether an alarm's value breaches its threshold for one period with these sums by metric name (None: the
    metric has no data point), the same in every period it evaluates. Metric math is evaluated as CloudWatch's
    metric math does it: arithmetic, comparisons (0 or 1) and AND / OR on the queries' ids, a missing value
    read as 0; with no data in any query there is no data point, and TreatMissingData decides."""
    props = template.properties(alarm)
    if "MetricName" in props:
        value = sums[props["MetricName"]]
    else:
        ids = {q["Id"]: sums[q["MetricStat"]["Metric"]["MetricName"]] for q in props["Metrics"] if "MetricStat" in q}
        (expression,) = [q["Expression"] for q in props["Metrics"] if q.get("ReturnData")]
        assert set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression)) <= set(ids) | {"AND", "OR"}, expression
        assert re.fullmatch(r"[A-Za-z0-9_.+\-*/()<>= ]+", expression), expression
        python = re.sub(r"\bAND\b", "and", re.sub(r"\bOR\b", "or", expression))
        values = {name: v or 0.0 for name, v in ids.items()}
        # ids, numbers, + - * /, comparisons and and / or only
        value = None if all(v is None for v in ids.values()) else float(eval(python, {"__builtins__": {}}, values))
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]  # every period evaluated must breach
    if value is None:
        return props["TreatMissingData"] == "breaching"
    return COMPARISONS[props["ComparisonOperator"]](float(value), float(props["Threshold"]))


@pytest.mark.parametrize(("case", "errors", "invocations", "fires"), [
    # one execution stuck failing in a quiet stack, at its longest back-off: PollTask and its two retries,
    # then AfterTrouble, every 5 minutes
    ("one execution stuck failing, quiet stack", 3, 4, True),
    ("a single transient error", 1, 40, False),
    # 10,000 tasks an hour, a few invocations each: a background of half a percent is noise
    ("large fleet, background errors", 100, 20_000, False),
    ("large fleet, failing broadly", 4_000, 20_000, True),
])
def test_the_function_errors_alarm_fires_on_a_failing_function_not_on_a_fleet_s_noise(
        template, case, errors, invocations, fires):
    sums = {"Errors": errors, "Invocations": invocations}
    assert alarm_breaches(template, "PollTaskErrorsAlarm", sums) is fires, case


def test_the_schedule_starts_the_sweeper_every_minute_and_the_stopped_alarm_watches_those_starts(template):
    # the stopped alarm reads "no start" as a stopped sweeper: true only while the schedule starts it every
    # minute, idle or not, in every stack that has the sweeper (no condition on either)
    sweeper = template.resource("SweeperFunction")
    schedules = [e["Properties"] for e in sweeper["Properties"]["Events"].values() if e["Type"] == "Schedule"]
    assert [s["Schedule"] for s in schedules] == ["rate(1 minute)"] and all(s.get("Enabled", True) for s in schedules)
    assert "Condition" not in sweeper and "Condition" not in template.resource("SweeperStoppedAlarm")
    props = template.properties("SweeperStoppedAlarm")
    assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", "Invocations")
    assert template.resolve(props["Dimensions"]) == [{"Name": "FunctionName", "Value": SWEEPER_FUNCTION_NAME}]


@pytest.mark.parametrize(("case", "invocations", "fires"), [
    # Lambda publishes no Invocations for a function nothing started: a disabled schedule, or starts
    # throttled and dropped (throttled requests are not invocations)
    ("schedule disabled, or every start throttled and dropped", None, True),
    ("started every minute", 5, False),
    ("started once in the period (a slow hand-over)", 1, False),
])
def test_the_sweeper_stopped_alarm_fires_when_nothing_starts_it(template, case, invocations, fires):
    assert alarm_breaches(template, "SweeperStoppedAlarm", {"Invocations": invocations}) is fires, case


#: the sums of one 5-minute period of the sweeper's own metrics (None: no invocation emitted any)
@pytest.mark.parametrize(("case", "pages", "errors", "throttled", "fires"), [
    ("every page unreadable or a 5xx", 60, 60, 0, True),
    ("every page a 429 or an error", 60, 20, 40, True),
    ("one page of sixty answered", 60, 59, 0, False),
    ("a passing error", 60, 1, 0, False),
    ("nothing parked: no page asked", 0, 0, 0, False),
    ("no sweeper ran (SweeperStoppedAlarm)", None, None, None, False),
])
def test_the_sweeper_blind_alarm_fires_when_pages_are_asked_and_none_is_answered(
        template, case, pages, errors, throttled, fires):
    sums = {"SweeperListQueries": pages, "SweeperListErrors": errors, "SweeperThrottled": throttled}
    assert alarm_breaches(template, "SweeperBlindAlarm", sums) is fires, case


def test_the_sweeper_blind_alarm_reads_the_sweeper_s_own_series_of_this_stack(template, settings):
    sweeper_series = {listed(m, settings["namespace"]) for m in metrics.ALL if m.source == "sweeper"}
    read = [entry for entry, _ in alarm_metrics(template, "SweeperBlindAlarm")]
    assert {series_of(entry)[0] for entry in read} == {
        listed(m, settings["namespace"])
        for m in (metrics.SWEEPER_LIST_QUERIES, metrics.SWEEPER_LIST_ERRORS, metrics.SWEEPER_THROTTLED)
    } and {series_of(entry)[0] for entry in read} <= sweeper_series
    assert all(series_of(entry)[1] == {"service": settings["service"]} for entry in read)


# --- two stacks in one account and region ----------------------------------------------------

#: one stack per DashScope account (docs/deploy.md), or staging and prod, in one AWS account and region
TWO_STACKS = ("wan-relay-acct-a", "wan-relay-acct-b")

#: a metric with its dimensions' values: what CloudWatch keeps apart (namespace, name, the full dimension set)
Identity = tuple[str, str, frozenset[tuple[str, str]]]


def watched_by(template: Template) -> set[Identity]:
    """The stack's own metrics its dashboard graphs and its alarms watch."""
    namespace = powertools_settings(template)["namespace"]
    entries = [*graphed(dashboard_of(template)), *alarm_entries(template)]
    return {(e[0], e[1], frozenset(series_of(e)[1].items())) for e in entries if e[0] == namespace}


def emitted_by_the_stack_s_function(template: Template, monkeypatch: pytest.MonkeyPatch) -> set[Identity]:
    """A start through the stack's poll function, imported afresh in the environment the template gives it
    (Powertools reads its service and namespace there), in a new container: the EMF lines it prints."""
    from aws_lambda_powertools.metrics.provider import cold_start
    from moto import mock_aws
    from wan_relay_local.lambda_bridge import load_handler

    for name, value in template.function_environment().items():
        monkeypatch.setenv(name, value)
    cold_start.reset_cold_start_flag()
    function_name = template.ref("PollTaskFunction")
    context = type("Context", (), {
        "function_name": function_name, "function_version": "$LATEST", "memory_limit_in_mb": 1024,
        "invoked_function_arn": f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}",
        "aws_request_id": "request-1", "get_remaining_time_in_millis": lambda self: 900_000,
    })()
    printed = io.StringIO()
    with mock_aws(), contextlib.redirect_stdout(printed):
        secret = boto3.client("secretsmanager").create_secret(Name=f"{template.stack_name}-key", SecretString=API_KEY)
        monkeypatch.setenv("DASHSCOPE_API_KEY_SECRET", secret["ARN"])
        handler = load_handler(ROOT / "functions" / "poll_task")
        handler({"action": "start", "input": {"task_id": "two-stacks-task"}}, context)
    return {(namespace, name, frozenset(seen["dimensions"].items()))
            for (namespace, name, _), seen in emf_series(printed.getvalue()).items()}


def test_two_stacks_in_one_account_watch_only_their_own_metrics(monkeypatch):
    templates = {name: deployed_as(name) for name in TWO_STACKS}
    watched = {name: watched_by(template) for name, template in templates.items()}
    emitted = {name: emitted_by_the_stack_s_function(template, monkeypatch) for name, template in templates.items()}
    first, second = TWO_STACKS
    assert watched[first] and watched[second]
    assert not watched[first] & watched[second], "two stacks' alarms or dashboards watch the same series"
    for stack, other in (TWO_STACKS, TWO_STACKS[::-1]):
        (service,) = {dict(dimensions)["service"] for _, _, dimensions in emitted[stack]}
        assert service != dict(next(iter(emitted[other]))[2])["service"]
        # every own series watched is under this stack's service; those a start emits, exactly as emitted
        assert {dict(dimensions)["service"] for _, _, dimensions in watched[stack]} == {service}
        names = {name for _, name, _ in emitted[stack]}
        assert {"TasksStarted", "ColdStart"} <= names
        assert {s for s in watched[stack] if s[1] in names} <= emitted[stack]
        assert not watched[stack] & emitted[other]


# --- the dashboard as CloudWatch takes it -----------------------------------------------------


def test_the_dashboard_shows_the_state_of_every_alarm(dashboard, template):
    alarms = {template.get_att(a, "Arn") for a, r in template.doc["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    (widget,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert set(widget["properties"]["alarms"]) == alarms
    assert 1 <= len(alarms) <= 100  # an alarm status widget holds 1 to 100 alarms


def test_the_widgets_fit_the_grid_without_overlapping_and_graph_per_minute(dashboard):
    # CloudWatch's dashboard body: a 24-column grid, at most 500 widgets, a region on every metric widget
    cells: set[tuple[int, int]] = set()
    assert len(dashboard["widgets"]) <= 500
    for widget in dashboard["widgets"]:
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24
        area = {(x, y) for x in range(widget["x"], widget["x"] + widget["width"])
                for y in range(widget["y"], widget["y"] + widget["height"])}
        assert not cells & area, widget
        cells |= area
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "us-east-1"
            assert widget["properties"]["period"] == 60


def test_the_generated_dashboard_is_current():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import sync_template_dashboard
    finally:
        sys.path.remove(str(ROOT / "tools"))
    text = (ROOT / "template.yaml").read_text()
    assert sync_template_dashboard.synced(text) == text, "run: make template-sync"
