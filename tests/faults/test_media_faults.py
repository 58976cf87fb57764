"""Fault matrix, media side: expired, missing, cut, overlong, oversize, slow, and hostile URLs.

After every row: no partial object, no unfinished multipart upload; one completion event when the
task's fate is known (the media can never be fetched), none when a retry may still succeed.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from wan_relay.config import Config
from wan_relay.errors import TransientError
from wan_relay.ingest import UrlAllowlist
from wan_relay.relay import ITEM_ATTEMPTS
from wan_relay_local.replay import EXPIRED_XML, TINY_PNG, Media, PatternBody

from tests.conftest import BUCKET, completion, sample

TASK = "af6efbc0-4bef-4194-8246-0a1b2c3d4e5f"
MiB = 1024 * 1024


def video_task(replay, media: Media) -> dict:
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: media})
    replay.script(TASK, answer)
    return answer


def assert_nothing_left(account):
    assert account.objects() == {}
    assert account.unfinished_uploads() == []
    assert account.versions() == {}


@pytest.mark.parametrize(("media", "code", "words"), [
    (Media(b"", status=403, error_body=EXPIRED_XML), "MediaExpired", "Request has expired."),
    (Media(b"", status=404, error_body=b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>"),
     "MediaNotFound", "HTTP 404 NoSuchKey"),
    (Media(PatternBody(3 * MiB), content_type="video/mp4"), "MediaTooLarge", "over MAX_MEDIA_BYTES"),
    (Media(PatternBody(3 * MiB), content_type="video/mp4", fault="chunked"), "MediaTooLarge",
     "larger than MAX_MEDIA_BYTES"),
    (Media(b"<html>login</html>", content_type="text/html"), "UnexpectedContentType", "not an image or video"),
], ids=["403-expired", "404", "oversize-with-length", "oversize-chunked", "html-instead-of-media"])
def test_media_that_can_never_be_fetched_is_announced_once_as_unavailable_with_the_reason(
    replay, account, make_relay, media, code, words
):
    relay = make_relay(MAX_MEDIA_BYTES=str(2 * MiB))
    video_task(replay, media)

    state = relay.handle({"task_id": TASK})

    assert state["done"] and state["status"] == "MEDIA_UNAVAILABLE"
    detail = completion(state)
    error = detail["error"]
    assert error["code"] == code and words in error["message"] and error["category"] == "media"
    assert detail["failures"][0]["code"] == code
    assert_nothing_left(account)


@pytest.mark.parametrize("fault", ["truncate", "overlong", "chunked_cut", "reset"])
def test_a_stream_that_keeps_breaking_is_tried_a_few_times_then_announced_with_nothing_half_written(
    replay, account, relay, pauses, fault
):
    video_task(replay, Media(PatternBody(10 * MiB, seed=fault), content_type="video/mp4", fault=fault))

    state = relay.handle({"task_id": TASK})

    assert len(pauses) == ITEM_ATTEMPTS - 1  # seconds between tries, not the task's budget
    detail = completion(state)
    assert detail["status"] == "MEDIA_UNAVAILABLE" and detail["media"] == []
    assert detail["error"]["category"] == "media" and detail["error"]["retryable"] is True
    assert [f["index"] for f in detail["failures"]] == [0]
    assert_nothing_left(account)


def test_a_stream_that_breaks_once_is_tried_again_within_the_poll_and_lands_once(replay, account, relay):
    media = Media(PatternBody(10 * MiB, seed="flaky"), content_type="video/mp4", fault="truncate")
    video_task(replay, media)
    relay.sleep = lambda _seconds: setattr(media, "fault", None)  # the network heals during the pause

    state = relay.handle({"task_id": TASK})

    assert state["status"] == "SUCCEEDED"
    assert account.versions() == {f"wan/{TASK}/0.mp4": 1}
    assert [m["key"] for m in completion(state)["media"]] == [f"wan/{TASK}/0.mp4"]
    assert account.unfinished_uploads() == []


def test_an_image_that_keeps_failing_is_listed_and_the_images_after_it_still_land(replay, account, relay):
    answer = sample("wan2.6-image_interleaved_succeeded")
    first = answer["output"]["choices"][0]["message"]["content"][1]["image"]
    path = first.split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: Media(PatternBody(3 * MiB), content_type="image/png", fault="reset")})
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle({"task_id": task_id})

    detail = completion(state)
    assert detail["status"] == "PARTIAL"
    assert [m["index"] for m in detail["media"]] == [1]
    assert [f["index"] for f in detail["failures"]] == [0]
    # media[] is what S3 holds for the task, no more, no less
    assert sorted(account.objects()) == sorted(m["key"] for m in detail["media"])
    assert account.unfinished_uploads() == []


def test_a_slow_trickle_ends_the_poll_in_time_not_a_hang_until_lambda_dies(replay, account, relay):
    video_task(replay, Media(PatternBody(4 * MiB), content_type="video/mp4", fault="trickle", trickle_delay=0.2))
    relay.transfer_budget_seconds = 1.0
    started = time.monotonic()
    # past the poll's deadline the item is not at fault: the workflow polls again with a fresh Lambda
    with pytest.raises(TransientError, match=r"ran out of time.*TooSlow") as raised:
        relay.handle({"task_id": TASK})
    assert raised.value.code == "OutOfTime"
    assert time.monotonic() - started < 10
    assert_nothing_left(account)


def test_a_stalled_body_hits_the_read_timeout(replay, account, relay):
    video_task(replay, Media(PatternBody(1 * MiB), content_type="video/mp4", fault="trickle", trickle_delay=3))
    relay.streamer.timeout = (1.0, 0.5)
    detail = completion(relay.handle({"task_id": TASK}))
    assert detail["status"] == "MEDIA_UNAVAILABLE"
    # the last try's words: its body broke after the first bytes, or (the host still stalled on the
    # earlier tries' connections, as a loaded machine shows) it sent no answer within the timeout
    message = detail["failures"][0]["message"]
    assert "broke after" in message or message == "the media host did not answer in time", message
    assert_nothing_left(account)


def test_a_redirect_to_a_host_outside_the_allowlist_is_not_followed(replay, account, relay):
    evil = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    video_task(replay, Media(b"", location=evil))
    state = relay.handle({"task_id": TASK})
    assert state["status"] == "MEDIA_UNAVAILABLE"
    assert state["event"]["error"]["code"] == "UrlNotAllowed"
    assert "169.254.169.254" in state["event"]["error"]["message"]
    assert_nothing_left(account)


def test_a_redirect_inside_the_allowlist_is_followed(replay, account, relay):
    target = replay.add_media("/media/elsewhere/real.mp4", Media(PatternBody(1000), content_type="video/mp4"))
    video_task(replay, Media(b"", location=target))
    state = relay.handle({"task_id": TASK})
    assert state["status"] == "SUCCEEDED" and state["event"]["media"][0]["size_bytes"] == 1000


def test_one_expired_image_of_two_gives_a_partial_result_with_the_reason(replay, account, relay):
    answer = sample("wan2.6-image_interleaved_succeeded")
    first = answer["output"]["choices"][0]["message"]["content"][1]["image"]
    path = first.split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: Media(b"", status=403, error_body=EXPIRED_XML)})
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle({"task_id": task_id})

    assert state["status"] == "PARTIAL"
    assert [m["index"] for m in state["event"]["media"]] == [1]
    assert state["event"]["failures"][0]["code"] == "MediaExpired"
    assert list(account.objects()) == [f"wan/{task_id}/1.png"]


HOSTILE = [
    "http://dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com/a.png",  # http instead of https
    "https://169.254.169.254/latest/meta-data/",
    "https://localhost/a.png",
    "https://x.aliyuncs.com.evil.example/a.png",
    "https://user@evil.example/a.png",
    "https://user:pass@dashscope.oss-cn-beijing.aliyuncs.com/a.png",  # credentials, even on a good host
    "https://127.0.0.1/a.png",
    "https://[::1]/a.png",
    "https://2130706433/a.png",  # 127.0.0.1 as a number
    "https://0x7f.1/a.png",
    "https://dashscope.aliyuncs.com:8443/a.png",  # a port the pattern does not name
    "file:///etc/passwd",
    "gopher://dashscope.aliyuncs.com/a",
    "https://evil.example/?.aliyuncs.com",
    "https://evil.example#.aliyuncs.com",
    "https://evil.example\\.aliyuncs.com/a.png",
    # Alibaba Cloud names that are not DashScope's result buckets
    "https://attacker-bucket.oss-cn-beijing.aliyuncs.com/a.png",  # any tenant's bucket
    "https://dashscope-other.oss-cn-beijing.aliyuncs.com/a.png",  # a dashscope-* bucket, not accelerated
    "https://dashscope.aliyuncs.com/api/v1/tasks/x",
    "https://ecs.aliyuncs.com/a.png",
    "https://dashscope-result-sg.attacker.oss-ap-southeast-1.aliyuncs.com/a.png",  # a * never spans a dot
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_media_urls_are_refused_by_the_default_allowlist(url):
    allowlist = UrlAllowlist(Config.from_env({"DASHSCOPE_API_KEY": "k", "MEDIA_BUCKET": "b"}).allowed_media_urls)
    with pytest.raises(Exception) as raised:
        allowlist.check(url)
    assert type(raised.value).__name__ == "MediaRejected" and raised.value.code == "UrlNotAllowed"


@pytest.mark.parametrize("url", [  # hosts in DashScope's API reference and its answers
    "https://dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com/1d/a.png?Expires=1&Signature=x",
    "https://dashscope-463f.oss-accelerate.aliyuncs.com/a.png",
    "https://dashscope-result-sh.oss-accelerate.aliyuncs.com/xxx.mp4?Expires=xxx",
    "HTTPS://DASHSCOPE-RESULT-BJ.OSS-CN-BEIJING.ALIYUNCS.COM/a.png",
    "https://dashscope-result-sz.oss-cn-shenzhen.aliyuncs.com/xxx.png?Expires=xxx",
    "https://dashscope-result-wlcb-acdr-1.oss-cn-wulanchabu-acdr-1.aliyuncs.com/1d/33/a.png",
])
def test_real_result_hosts_pass_the_default_allowlist(url):
    UrlAllowlist(Config.from_env({"DASHSCOPE_API_KEY": "k", "MEDIA_BUCKET": "b"}).allowed_media_urls).check(url)


def test_an_ip_literal_passes_only_when_named_exactly():
    UrlAllowlist(("http://127.0.0.1:8080",)).check("http://127.0.0.1:8080/a.png")
    with pytest.raises(Exception, match="not in ALLOWED_MEDIA_URLS"):
        UrlAllowlist(("http://*",)).check("http://127.0.0.1/a.png")


def test_a_small_image_keeps_its_bytes_exactly(replay, account, relay):
    answer = sample("wan2.6-t2i_succeeded")
    path = answer["output"]["choices"][0]["message"]["content"][0]["image"].split("aliyuncs.com", 1)[1]
    answer = replay.rehost(answer, media={path.split("?", 1)[0]: Media(TINY_PNG)})
    replay.script(answer["output"]["task_id"], answer)
    relay.handle({"task_id": answer["output"]["task_id"]})
    assert list(account.objects().values()) == [TINY_PNG]


def test_an_object_an_earlier_attempt_landed_without_recording_it_is_kept_not_uploaded_again(replay, account, relay):
    """No idempotency record (the attempt died after S3 completed the object, or no table): the object
    at the task's key, with the task's metadata and the source's length, is the media."""
    video_task(replay, Media(PatternBody(10 * MiB, seed="landed"), content_type="video/mp4"))
    first = completion(relay.handle({"task_id": TASK}))

    again = completion(relay.handle({"task_id": TASK}))

    assert account.versions() == {f"wan/{TASK}/0.mp4": 1}
    assert again["media"] == first["media"]  # sha256 read back from S3, same as when it was streamed


