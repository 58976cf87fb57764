"""A multipart upload that a crashed attempt left is aborted by the retry, by the UploadId the attempt
recorded before sending its first part: never by listing the bucket's uploads (ListMultipartUploads is
bucket-wide; IAM cannot narrow it to the media prefix)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from wan_relay.errors import MediaRejected, OperatorError, TransientError
from wan_relay.idempotency import UploadRecords
from wan_relay.ingest import MediaStreamer, UrlAllowlist
from wan_relay.models import MediaRef
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope

from tests.conftest import BUCKET
from tests.faults.aws_faults import Refused, error
from tests.unit.test_ranged import SIZE, _FarHost

MiB = 1024 * 1024


def _streamer(account: Any, server: ReplayDashScope) -> MediaStreamer:
    uploads = UploadRecords(account.create_idempotency_table(), account.dynamodb)
    return MediaStreamer(s3=account.s3, session=requests.Session(), bucket=BUCKET, prefix="wan/",
                         max_bytes=1 << 31, allowlist=UrlAllowlist((server.origin,)), uploads=uploads)


def _listings(account: Any) -> list[str]:
    calls: list[str] = []
    account.s3.meta.events.register("before-call.s3.ListMultipartUploads", lambda **_: calls.append("listed"))
    return calls


@pytest.mark.parametrize(("server_class", "ranges"), [(ReplayDashScope, False), (_FarHost, True)],
                         ids=["single-stream", "ranged"])
def test_every_multipart_upload_is_recorded_before_its_first_part_is_sent(account, server_class, ranges):
    server = server_class().start()
    server.add_media("/v.mp4", Media(PatternBody(SIZE, seed="recorded"), content_type="video/mp4", ranges=ranges))
    streamer = _streamer(account, server)
    seen: list[tuple[str, str | None]] = []

    def first_part(params: dict[str, Any], **_: Any) -> None:
        seen.append((params["UploadId"], streamer.uploads.pending(BUCKET, "wan/task-1/0")))

    account.s3.meta.events.register("before-parameter-build.s3.UploadPart", first_part)
    try:
        streamer.store("task-1", MediaRef(index=0, type="video", url=server.media_url("/v.mp4")))
    finally:
        server.stop()

    assert seen, "the body went up in parts"
    assert all(recorded == ("wan/task-1/0.mp4", upload_id) for upload_id, recorded in seen)


def test_the_retry_aborts_the_upload_a_crashed_attempt_left_without_listing_the_bucket(account):
    server = ReplayDashScope().start()
    body = PatternBody(20 * MiB, seed="crashed")
    server.add_media("/v.mp4", Media(body, content_type="video/mp4", ranges=False))
    streamer = _streamer(account, server)
    # what a crashed attempt leaves: an upload created through the relay's client (so recorded), one part
    left = account.s3.create_multipart_upload(Bucket=BUCKET, Key="wan/task-1/0.mp4")["UploadId"]
    account.s3.upload_part(Bucket=BUCKET, Key="wan/task-1/0.mp4", UploadId=left, PartNumber=1, Body=b"x" * MiB)
    listed = _listings(account)
    try:
        stored = streamer.store("task-1", MediaRef(index=0, type="video", url=server.media_url("/v.mp4")))
    finally:
        server.stop()

    assert listed == []  # (before the check below, which lists them)
    assert stored.sha256 == body.sha256()
    assert account.unfinished_uploads() == []
    assert account.versions() == {"wan/task-1/0.mp4": 1}


@pytest.mark.parametrize(("server_class", "ranges"), [(ReplayDashScope, False), (_FarHost, True)],
                         ids=["single-stream", "ranged"])
@pytest.mark.parametrize(("code", "status", "raised"), [
    ("AccessDeniedException", 400, OperatorError),  # somebody has to fix the role
    ("ProvisionedThroughputExceededException", 400, TransientError),  # retried by the workflow
    ("InternalServerError", 500, TransientError),
], ids=["denied", "throttled", "failing"])
def test_an_upload_whose_id_cannot_be_recorded_is_aborted_and_the_attempt_fails_by_name(
    account, server_class, ranges, code, status, raised
):
    server = server_class().start()
    server.add_media("/v.mp4", Media(PatternBody(SIZE, seed="denied"), content_type="video/mp4", ranges=ranges))
    streamer = _streamer(account, server)
    Refused(account.dynamodb, "PutItem", status, error(code, "refused"), times=99)
    try:
        with pytest.raises(raised, match=code):
            streamer.store("task-1", MediaRef(index=0, type="video", url=server.media_url("/v.mp4")))
    finally:
        server.stop()

    assert account.unfinished_uploads() == []
    assert account.objects() == {}


@pytest.mark.parametrize("left_key", ["wan/task-1/0.mp4", "wan/task-1/0.mov"],
                         ids=["same-extension", "other-extension"])
def test_the_retry_aborts_a_crashed_attempts_upload_even_when_the_source_no_longer_answers(account, left_key):
    """The record is the item's, not the key's: the retry finds it before it asks the source, whose answer
    (an expired URL's 403 or 404, another Content-Type than last time) no longer names the same key."""
    server = ReplayDashScope().start()
    streamer = _streamer(account, server)
    left = account.s3.create_multipart_upload(Bucket=BUCKET, Key=left_key)["UploadId"]
    account.s3.upload_part(Bucket=BUCKET, Key=left_key, UploadId=left, PartNumber=1, Body=b"x" * MiB)
    try:
        with pytest.raises(MediaRejected):
            streamer.store("task-1", MediaRef(index=0, type="video", url=server.media_url("/expired.mp4")))
    finally:
        server.stop()

    assert account.unfinished_uploads() == []
    assert account.objects() == {}
    assert streamer.uploads.pending(BUCKET, "wan/task-1/0") is None


def test_an_upload_of_another_item_of_the_task_is_left_alone(account):
    server = ReplayDashScope().start()
    server.add_media("/v.mp4", Media(PatternBody(MiB, seed="item-0"), content_type="video/mp4", ranges=False))
    streamer = _streamer(account, server)
    other = account.s3.create_multipart_upload(Bucket=BUCKET, Key="wan/task-1/10.mp4")["UploadId"]
    try:
        streamer.store("task-1", MediaRef(index=1, type="video", url=server.media_url("/v.mp4")))
    finally:
        server.stop()

    assert [upload["UploadId"] for upload in account.unfinished_uploads()] == [other]
