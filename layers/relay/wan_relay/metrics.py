"""The stack's own CloudWatch metrics, named once. The poll function and the sweeper's function emit them
(Powertools EMF, namespace and `service` dimension from the template's POWERTOOLS_* settings; a
putMetricData state of the state machine would be listed here too), and the operator dashboard is
generated from this list (tools/sync_template_dashboard.py); tests/contract/test_dashboard.py proves
code, list, dashboard and alarms agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .models import CompletionDetail


@dataclass(frozen=True)
class Metric:
    name: str
    #: CloudWatch unit, as EMF and PutMetricData take it
    unit: Literal["Count", "Bytes", "Seconds"]
    #: what one data point means, as the dashboard and docs/deploy.md explain it
    meaning: str
    #: who puts it: the poll function (EMF lines in its log), the sweeper's function (the same, once per
    #: invocation), the receiver of task-finished notifications (the same, once per request) or the state
    #: machine (a putMetricData state)
    source: Literal["function", "sweeper", "receiver", "state machine"] = "function"
    #: CloudWatch tells metrics apart by name and the full set of dimensions
    dimensions: tuple[str, ...] = ("service",)


TASKS_STARTED = Metric("TasksStarted", "Count", "loop inputs accepted, one per start (duplicate starts included)")
POLLS = Metric("Polls", "Count", "DashScope task queries, one per poll")
THROTTLED = Metric("Throttled", "Count", "task queries DashScope answered with HTTP 429")
POLL_ERRORS = Metric(
    "PollErrors", "Count",
    "polls DashScope did not answer usefully (5xx, a timeout, an unreadable answer): backed off, the task goes on",
)
QUERY_BUDGET_WAITS = Metric(
    "QueryBudgetWaits", "Count",
    "polls that waited without asking: the account's query budget was spoken for (Waiting=park)",
)
PARKS = Metric("Parks", "Count", "workflows parked on their task token, waiting for the sweeper (Waiting=park)")
RESUME_SLOT_LEAD = Metric(
    "ResumeSlotLead", "Seconds",
    "how long before the slot the sweeper handed it a resumed workflow was ready to ask (0 when late)",
)
RESUME_SLOT_LATENESS = Metric(
    "ResumeSlotLateness", "Seconds",
    "how long after the slot the sweeper handed it a resumed workflow was ready to ask (0 when in time; more "
    "than half a budget interval late, the slot is given up)",
)
MEDIA_BYTES = Metric("MediaBytes", "Bytes", "bytes of media stored in S3")
MEDIA_RETRIES = Metric(
    "MediaRetries", "Count", "media transfers tried again within a poll (a reset, a body cut short, a bad checksum)",
)
DETECTION_DELAY = Metric(
    "DetectionDelay", "Seconds",
    "from the task's end at DashScope to the relay's decision (the wait for the next poll, then storing the media)",
)
END_TO_END_TIME = Metric(
    "EndToEndTime", "Seconds",
    "from the task's submission at DashScope to the relay's decision: queue, run, detection and storage",
)
COLD_START = Metric(
    "ColdStart", "Count", "invocations that started a new Lambda container (Powertools)",
    dimensions=("function_name", "service"),
)
TASKS_ALREADY_CLAIMED = Metric(
    "TasksAlreadyClaimed", "Count",
    "starts refused because another execution holds the task's lock (a duplicate delivery, a second start)",
)
TASKS_BLOCKED_BY_STALE_CLAIM = Metric(
    "TasksBlockedByStaleClaim", "Count",
    "starts refused by a lock whose execution failed, timed out or was aborted: the task is not relayed",
)

SWEEPER_LIST_QUERIES = Metric(
    "SweeperListQueries", "Count", "task list pages the sweeper asked DashScope for (each one query of the budget)",
    source="sweeper",
)
SWEEPER_THROTTLED = Metric(
    "SweeperThrottled", "Count",
    "list pages DashScope answered with HTTP 429: the account's other callers take more than the budget leaves",
    source="sweeper",
)
SWEEPER_LIST_ERRORS = Metric(
    "SweeperListErrors", "Count",
    "list pages DashScope did not answer usefully, 429 aside (a 5xx or other 4xx, no answer, a shape the sweeper "
    "cannot read): with every page failing the sweeper is blind and the parked workflows poll on their own",
    source="sweeper",
)
SWEEPER_RESUMES = Metric(
    "SweeperResumes", "Count", "parked workflows the sweeper resumed (their task ended, or a probe)",
    source="sweeper",
)
SWEEPER_DEAD_TOKENS = Metric(
    "SweeperDeadTokens", "Count",
    "parked workflows that had gone on without the sweeper (their watchdog fired: it was late or down)",
    source="sweeper",
)
SWEEPER_PARKED = Metric(
    "SweeperParked", "Count", "workflows parked and watched when a sweeper invocation ended (read its maximum)",
    source="sweeper",
)
SWEEPER_HINTED = Metric(
    "SweeperHinted", "Count",
    "parked tasks a task-finished notification (a hint) ended before the list saw them: resumed without a list page",
    source="sweeper",
)

#: one count per request the receiver of DashScope's task-finished notifications answered, by outcome
#: (notifications.Answer.outcome)
TASK_FINISHED: dict[str, Metric] = {
    "hinted": Metric("TaskFinishedHints", "Count",
                     "task-finished notifications kept as hints for the sweeper (a final status)", source="receiver"),
    "not_final": Metric("TaskFinishedNotFinal", "Count",
                        "authentic task-finished notifications with a status that is not final: nothing kept",
                        source="receiver"),
    "rejected": Metric("TaskFinishedRejected", "Count",
                       "requests to the notifications' endpoint refused (4xx: a wrong or missing token, a wrong "
                       "method, an oversize or malformed body)", source="receiver"),
    "failed": Metric("TaskFinishedErrors", "Count",
                     "notifications answered 5xx (the token's secret or the table failed): EventBridge delivers "
                     "them again", source="receiver"),
}

#: one count per completion event, by its status
TASKS_COMPLETED: dict[str, Metric] = {
    status: Metric(name, "Count", f"tasks that ended {status}")
    for status, name in {
        "SUCCEEDED": "TasksSucceeded",
        "PARTIAL": "TasksPartial",
        "FAILED": "TasksFailed",
        "CANCELED": "TasksCanceled",
        "UNKNOWN": "TasksUnknown",
        "TIMED_OUT": "TasksTimedOut",
        "MEDIA_UNAVAILABLE": "TasksMediaUnavailable",
    }.items()
}

ALL: tuple[Metric, ...] = (
    TASKS_STARTED, TASKS_ALREADY_CLAIMED, TASKS_BLOCKED_BY_STALE_CLAIM, POLLS, THROTTLED, POLL_ERRORS,
    QUERY_BUDGET_WAITS, PARKS, RESUME_SLOT_LEAD, RESUME_SLOT_LATENESS,
    MEDIA_BYTES, MEDIA_RETRIES, DETECTION_DELAY, END_TO_END_TIME, COLD_START, *TASKS_COMPLETED.values(),
    SWEEPER_LIST_QUERIES, SWEEPER_THROTTLED, SWEEPER_LIST_ERRORS, SWEEPER_RESUMES, SWEEPER_DEAD_TOKENS,
    SWEEPER_PARKED, SWEEPER_HINTED,
    *TASK_FINISHED.values(),
)


def completion_metrics(detail: CompletionDetail) -> list[tuple[Metric, float]]:
    """The data points one completion event adds: its status, and how long it took when DashScope
    reported the task's end. Never negative (DashScope's and Lambda's clocks differ a little): CloudWatch
    has no percentiles for a metric with a negative value."""
    points: list[tuple[Metric, float]] = [(TASKS_COMPLETED[detail.status], 1)]
    timing = detail.timing
    if timing.ended_at is None:
        return points
    decided = _instant(timing.detected_at)
    points.append((DETECTION_DELAY, max(0.0, (decided - _instant(timing.ended_at)).total_seconds())))
    if timing.submitted_at is not None:
        points.append((END_TO_END_TIME, max(0.0, (decided - _instant(timing.submitted_at)).total_seconds())))
    return points


def resume_slot_metrics(lead_seconds: float) -> list[tuple[Metric, float]]:
    """A resumed workflow's readiness against its handed slot, as two metrics that are never negative
    (CloudWatch has no percentiles for a metric with a negative value): the lead, and the lateness."""
    return [(RESUME_SLOT_LEAD, max(0.0, lead_seconds)), (RESUME_SLOT_LATENESS, max(0.0, -lead_seconds))]


def _instant(iso_utc: str) -> datetime:
    return datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
