"""Writes the operator dashboard's body into template.yaml (`OperationsDashboard.DashboardBody`), generated
from the metrics the code emits (wan_relay.metrics), AWS's own metrics of the stack's functions and state
machine, and every alarm the template declares. CloudFormation takes the body only as one JSON string.

`python tools/sync_template_dashboard.py` rewrites the template; `--check` exits 1 when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml
from generated import with_line, write_or_check, yaml_single_quoted
from wan_relay import metrics
from wan_relay.metrics import Metric

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

FUNCTION = "PollTaskFunction"
SWEEPER_FUNCTION = "SweeperFunction"
STATE_MACHINE = "PollTaskStateMachine"
DASHBOARD = "OperationsDashboard"
#: every graph is per minute
PERIOD = 60
#: DashScope's task queries per Alibaba Cloud account: 20 a second, shared by every caller of the account
DASHSCOPE_QUERIES_PER_MINUTE = 20 * 60
GRID_WIDTH = 24


class Sources:
    """Where the dashboard's metrics come from in this template: the function's Powertools settings and
    the logical ids !Sub turns into names and ARNs at deployment."""

    def __init__(self, template: dict[str, Any]) -> None:
        variables = template["Globals"]["Function"]["Environment"]["Variables"]
        self.namespace: str = variables["POWERTOOLS_METRICS_NAMESPACE"]
        self.service: str = sub_fragment(variables["POWERTOOLS_SERVICE_NAME"])
        self.alarms = sorted(
            logical_id for logical_id, resource in template["Resources"].items()
            if resource["Type"] == "AWS::CloudWatch::Alarm"
        )
        for logical_id in (FUNCTION, SWEEPER_FUNCTION, STATE_MACHINE, DASHBOARD):
            if logical_id not in template["Resources"]:
                raise SystemExit(f"{TEMPLATE.name} has no {logical_id}")

    def own(self, metric: Metric, stat: str, label: str | None = None, **options: str) -> list[Any]:
        values = {"service": self.service, "function_name": f"${{{FUNCTION}}}"}
        dimensions = [part for name in metric.dimensions for part in (name, values[name])]
        return [self.namespace, metric.name, *dimensions, {"stat": stat, "label": label or metric.name, **options}]

    @staticmethod
    def states(name: str, stat: str = "Sum", label: str | None = None) -> list[Any]:
        return ["AWS/States", name, "StateMachineArn", f"${{{STATE_MACHINE}}}", {"stat": stat, "label": label or name}]

    @staticmethod
    def function(name: str, stat: str = "Sum", label: str | None = None, *, of: str = FUNCTION) -> list[Any]:
        return ["AWS/Lambda", name, "FunctionName", f"${{{of}}}", {"stat": stat, "label": label or name}]


def sub_fragment(value: Any) -> str:
    """A template value as text inside the body's !Sub: a literal, `!Ref X` as ${X}, or a !Sub's own text."""
    if isinstance(value, str) and "${" not in value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), = value.items()
        if function == "Ref" and isinstance(argument, str):
            return f"${{{argument}}}"
        if function == "Fn::Sub" and isinstance(argument, str):
            return argument
    raise SystemExit(f"{TEMPLATE.name}: POWERTOOLS_SERVICE_NAME must be a literal, a !Ref or a !Sub text: {value!r}")


def graph(title: str, series: list[list[Any]], *, width: int, stacked: bool = False, unit: str = "",
          right_unit: str = "", limit: tuple[str, float] | None = None) -> dict[str, Any]:
    """A time series widget; a series whose options say `"yAxis": "right"` is read against `right_unit`."""
    axes = {"left": {"min": 0, "label": unit, "showUnits": False}}
    if right_unit:
        axes["right"] = {"min": 0, "label": right_unit, "showUnits": False}
    properties: dict[str, Any] = {
        "title": title, "view": "timeSeries", "stacked": stacked, "region": "${AWS::Region}",
        "period": PERIOD, "metrics": series, "yAxis": axes,
    }
    if limit:
        properties["annotations"] = {"horizontal": [{"label": limit[0], "value": limit[1]}]}
    return {"type": "metric", "width": width, "height": 6, "properties": properties}


def rows(s: Sources) -> list[list[dict[str, Any]]]:
    percentiles = ("p50", "p90", "p99")
    return [
        [{"type": "text", "width": GRID_WIDTH, "height": 2, "properties": {"markdown": (
            "## wan-relay: ${AWS::StackName}\n"
            "Per minute. What each graph means: docs/deploy.md, *The operator dashboard*. "
            "Start an investigation at the alarms (bottom), then the executions and the function's errors."
        )}}],
        [
            graph("Executions: started, failed, timed out, aborted", [
                s.states("ExecutionsStarted", label="started (duplicates included)"),
                s.states("ExecutionsFailed", label="failed (operator error or invalid input)"),
                s.states("ExecutionsTimedOut", label="timed out (26 h)"),
                s.states("ExecutionsAborted", label="aborted"),
            ], width=8, unit="executions"),
            graph("Tasks completed, by status",
                  [s.own(metric, "Sum", status) for status, metric in metrics.TASKS_COMPLETED.items()],
                  width=8, stacked=True, unit="tasks"),
            graph("Task starts, and those the task lock refused", [
                s.own(metrics.TASKS_STARTED, "Sum", "started (input accepted)"),
                s.own(metrics.TASKS_ALREADY_CLAIMED, "Sum", "refused: already claimed (duplicate start)"),
                s.own(metrics.TASKS_BLOCKED_BY_STALE_CLAIM, "Sum", "refused: blocked by a stale claim (not relayed)"),
            ], width=8, unit="starts"),
        ],
        [
            graph("DashScope task queries, 429s and errors", [
                s.own(metrics.POLLS, "Sum", "queries"),
                s.own(metrics.THROTTLED, "Sum", "throttled (HTTP 429)"),
                s.own(metrics.POLL_ERRORS, "Sum", "no useful answer (backed off)"),
                s.own(metrics.QUERY_BUDGET_WAITS, "Sum", "waited for the account's budget (not asked)"),
                s.own(metrics.PARKS, "Sum", "parks (waiting for the sweeper)"),
            ], width=8, unit="queries", limit=("account limit, all callers: 20/s", DASHSCOPE_QUERIES_PER_MINUTE)),
            graph("Detection delay: task end to decision",
                  [s.own(metrics.DETECTION_DELAY, p, p) for p in percentiles], width=8, unit="seconds"),
            graph("End-to-end time: submission to decision",
                  [s.own(metrics.END_TO_END_TIME, p, p) for p in percentiles], width=8, unit="seconds"),
        ],
        [
            graph("Media stored, and transfers tried again", [
                s.own(metrics.MEDIA_BYTES, "Sum", "bytes stored"),
                s.own(metrics.MEDIA_RETRIES, "Sum", "transfers tried again", yAxis="right"),
            ], width=6, unit="bytes", right_unit="transfers"),
            graph("Function errors and throttles", [
                s.function("Errors", label="errors"), s.function("Throttles", label="throttles"),
            ], width=6, unit="invocations"),
            graph("Function duration", [
                s.function("Duration", "p50", "p50"), s.function("Duration", "p99", "p99"),
                s.function("Duration", "Maximum", "max"),
            ], width=6, unit="ms"),
            graph("Function concurrency and cold starts", [
                s.function("ConcurrentExecutions", "Maximum", "concurrent executions"),
                s.own(metrics.COLD_START, "Sum", "cold starts"),
            ], width=6, unit="count"),
        ],
        [
            graph("Sweeper: list pages, 429s and resumes", [
                s.own(metrics.SWEEPER_LIST_QUERIES, "Sum", "list pages (queries)"),
                s.own(metrics.SWEEPER_THROTTLED, "Sum", "list pages throttled (HTTP 429)"),
                s.own(metrics.SWEEPER_LIST_ERRORS, "Sum", "list pages failed (no useful answer)"),
                s.own(metrics.SWEEPER_RESUMES, "Sum", "workflows resumed (each takes a query for its GET)"),
                s.own(metrics.SWEEPER_HINTED, "Sum", "of which ended by a task-finished notification"),
            ], width=8, unit="count"),
            graph("Sweeper: parked workflows, and those that went on without it", [
                s.own(metrics.SWEEPER_PARKED, "Maximum", "parked and watched"),
                s.own(metrics.SWEEPER_DEAD_TOKENS, "Sum", "gone on without the sweeper (watchdog fired)",
                      yAxis="right"),
            ], width=8, unit="workflows", right_unit="workflows"),
            graph("Resumed workflows: ready before their handed slot, or late", [
                s.own(metrics.RESUME_SLOT_LEAD, "p1", "ready before (p1)"),
                s.own(metrics.RESUME_SLOT_LEAD, "p50", "ready before (p50)"),
                s.own(metrics.RESUME_SLOT_LATENESS, "p99", "late by (p99)"),
                s.own(metrics.RESUME_SLOT_LATENESS, "Maximum", "late by (max)"),
            ], width=8, unit="seconds"),
        ],
        [
            graph("Task-finished notifications (TaskFinishedTokenSecretArn): answers", [
                s.own(metrics.TASK_FINISHED["hinted"], "Sum", "kept as hints (a final status)"),
                s.own(metrics.TASK_FINISHED["not_final"], "Sum", "not final: nothing kept"),
                s.own(metrics.TASK_FINISHED["rejected"], "Sum", "refused (4xx: token, method, body)"),
                s.own(metrics.TASK_FINISHED["failed"], "Sum", "failed (5xx: delivered again)"),
            ], width=8, unit="requests"),
            # a stopped sweeper shows as no starts: a disabled schedule, or throttled starts Lambda dropped
            graph("Sweeper function: starts, errors, throttles, dropped starts", [
                s.function("Invocations", label="started (once a minute)", of=SWEEPER_FUNCTION),
                s.function("Errors", label="failed", of=SWEEPER_FUNCTION),
                s.function("Throttles", label="throttled", of=SWEEPER_FUNCTION),
                s.function("AsyncEventsDropped", label="dropped (not started)", of=SWEEPER_FUNCTION),
            ], width=8, unit="invocations"),
        ],
        [{"type": "alarm", "width": GRID_WIDTH, "height": 2 + 2 * ((len(s.alarms) + 3) // 4), "properties": {
            "title": "Alarms", "sortBy": "stateUpdatedTimestamp",
            "alarms": [f"${{{alarm}.Arn}}" for alarm in s.alarms],
        }}],
    ]


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard: the rows laid out left to right, top to bottom, on CloudWatch's 24-column grid."""
    widgets, y = [], 0
    for row in rows(Sources(template)):
        x = 0
        for widget in row:
            widgets.append({"type": widget["type"], "x": x, "y": y, "width": widget["width"],
                            "height": widget["height"], "properties": widget["properties"]})
            x += widget["width"]
        y += max(widget["height"] for widget in row)
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


def synced(text: str) -> str:
    """The template with the dashboard's body (its one `DashboardBody:` line, under !Sub) generated anew."""
    body = json.dumps(dashboard_body(cfn_yaml.loads(text)), separators=(",", ":"), ensure_ascii=False)
    return with_line(text, "DashboardBody", f"!Sub {yaml_single_quoted(body)}")


def main(argv: list[str]) -> int:
    stale = f"{DASHBOARD}'s body is stale; run make template-sync"
    return write_or_check(argv, TEMPLATE, synced(TEMPLATE.read_text()), stale)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
