"""Exactly-once side effects per task: Powertools Idempotency on the stack's DynamoDB table.

Two kinds of record, each keyed by what makes the effect unique:
- `wan-relay.media#hash(task_id#index)`: one media item landed; its StoredMedia is kept, so a retried
  or redriven poll reuses it instead of downloading and uploading again;
- `wan-relay.completion#hash(task_id)`: the task's fate, decided by the first attempt that got that
  far; its completion detail is kept, so a retried or redriven poll answers with the same detail
  (the workflow's EmitCompletion state puts it on the bus, once).
Records live 48 h (DashScope forgets tasks after 24 h). A crashed attempt's record stays
"in progress" only until that Lambda's deadline (`register_lambda_context`), then the work resumes.

A third kind, `wan-relay.upload#<bucket>/<prefix><task_id>/<index>` (UploadRecords), holds the key and
UploadId of the multipart upload last started for a media item, so that the retry of a crashed attempt
aborts exactly that upload: no bucket-wide listing of uploads, which IAM cannot narrow to a prefix. It is
keyed by the item, not the object key, whose extension comes from the source's answer: the retry aborts
the upload before it asks the source, which may no longer answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import BotoCoreError, ClientError

from .errors import TransientError
from .service_errors import DYNAMODB, aws_error

RECORD_TTL_SECONDS = 48 * 3600

Effect = Callable[..., dict[str, Any]]


class Ledger:
    """Wraps effects so each runs once per key; `request["key"]` is the key."""

    def __init__(self, table_name: str, dynamodb_client: Any, ttl_seconds: int = RECORD_TTL_SECONDS) -> None:
        self.table_name = table_name
        self._persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            expires_after_seconds=ttl_seconds,
            raise_on_no_idempotency_key=True,
        )

    def register_lambda_context(self, context: Any) -> None:
        """An attempt that dies keeps its records 'in progress' only until its own deadline."""
        self._config.register_lambda_context(context)

    def once(self, name: str, effect: Effect) -> Effect:
        """`effect(request=...)` run at most once per `request["key"]`; later calls get its result."""
        guarded = idempotent_function(
            effect,
            data_keyword_argument="request",
            persistence_store=self._persistence,
            config=self._config,
            key_prefix=f"wan-relay.{name}",
        )

        def run(*, request: dict[str, Any]) -> dict[str, Any]:
            try:
                return guarded(request=request)
            except IdempotencyAlreadyInProgressError:
                raise TransientError(
                    f"another attempt is still working on {name} for this task; retry after it ends",
                    code="InProgress",
                ) from None
            except IdempotencyPersistenceLayerError as exc:
                raise aws_error(exc, DYNAMODB, f"the records in the idempotency table {self.table_name}") from None

        return run


class UploadRecords:
    """The key and UploadId of the multipart upload last started for each media item, in the ledger's
    table. An item is its object key without the extension (`{prefix}{task_id}/{index}`)."""

    def __init__(self, table_name: str, dynamodb_client: Any, ttl_seconds: int = RECORD_TTL_SECONDS) -> None:
        self.table_name = table_name
        self._dynamodb = dynamodb_client
        self._ttl_seconds = ttl_seconds

    def record(self, bucket: str, key: str, upload_id: str) -> None:
        item = {
            "id": {"S": _upload_record_id(bucket, item_of(key))},
            "key": {"S": key},
            "upload_id": {"S": upload_id},
            "expiration": {"N": str(int(time.time()) + self._ttl_seconds)},
        }
        self._call("put_item", Item=item)

    def pending(self, bucket: str, item: str) -> tuple[str, str] | None:
        """The object key and UploadId recorded for `item`, if any (it may have completed or been aborted
        since)."""
        found = self._call("get_item", Key={"id": {"S": _upload_record_id(bucket, item)}}, ConsistentRead=True)
        record = found.get("Item", {})
        key, upload_id = record.get("key", {}).get("S"), record.get("upload_id", {}).get("S")
        return (key, upload_id) if key and upload_id else None

    def forget(self, bucket: str, item: str) -> None:
        self._call("delete_item", Key={"id": {"S": _upload_record_id(bucket, item)}})

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._dynamodb, operation)(TableName=self.table_name, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, DYNAMODB, f"the upload records in {self.table_name}") from None


def item_of(key: str) -> str:
    """The media item an object key stores: the key without its extension."""
    folder, _, name = key.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{folder}/{stem}" if folder else stem


def _upload_record_id(bucket: str, item: str) -> str:
    return f"wan-relay.upload#{bucket}/{item}"


class NoLedger:
    """No table configured (a quick local run): effects simply run."""

    table_name = None

    def register_lambda_context(self, context: Any) -> None:
        return None

    def once(self, name: str, effect: Effect) -> Effect:
        def run(*, request: dict[str, Any]) -> dict[str, Any]:
            return effect(request=request)

        return run
