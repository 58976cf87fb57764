"""What an answer's texts and times can hold that a task cannot: a lone UTF-16 surrogate (valid JSON,
not valid Unicode), a zero date, a year before 1000, or something the normalizer itself trips on. The
task is still relayed, its one event valid UTF-8; what cannot be read is backed off, never a failed
execution."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import wan_relay.relay as relay_module
from wan_relay.normalize import normalize
from wan_relay_local.replay import Reply

from tests.conftest import completion, sample

LONE = "\ud83d"  # half of an emoji's UTF-16 pair; JSON writes it "\ud83d"
#: the fields that are not free text: ids, statuses, times, what the answer's items are
NOT_TEXT = {"task_id", "task_status", "submit_time", "scheduled_time", "end_time", "type", "finish_reason", "role"}


def with_lone_surrogates(value: Any, name: str | None = None) -> Any:
    """`value` with a lone surrogate at the end of every text it carries (not its URLs), and in a key."""
    if isinstance(value, dict):
        return {key: with_lone_surrogates(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [with_lone_surrogates(item, name) for item in value]
    if isinstance(value, str) and name not in NOT_TEXT and not value.startswith("http"):
        return value + LONE
    return value


def written_as_utf8(value: Any) -> bytes:
    """`value` as Lambda's runtime answers it and EventBridge carries it: UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False).encode()


@pytest.mark.parametrize("name", ["failed_output_code", "failed_top_level_code", "wan2.5-t2i_partial",
                                  "wan2.6-image_interleaved_succeeded", "wan2.7-i2v_succeeded"])
def test_lone_surrogates_in_every_text_of_an_answer_still_make_one_valid_event(replay, account, relay, name):
    answer = with_lone_surrogates(replay.rehost(sample(name)))
    answer["output"].setdefault("orig_prompt", "a cat" + LONE)
    answer["usage"] = {**answer.get("usage", {}), "note" + LONE: "seen" + LONE}
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)  # json.dumps writes each surrogate as the escape "\ud83d"

    state = relay.handle({"task_id": task_id})

    detail = completion(state)
    written_as_utf8(state)  # raised UnicodeEncodeError, and failed the execution with no event
    assert detail["request_id"].endswith("\ufffd")
    assert detail["prompt"]["original"].endswith("\ufffd")
    assert detail["usage"]["raw"]["note\ufffd"] == "seen\ufffd"
    assert all(text["text"].endswith("\ufffd") for text in detail["texts"])
    if detail["status"] == "FAILED":
        assert detail["error"]["message"].endswith("\ufffd")
    else:
        assert len(detail["media"]) == len(account.objects()) > 0


@pytest.mark.parametrize("zero", ["0001-01-01 00:00:00", "0001-01-01 07:59:59.999", "0001-01-01 08:05:43",
                                  "1970-01-01 08:00:00"])
def test_a_zero_date_in_an_answer_is_no_time_and_the_task_is_announced(replay, account, relay, zero):
    answer = copy.deepcopy(sample("canceled"))
    answer["output"]["scheduled_time"] = zero  # never scheduled: the task was canceled while pending
    answer["output"]["end_time"] = zero
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "CANCELED"
    assert detail["timing"]["submitted_at"] == "2026-01-09T09:18:17.901Z"
    assert (detail["timing"]["scheduled_at"], detail["timing"]["ended_at"]) == (None, None)
    assert (detail["timing"]["queue_seconds"], detail["timing"]["run_seconds"]) == (None, None)


def test_a_media_url_signed_before_the_year_1000_keeps_its_task_readable(replay, account, relay):
    answer = replay.rehost(sample("wan2.7-i2v_succeeded"))
    answer["output"]["video_url"] = answer["output"]["video_url"].split("?")[0] + (
        "?x-oss-date=09990101T000000Z&x-oss-expires=5&x-oss-signature=s")
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "SUCCEEDED"  # was a ProtocolError on Linux ("999-01-01T..."), then TIMED_OUT
    assert detail["media"][0]["source_expires_at"] == "0999-01-01T00:00:05.000Z"


def test_an_exception_of_the_normalizers_own_is_an_unreadable_answer_backed_off(replay, account, relay,
                                                                                 monkeypatch):
    answer = sample("failed_output_code")
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)

    def slips(answer: Any, **kwargs: Any) -> Any:
        raise KeyError(answer["output"]["message"])  # a bug whose text quotes the answer

    monkeypatch.setattr(relay_module, "normalize", slips)
    state = relay.handle({"task_id": task_id})

    assert (state["done"], state["troubles"], state["event"]) == (False, 1, None)
    assert state["last_error"]["code"] == "ProtocolError" and state["last_error"]["retryable"] is True
    assert "KeyError" in state["last_error"]["message"]
    assert answer["output"]["message"] not in json.dumps(state)
    assert account.objects() == {}

    monkeypatch.setattr(relay_module, "normalize", normalize)
    assert completion(relay.handle(state))["status"] == "FAILED"


def test_an_answer_nested_deeper_than_the_json_parser_goes_is_an_unreadable_answer_backed_off(replay, account,
                                                                                             relay):
    nested = b"[" * 100_000 + b"]" * 100_000  # 200 KB, within a task answer's 1 MiB
    body = b'{"output": {"task_id": "t-1", "task_status": "SUCCEEDED", "x": ' + nested + b"}}"
    replay.script("t-1", Reply(body, raw=True, headers={"Content-Type": "application/json"}))

    state = relay.handle({"task_id": "t-1"})  # raised RecursionError, and failed the execution with no event

    assert (state["done"], state["troubles"], state["last_error"]["code"]) == (False, 1, "ProtocolError")
    assert account.objects() == {}
