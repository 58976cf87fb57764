"""The sweeper's host (wan_relay.sweep_host) on moto's DynamoDB, a DashScope replayed over HTTP and a
recording Step Functions: the lease, the registry read across invocations, the budget shared with the
workflows' own polls, heartbeats spread out, dead tokens let go, throttled pages read again.

Time is a fake clock shared by the host, its budget and the replay: the host's sleep moves it, once the
list pages it sent are answered (answers take no time), and runs what the world does meanwhile: the
resumed workflows' GETs at their slots, new parks, a rival caller of the same budget.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws
from wan_relay import metrics as metric_list
from wan_relay.budget import MICROS, Budget, DynamoDBBudget, max_in_any_window
from wan_relay.dashscope import DashScopeClient
from wan_relay.errors import ConfigurationError, OperatorError
from wan_relay.fleet import Fleet
from wan_relay.registry import HINT_KEPT_SECONDS, HINT_PARTITION_PREFIX, Hint, Hints, Parked, Registry
from wan_relay.runtime import default_client, sweep_host_from_env
from wan_relay.sweep_host import (
    BEAT_MARGIN_SECONDS,
    BLIND_PAGE_EVERY_SECONDS,
    LEASE_WAIT_SECONDS,
    LIST_THREADS,
    READ_EVERY_SECONDS,
    RENEW_EVERY_SECONDS,
    RESUME_LEAD_SECONDS,
    RESUME_RETRY_MAX_SECONDS,
    TICK_SECONDS,
    Lease,
    SweepHost,
)
from wan_relay.sweeper import (
    BLIND_AFTER_PERIODS,
    HEARTBEAT_EVERY_SECONDS,
    SWEEPER_STALE_SECONDS,
    WATCHDOG_SECONDS,
    ListQuery,
    SweepConfig,
    Sweeper,
)
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, TABLE, sample
from tests.faults.aws_faults import Refused, error

# 2026-01-09 17:18:17 in China
EPOCH = 1_767_950_297.0
PARKED = "wan-relay-parked"
ACCOUNT = "acct-1"


class World:
    """The fake clock, and what happens at given instants while the host sleeps. Time is kept in whole
    microseconds, as the budget's slots are, and read a quarter of a microsecond late, so that both the
    budget's truncation and the replay's rounding of an epoch float land on the microsecond meant."""

    def __init__(self, now: float) -> None:
        self.now_us = round(now * MICROS)
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self.dashscope: Answering | None = None

    @property
    def now(self) -> float:
        return (self.now_us + 0.25) / MICROS

    def __call__(self) -> float:
        return self.now

    def at(self, instant: float, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._events, (round(instant * MICROS), next(self._order), action))

    def next_at(self) -> float | None:
        """The instant of the next thing that happens, if any."""
        with self._lock:
            return self._events[0][0] / MICROS if self._events else None

    def sleep(self, seconds: float) -> None:
        if self.dashscope is not None:
            self.dashscope.settle()
        until_us = self.now_us + round(seconds * MICROS)
        while True:
            with self._lock:
                if not self._events or self._events[0][0] > until_us:
                    break
                instant_us, _, action = heapq.heappop(self._events)
            self.now_us = max(self.now_us, instant_us)
            action()
        self.now_us = until_us


class Answering:
    """The DashScope client, whose answers take no time on the fake clock: the world's sleep waits
    until every list page the host sent has been answered."""

    def __init__(self, client: DashScopeClient) -> None:
        self._client = client
        self._done = 0
        self._changed = threading.Condition()
        self.host: SweepHost | None = None

    def ready(self, connections: int = 1) -> None:
        self._client.ready(connections)

    def list_tasks(self, params: dict[str, str], **options: Any) -> dict[str, Any]:
        try:
            return self._client.list_tasks(params, **options)
        finally:
            with self._changed:
                self._done += 1
                self._changed.notify_all()

    def settle(self) -> None:
        assert self.host is not None
        with self._changed:
            assert self._changed.wait_for(lambda: self._done >= self.host.counts.list_queries, timeout=10)


class StepFunctions:
    """SendTaskSuccess and SendTaskHeartbeat, recorded; a resumed workflow sends its GET at the slot it
    was handed; tokens told dead, and tokens of workflows resumed (their task closed), answer TaskTimedOut
    as in AWS; `throttle` answers ThrottlingException that many times (botocore's retries spent)."""

    def __init__(self, world: World, replay: ReplayDashScope | None = None) -> None:
        self.world, self.replay = world, replay
        self.dead: set[str] = set()
        self.throttle = 0
        self.resumed: list[dict[str, Any]] = []
        self.beats: list[tuple[float, str]] = []
        self.gets: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _error(code: str, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "told so"}}, operation)

    def send_task_success(self, *, taskToken: str, output: str) -> dict:
        with self._lock:
            if self.throttle:
                self.throttle -= 1
                raise self._error("ThrottlingException", "SendTaskSuccess")
            if taskToken in self.dead:
                raise self._error("TaskTimedOut", "SendTaskSuccess")
            task_id = taskToken.removeprefix("token-")
            answer = json.loads(output)
            self.resumed.append({"task_id": task_id, "at": self.world.now, **answer})
            self.dead.add(taskToken)
        if self.replay is not None:
            self.world.at(answer["get_at_us"] / MICROS, lambda: self._get(task_id))
        return {}

    def _get(self, task_id: str) -> None:
        assert self.replay is not None
        answer = DashScopeClient(self.replay.base_url, self.replay.api_key).get_task(task_id)  # the current key
        self.gets[task_id] = answer["output"]["task_status"]

    def send_task_heartbeat(self, *, taskToken: str) -> dict:
        with self._lock:
            if taskToken in self.dead:
                raise self._error("TaskTimedOut", "SendTaskHeartbeat")
            self.beats.append((self.world.now, taskToken.removeprefix("token-")))
        return {}


