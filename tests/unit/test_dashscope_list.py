"""DashScope's task list through the relay's client (`DashScopeClient.list_tasks`): the documented query,
the same key handling, errors, size bound and scrubbing as the single-task GET."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from wan_relay.dashscope import MAX_ANSWER_BYTES, DashScopeClient
from wan_relay.errors import OperatorError, ProtocolError, ThrottledError, TransientError
from wan_relay.sweeper import ListQuery, parse_page
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, sample

# 2026-01-09 17:18:17 in China
EPOCH = 1_767_950_297.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_page_of_the_list_is_asked_with_the_sweepers_parameters_and_read_by_parse_page():
    clock = Clock(EPOCH + 50)
    with ReplayDashScope(api_key=API_KEY, clock=clock) as server:
        for i in range(3):
            server.add_task(f"t-{i}", sample("wan2.6-t2i_succeeded"), created_at=EPOCH + i, ends_after=100)
        # the tasks created in EPOCH's second, asked up to the second after it (ListQuery's documented choice)
        query = ListQuery(int(EPOCH), int(EPOCH), "RUNNING", page_size=10)
        page = parse_page(DashScopeClient(server.base_url, API_KEY).list_tasks(query.params()), query.page_size)
        assert [row.task_id for row in page.rows] == ["t-1", "t-0"]  # newest first, still running
        assert page.last and page.total == 2
        [sent] = [r for r in server.requests if r["path"] == "/api/v1/tasks/"]
        assert sent["authorized"] and "status=RUNNING" in sent["query"] and "start_time=20260109171817" in sent["query"]


def test_a_throttled_list_page_is_the_throttled_error():
    with ReplayDashScope(api_key=API_KEY, rate_limit_qps=1, clock=Clock(EPOCH)) as server:
        client = DashScopeClient(server.base_url, API_KEY)
        client.list_tasks({})
        with pytest.raises(ThrottledError) as caught:
            client.list_tasks({})
        assert caught.value.code == "Throttling.RateQuota"


class RotatedKey:
    """A secret rotated since it was cached: `current` is the old key, `refreshed` the new one."""

    refreshable = True

    def __init__(self) -> None:
        self.refreshes = 0

    def current(self) -> str:
        return "sk-old-key"

    def refreshed(self) -> str:
        self.refreshes += 1
        return API_KEY


def test_a_refused_key_is_read_afresh_once_and_the_page_asked_again():
    with ReplayDashScope(api_key=API_KEY, clock=Clock(EPOCH)) as server:
        key = RotatedKey()
        assert DashScopeClient(server.base_url, key).list_tasks({})["data"] == []
        assert key.refreshes == 1
        assert [r["authorized"] for r in server.requests] == [False, True]


def test_a_key_refused_after_a_fresh_read_too_is_an_operator_error():
    with ReplayDashScope(api_key="sk-another-account", clock=Clock(EPOCH)) as server:
        with pytest.raises(OperatorError) as caught:
            DashScopeClient(server.base_url, RotatedKey()).list_tasks({})
        assert caught.value.code == "InvalidApiKey"


class CannedSession(requests.Session):
    """Answers every GET with one status and body (a hostile or broken server)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.status, self.body = status, body

    def get(self, url, **kwargs):  # type: ignore[override]
        response = requests.Response()
        response.status_code, response.url = self.status, url
        response.headers["Content-Type"] = "application/json"
        response.raw = io.BytesIO(self.body)
        return response


def test_an_error_answer_that_echoes_the_key_never_passes_it_on():
    body = json.dumps({"code": "InternalError", "message": f"bad header Bearer {API_KEY}", "request_id": "r-1"})
    with pytest.raises(TransientError) as caught:
        DashScopeClient("https://dashscope.invalid/api/v1", API_KEY,
                        session=CannedSession(500, body.encode())).list_tasks({})
    assert API_KEY not in str(caught.value) and "<redacted>" in str(caught.value)


def test_a_list_answer_larger_than_the_bound_is_refused():
    body = b'{"data": [' + b" " * MAX_ANSWER_BYTES + b"]}"
    with pytest.raises(ProtocolError):
        DashScopeClient("https://dashscope.invalid/api/v1", API_KEY, session=CannedSession(200, body)).list_tasks({})


def test_pages_sent_at_once_go_over_connections_opened_ahead_of_them():
    """The sweeper sends a plan's pages at their slots, several at once: each needs a connection opened
    before the first slot, or it opens one after its slot (DNS, TCP, TLS) and arrives among the next
    slots' queries, which DashScope counts as they arrive."""
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock(EPOCH + 50)
    with ReplayDashScope(api_key=API_KEY, clock=clock) as server:
        server.add_task("t-0", sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=100)
        client = DashScopeClient(server.base_url, API_KEY)
        client.ready(connections=3)
        deadline = time.monotonic() + 5  # the server records a connection when its loop accepts it
        while len(server.connections) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        primed = {port for _, port in server.connections}
        assert len(primed) == 3
        query = ListQuery(int(EPOCH), int(EPOCH), "RUNNING", page_size=10)
        with ThreadPoolExecutor(3) as pages:
            list(pages.map(lambda _: client.list_tasks(query.params()), range(3)))

    sent = [r for r in server.requests if r["path"] == "/api/v1/tasks/"]
    assert len(sent) == 3 and {r["port"] for r in sent} <= primed
    assert len(server.connections) == 3  # none opened after its slot
