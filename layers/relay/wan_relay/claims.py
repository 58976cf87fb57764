"""Who holds a task's lock, when ClaimTask finds one: a plain duplicate start (the holder is running, or
relayed the task), or a start blocked by a stale claim (the holder failed, timed out or was aborted, and
its lock has not expired yet), which an operator has to see.

A lock 0.1.0 wrote has no `expiration` (that release set it only once the task was relayed): held by an
execution that ended without relaying the task, it would block every later start for good. The inspection
gives it the expiry a lock of this release has at most, counted from its holder's start."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from .service_errors import DYNAMODB, STEP_FUNCTIONS, aws_error, error_code

#: execution statuses of a holder that is relaying the task, or did
_LIVE_OR_DONE = frozenset({"RUNNING", "SUCCEEDED", "PENDING_REDRIVE"})
#: DescribeExecution's refusals that no retry changes: the holder is gone (older than 90 days), is no
#: execution ARN, or is not ours to read (the role, or the KMS key of its data); nobody relays the task
_HOLDER_UNREADABLE = frozenset({"ExecutionDoesNotExist", "InvalidArn", "AccessDeniedException",
                                "KmsAccessDeniedException", "KmsInvalidStateException"})
#: ... of which these say the holder is no execution at all: an unexpiring lock of theirs may be given an
#: expiry of now. Not a refusal to read it: right after a deploy the role's grant may not have reached IAM
#: yet, and the holder may be running
_HOLDER_GONE = frozenset({"ExecutionDoesNotExist", "InvalidArn"})
#: statuses of a holder that ended without relaying the task
_ENDED_UNRELAYED = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})

#: the longest a lock of this release lasts from its execution's start: the longest budget (24 h) and the
#: margin (relay.LOCK_MARGIN_SECONDS, 2 h)
LONGEST_LOCK_SECONDS = 86_400 + 7_200

Verdict = Literal["duplicate", "blocked"]


def lock_key(task_id: str) -> str:
    """The lock's partition key, as the workflow's ClaimTask writes it."""
    return f"lock#{task_id}"


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    holder: str | None = None
    holder_status: str | None = None
    expires_at: int | None = None


@dataclass
class ClaimInspector:
    """Reads a task's lock (strongly consistent) and asks Step Functions how its holder is doing."""

    table: str
    dynamodb: Any
    sfn: Any

    def inspect(self, task_id: str) -> Claim:
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"id": {"S": lock_key(task_id)}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, DYNAMODB, f"the task lock in {self.table}") from None
        if not item:
            # gone since ClaimTask found it (TTL deletes only expired locks, days later: a race that
            # needs a lock to expire within milliseconds): nobody is relaying the task; start it again
            return Claim("blocked")
        holder = item.get("execution", {}).get("S")
        expires = item.get("expiration", {}).get("N")
        expires_at = int(expires) if expires and expires.isdigit() else None
        if holder is None:
            return Claim("blocked", None, None, expires_at)
        started: datetime | None = None
        try:
            described = self.sfn.describe_execution(executionArn=holder)
            status, started = described["status"], described.get("startDate")
        except (ClientError, BotoCoreError) as exc:
            status = error_code(exc)
            if status not in _HOLDER_UNREADABLE:
                # a throttle, a 5xx, a connection that broke: the holder may be fine; InspectClaim retries
                raise aws_error(exc, STEP_FUNCTIONS, f"how the lock's holder {holder} is doing") from None
        verdict: Verdict = "duplicate" if status in _LIVE_OR_DONE else "blocked"
        if expires_at is None and (status in _HOLDER_GONE or (status in _ENDED_UNRELAYED and started is not None)):
            expires_at = self._give_expiry(task_id, holder, started)
        return Claim(verdict, holder, status, expires_at)

    def _give_expiry(self, task_id: str, holder: str, started: datetime | None) -> int:
        """The expiry of an unexpiring lock (0.1.0's) whose holder ended without relaying the task: its
        holder's start and LONGEST_LOCK_SECONDS (now, for a holder no longer readable), written only if
        the lock is still that holder's and still has none."""
        start = started.timestamp() if started is not None else time.time() - LONGEST_LOCK_SECONDS
        expires_at = int(start) + LONGEST_LOCK_SECONDS
        try:
            self.dynamodb.update_item(
                TableName=self.table, Key={"id": {"S": lock_key(task_id)}},
                UpdateExpression="SET expiration = :expiration",
                ConditionExpression="execution = :holder AND attribute_not_exists(expiration)",
                ExpressionAttributeValues={":expiration": {"N": str(expires_at)}, ":holder": {"S": holder}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # taken or given one since: theirs
                raise aws_error(exc, DYNAMODB, f"the task lock in {self.table}") from None
        except BotoCoreError as exc:
            raise aws_error(exc, DYNAMODB, f"the task lock in {self.table}") from None
        return expires_at