class Account:
    """moto's DynamoDB with the stack's two tables: the idempotency table (the budget, the lease) and
    the parked workflows."""

    def __init__(self) -> None:
        self.dynamodb = default_client("dynamodb")
        self.dynamodb.create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        self.dynamodb.create_table(
            TableName=PARKED,
            KeySchema=[{"AttributeName": "account", "KeyType": "HASH"},
                       {"AttributeName": "parked", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "account", "AttributeType": "S"},
                                  {"AttributeName": "parked", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
        self.registry = Registry(self.dynamodb, PARKED, ACCOUNT)

    def park(self, task_id: str, parked_at: float, kind: str = "image", token: str | None = None) -> Parked:
        parked = Parked(task_id, token or f"token-{task_id}", parked_at, kind)
        self.registry.park(parked, expires_at=int(parked_at) + 86_400)
        return parked

    def parks(self) -> list[Parked]:
        return list(self.registry.since())

    def lease(self) -> dict[str, Any]:
        return self.dynamodb.get_item(TableName=TABLE, Key={"id": {"S": f"sweeper#{ACCOUNT}"}}).get("Item", {})


@pytest.fixture
def account():
    with mock_aws():
        yield Account()


def host_for(account: Account, world: World, sfn: StepFunctions, replay: ReplayDashScope | None = None,
             *, rate: int = 2, holder: str = "invocation-1", metrics: Any = None, key: Any = API_KEY,
             client: Any = None, dynamodb: Any = None, sweeper: Sweeper | None = None) -> SweepHost:
    # without a replay, nothing listens: every list page fails at once (connection refused)
    answering = Answering(client or DashScopeClient(replay.base_url if replay else "http://127.0.0.1:9/api/v1", key))
    host = SweepHost(dynamodb=dynamodb or account.dynamodb, stepfunctions=sfn, dashscope=answering,  # type: ignore[arg-type]
                     idempotency_table=TABLE, parked_table=PARKED, account=ACCOUNT, budget=Budget(rate),
                     sweeper=sweeper, holder=holder, clock=world, sleep=world.sleep, metrics=metrics)
    answering.host = host
    world.dashscope = answering
    return host


def burst(replay: ReplayDashScope, account: Account, count: int = 30) -> list[str]:
    """Tasks created 0.3 s apart, each ending 20-29 s later, each workflow parked half a second after."""
    ids = []
    for i in range(count):
        task_id = f"t-{i:02d}"
        replay.add_task(task_id, sample("wan2.6-t2i_succeeded"), created_at=EPOCH + i * 0.3, ends_after=20 + (i % 10))
        account.park(task_id, EPOCH + i * 0.3 + 0.5)
        ids.append(task_id)
    return ids


# --- the budget, over HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("rival", [False, True], ids=["alone", "with-a-rival-on-the-same-budget"])
def test_the_host_resumes_every_ended_task_once_without_a_single_429(account, rival):
    """Thirty tasks ending within ten seconds, a replay limited to 2 queries a second, a budget of 2 (with
    a rival, polling for itself, reserving from the same item): every workflow resumed once, after its
    task ended, its GET at the slot handed over; never throttled, never over the limit."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2, max_page_size=100) as replay:
        ids = burst(replay, account)
        sfn = StepFunctions(world, replay)
        host = host_for(account, world, sfn, replay)
        rival_gets: list[float] = []
        if rival:
            replay.add_task("other", sample("running"), ends_after=10_000)
            bucket = DynamoDBBudget(account.dynamodb, TABLE, ACCOUNT, Budget(2), clock=world)

            def rival_poll() -> None:
                for slot in bucket.reserve(1).slots_us:
                    world.at(slot / MICROS, lambda: rival_gets.append(world.now) or DashScopeClient(
                        replay.base_url, API_KEY).get_task("other"))
                if world.now < EPOCH + 80:
                    world.at(world.now + 1.5, rival_poll)

            world.at(world.now, rival_poll)
        summary = host.run(EPOCH + 90)
        assert sorted(r["task_id"] for r in sfn.resumed) == ids  # each once
        assert {r["reason"] for r in sfn.resumed} == {"finished"}
        assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED")  # never resumed while its task still ran
        # each GET slot reserved far enough ahead for the resumed workflow to reach its poll
        assert all(r["get_at_us"] / MICROS >= r["at"] + RESUME_LEAD_SECONDS - 1e-6 for r in sfn.resumed)
        assert replay.throttled == 0
        assert replay.max_queries_in_any_second() <= 2
        assert len(rival_gets) > 10 if rival else not rival_gets
        assert account.parks() == []  # every resumed workflow's park removed
        assert summary["resumes"] == 30 and summary["throttled"] == 0 and summary["lease"] is True
        assert summary["list_queries"] == len([r for r in replay.requests if r["path"] == "/api/v1/tasks/"])


def test_a_resumed_workflow_is_handed_a_slot_it_can_reach_even_when_the_budget_is_idle(account):
    """SendTaskSuccess, the transition and the poll's invocation take time: a slot at the very instant
    of the resume would be missed, and the workflow would spend a second slot."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19) as replay:
        burst(replay, account, 1)
        sfn = StepFunctions(world, replay)
        host_for(account, world, sfn, replay, rate=19).run(EPOCH + 50)
        [resume] = sfn.resumed
        assert resume["get_at_us"] / MICROS >= resume["at"] + RESUME_LEAD_SECONDS - 1e-6


def test_a_throttled_page_is_read_again_and_its_tasks_still_resumed(account):
    """The account's other callers (outside the budget) take DashScope's whole quota for a while: the
    pages answered 429 are counted and read again later."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2, max_page_size=100) as replay:
        ids = burst(replay, account, 5)
        replay.add_task("other", sample("running"), ends_after=10_000)
        other_caller = DashScopeClient(replay.base_url, API_KEY)
        for i in range(90):  # 10 queries a second from EPOCH + 10 to EPOCH + 19, before any task ends
            world.at(EPOCH + 10 + i * 0.1, lambda: _quietly(lambda: other_caller.get_task("other")))
        sfn = StepFunctions(world, replay)
        summary = host_for(account, world, sfn, replay).run(EPOCH + 80)
        assert summary["throttled"] >= 1
        assert sorted(r["task_id"] for r in sfn.resumed) == ids
        assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED")


class CachedSecret:
    """The key as the sweeper holds it, through the secret's cache: the key it cached until DashScope
    refuses it and the secret is read afresh; `rotate` rotates the secret (and the key DashScope takes)."""

    refreshable = True

    def __init__(self, replay: ReplayDashScope) -> None:
        self.replay, self.cached, self.refreshes = replay, replay.api_key, 0

    def rotate(self) -> None:
        self.replay.api_key = "sk-rotated-in-0123456789"

    def current(self) -> str:
        return self.cached

    def refreshed(self) -> str:
        self.refreshes += 1
        self.cached = self.replay.api_key
        return self.cached


def test_a_page_refused_for_a_rotated_key_is_asked_again_at_a_slot_of_its_own(account):
    """The key is rotated while pages go every half second: the next page is answered 401. Sent again at
    once with the fresh key it would be a query more than its slot allowed (DashScope's limit may count
    the refused one); it is planned again instead, and goes at a slot of its own."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2, max_page_size=100) as replay:
        ids = burst(replay, account, 5)
        sfn = StepFunctions(world, replay)
        key = CachedSecret(replay)
        world.at(EPOCH + 22.6, key.rotate)  # between pages half a second apart (22.4, 22.9, 23.4)
        summary = host_for(account, world, sfn, replay, key=key).run(EPOCH + 60)
        asked = [r for r in replay.requests if r["path"].startswith("/api/")]
        assert [r["authorized"] for r in asked].count(False) == 1 and key.refreshes == 1
        assert max_in_any_window([round(r["at"] * MICROS) for r in asked]) <= 2  # the refused one counted
        assert summary["throttled"] == 0 and replay.throttled == 0  # not a 429, nor counted as one
        assert sorted(r["task_id"] for r in sfn.resumed) == ids
        assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED")


def _quietly(call: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        call()


# --- the lease ------------------------------------------------------------------------------------


def test_while_another_sweeper_holds_the_lease_a_second_one_waits_then_does_nothing(account):
    world = World(EPOCH + 10)
    sfn = StepFunctions(world)
    account.park("t-1", EPOCH)
    first = host_for(account, world, sfn, holder="invocation-1")
    assert first.lease.take()  # the first one sweeps (taken here, as its run would)
    second = host_for(account, world, sfn, holder="invocation-2")
    started = world.now
    summary = second.run(EPOCH + 80)
    assert summary["lease"] is False and summary["list_queries"] == 0
    assert LEASE_WAIT_SECONDS - 1 <= world.now - started <= LEASE_WAIT_SECONDS  # asked once a second, then gave up
    assert sfn.beats == [] and account.lease()["holder"]["S"] == "invocation-1"


def test_a_sweeper_hands_its_lease_over_at_its_next_renewal_to_a_start_that_asks_for_it(account):
    """A start a park woke runs out of step with the schedule: the schedule's next start, waiting for the
    lease, asks for it, and the woken run gives it up at its next renewal (within RENEW_EVERY_SECONDS),
    so the waiting start sweeps on instead of giving up after LEASE_WAIT_SECONDS and leaving the account
    without a sweeper until the start after."""
    world = World(EPOCH + 10)
    sfn = StepFunctions(world)
    account.park("t-1", EPOCH, kind="video")  # something to watch: the run would go on to its end
    woken = host_for(account, world, sfn, holder="woken")
    scheduled = Lease(account.dynamodb, TABLE, ACCOUNT, "scheduled", world)
    world.at(EPOCH + 30, scheduled.ask)
    summary = woken.run(EPOCH + 70)
    assert summary["lease"] is True
    assert EPOCH + 30 < world.now <= EPOCH + 30 + RENEW_EVERY_SECONDS + 1  # handed over, not at its end
    world.sleep(1.0)
    assert scheduled.take()  # released: the asker's next try, a second later, takes it


def test_a_start_that_asks_for_the_lease_takes_it_from_a_holder_out_of_step_and_sweeps(account):
    world = World(EPOCH + 10)
    sfn = StepFunctions(world)
    account.park("t-1", EPOCH, kind="video")
    woken = Lease(account.dynamodb, TABLE, ACCOUNT, "woken", world)
    assert woken.take()

    def renewal() -> None:  # what the woken run does every RENEW_EVERY_SECONDS
        if woken.renew() and woken.asked:
            woken.release()
        else:
            world.at(world.now + RENEW_EVERY_SECONDS, renewal)

    world.at(EPOCH + 14, renewal)
    scheduled = host_for(account, world, sfn, holder="scheduled")
    summary = scheduled.run(EPOCH + 40)
    assert summary["lease"] is True and sfn.beats  # it swept, its first beats sent
    assert account.lease()["holder"]["S"] == "scheduled"


def test_the_next_invocation_takes_the_lease_as_soon_as_the_last_one_releases_it(account):
    world = World(EPOCH + 10)
    sfn = StepFunctions(world)
    account.park("t-1", EPOCH)
    first = host_for(account, world, sfn, holder="invocation-1")
    assert first.lease.take()
    world.at(EPOCH + 13, first.lease.release)  # the previous minute's invocation ends
    second = host_for(account, world, sfn, holder="invocation-2")
    summary = second.run(EPOCH + 30)
    assert summary["lease"] is True
    assert [at for at, _ in sfn.beats][:1] and min(at for at, _ in sfn.beats) >= EPOCH + 13
    lease = account.lease()
    assert lease["holder"]["S"] == "invocation-2"
    assert float(lease["lease_until"]["N"]) <= world.now  # released at its end
    assert world.now - 1 <= float(lease["swept_at"]["N"]) <= world.now
    assert int(lease["expiration"]["N"]) >= world.now + 86_000


def test_the_lease_is_renewed_and_says_when_the_sweeper_last_swept(account):
    world = World(EPOCH + 10)
    account.park("video-1", EPOCH + 9, kind="video")  # running long: the sweep has a workflow to watch
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)
    seen: list[float] = []
    for t in range(15, 60, 5):
        world.at(EPOCH + t, lambda: seen.append(world.now - float(account.lease()["swept_at"]["N"])))
    host.run(EPOCH + 60)
    assert seen and max(seen) <= 10.5  # renewed every ten seconds: the workflows see a live sweeper


class LeaseWritesRefused:
    """DynamoDB refuses the writes of the sweeper's lease item (throttled past botocore's retries) that
    `refusing(request)` picks; the budget's and the registry's calls go through."""

    def __init__(self, client: Any, refusing: Callable[[dict[str, Any]], bool]) -> None:
        self.refused = 0
        self._refusing = refusing
        client.meta.events.register_first("before-call.dynamodb.UpdateItem", self._answer)

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        request = json.loads(params["body"])
        if request["Key"]["id"]["S"] != f"sweeper#{ACCOUNT}" or not self._refusing(request):
            return None
        self.refused += 1
        parsed = {**error("ProvisionedThroughputExceededException", "throttled"),
                  "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://injected.invalid", 400, {}, None), parsed


def test_a_lease_take_dynamodb_refuses_is_tried_again_a_second_later_and_the_sweep_goes_on(account):
    world = World(EPOCH + 10)
    account.park("t-1", EPOCH, kind="video")
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)
    refused = LeaseWritesRefused(account.dynamodb, lambda request: "attribute_not_exists(lease_until)"
                                 in request.get("ConditionExpression", "") and refused.refused < 1)
    summary = host.run(EPOCH + 40)  # not failed: the invocation's minute would have gone unswept
    assert refused.refused == 1 and summary["lease"] is True and sfn.beats


def test_an_ask_from_a_start_that_stopped_waiting_does_not_end_the_holders_run(account):
    """A start asks for the lease, then gives up (its 15 s are over) while the holder's renewals are
    refused; the holder, renewing again, finds the ask stale and sweeps on to its end: handing over to
    nobody would leave the account without a sweeper until the next start."""
    world = World(EPOCH + 10)
    account.park("t-1", EPOCH, kind="video")
    host = host_for(account, world, StepFunctions(world), holder="woken")
    gone = Lease(account.dynamodb, TABLE, ACCOUNT, "gone", world)
    for second in range(25, 40):  # its asks, a second apart, then no more
        world.at(EPOCH + second, gone.ask)
    LeaseWritesRefused(account.dynamodb, lambda request: EPOCH + 28 <= world.now < EPOCH + 42
                       and request["ExpressionAttributeValues"].get(":me", {}).get("S") == "woken")
    host.run(EPOCH + 70)
    assert world.now >= EPOCH + 70


def test_a_handed_over_lease_is_released_before_the_calls_in_flight_are_waited_for(account, monkeypatch):
    """A list page or a heartbeat may still be in flight when the holder hands over (a page may take its
    10 s): the asker, waiting at most LEASE_WAIT_SECONDS, must not wait for it too. The run's last wait
    for its calls in flight comes after the release."""
    from wan_relay import sweep_host

    world = World(EPOCH + 10)
    account.park("t-1", EPOCH, kind="video")
    host = host_for(account, world, StepFunctions(world), holder="woken")
    asker = Lease(account.dynamodb, TABLE, ACCOUNT, "scheduled", world)
    for second in range(31, 46):
        world.at(EPOCH + second, asker.ask)
    held_at_waits: list[bool] = []
    real_wait = sweep_host.wait

    def recorded_wait(futures: Any, *args: Any, **kwargs: Any) -> Any:
        held_at_waits.append(float(account.lease()["lease_until"]["N"]) > world.now)
        return real_wait(futures, *args, **kwargs)

    monkeypatch.setattr(sweep_host, "wait", recorded_wait)
    host.run(EPOCH + 70)
    assert world.now < EPOCH + 45  # handed over
    assert held_at_waits[-1] is False  # the last wait, for the calls in flight, after the release


def test_a_lease_renewal_dynamodb_refuses_is_tried_again_at_the_next_tick_and_the_sweep_goes_on(account):
    """The renewals due at 10 s and 20 s into the run are refused for 12 s: tried again each tick, the
    lease is renewed before its last 5 s and the sweeper sweeps to its end (tried again only 10 s later,
    it would have stopped 25 s into its minute)."""
    world = World(EPOCH + 10)
    account.park("video-1", EPOCH + 9, kind="video")
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)
    lease = LeaseWritesRefused(account.dynamodb, lambda _: EPOCH + 19 <= world.now < EPOCH + 31)
    host.run(EPOCH + 70)
    assert world.now >= EPOCH + 70 - TICK_SECONDS  # swept to its end
    assert lease.refused > 2  # tried every tick while refused
    assert account.lease()["holder"]["S"] == "invocation-1"


def test_a_lease_release_dynamodb_refuses_still_ends_the_invocation_with_its_summary_and_metrics(account):
    """The lease lapses by itself within 30 s; the invocation's metrics are not lost with it."""
    from aws_lambda_powertools import Metrics

    from tests.contract.test_dashboard import emf_series

    world = World(EPOCH + 10)
    metrics = Metrics(namespace="WanRelay", service="wan-relay")
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        burst(replay, account, 3)
        host = host_for(account, world, StepFunctions(world, replay), replay, metrics=metrics)
        release = LeaseWritesRefused(account.dynamodb, lambda request: (  # the write that ends the lease now
            request["ExpressionAttributeValues"][":until"] == request["ExpressionAttributeValues"][":now"]))
        summary = host.run(EPOCH + 70)
    assert release.refused == 1 and summary["lease"] is True and summary["resumes"] == 3
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics.flush_metrics()
    values = {name: seen["values"] for (_, name, _), seen in emf_series(printed.getvalue()).items()}
    assert values["SweeperResumes"] == [3]


def test_a_sweeper_whose_lease_was_taken_over_stops(account):
    world = World(EPOCH + 10)
    account.park("video-1", EPOCH + 9, kind="video")
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)

    def taken_over() -> None:  # its lease lapsed (a stalled invocation) and another took it
        account.dynamodb.put_item(TableName=TABLE, Item={
            "id": {"S": f"sweeper#{ACCOUNT}"}, "holder": {"S": "invocation-2"},
            "lease_until": {"N": str(world.now + 30)}, "swept_at": {"N": str(world.now)}})

    world.at(EPOCH + 15, taken_over)
    host.run(EPOCH + 60)
    assert world.now <= EPOCH + 21  # at its next renewal
    assert account.lease()["holder"]["S"] == "invocation-2"  # and its release did not touch the new lease


