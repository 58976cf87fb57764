"""The wait policy: pure arithmetic, the same function the handler and the cost simulation use."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wan_relay.models import DEFAULT_TIMEOUT_SECONDS, Kind
from wan_relay.policy import (
    HISTORY_EVENT_LIMIT,
    MAX_POLLS,
    MAX_WAIT_SECONDS,
    WORST_EVENTS_OUTSIDE_POLLS,
    WORST_EVENTS_PER_POLL,
    budget_left,
    fit_wait,
    kind_from_model,
    next_wait,
    throttle_wait,
)


@pytest.mark.parametrize(("kind", "age", "wait"), [
    ("image", 0, 10), ("image", 3.2, 7), ("image", 10, 5), ("image", 59, 5),
    ("video", 0, 60), ("video", 45.5, 15), ("video", 60, 15), ("video", 1800, 15),
    (None, 0, 10),  # unknown kind: the image timings, so an image is never late
])
def test_no_poll_before_a_task_can_be_done_then_the_documented_interval(kind, age, wait):
    assert next_wait(kind=kind, age_seconds=age) == wait


def test_long_running_tasks_are_polled_at_a_tenth_of_their_age_capped():
    assert next_wait(kind="image", age_seconds=900) == 90
    assert next_wait(kind="image", age_seconds=2000) == 200
    assert next_wait(kind="video", age_seconds=20 * 3600) == MAX_WAIT_SECONDS


def test_a_caller_interval_wins_until_the_task_runs_unusually_long():
    assert next_wait(kind="video", age_seconds=0, interval_override=3) == 3
    assert next_wait(kind="image", age_seconds=30, interval_override=42) == 42
    assert next_wait(kind="image", age_seconds=7200, interval_override=2) == MAX_WAIT_SECONDS


@dataclass
class Loop:
    """A task that never finishes, polled as the handler does: the budget checked at each poll, the
    policy's wait (or a throttle back-off) fitted to the budget and the poll cap."""

    elapsed: float = 0.0
    polls: int = 0
    waits: list[int] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)


def run_loop(
    *, kind: Kind | None, budget: int, interval: int | None = None, latency: float = 0.3,
    throttled: float = 0.0, rng: random.Random | None = None,
) -> Loop:
    rng = rng or random.Random(0)
    loop, throttles = Loop(), 0
    while True:
        loop.polls += 1
        left = budget_left(elapsed_seconds=loop.elapsed, budget_seconds=budget, polls=loop.polls)
        if left <= 0:
            return loop
        if rng.random() < throttled:
            throttles += 1
            asked = throttle_wait(throttles, None, rng)
        else:
            throttles = 0
            asked = next_wait(kind=kind, age_seconds=loop.elapsed, interval_override=interval)
        wait = fit_wait(asked, elapsed_seconds=loop.elapsed, budget_seconds=budget, polls=loop.polls)
        loop.asked.append(asked)
        loop.waits.append(wait)
        loop.elapsed += wait + latency


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_24_hour_budget_of_the_default_policy_ends_at_its_seconds_within_the_poll_cap(kind):
    loop = run_loop(kind=kind, budget=DEFAULT_TIMEOUT_SECONDS)
    assert loop.elapsed >= DEFAULT_TIMEOUT_SECONDS and loop.polls <= MAX_POLLS
    # the first hour, when tasks finish, is polled exactly as the policy asks
    first_hour = [i for i, _ in enumerate(loop.waits) if sum(loop.waits[:i]) < 3600]
    assert all(loop.waits[i] == loop.asked[i] for i in first_hour)
    assert max(loop.waits) <= MAX_WAIT_SECONDS


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_one_second_interval_does_not_end_a_24_hour_budget_early(kind):
    loop = run_loop(kind=kind, budget=DEFAULT_TIMEOUT_SECONDS, interval=1)
    assert loop.elapsed >= DEFAULT_TIMEOUT_SECONDS  # not after half an hour, as a plain 2,000-poll cap did
    assert loop.polls == MAX_POLLS
    # the caller's second is kept for as long as the cap allows, then the waits stretch, never past
    # the policy's longest wait
    assert loop.waits[:200] == [1] * 200
    assert max(loop.waits) <= MAX_WAIT_SECONDS


def test_the_poll_cap_is_the_largest_the_history_limit_allows_and_covers_any_budget():
    def worst_history(polls: int) -> int:
        return WORST_EVENTS_OUTSIDE_POLLS + polls * WORST_EVENTS_PER_POLL

    assert worst_history(MAX_POLLS) <= HISTORY_EVENT_LIMIT < worst_history(MAX_POLLS + 1)
    # the polls the cap allows can always reach the end of the longest budget at the longest wait
    assert (MAX_POLLS - 1) * MAX_WAIT_SECONDS >= DEFAULT_TIMEOUT_SECONDS


@settings(max_examples=150, deadline=None)
@given(
    budget=st.integers(1, DEFAULT_TIMEOUT_SECONDS),
    kind=st.sampled_from(["image", "video", None]),
    interval=st.none() | st.integers(1, 3600),
    latency=st.floats(0.0, 5.0),
    throttled=st.sampled_from([0.0, 0.2, 0.9]),
    seed=st.integers(0, 2**32),
)
def test_every_loop_ends_at_its_budget_never_at_the_cap_first(budget, kind, interval, latency, throttled, seed):
    loop = run_loop(kind=kind, budget=budget, interval=interval, latency=latency, throttled=throttled,
                    rng=random.Random(seed))
    assert loop.polls <= MAX_POLLS
    assert loop.elapsed >= budget  # the loop stopped because its seconds ran out
    elapsed = 0.0
    for asked, wait in zip(loop.asked, loop.waits, strict=True):
        left = budget - elapsed
        assert 1 <= wait <= max(1, math.ceil(left))  # never sleeps past the budget
        assert wait >= min(asked, math.ceil(left))  # the interval (or back-off) is a floor
        assert wait <= max(asked, MAX_WAIT_SECONDS)  # the stretch never waits longer than the policy's longest
        elapsed += wait + latency


def test_the_budget_ends_at_its_seconds_or_at_the_poll_cap():
    assert budget_left(elapsed_seconds=10, budget_seconds=60, polls=3) == 50
    assert budget_left(elapsed_seconds=61, budget_seconds=60, polls=3) <= 0
    assert budget_left(elapsed_seconds=0, budget_seconds=86400, polls=MAX_POLLS) == 0


def test_throttle_backoff_is_jittered_capped_and_honours_retry_after():
    rng = random.Random(1)
    waits = [[throttle_wait(attempt, None, rng) for _ in range(200)] for attempt in range(1, 9)]
    assert all(1 <= w <= 60 for row in waits for w in row)
    assert max(waits[0]) <= 2 and max(waits[-1]) > 30  # the ceiling doubles from 2 s up to 60 s
    assert len(set(waits[-1])) > 20  # full jitter spreads the retries
    assert throttle_wait(1, 17.0, rng) >= 17


@pytest.mark.parametrize(("model", "kind"), [
    ("wan2.7-i2v", "video"), ("wan2.1-t2v-plus", "video"), ("wan2.2-animate-move", "video"),
    ("wan2.6-t2i", "image"), ("wan2.5-i2i-preview", "image"), ("qwen-max", None), (None, None),
])
def test_the_kind_is_guessed_from_the_model_name(model, kind):
    assert kind_from_model(model) == kind
