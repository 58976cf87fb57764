"""Benchmark 4: polls, detection delay and dollars per task, simulated with the relay's own wait
policy (`wan_relay.policy.next_wait` fitted to the budget by `fit_wait`, as the handler calls them)
against a fixed interval and the official SDK's wait() back-off, over task durations drawn from
stated assumptions."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from wan_relay.models import DEFAULT_TIMEOUT_SECONDS
from wan_relay.policy import fit_wait, next_wait

# --- assumptions (stated in docs/BENCHMARKS.md) ---------------------------------------------------
#: submission to end, uniform: the issue's ranges (images about 10-60 s, videos about 1-15 min)
DURATION_RANGE = {"image": (10.0, 60.0), "video": (60.0, 900.0)}
#: one poll (Lambda invoke + DashScope GET + Choice/Wait transitions) before its Wait starts
POLL_LATENCY_S = 0.3
#: billed Lambda time: a poll that finds the task running; the final poll (media into S3, event)
POLL_BILLED_S = 0.2
FINAL_BILLED_S = {"image": 1.5, "video": 6.0}
LAMBDA_GB = 1.0  # template.yaml: MemorySize 1024
#: S3 requests of the final poll: images one PUT; videos (~30 MB) create + 4 parts + complete;
#: both a LIST (stale-upload check) and a HEAD (what landed)
S3_PUT_CLASS = {"image": 1 + 1, "video": 6 + 1}  # PUT/COPY/POST/LIST are one price class
S3_GET_CLASS = 1
#: Step Functions states entered (statemachine/poll_task.asl.json): ClaimTask, LoopDefaults,
#: ApplyDefaults; per poll PollTask, IsDone and (unless done) WaitForTask; then EmitCompletion, ExpireLock, Relayed
def transitions(polls: int) -> int:
    return 3 + 3 * polls - 1 + 3


# --- AWS list prices, us-east-1, on-demand, without free tiers --------------------------------------
PRICES = {
    "sfn_transition": 0.025 / 1000,  # Step Functions Standard, per state transition
    "lambda_gb_s_arm64": 0.0000133334,  # Lambda arm64, per GB-second (first 6 billion GB-s tier)
    "lambda_request": 0.20 / 1_000_000,
    "eventbridge_event": 1.00 / 1_000_000,  # custom events
    "s3_put": 0.005 / 1000,  # S3 Standard PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # S3 Standard GET, HEAD and others
    "dynamodb_write": 0.625 / 1_000_000,  # on-demand write request unit (ClaimTask, ExpireLock)
}

SDK_WAITS = (1, 1, 2, 2, 2, 4, 4, 4)  # dashscope 1.x wait(), then every 5 s


def wait_relay(kind: str, age: float, polls: int) -> float:
    wait = next_wait(kind=kind, age_seconds=age, interval_override=None)  # type: ignore[arg-type]
    return fit_wait(wait, elapsed_seconds=age, budget_seconds=DEFAULT_TIMEOUT_SECONDS, polls=polls)


def wait_fixed(kind: str, age: float, polls: int) -> float:
    return 5.0 if kind == "image" else 15.0


def wait_sdk(kind: str, age: float, polls: int) -> float:
    return float(SDK_WAITS[polls - 1]) if polls <= len(SDK_WAITS) else 5.0


POLICIES: dict[str, Callable[[str, float, int], float]] = {
    "relay (wan_relay.policy.next_wait)": wait_relay,
    "fixed interval (5 s images, 15 s videos)": wait_fixed,
    "official SDK wait() back-off": wait_sdk,
}


def poll_times(policy: Callable[[str, float, int], float], kind: str, duration: float) -> list[float]:
    """Times (since submission) of each query, up to the one that sees the task finished."""
    times: list[float] = []
    t = 0.0
    while True:
        times.append(t)
        if t >= duration:
            return times
        t += POLL_LATENCY_S + policy(kind, t + POLL_LATENCY_S, len(times))


@dataclass
class PolicyResult:
    policy: str
    kind: str
    polls: list[int]
    delays: list[float]
    peak_qps: int
    peak_qps_10s: float

    @property
    def mean_polls(self) -> float:
        return statistics.fmean(self.polls)

    def delay(self, q: str) -> float:
        ordered = sorted(self.delays)
        if q == "mean":
            return statistics.fmean(ordered)
        return ordered[min(len(ordered) - 1, math.ceil(float(q) * len(ordered)) - 1)]

    @property
    def transitions(self) -> float:
        return statistics.fmean(transitions(p) for p in self.polls)

    def dollars_per_1000(self) -> dict[str, float]:
        polls = self.mean_polls
        billed = (polls - 1) * POLL_BILLED_S + FINAL_BILLED_S[self.kind]
        cost = {
            "Step Functions": self.transitions * PRICES["sfn_transition"],
            "Lambda": billed * LAMBDA_GB * PRICES["lambda_gb_s_arm64"] + polls * PRICES["lambda_request"],
            "EventBridge": PRICES["eventbridge_event"],
            "S3": S3_PUT_CLASS[self.kind] * PRICES["s3_put"] + S3_GET_CLASS * PRICES["s3_get"],
            "DynamoDB": 2 * PRICES["dynamodb_write"],
        }
        cost = {name: value * 1000 for name, value in cost.items()}
        cost["total"] = sum(cost.values())
        return cost


def simulate(tasks: int = 20_000, burst: int = 1000, seed: int = 6) -> list[PolicyResult]:
    results: list[PolicyResult] = []
    for kind in ("image", "video"):
        rng = random.Random(f"{seed}-{kind}")
        low, high = DURATION_RANGE[kind]
        durations = [rng.uniform(low, high) for _ in range(tasks)]
        starts = [rng.uniform(0.0, 60.0) for _ in range(burst)]  # 1,000 tasks started within a minute
        for name, policy in POLICIES.items():
            polls: list[int] = []
            delays: list[float] = []
            for duration in durations:
                times = poll_times(policy, kind, duration)
                polls.append(len(times))
                delays.append(times[-1] - duration)
            per_second: dict[int, int] = {}
            for start, duration in zip(starts, durations[:burst], strict=True):
                for t in poll_times(policy, kind, duration):
                    second = int(start + t)
                    per_second[second] = per_second.get(second, 0) + 1
            horizon = max(per_second) + 1
            counts = [per_second.get(s, 0) for s in range(horizon)]
            peak_10s = max(sum(counts[s : s + 10]) / 10 for s in range(max(1, horizon - 9)))
            results.append(PolicyResult(name, kind, polls, delays, max(counts), peak_10s))
    return results