@pytest.mark.parametrize("fault", [None, "chunked"], ids=["with-length", "chunked"])
def test_an_object_with_the_tasks_metadata_and_length_but_other_bytes_is_replaced_not_announced(
    replay, account, relay, fault,
):
    """What an attempt killed after its check found S3 holding other bytes than it read, and before it
    deleted them, leaves: an object with the task's metadata and the source's length. S3 vouches for
    its bytes (they match the checksums they were sent with), so only the source can tell: the retry
    deletes it and stores the source's bytes; the event never announces the stranger's."""
    source = PatternBody(10 * MiB, seed="source")
    video_task(replay, Media(source, content_type="video/mp4", fault=fault))
    stranger = b"".join(PatternBody(10 * MiB, seed="stranger").iter_range())
    key = f"wan/{TASK}/0.mp4"
    account.s3.put_object(Bucket=BUCKET, Key=key, Body=stranger, ContentType="video/mp4",
                          Metadata={"task-id": TASK, "index": "0"}, ChecksumAlgorithm="SHA256")

    detail = completion(relay.handle({"task_id": TASK}))

    assert detail["status"] == "SUCCEEDED" and detail["failures"] == []
    [stored] = detail["media"]
    assert stored["sha256"] == source.sha256() and stored["size_bytes"] == 10 * MiB
    assert hashlib.sha256(account.objects()[key]).hexdigest() == source.sha256()
    assert account.versions() == {key: 2}  # the stranger's, then the source's


