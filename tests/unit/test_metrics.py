"""The data points one completion event adds to the stack's metrics (wan_relay.metrics)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from wan_relay import metrics
from wan_relay.models import CompletionDetail, CompletionStatus

from tests.conftest import EVENTS


def detail(sample: str, **timing: Any) -> CompletionDetail:
    event = json.loads((EVENTS / "completed" / f"{sample}.json").read_text())
    event["detail"]["timing"].update(timing)
    return msgspec.convert(event["detail"], CompletionDetail)


def points(d: CompletionDetail) -> dict[str, float]:
    return {metric.name: value for metric, value in metrics.completion_metrics(d)}


def test_a_finished_task_counts_its_status_and_how_long_detection_and_the_whole_trip_took():
    d = detail("succeeded_image", submitted_at="2026-01-09T09:18:00.000Z", ended_at="2026-01-09T09:18:40.500Z",
               detected_at="2026-01-09T09:18:43.000Z")
    assert points(d) == {"TasksSucceeded": 1, "DetectionDelay": 2.5, "EndToEndTime": 43.0}


def test_a_task_without_a_provider_end_counts_its_status_only():
    d = detail("timed_out")
    assert d.timing.ended_at is None
    assert points(d) == {"TasksTimedOut": 1}


def test_clock_skew_never_makes_a_duration_negative():
    # CloudWatch computes no percentiles for a metric that ever had a negative value
    d = detail("failed", submitted_at="2026-01-09T09:18:00.000Z", ended_at="2026-01-09T09:18:44.000Z",
               detected_at="2026-01-09T09:18:43.000Z")
    assert points(d) == {"TasksFailed": 1, "DetectionDelay": 0.0, "EndToEndTime": 43.0}


def test_every_completion_status_has_its_own_metric():
    statuses = set(CompletionStatus.__origin__.__args__)
    assert set(metrics.TASKS_COMPLETED) == statuses
    assert len({m.name for m in metrics.TASKS_COMPLETED.values()}) == len(statuses)


def test_metric_names_are_unique():
    assert len({m.name for m in metrics.ALL}) == len(metrics.ALL)


def test_a_resume_reports_its_lead_or_its_lateness_each_never_negative():
    # CloudWatch computes no percentiles for a metric that ever had a negative value
    def resume_points(lead: float) -> dict[str, float]:
        return {metric.name: value for metric, value in metrics.resume_slot_metrics(lead)}

    assert resume_points(0.25) == {"ResumeSlotLead": 0.25, "ResumeSlotLateness": 0.0}
    assert resume_points(-0.04) == {"ResumeSlotLead": 0.0, "ResumeSlotLateness": 0.04}