def test_an_idle_sweeper_ends_its_run_and_a_park_finds_it_gone(account):
    """Nothing parked: the run ends at once (an idle account costs a start a minute, not a running
    function); parks that all resumed: it ends after IDLE_EXIT_SECONDS, releasing its lease, so that the
    next park wakes a new one (`Fleet.wake_sweeper`: no live lease)."""
    from wan_relay.budget import Budget
    from wan_relay.fleet import Fleet
    from wan_relay.sweep_host import IDLE_EXIT_SECONDS

    world = World(EPOCH + 10)
    summary = host_for(account, world, StepFunctions(world)).run(EPOCH + 60)
    assert summary["lease"] is True and world.now < EPOCH + 11

    woken: list[float] = []
    fleet = Fleet(dynamodb=account.dynamodb, table=TABLE, account=ACCOUNT, budget=Budget(2),
                  clock=lambda: world.now, wake=lambda: woken.append(world.now))
    account.park("video-1", world.now, kind="video")
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)
    resumed: list[float] = []

    def resume() -> None:  # the workflow was resumed and went on: nothing is parked any more
        host.sweeper.forget("video-1")
        account.registry.remove(account.parks()[0])
        resumed.append(world.now)

    world.at(world.now + 5, resume)
    host.run(EPOCH + 60)
    # idle from its last tick with a workflow watched
    assert resumed[0] + IDLE_EXIT_SECONDS - 1 <= world.now < resumed[0] + IDLE_EXIT_SECONDS + 1
    assert fleet.wake_sweeper() is True and woken == [world.now]  # the lease is free: a park wakes one
    assert fleet.wake_sweeper() is False  # ... once: the other parks of a burst find it woken


# --- one invocation after another -----------------------------------------------------------------


def test_a_new_invocation_reads_every_park_and_spreads_their_first_heartbeats_over_a_period(account):
    """Three hundred workflows parked under an earlier invocation: the new one watches all of them, and
    heartbeats each once within the heartbeat period, a few a second, not all at once."""
    world = World(EPOCH + 400)
    for i in range(300):
        account.park(f"p-{i:03d}", EPOCH + i, kind="video")
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn, rate=19)
    started = world.now
    summary = host.run(started + 99.9)  # within the first period: the first beats only
    assert summary["parked"] == 300
    beats = [at for at, _ in sfn.beats]
    assert sorted(task for _, task in sfn.beats) == [f"p-{i:03d}" for i in range(300)]  # each once
    assert max(beats) <= started + 100
    instants = [round(at * MICROS) for at in beats]
    assert len([at for at in beats if at < started + 1]) <= 5  # not all at once: 3 a second is the spread
    assert max_in_any_window(instants, 5 * MICROS) <= 30  # the loop's ticks bunch them a little, no more


def test_only_the_first_read_of_the_whole_registry_is_eventually_consistent(account):
    """An invocation's first read takes every park of the account (10,000 parks with 1 KB tokens: about
    3,000 strongly consistent read units, a DynamoDB partition's whole second, so it could be throttled
    past the SDK's retries): eventually consistent, half of that. The reads after it are strongly
    consistent and go back CURSOR_OVERLAP_MS, so a park written too recently for the first one is found."""
    world = World(EPOCH + 400)
    for i in range(3):
        account.park(f"p-{i}", EPOCH + i, kind="video")
    queries: list[tuple[str, bool]] = []
    account.dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", lambda params, **_: queries.append(
        (params["ExpressionAttributeValues"][":account"]["S"], params["ConsistentRead"])))
    host = host_for(account, world, StepFunctions(world), rate=19)
    host.run(world.now + 3)
    parks = [consistent for partition, consistent in queries if partition == ACCOUNT]
    assert parks[0] is False and len(parks) > 1 and all(parks[1:])


def test_invocations_of_a_minute_one_after_another_heartbeat_every_parked_workflow_within_a_period(account):
    """The schedule's invocations, as the Lambda runs them: a new host each minute, each sweeping at most
    60 s, the next one taking the lease as the last one lets it go. Workflows parked before the first,
    a burst of 100 during it, and one every 4 s throughout (videos running long): each is heartbeaten
    within a heartbeat period of its park and of its last beat (its watchdog is three periods), whatever
    its place in the registry and whenever in an invocation it parked."""
    from functions.sweeper.app import SWEEP_SECONDS

    world = World(EPOCH)
    parked_at: dict[str, float] = {}
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19, max_page_size=100) as replay:

        def park(task_id: str, at: float) -> None:
            replay.add_task(task_id, sample("running"), created_at=at - 0.5, ends_after=10_000)
            account.park(task_id, at, kind="video")
            parked_at[task_id] = at

        for i in range(50):
            park(f"before-{i:03d}", EPOCH - 10 + i * 0.2)
        for i in range(100):
            world.at(EPOCH + 1 + i * 0.5, lambda i=i: park(f"burst-{i:03d}", world.now))
        for i in range(60):
            world.at(EPOCH + 2 + i * 4, lambda i=i: park(f"trickle-{i:03d}", world.now))
        sfn = StepFunctions(world, replay)
        handover = 1.0  # the next minute's invocation takes the lease a second after the last one's end
        for k in range(4):
            started = EPOCH + k * (SWEEP_SECONDS + handover)
            world.sleep(started - world.now)
            host = host_for(account, world, sfn, replay, rate=19, holder=f"invocation-{k}")
            summary = host.run(started + SWEEP_SECONDS)
            assert summary["lease"] is True and summary["dead_tokens"] == 0 and summary["resumes"] == 0
    ended = world.now
    beats: dict[str, list[float]] = {}
    for at, task_id in sfn.beats:
        beats.setdefault(task_id, []).append(at)
    gaps = {task_id: max(b - a for a, b in itertools.pairwise([at, *sorted(beats.get(task_id, [])), ended]))
            for task_id, at in parked_at.items()}
    assert len(parked_at) == 210 and max(gaps.values()) <= HEARTBEAT_EVERY_SECONDS, \
        sorted(gaps.items(), key=lambda item: -item[1])[:5]


