"""Fault matrix, DashScope side: every bad answer gets a typed error naming its cause, or a wait."""

from __future__ import annotations

import pytest
from wan_relay.dashscope import DashScopeClient
from wan_relay.errors import InvalidInput, OperatorError, ProtocolError, TransientError
from wan_relay.normalize import normalize
from wan_relay.policy import TROUBLE_CAP_SECONDS
from wan_relay_local.replay import Reply

from tests.conftest import API_KEY, completion, sample

TASK = "f470bbfd-d955-4165-935b-d35b8e2a91c0"


def error_body(code: str, message: str) -> dict:
    return {"code": code, "message": message, "request_id": "req-123"}


def poll(relay, **state):
    return relay.handle({"task_id": TASK, **state})


def ask(relay):
    """One query as the relay makes it, answer normalized: the typed error a bad answer becomes."""
    return normalize(relay.client.get_task(TASK), expected_task_id=TASK)


TROUBLE = ("500", "502-html", "503", "504-empty", "200-html", "invalid-json", "no-output")


REPLIES = [
    (Reply(error_body("InvalidApiKey", "Invalid API-key provided."), status=401),
     OperatorError, "InvalidApiKey", "HTTP 401 InvalidApiKey"),
    (Reply(error_body("AccessDenied", "Access denied."), status=403), OperatorError, "AccessDenied", "HTTP 403"),
    (Reply(error_body("Throttling.AllocationQuota", "Free quota used up."), status=429),
     OperatorError, "Throttling.AllocationQuota", "retrying does not help"),
    (Reply(error_body("InternalError", "Internal error."), status=500), TransientError, "InternalError", "HTTP 500"),
    (Reply(b"<html><body>502 Bad Gateway</body></html>", status=502, raw=True), TransientError, "HTTP502",
     "non-JSON body (text/html)"),
    (Reply(error_body("ModelUnavailable", "Model unavailable."), status=503), TransientError, "ModelUnavailable",
     "HTTP 503"),
    (Reply(b"", status=504, raw=True), TransientError, "HTTP504", "HTTP 504"),
    (Reply(b"<html><body>Welcome to nginx</body></html>", raw=True), ProtocolError, "ProtocolError",
     "not a JSON object (text/html)"),
    (Reply(b'{"output": {"task_status": "RUNN', raw=True, headers={"Content-Type": "application/json"}),
     ProtocolError, "ProtocolError", "not a JSON object"),
    (Reply({"request_id": "r", "usage": {}}), ProtocolError, "ProtocolError", "no 'output' object"),
    (Reply(error_body("InvalidParameter", "task_id is invalid"), status=400), InvalidInput, "InvalidParameter",
     "HTTP 400"),
]
IDS = ["401", "403", "429-allocation-quota", "500", "502-html", "503", "504-empty", "200-html", "invalid-json",
       "no-output", "400"]


@pytest.mark.parametrize(("reply", "error", "code", "words"), REPLIES, ids=IDS)
def test_a_bad_answer_raises_a_typed_error_that_names_its_cause(replay, account, relay, reply, error, code, words):
    replay.script(TASK, reply)
    with pytest.raises(error) as raised:
        ask(relay)
    assert raised.value.code == code
    assert words in raised.value.message
    assert account.objects() == {}


@pytest.mark.parametrize("case", TROUBLE)
def test_trouble_at_dashscope_backs_off_within_the_budget_and_never_ends_the_task(replay, account, relay, case):
    replies = dict(zip(IDS, REPLIES, strict=True))
    replay.script(TASK, replies[case][0], replies[case][0], replies[case][0])

    first = poll(relay)
    second = relay.handle(first)

    assert (first["done"], second["done"]) == (False, False)
    assert (first["troubles"], second["troubles"]) == (1, 2)
    assert second["last_error"]["code"] == replies[case][2] and second["last_error"]["retryable"] is True
    assert all(1 <= s["wait_seconds"] <= TROUBLE_CAP_SECONDS for s in (first, second))
    assert second["event"] is None and account.objects() == {}


def test_an_outage_that_outlasts_the_budget_ends_timed_out_with_the_last_error(replay, account, relay):
    replay.script(TASK, Reply(error_body("ModelUnavailable", "Model unavailable."), status=503))
    state = poll(relay)
    state = relay.handle({**state, "started_at": "2000-01-01T00:00:00.000Z"})  # the budget is long spent

    detail = completion(state)
    assert detail["status"] == "TIMED_OUT"
    assert detail["error"]["code"] == "ModelUnavailable" and "HTTP 503" in detail["error"]["message"]
    assert detail["polls"] == 2


