"""A caller's context no completion event could carry fails the execution at CheckInput, before anything is
written: EventBridge's PutEvents takes JSON integers within signed 64 bits only, and processes nesting to
about 1,000 levels (PutEvents API reference); the relay refuses more than 64. Accepted, such a context
would fail EmitCompletion on every retry and redrive, after the media was stored and the lock taken
(moto's EventBridge checks neither: tests/contract/test_event_limits.py checks the event itself)."""

from __future__ import annotations

import pytest

from tests.contract.test_event_limits import nested

from .conftest import Sleeps, Workflow
from .test_poll_loop import IMAGE_TASK, only_event, succeeded_image
from .test_task_lock import table_items


@pytest.mark.parametrize("context", [{"order_id": 2**64 - 1}, {"tree": nested(64)}], ids=["uint64", "65-levels"])
def test_a_context_no_event_could_carry_fails_the_start_before_anything_is_written(
    workflow: Workflow, sleeps: Sleeps, context: dict
) -> None:
    workflow.replay.script(IMAGE_TASK, succeeded_image(workflow))

    refused = workflow.run({"task_id": IMAGE_TASK, "context": context}, name=f"{IMAGE_TASK}-refused")

    assert refused["status"] == "FAILED" and refused["error"] == "InvalidInput"
    assert "context" in refused["cause"]
    assert workflow.visited(refused["executionArn"]) == ["CheckInput"]
    assert table_items(workflow) == [] and workflow.replay.polls(IMAGE_TASK) == 0
    assert workflow.completed_events() == [] and workflow.objects() == {}

    corrected = workflow.run({"task_id": IMAGE_TASK, "context": {"order_id": str(2**64 - 1)}})

    assert corrected["status"] == "SUCCEEDED"
    assert only_event(workflow)["context"] == {"order_id": str(2**64 - 1)}
