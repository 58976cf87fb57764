"""The replay DashScope's fleet side (issue 13): tasks on a clock, the list endpoint as documented, and
a per-second limit shared by the GET and the list. The sweeper's host driving it over HTTP within the
budget: tests/unit/test_sweep_host.py."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import requests
from wan_relay.dashscope import DashScopeClient
from wan_relay.errors import ThrottledError
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, sample

# 2026-01-09 17:18:17 in China
EPOCH = 1_767_950_297.0


class Clock:
    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fleet_replay(clock):
    with ReplayDashScope(api_key=API_KEY, clock=clock, max_page_size=5) as server:
        yield server


def list_tasks(server: ReplayDashScope, **params: str) -> requests.Response:
    return requests.get(f"{server.base_url}/tasks/", params=params,
                        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)


def get_task(server: ReplayDashScope, task_id: str) -> dict:
    return DashScopeClient(server.base_url, API_KEY).get_task(task_id)


def test_a_task_on_the_clock_runs_then_ends_and_the_list_agrees(fleet_replay, clock):
    fleet_replay.add_task("t-1", sample("wan2.6-t2i_succeeded"), running_after=2, ends_after=20,
                          model="wan2.6-t2i")
    for at, status in ((EPOCH + 1, "PENDING"), (EPOCH + 5, "RUNNING"), (EPOCH + 20, "SUCCEEDED")):
        clock.now = at
        answer = get_task(fleet_replay, "t-1")
        listed = list_tasks(fleet_replay).json()["data"]
        assert answer["output"]["task_status"] == status == listed[0]["status"]
    assert answer["output"]["task_id"] == "t-1"
    assert answer["output"]["submit_time"] == "2026-01-09 17:18:17.000"  # China time, as DashScope writes it
    assert answer["output"]["end_time"] == "2026-01-09 17:18:37.000"
    assert answer["output"]["choices"]  # the final answer's results
    assert listed[0] == {
        "api_key_id": "replay", "caller_parent_id": "replay", "caller_uid": "replay",
        "gmt_create": int(EPOCH * 1000), "model_name": "wan2.6-t2i", "region": "replay",
        "request_id": "replay-submit-t-1", "status": "SUCCEEDED", "task_id": "t-1",
        "user_api_unique_key": "apikey:v1:aigc:replay:wan2.6-t2i",
        "start_time": int((EPOCH + 2) * 1000), "end_time": int((EPOCH + 20) * 1000),
    }


def test_the_list_reads_china_time_windows_in_whole_seconds_newest_first_in_pages(fleet_replay, clock):
    for i in range(12):
        fleet_replay.add_task(f"t-{i:02d}", sample("wan2.6-t2i_succeeded"), created_at=EPOCH + i + 0.5,
                              ends_after=30)
    clock.now = EPOCH + 100
    # 17:18:20 to 17:18:25 China time: the tasks created in those six seconds, both ends included
    page = list_tasks(fleet_replay, start_time="20260109171820", end_time="20260109171825", page_size="4").json()
    assert (page["total"], page["total_page"], page["page_no"], page["page_size"]) == (6, 2, 1, 4)
    assert [row["task_id"] for row in page["data"]] == ["t-08", "t-07", "t-06", "t-05"]
    second = list_tasks(fleet_replay, start_time="20260109171820", end_time="20260109171825", page_size="4",
                        page_no="2").json()
    assert [row["task_id"] for row in second["data"]] == ["t-04", "t-03"]
    # a page larger than the server serves is served at its size, which the answer says
    capped = list_tasks(fleet_replay, start_time="20260109171800", end_time="20260109172000",
                        page_size="100").json()
    assert (capped["page_size"], len(capped["data"]), capped["total"]) == (5, 5, 12)
    assert list_tasks(fleet_replay).json()["page_size"] == 5  # the documented default is 10


def test_the_list_filters_on_status_model_and_task_id(fleet_replay, clock):
    fleet_replay.add_task("img", sample("wan2.6-t2i_succeeded"), ends_after=10, model="wan2.6-t2i")
    fleet_replay.add_task("vid", sample("wan2.7-i2v_succeeded"), ends_after=100, model="wan2.7-i2v")
    fleet_replay.add_task("bad", sample("failed_output_code"), ends_after=5, model="wan2.6-t2i")
    clock.now = EPOCH + 50
    assert [r["task_id"] for r in list_tasks(fleet_replay, status="RUNNING").json()["data"]] == ["vid"]
    assert [r["task_id"] for r in list_tasks(fleet_replay, status="FAILED").json()["data"]] == ["bad"]
    assert {r["task_id"] for r in list_tasks(fleet_replay, model_name="wan2.6-t2i").json()["data"]} == {"img", "bad"}
    assert [r["task_id"] for r in list_tasks(fleet_replay, task_id="img").json()["data"]] == ["img"]


def test_scripted_tasks_are_listed_at_their_submit_time_with_the_status_their_next_poll_answers(fleet_replay):
    fleet_replay.script("s-1", sample("running"), sample("wan2.6-t2i_succeeded"))
    window = {"start_time": "20250925110700", "end_time": "20250925110800"}  # the answers' submit_time
    [row] = list_tasks(fleet_replay, **window).json()["data"]
    assert (row["status"], row["gmt_create"]) == ("RUNNING", 1758769648590)
    get_task(fleet_replay, "s-1")
    [row] = list_tasks(fleet_replay, **window).json()["data"]
    assert row["status"] == "SUCCEEDED"
    assert list_tasks(fleet_replay).json()["data"] == []  # not in the last 24 hours


@pytest.mark.parametrize(("params", "words"), [
    ({"start_time": "20260109171820", "end_time": "20260110171821"}, "24 hours"),
    ({"start_time": "2026-01-09 17:18"}, "YYYYMMDDhhmmss"),
    ({"start_time": "20261309171820"}, "not a valid time"),
    ({"page_no": "0"}, "positive integer"),
    ({"page_size": "ten"}, "positive integer"),
])
def test_a_list_query_dashscope_would_refuse_is_a_400_invalid_parameter(fleet_replay, params, words):
    answer = list_tasks(fleet_replay, **params)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter" and words in answer.json()["message"]


def test_the_per_second_limit_is_shared_by_the_get_and_the_list_and_answers_like_dashscope(clock):
    with ReplayDashScope(api_key=API_KEY, clock=clock, rate_limit_qps=2) as server:
        server.add_task("t-1", sample("wan2.6-t2i_succeeded"))
        assert list_tasks(server).status_code == 200
        get_task(server, "t-1")
        throttled = list_tasks(server)
        assert throttled.status_code == 429
        assert throttled.json()["code"] == "Throttling.RateQuota"
        with pytest.raises(ThrottledError):  # the relay's client reads it as a wait, not a failure
            get_task(server, "t-1")
        assert (server.throttled, server.max_queries_in_any_second()) == (2, 4)
        clock.now += 1.0  # a second later the account has its quota back
        assert list_tasks(server).status_code == 200
        wrong_key = requests.get(f"{server.base_url}/tasks/", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong_key.status_code == 401


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's arrival stamps (SO_TIMESTAMPNS) are Linux's")
def test_a_query_counts_when_it_arrived_not_when_the_replay_got_round_to_it():
    # the replay shares its process with everything a test runs: its handler can wait for the interpreter
    # well after the query arrived. The limit counts arrivals, as DashScope's gateway does, and the failure
    # message shows each throttled query with the second before it.
    with ReplayDashScope(api_key=API_KEY, rate_limit_qps=1) as server:
        server.add_task("t-1", sample("wan2.6-t2i_succeeded"))
        answers: list[int] = []
        with server._lock:  # the handler is held up, as by a busy interpreter, while the query arrives
            sent_at = time.time()
            asking = threading.Thread(target=lambda: answers.append(list_tasks(server).status_code))
            asking.start()
            time.sleep(0.6)
        asking.join(timeout=10)
        assert answers == [200]
        assert server.query_times[0] - sent_at < 0.3
        with pytest.raises(ThrottledError):  # a GET within the second after the list's arrival
            get_task(server, "t-1")
        throttled_line, earlier = server.crowding().splitlines()
        assert throttled_line.startswith("throttled at ") and earlier.endswith("/api/v1/tasks/")
