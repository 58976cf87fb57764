"""Text another party wrote (OSS's XML error body, DashScope's failure reasons and error messages)
reaches the event and the errors bounded, on one printable line, and without a presigned URL's
query string (a credential)."""

from __future__ import annotations

import copy

import pytest
from wan_relay.errors import InvalidInput
from wan_relay.foreign_text import MESSAGE_CHARS
from wan_relay_local.replay import Media, Reply

from tests.conftest import completion, sample
from tests.faults.test_media_faults import TASK, video_task

SIGNED_URL = ("https://dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com/a.png"
              "?Expires=1&OSSAccessKeyId=LTAI5tLeaked&Signature=SIGNATURE-LEAKED")
HOSTILE = ("Request has expired.\n\r{\"level\":\"INFO\",\"message\":\"forged log line\"}\x1b[31m \u202egnp.exe "
           f"\u200b see {SIGNED_URL} x-oss-signature=ALSO-LEAKED " + "A" * 20_000)


def assert_fit_to_repeat(text: str) -> None:
    assert len(text) <= MESSAGE_CHARS
    assert text.isprintable(), repr(text)  # no newline, escape, bidi override, zero-width space
    assert "LEAKED" not in text and "LTAI5t" not in text
    assert "https://dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com/a.png?<redacted>" in text


def test_an_oss_error_body_is_repeated_bounded_on_one_line_without_the_signature(replay, account, relay):
    xml = f"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>{HOSTILE}</Message></Error>"
    video_task(replay, Media(b"", status=403, error_body=xml.encode()))

    detail = completion(relay.handle({"task_id": TASK}))

    assert detail["error"]["code"] == "MediaExpired"  # still understood: OSS's "Request has expired."
    assert_fit_to_repeat(detail["error"]["message"])
    assert_fit_to_repeat(detail["failures"][0]["message"])


def test_a_failed_tasks_reason_from_dashscope_is_repeated_fit_to_repeat(replay, account, relay):
    answer = copy.deepcopy(sample("failed_output_code"))
    answer["output"]["message"] = HOSTILE
    answer["output"]["code"] = "DataInspectionFailed\n\x00" + "X" * 500
    replay.script(answer["output"]["task_id"], answer)

    detail = completion(relay.handle({"task_id": answer["output"]["task_id"]}))

    assert detail["status"] == "FAILED"
    assert_fit_to_repeat(detail["error"]["message"])
    assert detail["error"]["code"].startswith("DataInspectionFailed ") and len(detail["error"]["code"]) <= 100
    assert detail["error"]["code"].isprintable()


def test_an_items_failure_reason_from_dashscope_is_repeated_fit_to_repeat(replay, account, relay):
    answer = replay.rehost(sample("wan2.5-t2i_partial"))
    answer["output"]["results"][1]["message"] = HOSTILE
    replay.script(answer["output"]["task_id"], answer)

    detail = completion(relay.handle({"task_id": answer["output"]["task_id"]}))

    assert detail["status"] == "PARTIAL"
    assert_fit_to_repeat(detail["failures"][0]["message"])


def test_a_dashscope_error_message_is_repeated_in_the_error_fit_to_repeat(replay, account, relay):
    replay.script(TASK, Reply({"code": "InvalidParameter", "message": HOSTILE, "request_id": "r\n1"}, status=400))

    with pytest.raises(InvalidInput) as raised:
        relay.handle({"task_id": TASK})

    message = raised.value.message
    assert message.isprintable() and "LEAKED" not in message and len(message) < 600
    assert message.startswith("DashScope answered HTTP 400 InvalidParameter: Request has expired.")
