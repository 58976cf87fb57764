"""One poll of the relay, end to end: a replayed DashScope, moto's S3 and EventBridge."""

from __future__ import annotations

import hashlib
import socket
from datetime import UTC, datetime, timedelta

import pytest
from wan_relay.budget import DynamoDBBudget
from wan_relay.normalize import iso_z, url_expiry
from wan_relay.relay import ITEM_ATTEMPTS, ITEM_RETRY_CAP_SECONDS
from wan_relay_local.replay import Media, PatternBody

from tests.conftest import BUCKET, completion, sample
from tests.faults.aws_faults import Refused, error


def iter_urls(value):
    """Every media URL in an answer, in order."""
    if isinstance(value, dict):
        for child in value.values():
            yield from iter_urls(child)
    elif isinstance(value, list):
        for child in value:
            yield from iter_urls(child)
    elif isinstance(value, str) and value.startswith("http"):
        yield value


def start(task_id: str, **extra):
    return {"task_id": task_id, **extra}


def _submit_time_ago(seconds: float) -> str:
    china = datetime.now(UTC) + timedelta(hours=8) - timedelta(seconds=seconds)
    return china.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


SHAPES = [
    ("wan2.6-t2i_succeeded", "image", 1),
    ("wan2.6-image_interleaved_succeeded", "image", 2),
    ("wan2.7-i2v_succeeded", "video", 1),
    ("wan2.1-t2v_succeeded", "video", 1),
    ("wan2.2-animate_succeeded", "video", 1),
]


@pytest.mark.parametrize(("name", "kind", "count"), SHAPES)
def test_every_success_shape_lands_its_media_in_s3_and_announces_it_once(replay, account, relay, name, kind, count):
    answer = replay.rehost(sample(name))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle(start(task_id, context={"order": 42}))

    assert state["done"] is True and state["status"] == "SUCCEEDED"
    objects = account.objects()
    assert len(objects) == count
    detail = completion(state)
    assert detail["status"] == "SUCCEEDED" and detail["kind"] == kind and detail["context"] == {"order": 42}
    for item in detail["media"]:
        body = objects[item["key"]]
        assert item["key"] == f"wan/{task_id}/{item['index']}.{'mp4' if kind == 'video' else 'png'}"
        assert item["sha256"] == hashlib.sha256(body).hexdigest()
        assert item["size_bytes"] == len(body)
        head = account.s3.head_object(Bucket=BUCKET, Key=item["key"], ChecksumMode="ENABLED")
        assert head["ContentType"] == item["content_type"]
        assert head["Metadata"]["task-id"] == task_id
        assert item["source_expires_at"] == url_expiry(next(iter_urls(answer)))  # the URL's Expires=
    assert detail["timing"]["ended_at"].endswith("Z")
    assert detail["event_id"] == relay.handle(start(task_id))["event"]["event_id"]  # deterministic per task


def test_a_pending_task_answers_not_done_and_waits_until_it_can_be_finished(replay, account, relay):
    answer = sample("pending")
    task_id = answer["output"]["task_id"]
    answer["output"]["submit_time"] = _submit_time_ago(2)
    replay.script(task_id, answer)

    state = relay.handle(start(task_id, kind="image"))

    assert state["done"] is False and state["status"] == "PENDING" and state["polls"] == 1
    assert 7 <= state["wait_seconds"] <= 8  # an image cannot finish before it is 10 s old
    assert state["event"] is None and account.objects() == {}


def test_a_running_video_past_its_earliest_finish_is_polled_at_the_documented_15_s(replay, account, relay):
    answer = sample("running")
    task_id = answer["output"]["task_id"]
    answer["output"]["submit_time"] = _submit_time_ago(120)
    replay.script(task_id, answer)
    state = relay.handle(start(task_id, kind="video", polls=3, started_at=iso_z(datetime.now(UTC))))
    assert (state["done"], state["wait_seconds"], state["polls"]) == (False, 15, 4)