def test_more_parks_than_sixteen_heartbeats_a_tick_can_beat_are_beaten_soon_and_under_the_quota(account):
    """A minute's spread of 10,000 parks asks about 180 heartbeats a second; sixteen a tick (0.2 s) would
    send 80. Here 1,000 parks due within 2 s (a run of 7 s): each beaten once, before the run ends, and
    never more in a second than Step Functions refills for SendTaskHeartbeat in most regions (300)."""
    world = World(EPOCH + 400)
    for i in range(1000):
        account.park(f"p-{i:04d}", EPOCH + i * 0.3, kind="video")
    sfn = StepFunctions(world)
    started = world.now
    host_for(account, world, sfn, rate=19).run(started + 2 + BEAT_MARGIN_SECONDS)
    assert sorted(task for _, task in sfn.beats) == [f"p-{i:04d}" for i in range(1000)]  # each once
    instants = [round(at * MICROS) for at, _ in sfn.beats]
    assert max_in_any_window(instants, MICROS) <= 300


def test_parks_written_while_it_runs_are_read_each_second_and_a_newer_park_replaces_an_older_one(account):
    world = World(EPOCH + 10)
    sfn = StepFunctions(world)
    host = host_for(account, world, sfn)
    # videos: the list (unreachable here) is first asked a minute after a park, so the sweeper beats on
    # through the run (BLIND_AFTER_PERIODS)
    older = account.park("t-1", EPOCH + 5, kind="video", token="token-t-1-first")
    world.at(EPOCH + 20, lambda: account.park("t-2", EPOCH + 19.5, kind="video"))
    # t-1's workflow was resumed by a fallback poll and parked again: a new item, a new token
    world.at(EPOCH + 30, lambda: account.park("t-1", EPOCH + 29.9, kind="video", token="token-t-1-second"))
    seen: dict[str, list[str]] = {}
    world.at(EPOCH + 21.5, lambda: seen.update(at_21=sorted(p.task_id for p in account.parks())))
    summary = host.run(EPOCH + 140)
    assert summary["parked"] == 2
    assert older.key not in {p.key for p in account.parks()}  # the older item is removed
    assert {p.token for p in account.parks()} == {"token-t-1-second", "token-t-2"}
    beaten = {task for _, task in sfn.beats}
    assert beaten >= {"t-2", "t-1-second"} and "t-1-first" not in {t for at, t in sfn.beats if at > EPOCH + 32}
    assert seen["at_21"] == ["t-1", "t-2"]


# --- a sweeper that cannot read the list ----------------------------------------------------------


class ListOutage:
    """The DashScope client the host lists with: the list answers (`answering`, a replay) except from
    `start` to `end` on the world's clock, or always without a replay, when its pages fail (`failing`);
    `asked` records when each page was asked and whether it was one that failed."""

    def __init__(self, world: World, failing: Callable[..., dict[str, Any]], answering: DashScopeClient | None = None,
                 start: float = -math.inf, end: float = math.inf) -> None:
        self.world, self.failing, self.answering, self.start, self.end = world, failing, answering, start, end
        self.asked: list[tuple[float, bool]] = []

    def ready(self, connections: int = 1) -> None:
        return None

    def list_tasks(self, params: dict[str, str], **options: Any) -> dict[str, Any]:
        failing = self.answering is None or self.start <= self.world.now < self.end
        self.asked.append((self.world.now, failing))
        return (self.failing if failing else self.answering.list_tasks)(params, **options)  # type: ignore[union-attr]


@contextlib.contextmanager
def failing_list(outage: str) -> Iterator[Callable[..., dict[str, Any]]]:
    """How DashScope's list fails: "throttled", 429 Throttling.RateQuota at every page (the account's other
    callers take its whole limit: a replay that admits no query); "unreadable", an answer the sweeper
    cannot read (an error body under HTTP 200); "unreachable", no answer at all (a refused connection,
    as a 5xx or a timeout come to once the client has given up: a TransientError)."""
    if outage == "throttled":
        with ReplayDashScope(api_key=API_KEY, rate_limit_qps=0) as admits_nothing:
            yield DashScopeClient(admits_nothing.base_url, API_KEY).list_tasks
    elif outage == "unreadable":
        yield lambda params, **_: {"code": "InternalError", "message": "An internal error has occured.",
                                   "request_id": "replay-200"}
    else:
        yield DashScopeClient("http://127.0.0.1:9/api/v1", API_KEY).list_tasks


def sweep_minutes(account: Account, world: World, sfn: StepFunctions, minutes: int, client: ListOutage,
                  watch: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """The schedule's invocations one after another, as the function runs them (a new host each minute,
    sweeping 60 s, the next taking the lease a second after); `watch` runs every 5 s meanwhile."""
    from functions.sweeper.app import SWEEP_SECONDS

    first = world.now
    if watch is not None:
        for k in range(1, int(minutes * (SWEEP_SECONDS + 1) / 5)):
            world.at(first + 5 * k, watch)
    summaries = []
    for k in range(minutes):
        started = first + k * (SWEEP_SECONDS + 1)
        world.sleep(started - world.now)
        host = host_for(account, world, sfn, rate=19, holder=f"invocation-{k}", client=client)
        summaries.append(host.run(started + SWEEP_SECONDS))
    return summaries


def fallback_moves(account: Account, world: World) -> tuple[list[tuple[float, str]], Callable[[], None]]:
    """What a workflow whose watchdog fired, finding its task still running, would do at each instant the
    returned watch runs: park again ("park") or poll on its own ("poll"), as `Fleet.next_move` decides it
    from the lease item."""
    fleet = Fleet(account.dynamodb, TABLE, ACCOUNT, Budget(19), registry=account.registry, clock=world)
    moves: list[tuple[float, str]] = []
    return moves, lambda: moves.append((world.now, fleet.next_move(None, left_seconds=86_400)))


BLIND_AFTER = BLIND_AFTER_PERIODS * HEARTBEAT_EVERY_SECONDS


@pytest.mark.parametrize("outage", ["throttled", "unreadable", "unreachable"])
def test_a_sweeper_that_cannot_read_the_list_lets_every_park_fall_back_within_a_bound(account, outage):
    """The sweeper runs fine, a minute an invocation, but DashScope's list fails at every page. It beats
    the parks for BLIND_AFTER (a heartbeat period) after the first failure, then none, in that invocation
    and the ones after it: every park's watchdog fires at most a watchdog period later (400 s after the
    list's first failure, not at the end of the task's day-long budget). It stops saying it swept, so a
    workflow whose watchdog fired then polls on its own instead of parking again, unbeaten."""
    world = World(EPOCH + 400)
    parked = [account.park(f"v-{i:02d}", EPOCH + i * 10, kind="video").task_id for i in range(20)]  # due for a look
    sfn = StepFunctions(world)
    moves, watch = fallback_moves(account, world)
    with failing_list(outage) as failing:
        client = ListOutage(world, failing)
        summaries = sweep_minutes(account, world, sfn, 8, client, watch)
    assert all(s["lease"] and s["list_queries"] > 0 and s["resumes"] == 0 for s in summaries)  # alive, looking
    assert all(failed for _, failed in client.asked)
    first_failure = client.asked[0][0]
    assert {task for _, task in sfn.beats} == set(parked)  # beaten while the failures may be a passing fault ...
    last_beat = {task: at for at, task in sfn.beats}
    assert max(last_beat.values()) <= first_failure + BLIND_AFTER + TICK_SECONDS  # ... and none after
    # so the watchdogs fire within BLIND_AFTER and a watchdog period of the list's first failure
    fires = {task: at + WATCHDOG_SECONDS for task, at in last_beat.items()}
    assert max(fires.values()) <= first_failure + BLIND_AFTER + WATCHDOG_SECONDS + TICK_SECONDS < world.now
    # and each workflow, its watchdog fired and its task still running, polls on its own from then on
    assert {move for at, move in moves if at >= min(fires.values())} == {"poll"}
    assert {move for at, move in moves if at < first_failure + BLIND_AFTER} == {"park"}  # alive and seeing


def test_when_the_list_answers_again_the_parks_are_beaten_again_and_the_sweeper_says_it_swept(account):
    """The list fails (an answer the sweeper cannot read) for 270 s: the parks are beaten for a heartbeat
    period after the first failure, then not, a workflow that fell back would poll on its own; at the
    first page answered, the beats held back are sent, every park is beaten again within a period, and a
    workflow that fell back parks again at its next poll (`swept_at` is fresh again)."""
    world = World(EPOCH)
    sfn = StepFunctions(world)
    moves, watch = fallback_moves(account, world)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19) as replay, \
            failing_list("unreadable") as failing:
        parked = []
        for i in range(10):  # videos running long, looked for at once
            replay.add_task(f"v-{i}", sample("running"), created_at=EPOCH - 100 + i, ends_after=10_000)
            parked.append(account.park(f"v-{i}", EPOCH - 99.5 + i, kind="video").task_id)
        client = ListOutage(world, failing, DashScopeClient(replay.base_url, API_KEY), EPOCH + 30, EPOCH + 300)
        summaries = sweep_minutes(account, world, sfn, 9, client, watch)
    assert all(s["lease"] and s["resumes"] == 0 and s["dead_tokens"] == 0 for s in summaries)
    first_failure = min(at for at, failed in client.asked if failed)
    healed = min(at for at, failed in client.asked if not failed and at >= EPOCH + 300)
    blind_from = first_failure + BLIND_AFTER + TICK_SECONDS
    assert not [at for at, _ in sfn.beats if blind_from < at < healed]
    assert {move for at, move in moves if blind_from + SWEEPER_STALE_SECONDS < at < healed} == {"poll"}
    for task in parked:  # beaten within a period of the heal, and every period after it
        beats = [at for at, beaten in sfn.beats if beaten == task and at >= healed]
        assert beats and max(b - a for a, b in itertools.pairwise([healed, *beats, world.now])) <= \
            HEARTBEAT_EVERY_SECONDS, (task, beats)
    assert {move for at, move in moves if at > healed + RENEW_EVERY_SECONDS + TICK_SECONDS} == {"park"}


