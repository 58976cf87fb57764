"""The completion event's `provider_status` is DashScope's `task_status` as it last answered it, or null
when it never answered: never the relay's own word for a poll it could not make (THROTTLED, after a 429
or a wait for the account's budget), whatever ended the task. A loop state written before the state
carried DashScope's last status (an execution in flight across an upgrade) is still read, and says no
more than it knows."""

from __future__ import annotations

import pytest
from wan_relay_local.replay import Reply

from tests.conftest import completion, sample

THROTTLED = Reply({"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded.", "request_id": "r"},
                  status=429)
UNAVAILABLE = Reply({"code": "ModelUnavailable", "message": "Model unavailable.", "request_id": "r"}, status=503)
#: a start long before the budget: the next poll finds it spent
LONG_AGO = "2000-01-01T00:00:00.000Z"
#: what the workflow's Catch hands the relay when an attempt failed past its retries
CAUGHT = {"Error": "Lambda.TooManyRequestsException", "Cause": "{}"}


def running() -> dict:
    return sample("running")


def task_of(answer: dict) -> str:
    return answer["output"]["task_id"]


@pytest.mark.parametrize("trouble", [(THROTTLED,), (UNAVAILABLE,), (THROTTLED, UNAVAILABLE)],
                         ids=["429", "503", "429-then-503"])
@pytest.mark.parametrize("end", ["poll", "after-trouble"])
def test_a_task_that_runs_out_of_budget_in_trouble_reports_what_dashscope_last_answered(
    replay, account, relay, trouble, end
):
    answer = running()
    replay.script(task_of(answer), answer, *trouble)
    state = relay.handle({"task_id": task_of(answer)})
    assert state["status"] == "RUNNING"
    for _ in trouble:
        state = relay.handle(state)
        assert state["done"] is False

    last = {**state, "started_at": LONG_AGO}
    final = relay.handle(last if end == "poll" else {"action": "after_trouble", "state": {**last, "error": CAUGHT}})

    detail = completion(final)
    assert detail["status"] == "TIMED_OUT"
    assert detail["provider_status"] == "RUNNING"


@pytest.mark.parametrize("end", ["poll", "after-trouble"])
def test_a_task_dashscope_never_answered_for_reports_no_provider_status(replay, account, relay, end):
    task_id = task_of(running())
    replay.script(task_id, THROTTLED)
    state = relay.handle({"task_id": task_id})
    assert state["status"] == "THROTTLED"  # the loop state's own word for the wait, as before

    last = {**state, "started_at": LONG_AGO}
    final = relay.handle(last if end == "poll" else {"action": "after_trouble", "state": {**last, "error": CAUGHT}})

    detail = completion(final)
    assert detail["status"] == "TIMED_OUT" and detail["provider_status"] is None


@pytest.mark.parametrize(("status", "reported"), [("RUNNING", "RUNNING"), ("PENDING", "PENDING"),
                                                  ("THROTTLED", None), (None, None)])
def test_a_loop_state_written_before_the_upgrade_is_read_and_reports_no_more_than_it_knows(
    replay, account, relay, status, reported
):
    """Today's loop state as the release before this one wrote it: no `provider_status`, DashScope's last
    status in `status` unless a 429 overwrote it with THROTTLED."""
    task_id = task_of(running())
    replay.script(task_id, THROTTLED)
    written_before = {"task_id": task_id, "kind": "image", "polls": 4, "throttled": 1, "status": status,
                      "wait_seconds": 5, "started_at": LONG_AGO, "lock": {"now": 1, "expires_at": 2},
                      "records_expire_at": None, "mode": "poll", "outages": {"n": 0, "total": 4}}

    detail = completion(relay.handle(written_before))

    assert detail["status"] == "TIMED_OUT" and detail["provider_status"] == reported


def test_a_loop_state_written_before_the_upgrade_keeps_dashscopes_last_status_through_a_429(replay, account, relay):
    task_id = task_of(running())
    replay.script(task_id, THROTTLED)
    written_before = {"task_id": task_id, "kind": "image", "polls": 4, "status": "RUNNING", "wait_seconds": 5,
                      "lock": {"now": 1, "expires_at": 2}, "mode": "poll", "outages": {"n": 0, "total": 4}}

    throttled = relay.handle(written_before)  # within the budget: the loop's status is THROTTLED now
    assert (throttled["done"], throttled["status"]) == (False, "THROTTLED")
    detail = completion(relay.handle({**throttled, "started_at": LONG_AGO}))

    assert detail["status"] == "TIMED_OUT" and detail["provider_status"] == "RUNNING"


def test_a_task_that_ends_reports_dashscopes_final_status(replay, account, relay):
    answer = replay.rehost(sample("failed_output_code"))
    replay.script(task_of(answer), THROTTLED, answer)
    state = relay.handle({"task_id": task_of(answer)})

    detail = completion(relay.handle(state))

    assert (detail["status"], detail["provider_status"]) == ("FAILED", "FAILED")
