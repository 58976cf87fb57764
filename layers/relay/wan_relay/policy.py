"""How long the wait loop sleeps before the next poll. Pure: shared by the handler and the cost
simulation in bench/, so the figures published there are the figures of the code that runs.

The policy, in plain words:
1. Do not ask before a task can possibly be done: no Wan image finishes within 10 s of its
   submission, no video within 60 s, so the first wait reaches that age in one step.
2. Then poll at the interval the API documentation advises (5 s images, 15 s videos), or the
   caller's `poll_interval_seconds`.
3. A task still running long after the usual durations (10 min images, 1 h videos) is polled at a
   tenth of its age, at most every 5 minutes: the delay stays small relative to the task, and a
   24-hour budget fits the poll cap below.
4. Throttled answers (HTTP 429) back off exponentially with full jitter, never sooner than the
   provider's Retry-After.
5. Trouble (DashScope unreachable or answering 5xx or nonsense, the function failing) backs off the
   same way up to 5 minutes, until the task's budget is spent: an outage never ends a task early.
6. The loop stops at its budget (`timeout_seconds`) or at MAX_POLLS polls, a cap derived from Step
   Functions' history limit. The two agree: when the polls the cap still allows could no longer reach
   the end of the budget even at the longest wait, the wait stretches so they do (`fit_wait`). A short
   interval is kept while the cap allows it, and a long budget ends by its seconds, not by running out
   of polls early.
"""

from __future__ import annotations

import math
import random

from .models import Kind

DEFAULT_INTERVAL_SECONDS: dict[Kind, int] = {"image": 5, "video": 15}
EARLIEST_FINISH_SECONDS: dict[Kind, int] = {"image": 10, "video": 60}
LONG_RUNNING_SECONDS: dict[Kind, int] = {"image": 600, "video": 3600}
MAX_WAIT_SECONDS = 300

#: Step Functions Standard keeps at most 25,000 events in an execution's history (a hard quota); an
#: execution that reaches it fails, without its event
HISTORY_EVENT_LIMIT = 25_000
#: the most events one pass through the loop can cost in the shipped workflow: PollTask with every attempt
#: its retriers allow failing (entered and exited 2, 3 per attempt: 1 try + 5 retries), then AfterTrouble
#: likewise (2 + 3 x 6), IsDone (2), then the wait: WaitForTask (2) or ParkTask (2, and 4 for its one
#: attempt, TaskSubmitted included; a failed park goes to AfterTrouble unretried, which counts again).
#: Each pass is counted once against the cap (the poll's answer, or AfterTrouble's).
#: tests/workflow/test_limits.py measures these costs on an execution history and reads the retriers from
#: the definition: it fails when they outgrow this
WORST_EVENTS_PER_POLL = (2 + 3 * (1 + 5)) + (2 + 3 * (1 + 5)) + 2 + max(2, 2 + 4)
#: the most events outside the loop: the execution's start and end (2), and every other state once with
#: all of its retries: CheckInput 23, ClaimTask 20, InspectClaim 23, ClaimVerdict 2, ClaimBlocked 1,
#: AlreadyClaimed 2, FirstWait 2, EmitCompletion 65, ExpireLock 20, Relayed 2, PollFunctionUnavailable 1,
#: InputTooLarge 1; and the function's outage at the start: HoldInput 2, then 12 waits at most
#: (InputOutageWait 2, CheckInputAgain 23, CountInputOutage 2, InputOutageCap 2), InputCheckUnavailable 1.
#: A pass of the function's outage in the loop (AfterTrouble failed past its retries, CountOutage,
#: WithinPollCap, OutageWait: 26) costs less than a poll's and counts as one
WORST_EVENTS_OUTSIDE_POLLS = 164 + 2 + 12 * 29 + 1
#: the poll cap: even if every poll used every retry, the history stays within its limit (510)
MAX_POLLS = (HISTORY_EVENT_LIMIT - WORST_EVENTS_OUTSIDE_POLLS) // WORST_EVENTS_PER_POLL