def test_a_caller_interval_overrides_the_policy(replay, account, relay):
    answer = sample("suspended")
    answer["output"]["submit_time"] = _submit_time_ago(90)
    replay.script(answer["output"]["task_id"], answer)
    state = relay.handle(start(answer["output"]["task_id"], poll_interval_seconds=42))
    assert (state["done"], state["status"], state["wait_seconds"]) == (False, "SUSPENDED", 42)


@pytest.mark.parametrize(("name", "status", "code"), [
    ("failed_output_code", "FAILED", "DataInspectionFailed"),
    ("failed_top_level_code", "FAILED", "InternalError.Algo"),
    ("canceled", "CANCELED", "TaskCanceled"),
    ("unknown", "UNKNOWN", "TaskUnknown"),
])
def test_failed_canceled_and_unknown_tasks_emit_a_failure_event_and_store_nothing(
    replay, account, relay, name, status, code
):
    answer = sample(name)
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle(start(task_id, context={"run": 7}))

    assert state["done"] is True and state["status"] == status
    assert account.objects() == {}
    detail = completion(state)
    assert detail["status"] == status and detail["media"] == []
    assert detail["error"]["code"] == code and detail["error"]["category"] == "provider"
    assert detail["error"]["retryable"] is False
    assert detail["context"] == {"run": 7}


def test_a_partial_multi_image_success_stores_the_good_images_and_lists_the_failed_one(replay, account, relay):
    answer = replay.rehost(sample("wan2.5-t2i_partial"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle(start(task_id))

    assert state["status"] == "PARTIAL"
    assert sorted(account.objects()) == [f"wan/{task_id}/0.png", f"wan/{task_id}/2.png"]
    detail = completion(state)
    assert [m["index"] for m in detail["media"]] == [0, 2]
    assert detail["failures"] == [
        {"index": 1, "code": "DataInspectionFailed", "message": "Output data may contain inappropriate content."}
    ]
    assert detail["prompt"]["original"] == "a red fox in fresh snow, morning light"


def _video_task(replay, media: Media, task_id: str = "af6efbc0-4bef-4194-8246-0a1b2c3d4e5f"):
    answer = sample("wan2.7-i2v_succeeded")
    original = answer["output"]["video_url"]
    path = original.split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: media})
    replay.script(task_id, answer)
    return task_id


