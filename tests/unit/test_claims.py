"""A lock 0.1.0 wrote has no expiry: the inspection gives it one only when its holder is known to have
ended without relaying the task, or to be no execution at all; never on a refusal to read the holder
(right after a deploy the role's grant may not have reached IAM, and the holder may be running)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from wan_relay.claims import LONGEST_LOCK_SECONDS, ClaimInspector

HOLDER = "arn:aws:states:us-east-1:123456789012:execution:PollTaskStateMachine-AbC:task-1"
STARTED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class StepFunctions:
    def __init__(self, answer: str) -> None:
        self.answer = answer

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if self.answer.endswith("Exception") or self.answer in ("ExecutionDoesNotExist", "InvalidArn"):
            raise ClientError({"Error": {"Code": self.answer, "Message": "m"}}, "DescribeExecution")
        return {"status": self.answer, "startDate": STARTED}


@pytest.mark.parametrize(("holder", "verdict", "expiry"), [
    ("FAILED", "blocked", int(STARTED.timestamp()) + LONGEST_LOCK_SECONDS),
    ("ABORTED", "blocked", int(STARTED.timestamp()) + LONGEST_LOCK_SECONDS),
    ("ExecutionDoesNotExist", "blocked", "now"),
    ("RUNNING", "duplicate", None),  # a 0.1.0 execution still relaying the task across the upgrade
    ("PENDING_REDRIVE", "duplicate", None),
    ("AccessDeniedException", "blocked", None),  # the grant not yet in IAM: the holder may be running
    ("KmsAccessDeniedException", "blocked", None),
])
def test_an_unexpiring_lock_gets_an_expiry_only_from_a_holder_known_to_be_over(account, holder, verdict, expiry):
    table = account.create_idempotency_table()
    account.dynamodb.put_item(TableName=table, Item={"id": {"S": "lock#task-1"}, "execution": {"S": HOLDER}})

    claim = ClaimInspector(table, account.dynamodb, StepFunctions(holder)).inspect("task-1")

    lock = account.dynamodb.get_item(TableName=table, Key={"id": {"S": "lock#task-1"}})["Item"]
    assert claim.verdict == verdict and lock["execution"]["S"] == HOLDER
    if expiry is None:
        assert "expiration" not in lock and claim.expires_at is None
    elif expiry == "now":
        assert abs(int(lock["expiration"]["N"]) - datetime.now(UTC).timestamp()) < 5
    else:
        assert int(lock["expiration"]["N"]) == expiry == claim.expires_at
