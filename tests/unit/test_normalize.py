"""Every DashScope answer shape reduces to one task model (pure, no I/O)."""

from __future__ import annotations

import pytest
from wan_relay.errors import ProtocolError
from wan_relay.normalize import china_time_to_iso, normalize, url_expiry

from tests.conftest import sample


def test_wan26_image_answer_yields_its_image_and_utc_times():
    task = normalize(sample("wan2.6-t2i_succeeded"))
    assert task.status == "SUCCEEDED" and task.terminal
    assert task.kind == "image"
    assert [(m.index, m.type) for m in task.media] == [(0, "image")]
    assert task.media[0].url.startswith("https://dashscope-463f.oss-accelerate.aliyuncs.com/")
    assert task.media[0].expires_at == "2026-01-10T09:18:45.000Z"  # Expires=, 24 h after the task ended
    # China time (UTC+8), no zone marker -> UTC
    assert task.submitted_at == "2026-01-09T09:18:17.901Z"
    assert task.ended_at == "2026-01-09T09:18:45.544Z"
    assert task.usage.image_count == 1 and task.usage.size == "1280*1280"
    assert task.request_id == "815505c6-7c3d-49d7-b197-4f0d4a8c1e2a"


def test_wan26_interleaved_answer_keeps_text_and_stores_only_images():
    task = normalize(sample("wan2.6-image_interleaved_succeeded"))
    assert [m.index for m in task.media] == [0, 1]
    assert [t.text for t in task.texts] == [
        "Step 1: sketch the lighthouse on the cliff.",
        "Step 2: add the storm clouds and the beam of light.",
    ]


def test_wan25_partial_answer_lists_the_failed_image_at_its_position():
    task = normalize(sample("wan2.5-t2i_partial"))
    assert [m.index for m in task.media] == [0, 2]
    assert [(f.index, f.code) for f in task.failures] == [(1, "DataInspectionFailed")]
    assert task.prompt.original == "a red fox in fresh snow, morning light"
    assert task.prompt.actual.startswith("A red fox stands in fresh powder snow")


@pytest.mark.parametrize(
    ("name", "duration", "resolution", "ratio"),
    [
        ("wan2.7-i2v_succeeded", 15.0, 720, None),
        ("wan2.1-t2v_succeeded", 5.0, 720, "1280*720"),  # SR given as a string
        ("wan2.2-animate_succeeded", 8.04, None, "720P"),
    ],
)
def test_video_answers_of_every_generation_yield_one_video_and_normalized_usage(name, duration, resolution, ratio):
    task = normalize(sample(name))
    assert task.kind == "video"
    assert [(m.index, m.type) for m in task.media] == [(0, "video")]
    assert task.usage.duration_seconds == duration
    assert task.usage.resolution == resolution
    assert task.usage.ratio == ratio
    assert task.usage.raw == sample(name)["usage"]


def test_wan22_animate_results_object_is_read_like_a_list():
    task = normalize(sample("wan2.2-animate_succeeded"))
    assert task.media[0].url.endswith(".mp4?" + task.media[0].url.split("?", 1)[1])
    assert task.usage.fps == 30


@pytest.mark.parametrize(
    ("name", "code"),
    [("failed_output_code", "DataInspectionFailed"), ("failed_top_level_code", "InternalError.Algo")],
)
def test_failed_answers_carry_code_and_message_wherever_the_model_puts_them(name, code):
    task = normalize(sample(name))
    assert task.status == "FAILED" and task.terminal
    assert task.error_code == code
    assert task.error_message


@pytest.mark.parametrize(("name", "terminal"), [
    ("pending", False), ("running", False), ("suspended", False), ("canceled", True), ("unknown", True),
])
def test_status_decides_whether_the_task_is_over(name, terminal):
    assert normalize(sample(name)).terminal is terminal


def test_an_unrecognised_status_is_not_terminal():
    answer = sample("running")
    answer["output"]["task_status"] = "QUEUED_FOR_REVIEW"
    task = normalize(answer)
    assert task.status == "QUEUED_FOR_REVIEW" and not task.terminal


def test_a_task_status_over_64_characters_is_a_protocol_error():
    """The status travels in the loop state between polls: a known one is short. Spaces around it do not count."""
    answer = sample("running")
    answer["output"]["task_status"] = " " + "Q" * 64 + " "
    assert normalize(answer).status == "Q" * 64
    answer["output"]["task_status"] = "Q" * 65
    with pytest.raises(ProtocolError, match="task_status is over 64 characters"):
        normalize(answer)


@pytest.mark.parametrize("answer", [
    [], "SUCCEEDED", {"request_id": "x"}, {"output": []}, {"output": {"task_id": "t"}},
    {"output": {"task_id": "t", "task_status": 3}},
    {"output": {"task_id": "t", "task_status": "SUCCEEDED", "choices": {"a": 1}}},
    {"output": {"task_id": "t", "task_status": "SUCCEEDED", "results": "http://x"}},
])
def test_malformed_answers_raise_the_protocol_error(answer):
    with pytest.raises(ProtocolError):
        normalize(answer)


def test_an_answer_about_another_task_is_refused():
    with pytest.raises(ProtocolError, match="another task"):
        normalize(sample("pending"), expected_task_id="somebody-else")


def test_times_and_expiry_parse_or_stay_empty():
    assert china_time_to_iso("2026-01-09 00:00:00") == "2026-01-08T16:00:00.000Z"
    assert china_time_to_iso("yesterday") is None
    assert url_expiry("https://h/x.png?Expires=0") == "1970-01-01T00:00:00.000Z"
    assert url_expiry("https://h/x.png?x-oss-date=20260109T100000Z&x-oss-expires=86400") == "2026-01-10T10:00:00.000Z"
    assert url_expiry("https://h/x.png?Expires=soon") is None


def test_an_answer_listing_more_results_than_a_task_can_carry_is_a_protocol_error():
    from wan_relay.normalize import MAX_RESULT_ITEMS

    answer = sample("wan2.5-t2i_partial")
    results = answer["output"]["results"]
    answer["output"]["results"] = (results * MAX_RESULT_ITEMS)[:MAX_RESULT_ITEMS]
    assert len(normalize(answer).media) + len(normalize(answer).failures) == MAX_RESULT_ITEMS  # at the edge
    answer["output"]["results"].append(results[0])
    with pytest.raises(ProtocolError, match=f"more than {MAX_RESULT_ITEMS} results"):
        normalize(answer)


@pytest.mark.parametrize("field", ["duration", "SR", "video_count", "fps"])
def test_a_usage_number_past_a_floats_range_is_no_number_and_the_task_is_still_read(field):
    """A JSON integer has no size limit, a float does: 10**400 in usage is no value, not an OverflowError
    that would keep a finished task from ever being relayed."""
    answer = sample("wan2.7-i2v_succeeded")
    answer["usage"][field] = 10**400
    task = normalize(answer)
    assert task.status == "SUCCEEDED" and [m.type for m in task.media] == ["video"]
