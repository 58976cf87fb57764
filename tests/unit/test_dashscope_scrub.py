"""The key a query was sent with never comes back out of the client: DashScope's 200 answers carry the
submitter's prompts and DashScope's messages, and a server may echo the Authorization header, so the key
is scrubbed from every string of the decoded answer, however it was spelled in JSON."""

from __future__ import annotations

import json

import pytest
from wan_relay.dashscope import DashScopeClient
from wan_relay.errors import ProtocolError
from wan_relay_local.replay import ReplayDashScope, Reply

from tests.conftest import API_KEY, sample


def served(body: bytes, content_type: str = "application/json") -> dict:
    with ReplayDashScope(api_key=API_KEY) as server:
        server.script("t-1", Reply(body, raw=True, headers={"Content-Type": content_type}))
        return DashScopeClient(server.base_url, API_KEY).get_task("t-1")


def test_the_key_is_scrubbed_from_every_string_of_a_200_answer_names_and_nested_values_too():
    answer = sample("failed_output_code")
    answer["output"]["message"] = f"bad key {API_KEY}"
    answer["output"][f"x-{API_KEY}"] = [{"deep": [f"{API_KEY}{API_KEY}"]}]
    answer["output"]["nested"] = json.loads("[" * 500 + json.dumps(API_KEY) + "]" * 500)

    payload = served(json.dumps(answer).encode())

    assert API_KEY not in json.dumps(payload)
    assert payload["output"]["message"] == "bad key <redacted>"
    assert payload["output"]["x-<redacted>"] == [{"deep": ["<redacted><redacted>"]}]
    assert payload["output"]["code"] == "DataInspectionFailed"  # the rest is as DashScope sent it


def test_a_key_spelled_with_json_escapes_is_scrubbed_as_decoded():
    escaped = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    body = b'{"output": {"task_id": "t-1", "task_status": "FAILED", "message": "key \\"' + escaped.encode() + b'\\""}}'
    assert API_KEY.encode() not in body

    assert served(body)["output"]["message"] == 'key "<redacted>"'


def test_a_key_echoed_in_the_content_type_of_an_answer_that_is_not_json_stays_out_of_the_error():
    with pytest.raises(ProtocolError) as raised:
        served(b"<html>", content_type=f"text/html; key={API_KEY}")
    assert API_KEY not in str(raised.value) and "text/html; key=<redacted>" in str(raised.value)