def test_a_landed_object_is_kept_when_its_source_breaks_off_while_it_is_compared(replay, account, relay):
    """The retry reads the source to compare it with the object an earlier attempt left; a source
    that breaks off now cannot be read, as one that cannot be opened: the object is kept as S3 holds it
    (not deleted with nothing to replace it, not left unannounced)."""
    body = PatternBody(10 * MiB, seed="landed")
    media = Media(body, content_type="video/mp4")
    video_task(replay, media)
    first = completion(relay.handle({"task_id": TASK}))

    media.fault = "truncate"
    again = completion(relay.handle({"task_id": TASK}))

    assert again["status"] == "SUCCEEDED" and again["media"] == first["media"]
    assert again["media"][0]["sha256"] == body.sha256()
    assert account.versions() == {f"wan/{TASK}/0.mp4": 1}


def test_a_landed_object_is_kept_when_its_source_is_too_slow_to_compare_within_the_poll(replay, account, relay):
    """The comparison reads the source in one stream, where the first copy took ranges in parallel: a
    source too slow for the poll's time now is one that cannot be read, not a reason to fail every poll
    until the task's budget runs out with the right object in S3."""
    body = PatternBody(4 * MiB, seed="landed")
    media = Media(body, content_type="video/mp4")
    video_task(replay, media)
    first = completion(relay.handle({"task_id": TASK}))

    media.fault, media.trickle_delay = "trickle", 0.2
    relay.transfer_budget_seconds = 1.0
    again = completion(relay.handle({"task_id": TASK}))

    assert again["status"] == "SUCCEEDED" and again["media"] == first["media"]
    assert account.versions() == {f"wan/{TASK}/0.mp4": 1}


