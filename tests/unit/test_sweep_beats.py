"""The sweeper's heartbeats (wan_relay.sweep_host) against a Step Functions that takes real time to answer.

The host's thread pools are stood in for by pools on the world's fake clock (`SlowPool`): at most as
many calls at once as the host gives threads, each taking the latency given of world time. So the beats'
throughput is the host's own (threads over latency, in-flight cap, the 250-a-second cap), and ten
thousand parks over minutes of world time take seconds. What is asserted is the beats' record: which
park was beaten when.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future
from concurrent.futures._base import DoneAndNotDoneFutures
from typing import Any

import pytest
from wan_relay import runtime, sweep_host
from wan_relay.budget import MICROS, max_in_any_window
from wan_relay.sweep_host import BEAT_MARGIN_SECONDS, HEARTBEAT_ROUND_TRIP_SECONDS
from wan_relay.sweeper import HEARTBEAT_EVERY_SECONDS, WATCHDOG_SECONDS
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, TABLE, sample
from tests.unit.test_sweep_host import (  # noqa: F401 - `account` is the fixture
    ACCOUNT,
    EPOCH,
    PARKED,
    StepFunctions,
    World,
    account,
    host_for,
)


class SlowPool:
    """A ThreadPoolExecutor on the world's clock: at most `max_workers` calls at once, each taking
    `latency` seconds of world time; a call submitted while all are busy waits for the first to end. The
    call's effect (the fake's record) is at its end: a heartbeat is recorded late by at most its latency."""

    def __init__(self, world: World, max_workers: int, latency: float) -> None:
        self.world, self.max_workers, self.latency = world, max_workers, latency
        self.busy = 0
        self.most_busy = 0
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.append((future, lambda: fn(*args, **kwargs)))
        self._start()
        return future

    def _start(self) -> None:
        while self.busy < self.max_workers and self._queue:
            future, call = self._queue.popleft()
            future.set_running_or_notify_cancel()
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            if self.latency > 0:
                self.world.at(self.world.now + self.latency, lambda f=future, c=call: self._end(f, c))
            else:
                self._end(future, call)

    def _end(self, future: Future[Any], call: Callable[[], Any]) -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the host, as a thread pool does
            future.set_exception(exc)
        self.busy -= 1
        self._start()

    def __enter__(self) -> SlowPool:
        return self

    def __exit__(self, *exc: object) -> None:
        assert not self._queue and not self.busy, "the host left calls unanswered at its end"


def world_wait(world: World) -> Callable[..., DoneAndNotDoneFutures]:
    """`concurrent.futures.wait` on the world's clock: the world moves on to the next thing that happens
    (a call's end, among others) until the futures are done as asked or the timeout has passed."""

    def wait(fs: Iterable[Future[Any]], timeout: float | None = None,
             return_when: str = ALL_COMPLETED) -> DoneAndNotDoneFutures:
        fs = set(fs)
        deadline = None if timeout is None else world.now + timeout
        while True:
            done = {f for f in fs if f.done()}
            if done == fs or (return_when == FIRST_COMPLETED and done):
                break
            next_at = world.next_at()
            if deadline is not None and (next_at is None or next_at > deadline):
                world.sleep(max(1e-6, deadline - world.now))  # the clock's grain: it moves on
                done = {f for f in fs if f.done()}
                break
            assert next_at is not None, "waiting for calls nothing will answer"
            world.sleep(max(0.0, next_at - world.now))
        return DoneAndNotDoneFutures(done, fs - done)

    return wait


@pytest.fixture
def slow_aws(monkeypatch: pytest.MonkeyPatch) -> Callable[[World, float], list[SlowPool]]:
    """Puts the host's pools on the world's clock, every Step Functions call taking `latency` (DashScope's
    list pages are answered at once); the pools made, for a look at how busy they were."""

    def install(world: World, latency: float) -> list[SlowPool]:
        pools: list[SlowPool] = []

        def pool(max_workers: int, thread_name_prefix: str = "") -> SlowPool:
            pools.append(SlowPool(world, max_workers, 0.0 if thread_name_prefix == "sweep-list" else latency))
            return pools[-1]

        monkeypatch.setattr(sweep_host, "ThreadPoolExecutor", pool)
        monkeypatch.setattr(sweep_host, "wait", world_wait(world))
        return pools

    return install


def gaps_between_beats(beats: list[tuple[float, str]], since: dict[str, float], ended: float) -> dict[str, float]:
    """Per park, the longest time it went without a beat, from `since` (its park, or when the sweeper's
    first invocation started) to `ended`."""
    by_park: dict[str, list[float]] = {}
    for at, task_id in beats:
        by_park.setdefault(task_id, []).append(at)
    return {task_id: max(b - a for a, b in itertools.pairwise([start, *sorted(by_park.get(task_id, [])), ended]))
            for task_id, start in since.items()}


def running_videos(replay: ReplayDashScope, account: Any, count: int, every: float) -> list[str]:  # noqa: F811
    """`count` videos created `every` seconds apart from 3,000 s before EPOCH, running for hours, each
    workflow parked half a second after its task's creation."""
    parks = [f"v-{i:05d}" for i in range(count)]
    for i, task_id in enumerate(parks):
        created = EPOCH - 3000 + i * every
        replay.add_task(task_id, sample("running"), created_at=created, ends_after=100_000)
        account.park(task_id, created + 0.5, kind="video")
    return parks


def sweep_minutes(account: Any, world: World, sfn: StepFunctions, replay: ReplayDashScope,  # noqa: F811
                  runs: int) -> list[float]:
    """The schedule's minute-long invocations one after another, each taking the lease a second after the
    last ended; when each began."""
    from functions.sweeper.app import SWEEP_SECONDS

    begins = [world.now + k * (SWEEP_SECONDS + 1) for k in range(runs)]
    for k, begin in enumerate(begins):
        world.sleep(begin - world.now)
        host = host_for(account, world, sfn, replay, rate=19, holder=f"invocation-{k}")
        summary = host.run(begin + SWEEP_SECONDS)
        assert summary["lease"] is True and summary["dead_tokens"] == 0 and summary["resumes"] == 0
    return begins


#: the minutes-long case at a tenth of its size: a tenth of the parks, each call ten times as slow, so the
#: beats a thread must carry per second are the same (moto reads the whole registry partition at each read)
SCALE = 10


@pytest.mark.parametrize("latency", [0.05, 0.1], ids=["50ms", "100ms"])
def test_ten_thousand_parks_are_each_beaten_within_a_period_when_step_functions_takes_time_to_answer(
        account, slow_aws, monkeypatch, latency):  # noqa: F811 - the fixture, imported
    """10,000 workflows parked (videos running for hours), the schedule's minute-long invocations one after
    another, each SendTaskHeartbeat answered after `latency` (tens of ms from a Lambda function is
    plausible; AWS publishes no figure): every park is beaten within a heartbeat period of the first
    invocation's start and of its last beat, so no watchdog fires while the sweeper runs. With eight
    threads for the beats a minute's spread of 10,000 (about 180 a second) needed answers within 44 ms:
    the same parks, last in the spread, went unbeaten minute after minute (found in review)."""
    from functions.sweeper.app import SWEEP_SECONDS

    # nothing parks while these run: the registry is read once an invocation
    monkeypatch.setattr(sweep_host, "READ_EVERY_SECONDS", SWEEP_SECONDS)
    world = World(EPOCH)
    pools = slow_aws(world, latency * SCALE)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19, max_page_size=100) as replay:
        parks = running_videos(replay, account, 10_000 // SCALE, every=0.25 * SCALE)
        sfn = StepFunctions(world, replay)
        started = sweep_minutes(account, world, sfn, replay, runs=2)[0]
    gaps = gaps_between_beats(sfn.beats, dict.fromkeys(parks, started), world.now)
    late = sorted((gap, task) for task, gap in gaps.items() if gap > HEARTBEAT_EVERY_SECONDS)
    assert not late, (f"{len(late)} parks unbeaten for a period", late[-3:], [p.most_busy for p in pools])
    assert max(gaps.values()) <= SWEEP_SECONDS + 2  # each beaten about a minute after the last time


@pytest.mark.parametrize("latency", [0.05, HEARTBEAT_ROUND_TRIP_SECONDS], ids=["50ms", "the-bound"])
def test_a_thousand_parks_due_at_once_are_beaten_before_the_run_ends_at_up_to_the_quota(
        account, slow_aws, latency):  # noqa: F811 - the fixture, imported
    """1,000 parks due within 2 s (a run of 7 s), Step Functions answering each heartbeat after `latency`,
    up to the round trip the threads are sized for: each beaten once before the run ends, the beats
    reaching the sweeper's cap of 250 a second and never more than 300 in a second (SendTaskHeartbeat's
    refill in most regions). Eight threads sent 80 a second at 100 ms."""
    world = World(EPOCH + 400)
    for i in range(1000):
        account.park(f"p-{i:04d}", EPOCH + i * 0.3, kind="video")
    sfn = StepFunctions(world)
    slow_aws(world, latency)
    started = world.now
    host_for(account, world, sfn, rate=19).run(started + 2 + BEAT_MARGIN_SECONDS)
    assert sorted(task for _, task in sfn.beats) == [f"p-{i:04d}" for i in range(1000)]  # each once
    assert max(at for at, _ in sfn.beats) <= started + 2 + BEAT_MARGIN_SECONDS
    assert max_in_any_window([round(at * MICROS) for at, _ in sfn.beats], MICROS) <= 300


def test_the_step_functions_client_pools_a_connection_for_each_thread_that_calls_it(account, monkeypatch):  # noqa: F811
    """botocore pools 10 connections by default; a call past the pool opens a connection of its own and
    closes it after (a TLS handshake for each beat), which would slow the beats the threads are there for."""
    made: dict[str, Any] = {}
    build = runtime.sweeper_client
    monkeypatch.setattr(runtime, "sweeper_client",
                        lambda service, **options: made.setdefault(service, build(service, **options)))
    for name, value in {"DASHSCOPE_API_KEY": API_KEY, "IDEMPOTENCY_TABLE": TABLE, "PARKED_TABLE": PARKED,
                        "DASHSCOPE_ACCOUNT": ACCOUNT}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MEDIA_BUCKET", raising=False)
    runtime.sweep_host_from_env(holder="request-1")
    threads = sweep_host.AWS_THREADS + sweep_host.HEARTBEAT_THREADS
    assert made["stepfunctions"].meta.config.max_pool_connections >= threads


def test_parks_a_run_cannot_beat_go_first_in_the_next_so_every_park_is_beaten_within_the_watchdog(
        account, monkeypatch):  # noqa: F811 - the fixture, imported
    """More parks than a run can beat (here the beats capped at 3 a second: about 230 a minute-long run,
    the 50 of a burst included, for 600 parks; on Lambda the CPU, or a slow Step Functions, sets the cap),
    the schedule's invocations one after another for six minutes: each run starts its beats where the last
    one's stopped, so every park is beaten within the watchdog (300 s). Each run spreading the parks in the
    same order left the same last parks unbeaten every minute, their watchdogs firing."""
    from functions.sweeper.app import SWEEP_SECONDS

    monkeypatch.setattr(sweep_host, "READ_EVERY_SECONDS", SWEEP_SECONDS)
    monkeypatch.setattr(sweep_host, "HEARTBEATS_PER_SECOND", 3)
    world = World(EPOCH)
    with ReplayDashScope(api_key=API_KEY, clock=world, rate_limit_qps=19, max_page_size=100) as replay:
        parks = running_videos(replay, account, 600, every=4.0)
        sfn = StepFunctions(world, replay)
        begins = sweep_minutes(account, world, sfn, replay, runs=6)
    per_run = [sum(begin <= at < end for at, _ in sfn.beats) for begin, end in itertools.pairwise([*begins, world.now])]
    assert all(0 < beaten < len(parks) / 2 for beaten in per_run), per_run  # no run can beat them all
    gaps = gaps_between_beats(sfn.beats, dict.fromkeys(parks, begins[0]), world.now)
    late = sorted((gap, task) for task, gap in gaps.items() if gap > WATCHDOG_SECONDS)
    assert not late, (f"{len(late)} parks unbeaten for a watchdog period", late[-3:], per_run)
