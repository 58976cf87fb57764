"""Fault matrix, AWS side: operator errors fail loudly without deciding the task's fate; transient
errors are retried; an event EventBridge did not accept is never reported as sent.

In the stack the workflow's EmitCompletion state puts the event (tests/workflow/test_emit_completion.py);
the `EventPublisher` tests here are the same put made by `wan-relay run --aws`."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config as BotoConfig
from wan_relay.errors import OperatorError, TransientError
from wan_relay.models import DEFAULT_EVENT_SOURCE
from wan_relay.publish import EventPublisher
from wan_relay.relay import ITEM_ATTEMPTS
from wan_relay_local.replay import Media, PatternBody

from tests.conftest import completion, sample
from tests.faults.aws_faults import Injected, Refused, error, s3_error

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_sdk_backoff(monkeypatch):
    """The SDK's retry delays are real sleeps; the retries themselves still happen."""
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)


def image_task(replay) -> str:
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


def video_task(replay, size: int) -> str:
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: Media(PatternBody(size), content_type="video/mp4")})
    replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


def test_a_missing_bucket_is_an_operator_error_and_no_event_claims_the_task_failed(replay, account, make_relay):
    relay = make_relay(MEDIA_BUCKET="no-such-bucket-here")
    task_id = image_task(replay)
    with pytest.raises(OperatorError, match="no-such-bucket-here: NoSuchBucket"):
        relay.handle({"task_id": task_id})
    assert account.objects() == {}


def test_denied_access_to_the_bucket_is_an_operator_error(replay, account, relay):
    task_id = image_task(replay)
    Refused(account.s3, "PutObject", 403, error("AccessDenied", "Access Denied"), times=99)
    with pytest.raises(OperatorError, match="AccessDenied") as raised:
        relay.handle({"task_id": task_id})
    assert raised.value.code == "S3.AccessDenied"
    assert account.objects() == {}


#: what S3 answers (HTTP 400, KMS's error name prefixed `KMS.`) when the bucket's default SSE-KMS key
#: cannot encrypt: disabled, pending deletion, deleted or a wrong ARN. Refused before it is sent: moto
#: keeps no key and would store the object
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
UNUSABLE_KEY = {
    "KMS.DisabledException": f"{KEY} is disabled.",
    "KMS.KMSInvalidStateException": f"{KEY} is pending deletion.",
    "KMS.NotFoundException": f"Key '{KEY}' does not exist",
}


@pytest.mark.parametrize("code", sorted(UNUSABLE_KEY))
def test_a_bucket_key_s3_cannot_use_fails_the_task_at_once_with_the_operators_error(replay, account, relay, code):
    task_id = image_task(replay)
    refused = Refused(account.s3, "PutObject", 400, error(code, UNUSABLE_KEY[code]), times=99)
    with pytest.raises(OperatorError, match=code) as raised:
        relay.handle({"task_id": task_id})
    assert raised.value.code == f"S3.{code}"
    assert refused.calls == 1  # not tried again: only the operator can make the key usable
    assert account.objects() == {}


@pytest.mark.parametrize("operation", ["CreateMultipartUpload", "UploadPart"])
def test_a_bucket_key_pending_deletion_fails_a_video_at_once_and_leaves_no_upload(replay, account, relay, operation):
    task_id = video_task(replay, 20 * MiB)
    code = "KMS.KMSInvalidStateException"
    Refused(account.s3, operation, 400, error(code, UNUSABLE_KEY[code]), times=99)
    with pytest.raises(OperatorError, match=code):
        relay.handle({"task_id": task_id})
    assert account.unfinished_uploads() == [] and account.objects() == {}


def test_a_missing_idempotency_table_is_an_operator_error(replay, account, make_relay):
    relay = make_relay(IDEMPOTENCY_TABLE="no-such-table")
    task_id = image_task(replay)
    with pytest.raises(OperatorError, match="no-such-table: ResourceNotFoundException") as raised:
        relay.handle({"task_id": task_id})
    assert raised.value.code == "DynamoDB.ResourceNotFoundException"
    assert account.objects() == {}


@pytest.mark.parametrize("operation", ["GetItem", "PutItem", "UpdateItem"])
def test_a_denied_idempotency_table_is_an_operator_error(replay, account, make_relay, operation):
    relay = make_relay(idempotent=True)
    task_id = image_task(replay)
    # DynamoDB's refusal, also of a table's customer managed key ("KMS key access denied error: ...")
    Refused(account.dynamodb, operation, 400, error("AccessDeniedException", "not authorized"), times=99)
    with pytest.raises(OperatorError, match="AccessDeniedException") as raised:
        relay.handle({"task_id": task_id})
    assert raised.value.code == "DynamoDB.AccessDeniedException"


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_a_part_upload_failing_once_is_retried_and_the_video_lands_whole(replay, account, relay, status, code):
    task_id = video_task(replay, 20 * MiB)
    injected = Injected(account.s3, "UploadPart", status, s3_error(code, "Please reduce your request rate."), 1)

    state = relay.handle({"task_id": task_id})

    assert state["status"] == "SUCCEEDED"
    assert injected.injected == 1 and injected.calls == 4  # 3 parts, one of them sent twice
    assert account.versions() == {f"wan/{task_id}/0.mp4": 1}
    assert account.unfinished_uploads() == []
    assert [m["key"] for m in completion(state)["media"]] == [f"wan/{task_id}/0.mp4"]