def test_an_object_of_another_length_at_the_key_is_replaced(replay, account, relay):
    video_task(replay, Media(PatternBody(10 * MiB, seed="other"), content_type="video/mp4"))
    account.s3.put_object(Bucket=BUCKET, Key=f"wan/{TASK}/0.mp4", Body=b"stale", Metadata={"task-id": TASK})

    detail = completion(relay.handle({"task_id": TASK}))

    assert detail["media"][0]["size_bytes"] == 10 * MiB
    assert account.versions() == {f"wan/{TASK}/0.mp4": 2}


def test_an_item_stored_by_an_attempt_that_died_is_announced_though_its_source_has_since_expired(
    replay, account, make_relay,
):
    """An attempt completes the item's object, then dies before recording it (DynamoDB throttled past
    the SDK's retries). The retry comes after the presigned URL expired: the source cannot be read, but
    the task has the object in S3, so the event announces it (`media[]` is what the task has in S3),
    read back from S3, rather than calling the item unavailable and leaving the object unannounced."""
    from botocore.exceptions import ClientError
    from wan_relay_local.lambda_bridge import FakeContext

    def context():
        return FakeContext(function_name="poll", timeout_seconds=3,
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:poll")

    relay = make_relay(idempotent=True)
    body = PatternBody(1 * MiB, seed="landed")
    media = Media(body, content_type="video/mp4")
    video_task(replay, media)

    def refuse_the_media_record(params, **_):
        if params.get("Key", {}).get("id", {}).get("S", "").startswith("wan-relay.media"):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "UpdateItem")

    account.dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", refuse_the_media_record)
    with pytest.raises(TransientError):
        relay.handle({"task_id": TASK}, context())
    account.dynamodb.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", refuse_the_media_record)
    assert list(account.objects()) == [f"wan/{TASK}/0.mp4"]

    media.status, media.error_body = 403, EXPIRED_XML
    time.sleep(3.5)  # the dead attempt's in-progress record lasts until its Lambda deadline
    detail = completion(relay.handle({"task_id": TASK}, context()))

    assert detail["status"] == "SUCCEEDED" and detail["failures"] == []
    [stored] = detail["media"]
    assert stored["key"] == f"wan/{TASK}/0.mp4" and stored["size_bytes"] == 1 * MiB
    assert stored["sha256"] == body.sha256() and stored["type"] == "video"


def test_an_empty_body_is_refused_as_empty_media_not_a_checksum_mismatch(replay, account, make_relay):
    """A 0-byte answer is no image or video: refused as `EmptyMedia` at once, nothing stored, not a
    retryable `ChecksumMismatch` after uploading and deleting it three times."""
    relay = make_relay()
    video_task(replay, Media(b"", content_type="video/mp4"))

    detail = completion(relay.handle({"task_id": TASK}))

    assert detail["status"] == "MEDIA_UNAVAILABLE"
    assert [f["code"] for f in detail["failures"]] == ["EmptyMedia"]
    assert account.objects() == {}