@pytest.mark.parametrize("code", ["Throttling", "Throttling.RateQuota"])
def test_throttling_waits_at_least_retry_after_and_backs_off_without_failing(replay, account, relay, code):
    replay.script(TASK, Reply(error_body(code, "Requests rate limit exceeded."), status=429,
                              headers={"Retry-After": "17"}))
    first = poll(relay)
    assert (first["done"], first["status"], first["throttled"]) == (False, "THROTTLED", 1)
    assert first["wait_seconds"] >= 17
    second = relay.handle(first)
    assert second["throttled"] == 2 and second["wait_seconds"] >= 17
    assert second["done"] is False and second["event"] is None


def test_throttling_backoff_grows_with_jitter_when_no_retry_after(replay, account, relay):
    import random

    replay.script(TASK, Reply(error_body("Throttling", "Too many requests."), status=429))
    relay.rng = random.Random(7)
    waits = []
    state = {"task_id": TASK}
    for _ in range(7):
        state = relay.handle(state)
        waits.append(state["wait_seconds"])
    assert all(1 <= w <= 60 for w in waits)
    assert max(waits[4:]) > max(waits[:2])  # the ceiling doubles: 2, 4, 8, 16, 32, 60 s


def test_a_throttled_poll_counts_in_a_metric(replay, account, make_relay):
    from aws_lambda_powertools import Metrics

    metrics = Metrics(namespace="WanRelayTest", service="wan-relay")
    relay = make_relay()
    relay.metrics = metrics
    replay.script(TASK, Reply(error_body("Throttling", "Too many requests."), status=429))
    poll(relay)
    recorded = metrics.serialize_metric_set()
    assert recorded["Throttled"] == [1.0]
    metrics.clear_metrics()



@pytest.mark.parametrize("case", ["500", "invalid-json"])  # a TransientError, and a ProtocolError
def test_a_poll_without_a_useful_answer_counts_in_poll_errors(replay, account, make_relay, case):
    from aws_lambda_powertools import Metrics

    replies = dict(zip(IDS, REPLIES, strict=True))
    metrics = Metrics(namespace="WanRelayTest", service="wan-relay")
    relay = make_relay()
    relay.metrics = metrics
    replay.script(TASK, replies[case][0])
    try:
        state = poll(relay)
        recorded = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    assert state["troubles"] == 1 and state["done"] is False
    assert recorded["PollErrors"] == [1.0] and recorded["Polls"] == [1.0]

def test_a_slow_dashscope_times_out_as_a_transient_error(replay, account, relay):
    replay.script(TASK, Reply(sample("pending"), delay=1.5))
    relay.client = DashScopeClient(replay.base_url, API_KEY, timeout=(1.0, 0.3))
    with pytest.raises(TransientError, match="did not answer") as raised:
        ask(relay)
    assert raised.value.code == "Timeout"


def test_a_reset_connection_is_a_transient_error(replay, account, relay):
    replay.script(TASK, Reply(None, reset=True))
    with pytest.raises(TransientError, match=r"could not reach DashScope|broke off") as raised:
        ask(relay)
    assert raised.value.code == "ConnectionError"


def test_an_unknown_task_status_keeps_the_loop_polling(replay, account, relay):
    answer = sample("pending")
    answer["output"]["task_status"] = "WAITING_FOR_GPU"
    replay.script(TASK, answer)
    state = poll(relay, kind="image")
    assert (state["done"], state["status"]) == (False, "WAITING_FOR_GPU")
    assert state["wait_seconds"] >= 1 and state["event"] is None


def test_a_succeeded_answer_without_any_media_is_announced_as_media_unavailable(replay, account, relay):
    answer = sample("wan2.6-t2i_succeeded")
    answer["output"]["choices"] = []
    replay.script(TASK, answer)
    state = poll(relay)
    assert state["status"] == "MEDIA_UNAVAILABLE"
    detail = completion(state)
    assert detail["error"]["code"] == "NoMedia"
    assert "no media" in detail["error"]["message"]


def test_an_answer_larger_than_a_task_answer_is_refused(replay, account, relay):
    answer = sample("pending")
    answer["padding"] = "x" * (2 * 1024 * 1024)
    replay.script(TASK, answer)
    with pytest.raises(ProtocolError, match="larger than"):
        ask(relay)