def test_while_the_sweeper_is_blind_a_workflow_it_resumed_that_found_its_task_running_polls_on_its_own(account):
    """A blind sweeper would not beat a park: a workflow it resumed (a probe, a hint) whose task still
    runs polls on its own until the list answers again, rather than park and wait out its watchdog."""
    world = World(EPOCH + 400)
    for i in range(20):
        account.park(f"v-{i:02d}", EPOCH + i * 10, kind="video")
    fleet = Fleet(account.dynamodb, TABLE, ACCOUNT, Budget(19), registry=account.registry, clock=world)
    seen: list[tuple[float, str]] = []
    with failing_list("unreadable") as failing:
        client = ListOutage(world, failing)
        sweep_minutes(account, world, StepFunctions(world), 3, client,
                      lambda: seen.append((world.now, fleet.next_move("probe", left_seconds=86_400))))
    first_failure = client.asked[0][0]
    assert {move for at, move in seen if at < first_failure + BLIND_AFTER} == {"park"}
    assert {move for at, move in seen if at >= first_failure + BLIND_AFTER + TICK_SECONDS} == {"poll"}


def test_a_failed_page_the_last_park_left_before_another_was_answered_does_not_leave_the_sweeper_blind(account):
    """A page fails (a 429), then the account's last park leaves the watch by a notification's hint before
    any page is answered: no park is left to page for, so no page could clear the failure. It is dropped
    with the last park: the sweeper says it swept, and a workflow resumed later parks again (found in
    review: the account stopped parking for good)."""
    world = World(EPOCH)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    fleet = Fleet(account.dynamodb, TABLE, ACCOUNT, Budget(19), registry=account.registry, clock=world)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19) as replay, \
            failing_list("throttled") as failing:
        replay.add_task("img", sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=13.0)
        account.park("img", EPOCH + 0.5)
        client = ListOutage(world, failing, DashScopeClient(replay.base_url, API_KEY), EPOCH, EPOCH + 16)
        world.at(EPOCH + 15.0, lambda: hints.put(Hint("img", "SUCCEEDED", world.now, ended_at=EPOCH + 13.0)))
        sfn = StepFunctions(world, replay)
        sweep_minutes(account, world, sfn, 4, client)
    assert [r["task_id"] for r in sfn.resumed] == ["img"] and all(failed for _, failed in client.asked)
    assert "blind_since" not in account.lease()
    assert fleet.next_move("finished", left_seconds=86_400) == "park"


def test_a_failure_left_standing_with_only_probed_parks_left_does_not_leave_the_sweeper_blind(account):
    """A page fails once; the last park the list was to find leaves by a hint before another page is
    asked; only a blind park is left, probed with GETs, asking no page. The failure cannot be cleared by
    a page: it is dropped, and the blind park is beaten on, the sweeper saying it swept."""
    world = World(EPOCH)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19) as replay, \
            failing_list("throttled") as failing:
        replay.add_task("img", sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=13.0)
        replay.add_task("vid", sample("running"), created_at=EPOCH - 100, ends_after=100_000)
        account.park("img", EPOCH + 0.5)
        account.registry.park(Parked("vid", "token-vid", EPOCH + 0.2, "video", blind=True, wait_seconds=1200),
                              expires_at=int(EPOCH) + 86_400)
        client = ListOutage(world, failing, DashScopeClient(replay.base_url, API_KEY), EPOCH, EPOCH + 16)
        world.at(EPOCH + 15.0, lambda: hints.put(Hint("img", "SUCCEEDED", world.now, ended_at=EPOCH + 13.0)))
        sfn = StepFunctions(world, replay)
        sweep_minutes(account, world, sfn, 5, client)
    assert all(failed for _, failed in client.asked)
    assert "blind_since" not in account.lease()
    beats = [at for at, task in sfn.beats if task == "vid"]
    assert max(b - a for a, b in itertools.pairwise([EPOCH, *beats, world.now])) <= HEARTBEAT_EVERY_SECONDS + 5


def test_a_workflow_whose_sweeper_lease_cannot_be_read_does_not_send_its_get_again(account):
    """Its GET is spent: DynamoDB throttled past the SDK's retries must not fail the poll (the workflow's
    Retry would send the GET again): a resumed workflow parks as ever, one that fell back polls on its own."""
    fleet = Fleet(account.dynamodb, TABLE, ACCOUNT, Budget(19), registry=account.registry, clock=lambda: EPOCH)
    Refused(account.dynamodb, "GetItem", 400, error("ThrottlingException", "Rate exceeded."), times=99)
    assert fleet.next_move("probe", left_seconds=86_400) == "park"
    assert fleet.next_move("finished", left_seconds=86_400) == "park"
    assert fleet.next_move(None, left_seconds=86_400) == "poll"


def test_a_blind_sweeper_asks_a_page_now_and_then_leaving_the_budget_to_the_workflows_that_fell_back(account):
    """Four hundred parks over 800 s of creation times: many blocks, each looked at again a few seconds
    after its page failed. Blind, the sweeper sends one page every BLIND_PAGE_EVERY_SECONDS (enough to
    see the list answer again), not a page a second or more: the workflows that fell back to polling on
    their own need the account's budget."""
    world = World(EPOCH + 400)
    for i in range(400):
        account.park(f"v-{i:03d}", EPOCH - 400 + i * 2, kind="video")
    with failing_list("unreadable") as failing:
        client = ListOutage(world, failing)
        sweep_minutes(account, world, StepFunctions(world), 3, client)
    first_failure = client.asked[0][0]
    blind = [at for at, _ in client.asked if at >= first_failure + BLIND_AFTER + TICK_SECONDS]
    assert len(blind) >= 2  # still looking
    # one page every BLIND_PAGE_EVERY_SECONDS, and one more at most as each of the 3 invocations starts
    assert len(blind) <= (blind[-1] - blind[0]) / BLIND_PAGE_EVERY_SECONDS + 1 + 3


def test_a_sweeper_with_no_page_to_read_keeps_beating_its_parks(account):
    """Parks the list is not asked about (parked blind: probed when their own loop would poll, an hour
    away): no page is planned and none fails, so the sweeper beats them every period as ever, and says
    it swept, though DashScope's list would fail if it were asked."""
    world = World(EPOCH + 10)
    for i in range(5):
        account.registry.park(Parked(f"b-{i}", f"token-b-{i}", EPOCH + i, "video", blind=True, wait_seconds=3600),
                              expires_at=int(EPOCH) + 86_400)
    sfn = StepFunctions(world)
    moves, watch = fallback_moves(account, world)
    with failing_list("unreachable") as failing:
        client = ListOutage(world, failing)
        summaries = sweep_minutes(account, world, sfn, 6, client, watch)
    assert client.asked == [] and all(s["list_queries"] == 0 for s in summaries)
    for i in range(5):
        beats = [at for at, task in sfn.beats if task == f"b-{i}"]
        assert max(b - a for a, b in itertools.pairwise([EPOCH + i, *beats, world.now])) <= HEARTBEAT_EVERY_SECONDS
    assert {move for _, move in moves} == {"park"}


# --- DashScope's task-finished notifications (hints) ------------------------------------------------


def test_a_hinted_task_is_resumed_within_a_read_of_its_hint_without_a_list_page(account):
    """Images done in 3-6 s, each hinted half a second after its end (and once more, as a notification
    delivered twice): every workflow resumed once, within a registry read and a tick of its hint, before
    the list could even be asked (no image is looked for before 10 s), its GET finding it SUCCEEDED."""
    world = World(EPOCH)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    hinted_at: dict[str, float] = {}
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        ids = []
        for i in range(6):
            task_id, created, duration = f"t-{i:02d}", EPOCH + 0.4 * i, 3 + 0.5 * i
            replay.add_task(task_id, sample("wan2.6-t2i_succeeded"), created_at=created, ends_after=duration)
            account.park(task_id, created + 0.5)
            for late in (0.5, 1.7):
                world.at(created + duration + late, lambda t=task_id, end=created + duration: (
                    hinted_at.setdefault(t, world.now), hints.put(Hint(t, "SUCCEEDED", world.now, ended_at=end))))
            ids.append(task_id)
        sfn = StepFunctions(world, replay)
        summary = host_for(account, world, sfn, replay).run(EPOCH + 40)
    assert sorted(r["task_id"] for r in sfn.resumed) == ids
    for resume in sfn.resumed:
        hinted = hinted_at[resume["task_id"]]
        assert hinted <= resume["at"] <= hinted + READ_EVERY_SECONDS + TICK_SECONDS
    assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED")
    assert summary["hinted"] == 6 and summary["list_queries"] == 0
    assert account.parks() == []


