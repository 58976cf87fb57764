"""The wait policy: pure arithmetic, the same function the handler and the cost simulation use."""

from __future__ import annotations

import random

import pytest
from wan_relay.policy import (
    MAX_POLLS,
    MAX_WAIT_SECONDS,
    budget_left,
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


def test_a_24_hour_budget_fits_far_below_the_history_limit():
    """Simulate the longest loop the policy allows: 24 h of a video that never ends."""
    age, polls = 0.0, 0
    while age < 24 * 3600:
        age += next_wait(kind="video", age_seconds=age)
        polls += 1
    assert polls < MAX_POLLS // 2


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
