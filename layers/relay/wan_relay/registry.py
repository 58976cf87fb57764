"""The registry of parked workflows: one DynamoDB item per park, which the sweeper reads to know what to
watch and whose task token it uses to resume (or heartbeat) the workflow.

The table: partition key `account` (one sweeper per account reads its partition), sort key `parked`,
`<parked_at in ms, 13 digits>#<task_id>`, so that the sweeper reads the parks after a point in time
(a Query on the sort key) instead of the whole partition every second. An item carries the token, the
task's kind, whether the list is trusted for it (`blind`), the execution, the wait its own loop would
take before its next poll (when a probe is due), and its expiry (the table's TTL
attribute: the task's budget plus a margin, so a park nobody removes does not stay for ever).

Who writes what: the workflow's park action puts an item; the sweeper deletes it when it resumes the
workflow, or when the token turns out dead (the workflow's watchdog fired, the execution ended), or
when the same task parked again (the newer item replaces it). Takes its client (boto3's low-level
DynamoDB client, or anything with the same calls); imports no AWS SDK itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: how far before a cursor the sweeper reads again: parks are written by many functions whose clocks
#: and write latencies differ, so one written "in the past" of the cursor is still found
CURSOR_OVERLAP_MS = 10_000


@dataclass(frozen=True)
class Parked:
    """One park: a workflow waiting for its task, resumable with `token`."""

    task_id: str
    token: str
    parked_at: float  # epoch seconds
    kind: str | None = None
    blind: bool = False
    execution: str | None = None
    #: the wait the workflow's own loop would take before its next poll (the wait policy from the task's
    #: age, stretched to last its budget): when the sweeper probes a task the list cannot see
    wait_seconds: int | None = None

    @property
    def key(self) -> str:
        return parked_key(self.parked_at, self.task_id)


def parked_key(parked_at: float, task_id: str) -> str:
    return f"{round(parked_at * 1000):013d}#{task_id}"


class Registry:
    """The parks of one account in the table `table`."""

    def __init__(self, client: Any, table: str, account: str) -> None:
        self._client = client
        self._table = table
        self._account = account

    def park(self, parked: Parked, *, expires_at: int) -> None:
        item: dict[str, Any] = {
            "account": {"S": self._account},
            "parked": {"S": parked.key},
            "task_id": {"S": parked.task_id},
            "token": {"S": parked.token},
            "parked_at": {"N": repr(parked.parked_at)},
            "blind": {"BOOL": parked.blind},
            "expiration": {"N": str(int(expires_at))},
        }
        if parked.kind is not None:
            item["kind"] = {"S": parked.kind}
        if parked.execution is not None:
            item["execution"] = {"S": parked.execution}
        if parked.wait_seconds is not None:
            item["wait_seconds"] = {"N": str(int(parked.wait_seconds))}
        self._client.put_item(TableName=self._table, Item=item)

    def since(self, after_ms: int | None = None, *, consistent: bool = True) -> Iterator[Parked]:
        """The parks whose time is after `after_ms` (all of them without it), oldest first, every page.
        `consistent=False` for a read of the whole partition: eventually consistent reads cost half the
        read units (10,000 parks with 1 KB tokens take about 3,000 strongly consistent ones, a partition's
        whole second), and a park written too recently to be in it is found by the next, strongly
        consistent read, which goes back CURSOR_OVERLAP_MS."""
        for item in _items_after(self._client, self._table, self._account, after_ms, consistent=consistent):
            yield Parked(
                task_id=item["task_id"]["S"],
                token=item["token"]["S"],
                parked_at=float(item["parked_at"]["N"]),
                kind=item.get("kind", {}).get("S"),
                blind=bool(item.get("blind", {}).get("BOOL", False)),
                execution=item.get("execution", {}).get("S"),
                wait_seconds=int(item["wait_seconds"]["N"]) if "wait_seconds" in item else None,
            )

    def remove(self, parked: Parked) -> None:
        """Forget a park (resumed, dead or replaced); removing one already gone is not an error."""
        self._client.delete_item(
            TableName=self._table, Key={"account": {"S": self._account}, "parked": {"S": parked.key}}
        )


#: the partition of an account's hints: DashScope's task-finished notifications, as the receiver wrote them
HINT_PARTITION_PREFIX = "hint#"
#: how long a hint is kept (the table's TTL) and read back by a sweeper that starts: a workflow may park
#: after its task ended, and a sweeper's invocation may end before it resumed every hinted task
HINT_KEPT_SECONDS = 3600


@dataclass(frozen=True)
class Hint:
    """DashScope said `task_id` ended with `status` (its task-finished notification). A hint, not a
    verdict: the resumed workflow's GET decides."""

    task_id: str
    status: str
    hinted_at: float  # epoch seconds, when the receiver took it
    ended_at: float | None = None  # epoch seconds, the task's end as the notification gave it

    @property
    def key(self) -> str:
        return parked_key(self.hinted_at, self.task_id)


class Hints:
    """The hints of one account, in the same table as its parks under a partition of their own
    (`hint#<account>`), with the same sort key (`<hinted_at in ms>#<task_id>`): the receiver of the
    notifications puts them, the sweeper reads them after a point in time, the TTL removes them."""

    def __init__(self, client: Any, table: str, account: str) -> None:
        self._client = client
        self._table = table
        self._partition = HINT_PARTITION_PREFIX + account

    def put(self, hint: Hint) -> None:
        item: dict[str, Any] = {
            "account": {"S": self._partition},
            "parked": {"S": hint.key},
            "task_id": {"S": hint.task_id},
            "status": {"S": hint.status},
            "hinted_at": {"N": repr(hint.hinted_at)},
            "expiration": {"N": str(int(hint.hinted_at) + HINT_KEPT_SECONDS)},
        }
        if hint.ended_at is not None:
            item["ended_at"] = {"N": repr(hint.ended_at)}
        self._client.put_item(TableName=self._table, Item=item)

    def since(self, after_ms: int, *, newest_first: bool = False) -> Iterator[Hint]:
        """The hints taken after `after_ms`, oldest first (or newest first), page by page: a page is asked
        for only once the last one's hints are taken, so a reader that stops early reads no more."""
        for item in _items_after(self._client, self._table, self._partition, after_ms, newest_first=newest_first):
            ended = item.get("ended_at", {}).get("N")
            yield Hint(
                task_id=item["task_id"]["S"],
                status=item["status"]["S"],
                hinted_at=float(item["hinted_at"]["N"]),
                ended_at=float(ended) if ended is not None else None,
            )


def _items_after(client: Any, table: str, partition: str, after_ms: int | None, *,
                 consistent: bool = True, newest_first: bool = False) -> Iterator[dict[str, Any]]:
    """The items of `partition` whose sort key's time is after `after_ms` (all without it), oldest first
    unless told otherwise, every page of the Query (a page is at most 1 MB), strongly consistent unless
    told otherwise."""
    values: dict[str, Any] = {":account": {"S": partition}}
    condition = "account = :account"
    if after_ms is not None:
        condition += " AND parked > :after"
        values[":after"] = {"S": f"{max(0, after_ms):013d}#\uffff"}
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ConsistentRead": consistent,
    }
    if newest_first:
        query["ScanIndexForward"] = False
    while True:
        answer = client.query(**query)
        yield from answer.get("Items", [])
        last = answer.get("LastEvaluatedKey")
        if not last:
            return
        query["ExclusiveStartKey"] = last