@pytest.mark.parametrize("ranges", [True, False], ids=["ranged-parallel", "single-stream"])
def test_a_20_mib_video_streams_through_a_multipart_upload(replay, account, relay, ranges):
    body = PatternBody(21 * 1024 * 1024, seed="big-video")
    task_id = _video_task(replay, Media(body, content_type="video/mp4", ranges=ranges))
    parts: list[tuple[int, int]] = []

    def record(params, **_):
        payload = params["Body"]
        size = len(payload) if isinstance(payload, bytes | bytearray | memoryview) else len(payload.read())
        if not isinstance(payload, bytes | bytearray | memoryview):
            payload.seek(0)
        parts.append((params["PartNumber"], size))

    account.s3.meta.events.register("provide-client-params.s3.UploadPart", record)

    state = relay.handle(start(task_id))

    assert state["status"] == "SUCCEEDED"
    (item,) = state["event"]["media"]
    assert item["size_bytes"] == body.size and item["sha256"] == body.sha256()
    numbers = sorted(n for n, _ in parts)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert max(size for _, size in parts) <= 8 * 1024 * 1024  # parts, never the body held whole
    stored = account.s3.get_object(Bucket=BUCKET, Key=item["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == body.sha256()


@pytest.mark.parametrize("fault", ["truncate", "chunked_cut", "overlong"])
def test_a_body_that_does_not_match_its_length_leaves_nothing_behind(replay, account, relay, pauses, fault):
    body = PatternBody(12 * 1024 * 1024, seed=fault)
    task_id = _video_task(replay, Media(body, content_type="video/mp4", fault=fault))

    state = relay.handle(start(task_id))

    # tried ITEM_ATTEMPTS times with short jittered pauses, then the item's failure, not the task's budget
    assert len(pauses) == ITEM_ATTEMPTS - 1 and all(0 <= p <= ITEM_RETRY_CAP_SECONDS for p in pauses)
    detail = completion(state)
    assert detail["status"] == "MEDIA_UNAVAILABLE" and detail["media"] == []
    assert [f["index"] for f in detail["failures"]] == [0]
    assert detail["error"]["category"] == "media"
    assert account.objects() == {}
    assert account.unfinished_uploads() == []


def test_a_url_outside_the_allowlist_is_never_requested(replay, account, make_relay):
    relay = make_relay(ALLOWED_MEDIA_URLS="https://*.aliyuncs.com")
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    state = relay.handle(start(task_id))

    assert state["status"] == "MEDIA_UNAVAILABLE"
    assert state["event"]["error"]["code"] == "UrlNotAllowed"
    assert not [p for p in replay.requested_paths() if p.startswith("/media/")]
    assert account.objects() == {}


def test_the_api_key_never_appears_in_logs(replay, account, relay, capsys, caplog, monkeypatch):
    import logging

    caplog.set_level(logging.DEBUG)
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, sample("pending"), answer)
    relay.handle(start(task_id))
    relay.handle(start(task_id, polls=1, started_at=iso_z(datetime.now(UTC))))
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text + repr(relay) + repr(relay.client)
    assert "task completed" in everything or "task not finished" in everything  # the logs were captured
    assert "0123456789abcdef-SECRET" not in everything
    assert all(r["authorized"] for r in replay.requests if r["path"].startswith("/api/"))


def test_parts_go_to_s3_with_their_crc32_and_are_not_hashed_again_to_sign_them(replay, account, relay):
    """S3 checks each part against its CRC32; a SHA-256 of the body for the signature would be a
    second pass over every byte for nothing (the connection is TLS in AWS)."""
    task_id = _video_task(replay, Media(PatternBody(20 * 1024 * 1024, seed="signing"), content_type="video/mp4"))
    sent: list[dict[str, str]] = []

    def record(request, **_):
        sent.append({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    account.s3.meta.events.register_first("before-send.s3.UploadPart", record)

    state = relay.handle(start(task_id))

    assert state["status"] == "SUCCEEDED" and len(sent) == 3
    signed = [(h["X-Amz-Content-SHA256"], bool(h.get("x-amz-checksum-crc32"))) for h in sent]
    assert signed == [("UNSIGNED-PAYLOAD", True)] * 3


def test_the_last_poll_of_a_task_whose_budget_ran_out_asks_though_dynamodb_refuses_its_budget_slot(
    replay, account, make_relay,
):
    """With Waiting=park every GET takes a slot of the account's budget (an item in DynamoDB). The last
    poll of a task whose budget ran out decides its fate: DynamoDB refusing that slot (throttled past the
    SDK's retries) must not end the task unasked; the GET goes, slot or not."""
    relay = make_relay(idempotent=True, WAITING="park", PARKED_TABLE="parked")
    answer = sample("running")
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)
    refused = Refused(account.dynamodb, "UpdateItem", 400, error("ThrottlingException", "Rate exceeded."), times=1)

    state = relay.handle(start(task_id, kind="image", timeout_seconds=1, polls=3,
                               started_at=iso_z(datetime.now(UTC) - timedelta(seconds=5))))
    assert refused.calls == 1  # the slot's reservation was refused ...
    assert replay.polls(task_id) == 1  # ... and DashScope was asked all the same
    assert completion(state)["status"] == "TIMED_OUT"


def test_with_a_budget_a_cold_containers_get_goes_at_its_slot_over_a_connection_opened_before_it(
    replay, account, make_relay,
):
    """DashScope counts queries as they arrive. A container with no open connection to DashScope (its first
    poll, or its idle connection closed) opens one while it waits for its slot of the account's budget, not
    after: DNS, TCP and TLS cost round trips, and a GET that much behind its slot can crowd DashScope's
    second with the next slots' queries."""
    relay = make_relay(idempotent=True, WAITING="park", PARKED_TABLE="parked", DASHSCOPE_QUERY_BUDGET="2")
    answer = sample("running")
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)
    fleet = relay.fleet
    # other workflows took the budget's next two slots: this poll's is a second ahead
    assert len(DynamoDBBudget(account.dynamodb, fleet.table, fleet.account, fleet.budget).reserve(2).slots_us) == 2

    state = relay.handle(start(task_id, kind="image"))

    assert state["done"] is False and state["status"] == "RUNNING"
    [get] = [r for r in replay.requests if r["path"].startswith("/api/")]
    opened = {port: at for at, port in replay.connections}[get["port"]]
    assert get["at"] - opened >= 0.5  # opened as the wait for the slot began, the GET sent at the slot


def test_a_connection_that_fails_half_open_before_the_slot_is_not_left_for_the_get(
    replay, account, make_relay, monkeypatch,
):
    """The connection opened ahead of the slot fails half-way (a TLS handshake timing out leaves urllib3's
    connection holding a closed socket): it is closed whole, and the GET opens a new one, rather than
    taking the broken one from the pool and failing the execution under an error no Retry names."""
    import urllib3.connection

    relay = make_relay(idempotent=True, WAITING="park", PARKED_TABLE="parked", DASHSCOPE_QUERY_BUDGET="2")
    answer = sample("running")
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)
    connect = urllib3.connection.HTTPConnection.connect
    tries: list[int] = []

    def handshake_times_out_once(self):  # what HTTPSConnection.connect leaves after a handshake timeout
        tries.append(1)
        if len(tries) == 1:
            self.sock = socket.socket()
            self.sock.close()
            raise TimeoutError("_ssl.c:1011: The handshake operation timed out")
        return connect(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", handshake_times_out_once)

    state = relay.handle(start(task_id, kind="image"))

    assert state["done"] is False and state["status"] == "RUNNING" and len(tries) == 2


@pytest.mark.parametrize(("given", "used"), [
    (timedelta(minutes=-40), "given"),  # the function's outage waited out before the check: spent from the budget
    (timedelta(minutes=5), "now"),  # not a start: the future
    (timedelta(hours=-27), "now"),  # older than the workflow's own timeout: not this execution's
    ("2026-13-45T99:00:00Z", "now"),
    (None, "now"),
])
def test_the_budget_counts_from_the_executions_start_when_it_is_one(relay, given, used):
    now = datetime.now(UTC)
    value = iso_z(now + given) if isinstance(given, timedelta) else given
    state = relay.handle({"action": "start", "input": {"task_id": "t-1"}, "started_at": value})
    started = datetime.strptime(state["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if used == "given":
        assert state["started_at"] == value
    else:
        assert abs((started - now).total_seconds()) < 60


def test_a_first_park_lasts_what_the_budget_has_left_after_the_input_checks_outage(make_relay):
    """The execution started 40 minutes before its input could be checked (the function throttled): the
    first park's timeout is the budget left, not the whole budget, or the park would outlast the
    execution's own timeout and the task end with no event."""
    relay = make_relay(idempotent=True, WAITING="park", PARKED_TABLE="parked")
    began = datetime.now(UTC) - timedelta(minutes=40)
    state = relay.handle({"action": "start", "input": {"task_id": "t-1", "timeout_seconds": 86_400},
                          "started_at": iso_z(began)})
    assert state["mode"] == "park"
    assert 86_400 - 2_400 - 60 <= state["park_timeout_seconds"] <= 86_400 - 2_400