def test_a_part_upload_that_keeps_failing_aborts_the_upload(replay, account, relay):
    task_id = video_task(replay, 20 * MiB)
    Injected(account.s3, "UploadPart", 503, s3_error("SlowDown", "Please reduce your request rate."), 99)
    with pytest.raises(TransientError, match="SlowDown"):
        relay.handle({"task_id": task_id})
    assert account.unfinished_uploads() == [] and account.objects() == {}


PARTIAL_FAILURE = {
    "FailedEntryCount": 1,
    "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error."}],
}


@pytest.fixture
def publisher(account):
    """The put that `wan-relay run --aws` makes where the stack's EmitCompletion state would."""
    events = boto3.client("events", config=BotoConfig(retries={"mode": "standard", "max_attempts": 5}))
    return EventPublisher(events, "default", DEFAULT_EVENT_SOURCE)


def a_detail(replay, relay) -> dict:
    return completion(relay.handle({"task_id": image_task(replay)}))


def test_an_event_eventbridge_did_not_accept_is_not_reported_as_sent(replay, account, relay, publisher):
    detail = a_detail(replay, relay)
    Refused(publisher._events, "PutEvents", 200, PARTIAL_FAILURE, times=1)
    with pytest.raises(TransientError, match="did not accept the completion event: InternalFailure"):
        publisher.publish(detail)
    assert publisher.publish(detail)  # the retry: EventBridge's id for the event


def test_put_events_raising_is_retried_by_the_sdk_then_reported_as_transient(replay, account, relay, publisher):
    detail = a_detail(replay, relay)
    body = json.dumps({"__type": "InternalException", "message": "Internal error"}).encode()
    injected = Injected(publisher._events, "PutEvents", 500, body, times=99,
                        content_type="application/x-amz-json-1.1")
    with pytest.raises(TransientError, match="EventBridge failed: InternalException"):
        publisher.publish(detail)
    assert injected.calls == 6  # the first call and the 5 retries (botocore: retries={"max_attempts": 5})


def test_a_denied_put_events_is_an_operator_error(replay, account, relay, publisher):
    detail = a_detail(replay, relay)
    Refused(publisher._events, "PutEvents", 400, error("AccessDeniedException", "not authorized"), times=99)
    with pytest.raises(OperatorError, match="AccessDeniedException"):
        publisher.publish(detail)


@pytest.mark.parametrize("size", [1000, 20 * MiB], ids=["single-put", "multipart"])
def test_an_object_whose_checksum_differs_from_the_bytes_read_is_deleted_and_retried(replay, account, relay, size):
    task_id = video_task(replay, size)
    seen: list[str] = []

    def corrupted(parsed, **_):
        # S3 reports the checksum of what it stored; here it stored something else
        wrong = {"ChecksumSHA256": "Y29ycnVwdGVkLWNoZWNrc3VtLXZhbHVlLTAwMDAwMDA=", "ChecksumCRC32": "AAAAAA=="}
        for name, value in wrong.items():
            if parsed.get(name):
                seen.append(parsed[name])
                parsed[name] = value
    account.s3.meta.events.register("after-call.s3.HeadObject", corrupted)

    state = relay.handle({"task_id": task_id})

    # each try's object is deleted; after the item's tries, the item is the event's failure
    detail = completion(state)
    assert detail["status"] == "MEDIA_UNAVAILABLE" and detail["media"] == []
    assert detail["error"]["code"] == "ChecksumMismatch" and "checksum that differs" in detail["error"]["message"]
    assert len(seen) == ITEM_ATTEMPTS  # S3 did report a checksum, every time
    assert account.objects() == {}


def test_a_hung_step_functions_endpoint_gives_the_sweeper_an_error_well_inside_its_invocations_margin(monkeypatch):
    """An endpoint that takes the connection and never answers (a hung SendTaskHeartbeat): the sweeper's
    client gives up within SWEEPER_CALL_SECONDS, less than the 15 s its invocation keeps after the sweep to
    release the lease (with the default client's 60 s read timeout and five attempts it would hang for
    minutes, past the Lambda's timeout, the lease left held)."""
    import socket
    import time

    from botocore.exceptions import ReadTimeoutError
    from wan_relay.runtime import SWEEPER_CALL_SECONDS, sweeper_client
    from wan_relay_local.lambda_bridge import load_handler

    from tests.conftest import ROOT

    finish_seconds = load_handler(ROOT / "functions" / "sweeper", attribute="FINISH_SECONDS")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.listen(8)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", f"http://127.0.0.1:{silent.getsockname()[1]}")
        client = sweeper_client("stepfunctions")
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.send_task_heartbeat(taskToken="t" * 64)
        assert time.monotonic() - started <= SWEEPER_CALL_SECONDS < finish_seconds