def test_a_hint_taken_before_the_sweeper_started_or_before_the_park_is_not_lost(account):
    """A task hinted while no sweeper ran (the invocation reads the last hour's hints on its first read),
    and one hinted before its workflow parked: both resumed at once; a hint of another caller's task, and
    one older than the hour (its task still runs), resume nothing."""
    world = World(EPOCH + 100)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        for task_id in ("early", "parks-late"):
            replay.add_task(task_id, sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=60)
        replay.add_task("stale", sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=10_000)
        account.park("early", EPOCH + 0.5)
        hints.put(Hint("early", "SUCCEEDED", EPOCH + 61))
        hints.put(Hint("parks-late", "SUCCEEDED", EPOCH + 62))
        hints.put(Hint("someone-elses", "FAILED", EPOCH + 63))
        account.park("stale", EPOCH + 0.5)
        hints.put(Hint("stale", "SUCCEEDED", EPOCH + 100 - HINT_KEPT_SECONDS - 5))
        world.at(EPOCH + 104, lambda: account.park("parks-late", EPOCH + 104))
        sfn = StepFunctions(world, replay)
        host = host_for(account, world, sfn, replay)
        summary = host.run(EPOCH + 106)
    resumed = {r["task_id"]: r["at"] for r in sfn.resumed}
    assert resumed.keys() == {"early", "parks-late"}
    assert resumed["early"] <= EPOCH + 100 + TICK_SECONDS
    assert resumed["parks-late"] <= EPOCH + 104 + READ_EVERY_SECONDS + TICK_SECONDS
    assert summary["hinted"] == 2


