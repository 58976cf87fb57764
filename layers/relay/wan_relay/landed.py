"""What a task has in S3, read back from S3 itself: the media of a task whose fate is decided without an
answer in hand (its budget ran out while the function kept failing), so that the event's `media[]` is
always exactly the task's objects, never an empty list beside stored media."""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from .models import StoredMedia
from .service_errors import S3, aws_error

READ_SIZE = 8 * 1024 * 1024


def landed_media(s3: Any, bucket: str, prefix: str, task_id: str) -> list[StoredMedia]:
    """Every complete object under `{prefix}{task_id}/` that the relay stored for this task (its
    `task-id` metadata says so), in index order, with its sha256 read back from S3. Multipart uploads
    that never completed are not objects, so they are not listed."""
    found = _landed(s3, bucket, f"{prefix}{task_id}/", task_id)
    return sorted(found, key=lambda media: media.index)


def landed_item(s3: Any, bucket: str, prefix: str, task_id: str, index: int) -> StoredMedia | None:
    """The object of item `index` an earlier attempt of this task completed (whatever its extension),
    or None: what the task has in S3 for an item whose source can no longer be read."""
    found = [media for media in _landed(s3, bucket, f"{prefix}{task_id}/{index}.", task_id) if media.index == index]
    return found[0] if found else None


def _landed(s3: Any, bucket: str, key_prefix: str, task_id: str) -> list[StoredMedia]:
    found: list[StoredMedia] = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        for key in keys:
            head = s3.head_object(Bucket=bucket, Key=key)
            metadata = head.get("Metadata", {})
            index = metadata.get("index", "")
            if metadata.get("task-id") != task_id or not index.isdigit():
                continue
            content_type = head.get("ContentType") or "application/octet-stream"
            found.append(StoredMedia(
                index=int(index),
                type="video" if content_type.startswith("video/") else "image",
                bucket=bucket, key=key, s3_uri=f"s3://{bucket}/{key}",
                size_bytes=int(head.get("ContentLength", 0)), content_type=content_type,
                sha256=_sha256(s3, bucket, key, head["ETag"]),
            ))
    except (ClientError, BotoCoreError, Urllib3Error) as exc:
        raise aws_error(exc, S3, f"the listing of the task's media in s3://{bucket}") from None
    return found


def _sha256(s3: Any, bucket: str, key: str, etag: str) -> str:
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
    for chunk in iter(lambda: body.read(READ_SIZE), b""):
        digest.update(chunk)
    return digest.hexdigest()
