"""What one workflow needs of the fleet (docs/fleet.md): a slot of the account's query budget for each
of its GETs, a place in the registry while it is parked, and whether the sweeper is alive.

A workflow asks DashScope only at a slot of the budget, whoever made it wait: the sweeper hands a
resumed workflow the slot it reserved for that GET (`get_at_us`); a slot missed by more than half a
budget interval, when the workflow comes to it or when its wait for it ends, is given up and a new one
is reserved. Queries sent up to t late after slots 1/r apart put at most r x (1 + t) in a second: with
the budget r one under DashScope's limit, lateness up to one interval stays within it, and half of it is
left to the network. A workflow polling on its own (its watchdog fired) reserves its own slot.

Every DynamoDB call here hits one item or one partition per account (the budget, the lease, the
registry), which a burst can throttle past botocore's retries: such a failure is a TransientError (or an
OperatorError for a refusal), the name the workflow's Retry and Catch wait out, never an unnamed error
that would fail the execution. Waking the sweeper is best effort: the park is in the registry, and the
sweeper's schedule starts it within a minute anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .budget import MICROS, Budget, DynamoDBBudget, slot_verdict
from .errors import TransientError
from .registry import Parked, Registry
from .service_errors import DYNAMODB, aws_error, error_code
from .sweeper import WATCHDOG_SECONDS, after_fallback_poll, sweeper_blind

logger = Logger(child=True)

#: a woken sweeper that has not taken the lease after this long (it failed to start) is woken again
WAKE_EVERY_SECONDS = 15.0
#: slots a GET reserves, each given up if the wait for it ends past its tolerance, before it backs off
SLOT_TRIES = 3
#: park only while the budget left outlasts the watchdog by this much: near its end a task polls on its
#: own, so its last poll is not up to five minutes late
PARK_MARGIN_SECONDS = 60


@dataclass
class Fleet:
    """One account's budget, registry and sweeper liveness, for a workflow's poll."""

    dynamodb: Any
    table: str
    account: str
    budget: Budget
    registry: Registry | None = None  # None: the stack does not park (WAITING=poll)
    #: ParkTask's HeartbeatSeconds: a park the sweeper has not heartbeaten for this long polls on its own
    watchdog_seconds: int = WATCHDOG_SECONDS
    #: starts the sweeper's function (an asynchronous invoke) when a park finds no sweeper holding the
    #: account's lease; None: nothing to wake (the schedule's next start finds the park)
    wake: Callable[[], None] | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    _bucket: DynamoDBBudget = field(init=False)

    def __post_init__(self) -> None:
        self._bucket = DynamoDBBudget(self.dynamodb, self.table, self.account, self.budget, clock=self.clock)

    @property
    def parks(self) -> bool:
        return self.registry is not None

    def take_slot(self, handed_us: int | None = None) -> bool:
        """Wait until this workflow may send one GET. False: the budget is spoken for as far as it reaches
        ahead, or each slot reserved went by while this workflow waited for it (the caller backs off as
        after a 429, without asking)."""
        if handed_us is not None:
            too_far = handed_us - self._now_us() > self.budget.lookahead_us + MICROS  # not a slot we made
            if not too_far and self._await(handed_us):
                return True
        for _ in range(SLOT_TRIES):
            try:
                granted = self._bucket.reserve(1).slots_us
            except (ClientError, BotoCoreError) as exc:
                raise aws_error(exc, DYNAMODB, f"the reservation of a query slot in table {self.table}") from exc
            if not granted:
                return False
            if self._await(granted[0]):
                return True
        return False

    def _await(self, slot_us: int) -> bool:
        """Wait for the slot; False if it is more than the tolerance gone, before the wait or after it (a
        wait can end late: a process held up, a machine short of CPU), so the GET goes in time or not at all."""
        while (verdict := slot_verdict(slot_us, self._now_us(), self.budget.interval_us // 2)) == "wait":
            self._wait_until(slot_us)
        return verdict == "send"

    def may_park(self, left_seconds: float) -> bool:
        return self.parks and left_seconds > self.watchdog_seconds + PARK_MARGIN_SECONDS

    def next_move(self, reason: str | None, left_seconds: float) -> str:
        """After a poll that found the task unfinished: "park" or "poll" (on its own, on the wait policy).
        A workflow the sweeper resumed parks again; one whose watchdog fired, or that polls on its own,
        parks again only if a sweeper swept recently; none parks near the end of its budget, nor while
        the sweeper is blind (it would not beat the park)."""
        if not self.may_park(left_seconds):
            return "poll"
        resumed = reason in ("finished", "probe")
        try:
            swept_at, blind_since = self._lease()
        except TransientError:  # the GET is spent: not sent again for a read; a resumed workflow parks as
            return "park" if resumed else "poll"  # ever, one that fell back polls on its own, safe either way
        if self._blind(blind_since):
            return "poll"
        return "park" if resumed else after_fallback_poll(swept_at, self.clock())

    def swept_at(self) -> float | None:
        """When the account's sweeper last swept (its lease item), None if never."""
        return self._lease()[0]

    def _blind(self, blind_since: float | None) -> bool:
        return sweeper_blind(blind_since, self.clock(), self.watchdog_seconds / 3)

    def _lease(self) -> tuple[float | None, float | None]:
        """The sweeper's lease item: when it last swept and since when its list pages fail (None, None:
        never, or a page answered)."""
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"id": {"S": f"sweeper#{self.account}"}},
                ConsistentRead=True, ProjectionExpression="swept_at, blind_since",
            ).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, DYNAMODB, f"the read of the sweeper's lease in table {self.table}") from exc
        return tuple(float(item[name]["N"]) if name in item else None  # type: ignore[return-value]
                     for name in ("swept_at", "blind_since"))

    def park(self, parked: Parked, *, expires_at: int) -> bool:
        """Put the park in the registry, and wake the sweeper if none holds the lease; True if it woke it."""
        if self.registry is None:
            raise RuntimeError("this stack does not park (WAITING=poll)")
        try:
            self.registry.park(parked, expires_at=expires_at)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, DYNAMODB, "the park's write to the registry of parked workflows") from exc
        return self.wake_sweeper()

    def wake_sweeper(self) -> bool:
        """A sweeper that found nothing parked ended its invocation (an idle account costs no running
        function); the first park after that starts one. Of the parks of a burst only one wakes it: the
        one whose conditional write notes the wake (no live lease, no wake in the last WAKE_EVERY_SECONDS)."""
        if self.wake is None:
            return False
        now = self.clock()
        try:
            self.dynamodb.update_item(
                TableName=self.table, Key={"id": {"S": f"sweeper#{self.account}"}},
                UpdateExpression="SET woken_at = :now",
                ConditionExpression="(attribute_not_exists(lease_until) OR lease_until <= :now) AND "
                                    "(attribute_not_exists(woken_at) OR woken_at < :again)",
                ExpressionAttributeValues={":now": {"N": repr(now)}, ":again": {"N": repr(now - WAKE_EVERY_SECONDS)}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False  # a sweeper holds the lease, or one was woken moments ago
        except (ClientError, BotoCoreError) as exc:
            logger.warning("the sweeper's wake could not be noted", extra={"code": error_code(exc)})
            return False
        try:
            self.wake()
        except (ClientError, BotoCoreError) as exc:
            # noted as woken: the next park may wake it again after WAKE_EVERY_SECONDS
            logger.warning("the sweeper could not be woken", extra={"code": error_code(exc)})
            return False
        return True

    def _now_us(self) -> int:
        return int(self.clock() * MICROS)

    def _wait_until(self, slot_us: int) -> None:
        ahead = (slot_us - self._now_us()) / MICROS
        if ahead > 0:
            self.sleep(ahead)