THROTTLE_BASE_SECONDS = 2.0
THROTTLE_CAP_SECONDS = 60.0
#: an outage (5xx, timeouts, unreadable answers, the function itself failing) backs off further: a long
#: one is waited out within the task's budget, at most every 5 minutes
TROUBLE_CAP_SECONDS = 300.0

_VIDEO_MODEL_MARKERS = ("t2v", "i2v", "v2v", "kf2v", "s2v", "r2v", "animate", "video", "vace")
_IMAGE_MODEL_MARKERS = ("t2i", "i2i", "image", "imageedit", "x-painting", "sketch")


def kind_from_model(model: str | None) -> Kind | None:
    """Guess image or video from a Wan model name (`wan2.7-i2v` -> video), or None."""
    if not model:
        return None
    name = model.lower()
    if any(marker in name for marker in _VIDEO_MODEL_MARKERS):
        return "video"
    if any(marker in name for marker in _IMAGE_MODEL_MARKERS):
        return "image"
    return None


def next_wait(
    *,
    kind: Kind | None,
    age_seconds: float | None,
    interval_override: int | None = None,
) -> int:
    """Seconds to wait before the next poll of a task that is not finished yet.

    `age_seconds` is the time since DashScope accepted the task (from its `submit_time`), or since
    the loop started when the answer carries none.
    """
    shape: Kind = kind or "image"  # unknown kind: the shorter interval, so an image is not delayed
    interval = interval_override or DEFAULT_INTERVAL_SECONDS[shape]
    age = max(0.0, age_seconds or 0.0)
    if interval_override is None and age < EARLIEST_FINISH_SECONDS[shape]:
        return max(1, math.ceil(EARLIEST_FINISH_SECONDS[shape] - age))
    if age >= LONG_RUNNING_SECONDS[shape]:
        interval = max(interval, min(MAX_WAIT_SECONDS, math.ceil(age / 10)))
    return max(1, interval)


def budget_left(*, elapsed_seconds: float, budget_seconds: int, polls: int) -> float:
    """Seconds of the poll budget left; zero or less means the loop must stop (TIMED_OUT)."""
    if polls >= MAX_POLLS:
        return 0.0
    return budget_seconds - elapsed_seconds


def fit_wait(wait: float, *, elapsed_seconds: float, budget_seconds: int, polls: int) -> int:
    """The wait before the next poll: at least `wait` (the policy's interval, or a back-off), longer
    when the polls the cap still allows, each after at most MAX_WAIT_SECONDS, could otherwise not
    reach the end of the budget, and never past that end. `polls` counts the polls made so far.

    Waiting at least that floor keeps the floor itself at most MAX_WAIT_SECONDS at every later poll
    (as long as MAX_POLLS * MAX_WAIT_SECONDS covers the budget): the stretch never waits longer than
    the policy would for a task running long, and the last poll the cap allows comes at the budget's end.
    """
    left = budget_seconds - elapsed_seconds
    polls_after_next = MAX_POLLS - polls - 1
    floor = left - polls_after_next * MAX_WAIT_SECONDS
    return max(1, min(math.ceil(max(wait, floor)), math.ceil(left)))


def throttle_wait(attempt: int, retry_after: float | None, rng: random.Random | None = None) -> int:
    """Wait after the `attempt`-th consecutive throttled poll (1-based): full jitter, capped."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    ceiling = min(THROTTLE_CAP_SECONDS, THROTTLE_BASE_SECONDS * 2 ** max(0, attempt - 1))
    jittered = rng.uniform(0.0, ceiling)
    return max(1, math.ceil(max(jittered, retry_after or 0.0)))


def trouble_wait(attempt: int, rng: random.Random | None = None) -> int:
    """Wait after the `attempt`-th consecutive failed poll (1-based): full jitter, capped at 5 minutes."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    ceiling = min(TROUBLE_CAP_SECONDS, THROTTLE_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return max(1, math.ceil(rng.uniform(0.0, ceiling)))
