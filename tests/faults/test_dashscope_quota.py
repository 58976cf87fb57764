"""DashScope's HTTP 429s that are not a plain rate limit: an allocated quota spent for its period comes
back by itself and is waited out like a long throttle; a free quota used up, an overdue bill or a model
not purchased needs the operator. (Model Studio's status codes; its rate-limiting guide: throttled calls
typically resume within a minute.)"""

from __future__ import annotations

import pytest
from wan_relay.errors import OperatorError
from wan_relay_local.replay import Reply

from tests.conftest import completion, sample

#: the period of Model Studio's quotas (requests or tokens a minute)
MINUTE = 60
ALLOCATED = {"code": "Throttling.AllocationQuota", "request_id": "req-1",
             "message": "Allocated quota exceeded, please increase your quota limit."}


def test_an_allocated_quota_spent_for_its_period_is_waited_out_and_the_task_relayed(replay, account, relay):
    answer = replay.rehost(sample("wan2.7-i2v_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, Reply(ALLOCATED, status=429), Reply(ALLOCATED, status=429), answer)

    first = relay.handle({"task_id": task_id})
    second = relay.handle(first)

    for state in (first, second):
        assert (state["done"], state["status"], state["event"]) == (False, "THROTTLED", None)
        assert state["wait_seconds"] >= MINUTE  # the quota's period, not a throttle's 2-4 s
    assert second["throttled"] == 2
    assert completion(relay.handle(second))["status"] == "SUCCEEDED"
    assert len(account.objects()) == 1


def test_an_allocated_quotas_retry_after_longer_than_its_period_is_honoured(replay, account, relay):
    replay.script("t-1", Reply(ALLOCATED, status=429, headers={"Retry-After": "300"}))
    assert relay.handle({"task_id": "t-1"})["wait_seconds"] >= 300


@pytest.mark.parametrize(("code", "message"), [
    ("Throttling.AllocationQuota", "Free allocated quota exceeded."),
    ("PrepaidBillOverdue", "The prepaid bill is overdue."),
    ("PostpaidBillOverdue", "The postpaid bill is overdue."),
    ("CommodityNotPurchased", "Commodity has not purchased yet."),
])
def test_a_429_only_the_operator_can_clear_fails_the_execution_by_its_code(replay, account, relay, code, message):
    replay.script("t-1", Reply({"code": code, "message": message, "request_id": "req-1"}, status=429))
    with pytest.raises(OperatorError) as raised:
        relay.handle({"task_id": "t-1"})
    assert raised.value.code == code and message in raised.value.message
    assert account.objects() == {}