class SmallHintPages:
    """moto's DynamoDB whose Queries of the hint partition answer pages of `page` items (as DynamoDB cuts
    them at 1 MB), recording for each page asked for its order and how many hints the Sweeper kept then."""

    def __init__(self, dynamodb: Any, page: int) -> None:
        self._dynamodb, self._page = dynamodb, page
        self.sweeper: Sweeper | None = None
        self.pages: list[tuple[bool, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)

    def query(self, **query: Any) -> dict[str, Any]:
        if query["ExpressionAttributeValues"][":account"]["S"].startswith(HINT_PARTITION_PREFIX):
            assert self.sweeper is not None
            self.pages.append((query.get("ScanIndexForward", True), self.sweeper.hints_kept))
            query = {**query, "Limit": self._page}
        return self._dynamodb.query(**query)


def test_a_flood_of_hints_is_read_newest_first_a_page_at_a_time_and_no_more_than_the_sweeper_keeps(account):
    """A leaked token's flood: ten times as many hints in the last hour as the Sweeper keeps, for tasks no
    workflow waits for. The invocation's first read asks for them newest first, hands each page to the
    Sweeper before asking for the next, and stops once it has read as many as the Sweeper keeps: it
    never holds more than that and a page. The newest are kept, the oldest of them first to go: after a
    new hint, workflows that park for the flood's tasks are resumed on the newest task's hint only."""
    cap, page, now = 40, 15, EPOCH + 4000
    world = World(now)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    flood = [f"flood-{i:03d}" for i in range(10 * cap)]  # oldest first
    for i, task_id in enumerate(flood):
        hints.put(Hint(task_id, "SUCCEEDED", now - HINT_KEPT_SECONDS + 5 + i * 8))
    account.park("running", now - 10)  # keeps the invocation going
    world.at(now + 0.5, lambda: hints.put(Hint("late", "SUCCEEDED", now + 0.5)))
    parks_later = [flood[-1], flood[-cap], flood[-cap - 1], "late"]  # the newest, the oldest read, one not read
    world.at(now + 2.5, lambda: [account.park(task_id, now + 2.5) for task_id in parks_later])
    sfn = StepFunctions(world)
    sweeper = Sweeper(SweepConfig(rate=2, max_hints_kept=cap))
    dynamodb = SmallHintPages(account.dynamodb, page)
    dynamodb.sweeper = sweeper
    host_for(account, world, sfn, dynamodb=dynamodb, sweeper=sweeper).run(now + 5)
    first_read = [kept for forward, kept in dynamodb.pages if not forward]
    assert first_read == [0, page, 2 * page]  # newest first, a page handed over before the next is asked
    assert all(kept <= cap for _, kept in dynamodb.pages) and sweeper.hints_kept <= cap
    assert sorted(r["task_id"] for r in sfn.resumed) == [flood[-1], "late"]


class FailingSecondHintPage(SmallHintPages):
    """Pages of `page` hints; the second hint page asked for fails (DynamoDB past botocore's retries)."""

    def __init__(self, dynamodb: Any, page: int) -> None:
        super().__init__(dynamodb, page)
        self.asked = 0

    def query(self, **query: Any) -> dict[str, Any]:
        if query["ExpressionAttributeValues"][":account"]["S"].startswith(HINT_PARTITION_PREFIX):
            self.asked += 1
            if self.asked == 2:
                raise ClientError(error("InternalServerError", "Internal server error"), "Query")
        return super().query(**query)


def test_a_first_hint_read_that_failed_part_way_is_read_again_and_its_newest_hints_go_last(account):
    """The first read fails after a page; the next read is again a first read, and hints came in between.
    Those are the newest: when the store is full, the oldest kept goes first, never one of them."""
    cap, now = 4, EPOCH + 4000
    world = World(now)
    hints = Hints(account.dynamodb, PARKED, ACCOUNT)
    for i in range(6):
        hints.put(Hint(f"old-{i}", "SUCCEEDED", now - 600 + i * 10))
    account.park("running", now - 10)  # keeps the invocation going
    world.at(now + 0.5, lambda: [hints.put(Hint(f"new-{i}", "SUCCEEDED", now + 0.4 + i * 0.01)) for i in range(2)])
    world.at(now + 2.5, lambda: hints.put(Hint("newest", "SUCCEEDED", now + 2.5)))  # the store is full: one goes
    world.at(now + 3.5, lambda: account.park("new-0", now + 3.5))
    sfn = StepFunctions(world)
    sweeper = Sweeper(SweepConfig(rate=2, max_hints_kept=cap))
    dynamodb = FailingSecondHintPage(account.dynamodb, 2)
    dynamodb.sweeper = sweeper
    host_for(account, world, sfn, dynamodb=dynamodb, sweeper=sweeper).run(now + 6)
    assert [forward for forward, _ in dynamodb.pages][:3] == [False, False, False]  # a page, then a first read again
    assert [r["task_id"] for r in sfn.resumed] == ["new-0"]  # its hint was kept: old-4 went instead


# --- dead tokens and failed resumes ---------------------------------------------------------------


def test_a_blind_park_is_probed_when_its_own_loop_would_poll_next(account):
    """A workflow that parked again blind (its resume found the task running) wrote the wait its own loop
    would take: the host probes it then, not a new task's first wait later (which, park after park, ran a
    day's task into the poll cap within hours)."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19) as replay:
        replay.add_task("old", sample("wan2.6-t2i_succeeded"), created_at=EPOCH - 7200, ends_after=10_000)
        account.registry.park(Parked("old", "token-old", EPOCH + 10, "image", blind=True, wait_seconds=40),
                              expires_at=int(EPOCH) + 86_400)
        sfn = StepFunctions(world, replay)
        host_for(account, world, sfn, replay, rate=19).run(EPOCH + 70)
        assert [(r["task_id"], r["reason"]) for r in sfn.resumed] == [("old", "probe")]
        assert EPOCH + 50 <= sfn.resumed[0]["at"] < EPOCH + 51


def test_a_resume_step_functions_keeps_refusing_is_offered_again_and_sent_once(account):
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        ids = burst(replay, account, 3)
        sfn = StepFunctions(world, replay)
        sfn.throttle = 2  # botocore's retries spent twice: the resume is given back, not lost
        summary = host_for(account, world, sfn, replay).run(EPOCH + 70)
        assert sorted(r["task_id"] for r in sfn.resumed) == ids
        assert summary["resumes"] == 3 and account.parks() == []
        assert replay.throttled == 0


def test_a_resume_step_functions_refuses_for_a_while_backs_off_and_leaves_the_budget_to_the_polls(account):
    """SendTaskSuccess answered AccessDenied for half a minute (a role changed, then fixed): each resume is
    tried again after 2, 4, 8... seconds, not every tick, so the slots it reserves for its GET are few and
    a workflow polling on its own from the same budget gets its slots; once Step Functions accepts again,
    each workflow is resumed once."""
    class RefusingUntil(StepFunctions):
        refused_until = EPOCH + 70
        tries = 0

        def send_task_success(self, *, taskToken: str, output: str) -> dict:
            if self.world.now < self.refused_until:
                self.tries += 1
                raise self._error("AccessDeniedException", "SendTaskSuccess")
            return super().send_task_success(taskToken=taskToken, output=output)

    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2, max_page_size=100) as replay:
        ids = burst(replay, account, 5)  # ended by EPOCH + 30
        replay.add_task("other", sample("running"), ends_after=10_000)
        sfn = RefusingUntil(world, replay)
        bucket = DynamoDBBudget(account.dynamodb, TABLE, ACCOUNT, Budget(2), clock=world)
        rival = {"asked": 0, "granted": 0}

        def rival_poll() -> None:
            rival["asked"] += 1
            rival["granted"] += len(bucket.reserve(1).slots_us)
            if world.now < EPOCH + 68:
                world.at(world.now + 1.5, rival_poll)

        world.at(EPOCH + 32, rival_poll)
        summary = host_for(account, world, sfn, replay).run(EPOCH + 140)
        assert rival["asked"] >= 20 and rival["granted"] == rival["asked"]
        assert sfn.tries <= 5 * 6  # 2, 4, 8, 16 s... apart: a handful each in the half minute
        assert sorted(r["task_id"] for r in sfn.resumed) == ids  # each once, once accepted
        assert all(sfn.refused_until <= r["at"] <= sfn.refused_until + RESUME_RETRY_MAX_SECONDS for r in sfn.resumed)
        assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED") and summary["resumes"] == 5
        assert replay.throttled == 0


def test_a_park_whose_delete_fails_does_not_stop_the_resumes_being_reported_and_is_deleted_later(account):
    """Ten images ending in the same second, resumed in one batch; DynamoDB refuses the first DeleteItem
    of their parks (throttled past botocore's retries): every resume is still reported, so none is sent
    twice (a second SendTaskSuccess on a closed token), and the park left over is deleted at the next
    read."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19, max_page_size=100) as replay:
        ids = [f"t-{i}" for i in range(10)]
        for task_id in ids:
            replay.add_task(task_id, sample("wan2.6-t2i_succeeded"), created_at=EPOCH, ends_after=20)
            account.park(task_id, EPOCH + 0.5)
        deletes = Refused(account.dynamodb, "DeleteItem", 400,
                          error("ProvisionedThroughputExceededException", "throttled"), times=1)
        sfn = StepFunctions(world, replay)
        summary = host_for(account, world, sfn, replay, rate=19).run(EPOCH + 60)
        assert deletes.calls == 1
        assert sorted(r["task_id"] for r in sfn.resumed) == ids  # each once
        assert summary["resumes"] == 10 and summary["dead_tokens"] == 0
        assert sfn.gets == dict.fromkeys(ids, "SUCCEEDED")
        assert account.parks() == []


def test_a_key_dashscope_refuses_fails_the_invocation_after_the_lease_is_released(account):
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key="sk-another-key", clock=world) as replay:
        burst(replay, account, 2)
        host = host_for(account, world, StepFunctions(world, replay), replay)
        with pytest.raises(OperatorError) as caught:
            host.run(EPOCH + 40)
        assert caught.value.code == "InvalidApiKey" and API_KEY not in str(caught.value)
        assert float(account.lease()["lease_until"]["N"]) <= world.now


# --- metrics and the function ---------------------------------------------------------------------


def test_the_metrics_it_emits_are_the_listed_ones(account):
    from aws_lambda_powertools import Metrics

    from tests.contract.test_dashboard import emf_series

    world = World(EPOCH + 10)
    metrics = Metrics(namespace="WanRelay", service="wan-relay")
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        burst(replay, account, 3)
        summary = host_for(account, world, StepFunctions(world, replay), replay, metrics=metrics).run(EPOCH + 70)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics.flush_metrics()
    emitted = emf_series(printed.getvalue())
    listed = {m.name: m for m in metric_list.ALL if m.source == "sweeper"}
    assert {name for _, name, _ in emitted} == set(listed)
    for (_, name, dimensions), seen in emitted.items():
        assert seen["unit"] == listed[name].unit and dimensions == listed[name].dimensions
    values = {name: seen["values"] for (_, name, _), seen in emitted.items()}
    assert values["SweeperResumes"] == [3] and values["SweeperListQueries"] == [summary["list_queries"]]


def test_the_host_is_built_from_the_environment_without_a_media_bucket(account, monkeypatch):
    for name, value in {"DASHSCOPE_API_KEY": API_KEY, "IDEMPOTENCY_TABLE": TABLE, "PARKED_TABLE": PARKED,
                        "DASHSCOPE_ACCOUNT": ACCOUNT, "DASHSCOPE_QUERY_BUDGET": "7",
                        "DASHSCOPE_LIST_PAGE_SIZE": "250"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MEDIA_BUCKET", raising=False)
    host = sweep_host_from_env(holder="request-1")
    assert host.lease.holder == "request-1" and host.sweeper.config.rate == 7
    assert host.sweeper.config.page_size == 250
    monkeypatch.delenv("PARKED_TABLE")
    with pytest.raises(ConfigurationError, match="PARKED_TABLE"):
        sweep_host_from_env(holder="request-2")


def test_the_function_sweeps_until_fifteen_seconds_before_its_timeout_and_answers_a_summary(account, monkeypatch):

    from wan_relay_local.lambda_bridge import FakeContext, load_handler

    from tests.conftest import ROOT

    with ReplayDashScope(api_key=API_KEY) as replay:
        for name, value in {"DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY": API_KEY,
                            "IDEMPOTENCY_TABLE": TABLE, "PARKED_TABLE": PARKED, "DASHSCOPE_ACCOUNT": ACCOUNT}.items():
            monkeypatch.setenv(name, value)
        account.park("video-1", time.time(), kind="video")  # a workflow to watch: the sweep lasts its time
        handler = load_handler(ROOT / "functions" / "sweeper")
        context = FakeContext("wan-relay-SweeperFunction", "arn:aws:lambda:us-east-1:123456789012:function:sweeper",
                              timeout_seconds=16.5)
        started = time.time()
        summary = handler({}, context)
        assert 1.0 <= time.time() - started <= 3.0  # 16.5 s left, 15 of them kept for the finish
    assert summary["lease"] is True and summary["parked"] == 1
    assert account.lease()["holder"]["S"].startswith(context.aws_request_id)
    assert float(account.lease()["lease_until"]["N"]) <= time.time()


class PendingLists:
    """A list-page executor whose pages stay in flight until the test answers them (slow answers)."""

    def __init__(self) -> None:
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        self.futures.append(Future())
        return self.futures[-1]


def test_a_list_page_is_sent_only_while_a_thread_is_free_to_send_it_at_its_slot(account):
    """Slow answers hold the list threads: a page queued behind them would go after its slot, late enough
    to crowd the next slots into one second (DashScope counts arrivals). The host plans no more pages than
    it has threads free; the others stay offered, their slots not reserved, and go as answers come back."""
    world = World(EPOCH + 10)
    host = host_for(account, world, StepFunctions(world), rate=19)
    world.dashscope = None  # the pages are answered by the test, not the replay
    pages = [ListQuery(int(EPOCH) - 100 + i, int(EPOCH) - 100 + i, None, 1, 100) for i in range(19)]
    sent: list[ListQuery] = []
    host.sweeper.plan = lambda now, limit: [p for p in pages if p not in sent][:limit]  # type: ignore[method-assign]
    host.sweeper.sent = lambda action, at: sent.append(action)  # type: ignore[method-assign]
    host.sweeper.on_page = lambda query, page, at: None  # type: ignore[method-assign]
    lists = PendingLists()
    with ThreadPoolExecutor(1) as aws:
        host._act(world.now, lists, aws)  # type: ignore[arg-type]
        assert len(lists.futures) == LIST_THREADS < len(pages)
        host._act(world.now, lists, aws)  # type: ignore[arg-type]
        assert len(lists.futures) == LIST_THREADS  # none queued behind the answers in flight
        lists.futures[0].set_result({"data": [], "total": 0})
        host._settle_lists()
        host._act(world.now, lists, aws)  # type: ignore[arg-type]
        assert len(lists.futures) == LIST_THREADS + 1 == host.counts.list_queries


# --- Step Functions slow to answer a resume ----------------------------------------------------------


def test_a_resume_step_functions_is_slow_to_answer_does_not_hold_the_loop_and_is_sent_once(account, monkeypatch):
    """SendTaskSuccess answered late (each call can take the client's whole timeout, queued behind
    heartbeats): the loop, which renews the lease, goes on after RESUME_WAIT_SECONDS; the resume is not
    offered again while it is in flight, and is reported once answered."""
    import wan_relay.sweep_host as sweep_host

    monkeypatch.setattr(sweep_host, "RESUME_WAIT_SECONDS", 0.1)
    release = threading.Event()

    class SlowStepFunctions(StepFunctions):
        def __init__(self, world: World) -> None:
            super().__init__(world)
            self.calls = 0

        def send_task_success(self, **kwargs: Any) -> dict:
            self.calls += 1
            release.wait(5)
            return super().send_task_success(**kwargs)

    world = World(EPOCH + 10)
    account.park("video-1", world.now - 60, kind="video")
    sfn = SlowStepFunctions(world)
    host = host_for(account, world, sfn, rate=19)
    host._read_parks(world.now)
    assert host.sweeper.hint("video-1", world.now)  # the task ended: its resume is due
    with ThreadPoolExecutor(2) as aws:
        host._act(world.now, PendingLists(), aws)  # type: ignore[arg-type]
        assert sfn.calls == 1 and sfn.resumed == []  # the loop went on while the call is in flight
        world.sleep(TICK_SECONDS)
        host._act(world.now, PendingLists(), aws)  # type: ignore[arg-type]
        assert sfn.calls == 1  # not offered again while in flight
        release.set()
        wait(list(host._resuming))
    host._settle()
    assert [r["task_id"] for r in sfn.resumed] == ["video-1"] and host.counts.resumes == 1
    assert host.sweeper.parked == 0 and not host._resuming


# --- the lease's holder: one per invocation, not per request id -------------------------------------


def test_two_invocations_with_one_request_id_do_not_both_take_the_lease(account, monkeypatch):
    """Lambda may run one asynchronous event twice (its queue is eventually consistent), with the same
    request id: each invocation holds the lease under a name of its own, the request id kept in it."""
    import sys

    from wan_relay_local.lambda_bridge import FakeContext, load_handler

    from tests.conftest import ROOT

    for name, value in {"DASHSCOPE_API_KEY": API_KEY, "IDEMPOTENCY_TABLE": TABLE, "PARKED_TABLE": PARKED,
                        "DASHSCOPE_ACCOUNT": ACCOUNT}.items():
        monkeypatch.setenv(name, value)
    hosts: list[SweepHost] = []

    class Stopped:
        """The invocation's host, kept by the test instead of sweeping (the test takes its lease)."""

        def run(self, until: float) -> dict[str, Any]:
            return {}

    def keep_host(*, holder: str, metrics: Any = None) -> Stopped:
        hosts.append(sweep_host_from_env(holder=holder, metrics=metrics))
        return Stopped()

    handler = load_handler(ROOT / "functions" / "sweeper")
    monkeypatch.setattr(sys.modules[handler.__module__], "sweep_host_from_env", keep_host)
    context = FakeContext("wan-relay-SweeperFunction", "arn:aws:lambda:us-east-1:123456789012:function:sweeper")
    handler({}, context)
    handler({}, context)  # the same event delivered again: the same request id

    assert [host.lease.take() for host in hosts] == [True, False]
    assert all(context.aws_request_id in host.lease.holder for host in hosts)  # for the logs
    assert account.lease()["holder"]["S"] == hosts[0].lease.holder


def test_a_resume_answered_after_its_workflow_parked_again_leaves_the_new_park_watched(account, monkeypatch):
    """SendTaskSuccess took effect at once but its answer came late: meanwhile the resumed workflow found
    its task running and parked again, with a new token. The late answer settles the old park only; the
    new one stays in the registry and watched (else it would wait for its watchdog, unwatched)."""
    import wan_relay.sweep_host as sweep_host

    monkeypatch.setattr(sweep_host, "RESUME_WAIT_SECONDS", 0.1)
    release = threading.Event()

    class LateAnswers(StepFunctions):
        def send_task_success(self, **kwargs: Any) -> dict:
            answer = super().send_task_success(**kwargs)  # takes effect in Step Functions at once ...
            release.wait(5)  # ... and its answer reaches the sweeper late
            return answer

    world = World(EPOCH + 10)
    account.park("video-1", world.now - 60, kind="video")
    host = host_for(account, world, LateAnswers(world), rate=19)
    host._read_parks(world.now)
    assert host.sweeper.hint("video-1", world.now)
    with ThreadPoolExecutor(2) as aws:
        host._act(world.now, PendingLists(), aws)  # type: ignore[arg-type]
        world.sleep(TICK_SECONDS)
        account.park("video-1", world.now, kind="video", token="token-video-1-again")
        host._read_parks(world.now)
        release.set()
        wait(list(host._resuming))
    host._settle()
    assert [p.token for p in account.parks() if p.task_id == "video-1"] == ["token-video-1-again"]
    assert host.sweeper.parked == 1 and host.counts.resumes == 1


# --- each fault in the metrics, and the alarms that read them ---------------------------------------------


@pytest.fixture
def sweeper_metrics() -> Iterator[Any]:
    """The sweeper function's metrics as the template configures them (namespace, service: the stack's name)."""
    from aws_lambda_powertools import Metrics

    from tests.contract.test_dashboard import deployed_as, powertools_settings

    metrics = Metrics(**powertools_settings(deployed_as("wan-relay")))
    yield metrics
    metrics.clear_metrics()


def flushed(metrics: Any) -> dict[Any, dict[str, Any]]:
    """The EMF series an invocation's end prints (its one flush), by series."""
    from tests.contract.test_dashboard import emf_series

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics.flush_metrics()
    return emf_series(printed.getvalue())


def values_of(series: dict[Any, dict[str, Any]]) -> dict[str, list[float]]:
    return {name: seen["values"] for (_, name, _), seen in series.items()}


def blind_alarm_fires(series: dict[Any, dict[str, Any]]) -> bool:
    """SweeperBlindAlarm, evaluated as CloudWatch would on periods whose sums are these series' values, read by
    the series the alarm names (namespace, metric, dimensions and their values, as emitted)."""
    from tests.contract.test_dashboard import alarm_breaches, alarm_metrics, deployed_as

    template = deployed_as("wan-relay")
    emitted = {(namespace, name, frozenset(seen["dimensions"].items())): seen["values"]
               for (namespace, name, _), seen in series.items()}
    sums = {}
    for entry, stat in alarm_metrics(template, "SweeperBlindAlarm"):
        namespace, name, *dimensions = entry
        assert stat == "Sum"
        read = emitted.get((namespace, name, frozenset(zip(dimensions[::2], dimensions[1::2], strict=True))))
        sums[name] = None if read is None else sum(read)
    return alarm_breaches(template, "SweeperBlindAlarm", sums)


@pytest.mark.parametrize("outage", ["throttled", "unreadable", "unreachable"])
def test_a_blind_sweeper_emits_its_failed_pages_and_they_fire_the_blind_alarm(account, sweeper_metrics, outage):
    """Every list page fails: the invocation returns normally (no Lambda error for SweeperErrorsAlarm), but its
    failures are emitted, 429s as SweeperThrottled and the rest as SweeperListErrors, and those series fire
    SweeperBlindAlarm."""
    world = World(EPOCH + 400)
    for i in range(20):
        account.park(f"v-{i:02d}", EPOCH + i * 10, kind="video")
    with failing_list(outage) as failing:
        client = ListOutage(world, failing)
        summary = host_for(account, world, StepFunctions(world), rate=19, client=client,
                           metrics=sweeper_metrics).run(world.now + 60)
    series = flushed(sweeper_metrics)
    values = values_of(series)
    assert summary["list_queries"] > 0 and all(failed for _, failed in client.asked)
    assert values["SweeperListQueries"] == [summary["list_queries"]]
    assert values["SweeperListErrors"] == [summary["list_errors"]]
    assert values["SweeperThrottled"] == [summary["throttled"]]
    assert summary["throttled" if outage == "throttled" else "list_errors"] == summary["list_queries"]
    assert blind_alarm_fires(series)


def test_a_seeing_sweeper_s_metrics_do_not_fire_the_blind_alarm(account, sweeper_metrics):
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        burst(replay, account, 3)
        summary = host_for(account, world, StepFunctions(world, replay), replay, metrics=sweeper_metrics).run(
            EPOCH + 70)
    series = flushed(sweeper_metrics)
    assert summary["list_queries"] > 0 and values_of(series)["SweeperListErrors"] == [0]
    assert not blind_alarm_fires(series)


def test_a_throttled_page_is_counted_in_sweeper_throttled(account, sweeper_metrics):
    """As test_a_throttled_page_is_read_again_and_its_tasks_still_resumed: another caller takes the account's
    quota for a while; the pages answered 429 are emitted as SweeperThrottled, not as list errors."""
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2, max_page_size=100) as replay:
        burst(replay, account, 5)
        replay.add_task("other", sample("running"), ends_after=10_000)
        other_caller = DashScopeClient(replay.base_url, API_KEY)
        for i in range(90):
            world.at(EPOCH + 10 + i * 0.1, lambda: _quietly(lambda: other_caller.get_task("other")))
        summary = host_for(account, world, StepFunctions(world, replay), replay, metrics=sweeper_metrics).run(
            EPOCH + 80)
    values = values_of(flushed(sweeper_metrics))
    assert summary["throttled"] >= 1 and values["SweeperThrottled"] == [summary["throttled"]]
    assert values["SweeperListErrors"] == [0] and values["SweeperResumes"] == [5]


class DeadTokens(StepFunctions):
    """Step Functions answering a token whose workflow went on (`dead`) with `code`: each of the errors
    SendTaskSuccess and SendTaskHeartbeat document for it (the API reference)."""

    def __init__(self, world: World, replay: ReplayDashScope | None = None, *, code: str) -> None:
        super().__init__(world, replay)
        self.code = code

    def send_task_success(self, *, taskToken: str, output: str) -> dict:
        if taskToken in self.dead:
            raise self._error(self.code, "SendTaskSuccess")
        return super().send_task_success(taskToken=taskToken, output=output)

    def send_task_heartbeat(self, *, taskToken: str) -> dict:
        if taskToken in self.dead:
            raise self._error(self.code, "SendTaskHeartbeat")
        return super().send_task_heartbeat(taskToken=taskToken)


DEAD_TOKEN_ANSWERS = ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"]


@pytest.mark.parametrize("code", DEAD_TOKEN_ANSWERS)
def test_a_resume_answered_that_the_workflow_went_on_forgets_it_and_counts_it(account, sweeper_metrics, code):
    world = World(EPOCH + 10)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=2) as replay:
        ids = burst(replay, account, 4)
        sfn = DeadTokens(world, replay, code=code)
        sfn.dead = {"token-t-00", "token-t-01"}  # their watchdogs fired: the tokens are closed
        summary = host_for(account, world, sfn, replay, metrics=sweeper_metrics).run(EPOCH + 70)
    assert sorted(r["task_id"] for r in sfn.resumed) == ids[2:] and account.parks() == []
    assert summary["dead_tokens"] == 2 and summary["resumes"] == 2
    values = values_of(flushed(sweeper_metrics))
    assert values["SweeperDeadTokens"] == [2] and values["SweeperResumes"] == [2]


