"""What the sweeper assumes of DashScope's task list and the documentation does not say (docs/fleet.md,
"What the list endpoint does"), checked against the real endpoint. Opt-in, never needed for CI; part of
`make integration`, with a task of the account that SUCCEEDED in the last 24 hours:

    WAN_RELAY_IMAGE_TASK_ID=<task id> DASHSCOPE_API_KEY=sk-... [DASHSCOPE_BASE_URL=...] make integration

With WAN_RELAY_LIST_PAGE_SIZE=N it checks that DashScope serves pages of N rows (the stack's
DashScopeListPageSize: 100 by default; raise it only once this passes, on a window holding more than N tasks).

About ten queries of the account's budget. A failure here means the fleet's figures (docs/BENCHMARKS.md,
section 5) rest on a wrong assumption: the sweeper stays correct (it plans with the page size the answers
echo, and a task it cannot find is probed), but slower or dearer than measured."""

from __future__ import annotations

import os
from typing import Any

import pytest
from wan_relay.config import DEFAULT_BASE_URL
from wan_relay.dashscope import DashScopeClient
from wan_relay.sweeper import ListQuery, Page, parse_page

from .test_deployed_stack import need

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("WAN_RELAY_INTEGRATION") != "1",
                       reason="real-cloud test: opt in with WAN_RELAY_INTEGRATION=1 (make integration)"),
]

#: the page size the sweeper asks for: the stack's DashScopeListPageSize, 100 unless WAN_RELAY_LIST_PAGE_SIZE
#: names a larger one to check before deploying it (the simulation's figures assume 100)
ASSUMED_PAGE_SIZE = int(os.environ.get("WAN_RELAY_LIST_PAGE_SIZE", "100"))
CHINA_OFFSET_SECONDS = 8 * 3600


@pytest.fixture(scope="module")
def client() -> DashScopeClient:
    return DashScopeClient(os.environ.get("DASHSCOPE_BASE_URL", DEFAULT_BASE_URL), need("DASHSCOPE_API_KEY"))


@pytest.fixture(scope="module")
def created(client: DashScopeClient) -> int:
    """The known task's creation second (epoch), from its own row: `task_id` alone, the last 24 h."""
    page = _page(client, {"task_id": need("WAN_RELAY_IMAGE_TASK_ID"), "page_size": "1"})
    assert [row.task_id for row in page.rows] == [need("WAN_RELAY_IMAGE_TASK_ID")], (
        "WAN_RELAY_IMAGE_TASK_ID must name a task of this key's account created in the last 24 h")
    return page.rows[0].created_ms // 1000


def _page(client: DashScopeClient, params: dict[str, str]) -> Page:
    answer: Any = client.list_tasks(params)
    return parse_page(answer, int(params.get("page_size", "10")))  # the sweeper's own reading of it


def _ids(client: DashScopeClient, query: ListQuery) -> list[str]:
    return [row.task_id for row in _page(client, query.params()).rows]


def test_a_window_of_china_time_creation_seconds_holds_the_task(client: DashScopeClient, created: int) -> None:
    task_id = need("WAN_RELAY_IMAGE_TASK_ID")
    assert task_id in _ids(client, ListQuery(created - 1, created + 1))
    # read as UTC the window would be 8 hours off: the task is not in the window those seconds make
    utc_reading = ListQuery(created - 1 + CHINA_OFFSET_SECONDS, created + 1 + CHINA_OFFSET_SECONDS)
    assert task_id not in _ids(client, utc_reading)
    # and the window filters the creation time: seconds after it, the task is not there
    assert task_id not in _ids(client, ListQuery(created + 2, created + 60))


def test_a_window_starting_at_the_tasks_creation_second_holds_it(client: DashScopeClient, created: int) -> None:
    # the sweeper's block windows start at their first member's second, trusting `start_time` inclusive (the
    # documentation does not say): were it exclusive, that member would look ended at every read
    assert need("WAN_RELAY_IMAGE_TASK_ID") in _ids(client, ListQuery(created, created))


def test_the_status_filter_shows_an_ended_task_only_under_its_final_status(
    client: DashScopeClient, created: int
) -> None:
    task_id = need("WAN_RELAY_IMAGE_TASK_ID")
    assert task_id in _ids(client, ListQuery(created - 1, created + 1, status="SUCCEEDED"))
    # the sweeper's negative inference: a task absent from a RUNNING window has ended
    assert task_id not in _ids(client, ListQuery(created - 1, created + 1, status="RUNNING"))


def test_pages_of_the_size_asked_for_newest_first_with_a_total(client: DashScopeClient, created: int) -> None:
    page = _page(client, ListQuery(created - 23 * 3600, created + 60, page_size=ASSUMED_PAGE_SIZE).params())
    assert page.page_size == ASSUMED_PAGE_SIZE, f"DashScope serves pages of {page.page_size} rows"
    assert len(page.rows) == min(page.total, ASSUMED_PAGE_SIZE)  # `total` counts every page's rows
    stamps = [row.created_ms for row in page.rows]
    assert stamps == sorted(stamps, reverse=True)  # the order the sweeper checks on every page
