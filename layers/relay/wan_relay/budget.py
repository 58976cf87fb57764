"""The account's query budget: DashScope answers at most 20 task queries a second per Alibaba Cloud
account (the single-task GET, the list and the cancel endpoints together, whichever key asks), so every
caller in a fleet (the sweeper and the workflows that poll for themselves) takes its queries from one
budget per account.

The budget is a token bucket refilled at `rate` tokens a second, one token deep, stored as one number:
the instant the next query may be sent (GCRA's "theoretical arrival time"). A caller reserves *slots*,
instants one interval (1/rate) apart, and sends each query at its slot: whoever reserves, and however
the reservations interleave, no two queries are closer than the interval, so no one-second window holds
more than `rate` of them. A token that nobody uses is lost (a deeper bucket would let idle time pay for
a burst over `rate`). One reservation may take several slots up to `lookahead_seconds` ahead, so a busy
caller writes the bucket once per batch instead of once per query.

`reserve` is the pure decision; `DynamoDBBudget` stores the bucket's one number in a DynamoDB item with a
conditional update (optimistic: read, decide, write if nobody wrote in between), keyed by account.
Times are integer microseconds since the epoch: the arithmetic is exact, so the bound is too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MICROS = 1_000_000


@dataclass(frozen=True)
class Budget:
    """`rate` queries a second at most, in any one-second window; reservations reach `lookahead_seconds` ahead."""

    rate: int
    lookahead_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.rate, int) or isinstance(self.rate, bool) or self.rate < 1:
            raise ValueError("a budget's rate is a whole number of queries a second, at least 1")
        if not self.lookahead_seconds > 0:
            raise ValueError("a budget's lookahead must be positive")

    @property
    def interval_us(self) -> int:
        """The gap between two slots: rounded up, so `rate` slots never fit in less than a second."""
        return -(-MICROS // self.rate)

    @property
    def lookahead_us(self) -> int:
        return math.ceil(self.lookahead_seconds * MICROS)

    @property
    def capacity(self) -> int:
        """The most slots one reservation can take: those within the lookahead."""
        return max(1, -(-self.lookahead_us // self.interval_us))


@dataclass(frozen=True)
class Reservation:
    """The slots granted (send instants, microseconds, ascending) and the bucket's new state."""

    slots_us: tuple[int, ...]
    next_free_us: int | None


def reserve(
    budget: Budget, next_free_us: int | None, now_us: int, wanted: int, *, not_before_us: int | None = None
) -> Reservation:
    """Up to `wanted` slots, the first at the earliest of now, `not_before_us` and the bucket's next free
    instant, each one interval after the previous, none beyond the lookahead. `next_free_us` is the
    bucket's state (None: never used)."""
    first = max(now_us, next_free_us or 0, not_before_us or 0)
    horizon = max(now_us, not_before_us or 0) + budget.lookahead_us
    slots: list[int] = []
    slot = first
    while len(slots) < wanted and slot < horizon:
        slots.append(slot)
        slot += budget.interval_us
    if not slots:
        return Reservation((), next_free_us)
    return Reservation(tuple(slots), slots[-1] + budget.interval_us)


def slot_verdict(slot_us: int, now_us: int, tolerance_us: int) -> str:
    """What a caller holding a slot does now: "wait" (too early: sleep until it), "send", or "expired"
    (later than the tolerance: sending now could crowd the next slot's query, so give the slot up and
    reserve again). The tolerance is what the budget's margin under the provider's limit must absorb,
    with the network's jitter."""
    if now_us < slot_us:
        return "wait"
    return "send" if now_us - slot_us <= tolerance_us else "expired"


def max_in_any_window(instants_us: list[int], window_us: int = MICROS) -> int:
    """The most instants in any half-open window of `window_us` (how DashScope's per-second limit is
    checked here: a sliding second)."""
    ordered = sorted(instants_us)
    best = start = 0
    for end, instant in enumerate(ordered):
        while instant - ordered[start] >= window_us:
            start += 1
        best = max(best, end - start + 1)
    return best


class DynamoDBBudget:
    """The bucket of one account in a DynamoDB item `budget#<account>` of the stack's table.

    Takes its client (boto3's low-level DynamoDB client, or anything with the same calls); imports no
    AWS SDK itself. A reservation reads the item (strongly consistent), decides with `reserve`, and
    writes the new state on condition that nobody changed it meanwhile; on a lost race it reads again.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        account: str,
        budget: Budget,
        *,
        key_attribute: str = "id",
        clock: Callable[[], float] = time.time,
        attempts: int = 8,
        ttl_seconds: int = 86_400,
    ) -> None:
        self._client = client
        self._table = table
        self._key = {key_attribute: {"S": f"budget#{account}"}}
        self.budget = budget
        self._clock = clock
        self._attempts = attempts
        self._ttl_seconds = ttl_seconds

    def _read(self) -> int | None:
        item = self._client.get_item(
            TableName=self._table, Key=self._key, ConsistentRead=True, ProjectionExpression="next_free_us"
        ).get("Item")
        return int(item["next_free_us"]["N"]) if item and "next_free_us" in item else None

    def reserve(self, wanted: int, *, not_before_us: int | None = None) -> Reservation:
        """Up to `wanted` slots; none when the budget is spoken for up to the lookahead, or after
        `attempts` lost races (the caller tries again later, as it would after a refusal)."""
        current: int | None = None
        for _ in range(self._attempts):
            current = self._read()
            now_us = int(self._clock() * MICROS)
            decision = reserve(self.budget, current, now_us, wanted, not_before_us=not_before_us)
            if not decision.slots_us:
                return decision
            values: dict[str, Any] = {
                ":new": {"N": str(decision.next_free_us)},
                ":expires": {"N": str(now_us // MICROS + self._ttl_seconds)},
            }
            if current is None:
                condition = "attribute_not_exists(next_free_us)"
            else:
                condition = "next_free_us = :old"
                values[":old"] = {"N": str(current)}
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key,
                    UpdateExpression="SET next_free_us = :new, expiration = :expires",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                )
            except self._client.exceptions.ConditionalCheckFailedException:
                continue
            return decision
        return Reservation((), current)