@pytest.mark.parametrize("code", DEAD_TOKEN_ANSWERS)
def test_a_heartbeat_answered_that_the_workflow_went_on_forgets_it_and_counts_it(account, sweeper_metrics, code):
    world = World(EPOCH + 10)
    sfn = DeadTokens(world, code=code)
    account.park("gone", EPOCH, kind="video")  # older than YOUNG_PARK_SECONDS: an InvalidToken is taken as dead
    account.park("alive", EPOCH, kind="video")
    sfn.dead = {"token-gone"}
    summary = host_for(account, world, sfn, metrics=sweeper_metrics).run(EPOCH + 100)
    assert [task for _, task in sfn.beats] == ["alive"] and [p.task_id for p in account.parks()] == ["alive"]
    assert summary["dead_tokens"] == 1 and summary["parked"] == 1
    values = values_of(flushed(sweeper_metrics))
    assert values["SweeperDeadTokens"] == [1] and values["SweeperParked"] == [1]


def test_a_sweeper_whose_lease_was_taken_over_does_not_move_the_next_ones_beats(account):
    """A run stopped part way through its spread of heartbeats by a takeover leaves where the beats start
    (`beat_from`) to the new holder: a run that lost the lease writes nothing on the lease item."""
    world = World(EPOCH + 10)
    for i in range(20):
        account.park(f"video-{i:02d}", EPOCH + i * 0.1, kind="video")
    sfn = StepFunctions(world)

    def taken_over() -> None:  # its lease lapsed (a stalled invocation) and another took it
        account.dynamodb.put_item(TableName=TABLE, Item={
            "id": {"S": f"sweeper#{ACCOUNT}"}, "holder": {"S": "invocation-2"}, "beat_from": {"N": "0.25"},
            "lease_until": {"N": str(world.now + 30)}, "swept_at": {"N": str(world.now)}})

    world.at(EPOCH + 15, taken_over)
    host_for(account, world, sfn).run(EPOCH + 60)
    assert 0 < len(sfn.beats) < 20  # it stopped with parks left to beat
    assert account.lease()["beat_from"] == {"N": "0.25"}
