"""The registry of parked workflows at a burst's size: DynamoDB answers a Query with at most 1 MB of items
(moto enforces the same limit), and a task token may be 2,048 characters long (the `taskToken` length
constraint of SendTaskSuccess and SendTaskHeartbeat; older pages of the reference say 1,024), so a
thousand parks span more than one page; the sweeper must see every one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from wan_relay.registry import Parked, Registry

TABLE = "parked"
#: the longest task token Step Functions issues (its API's length constraint)
TOKEN_CHARACTERS = 2048
PARKS = 1100  # about 2.4 MB of items with such tokens: three pages


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "account", "AttributeType": "S"},
                                  {"AttributeName": "parked", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "account", "KeyType": "HASH"},
                       {"AttributeName": "parked", "KeyType": "RANGE"}],
        )
        yield client


def test_every_park_of_a_burst_is_read_across_the_query_pages(dynamodb: Any) -> None:
    registry = Registry(dynamodb, TABLE, "account-a")
    first = 1_790_000_000.0
    for n in range(PARKS):
        registry.park(Parked(task_id=f"task-{n:05d}", token=f"{n:05d}".ljust(TOKEN_CHARACTERS, "t"),
                             parked_at=first + n / 100, kind="image"), expires_at=int(first) + 86_400)
    Registry(dynamodb, TABLE, "account-b").park(  # another account's park is not this sweeper's
        Parked(task_id="elsewhere", token="t", parked_at=first), expires_at=int(first) + 86_400)

    one_page = dynamodb.query(TableName=TABLE, KeyConditionExpression="account = :a",
                              ExpressionAttributeValues={":a": {"S": "account-a"}})
    assert one_page["Count"] < PARKS and "LastEvaluatedKey" in one_page  # the limit this test is about

    read = list(registry.since())
    assert [p.task_id for p in read] == [f"task-{n:05d}" for n in range(PARKS)]  # all, oldest first
    assert all(len(p.token) == TOKEN_CHARACTERS for p in read)
    # the sweeper's incremental read: only the parks after the cursor, across pages too
    later = list(registry.since(after_ms=round((first + 1.0) * 1000)))
    assert [p.task_id for p in later] == [f"task-{n:05d}" for n in range(101, PARKS)]


def test_a_park_reads_back_as_its_workflow_wrote_it(dynamodb: Any) -> None:
    registry = Registry(dynamodb, TABLE, "account-a")
    written = [
        Parked(task_id="blind", token="t1", parked_at=1_790_000_000.25, kind="video", blind=True,
               execution="arn:aws:states:us-east-1:123456789012:execution:poll:blind", wait_seconds=240),
        Parked(task_id="plain", token="t2", parked_at=1_790_000_001.5),
    ]
    for parked in written:
        registry.park(parked, expires_at=1_790_086_400)
    assert list(registry.since()) == written  # the wait before its next probe included
