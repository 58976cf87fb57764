"""Fault matrix, input side: a hostile loop input is refused before any request is made, and a
context too large for an event is carried as a marker instead of losing the event."""

from __future__ import annotations

import json

import pytest
from wan_relay.errors import InvalidInput
from wan_relay.publish import MAX_CONTEXT_BYTES

from tests.conftest import completion, sample


@pytest.mark.parametrize("task_id", [
    "../../etc/passwd", "a/b", "..", "%2F", "abc%2Fdef", "has space", "x" * 10_240, "", "tab\there",
    "new\nline", "trailing-newline\n", "ünïcode", "a;rm -rf", 12345, None, ["f470bbfd"], {"id": "x"}, True, 1.5,
], ids=lambda v: repr(v)[:20])
def test_a_hostile_task_id_is_refused_before_any_request(replay, account, relay, task_id):
    with pytest.raises(InvalidInput, match="task_id") as raised:
        relay.handle({"task_id": task_id})
    assert raised.value.category == "input"
    assert replay.requests == []
    assert len(str(raised.value)) < 600  # a 10 KB id is not echoed back whole


@pytest.mark.parametrize("state", [
    {}, [], "task", None, {"task_id": "ok-1", "context": "not an object"},
    {"task_id": "ok-1", "kind": "audio"}, {"task_id": "ok-1", "poll_interval_seconds": 0},
    {"task_id": "ok-1", "timeout_seconds": -5}, {"task_id": "ok-1", "timeout_seconds": 10**9},
    {"task_id": "ok-1", "pol_interval_seconds": 5},  # a typo is not silently ignored
], ids=lambda v: json.dumps(v)[:30])
def test_a_malformed_loop_input_names_what_is_wrong(replay, account, relay, state):
    with pytest.raises(InvalidInput, match="loop input"):
        relay.handle(state)
    assert replay.requests == []


@pytest.mark.parametrize(("field", "value"), [
    ("poll_interval_seconds", "15"), ("timeout_seconds", 3600.5), ("polls", True), ("done", "false"),
    ("kind", "null"),
])
def test_a_value_of_another_json_type_is_refused_not_coerced(replay, account, relay, field, value):
    with pytest.raises(InvalidInput, match=f"loop input.*{field}"):
        relay.handle({"task_id": "ok-1", field: value})
    assert replay.requests == []


def test_an_integral_number_written_as_a_float_is_that_integer(replay, account, relay):
    # JSON does not tell 3600 from 3600.0; a CloudFormation Number parameter of 3600.0 arrives so
    answer = replay.rehost(sample("running"))
    replay.script(answer["output"]["task_id"], answer)
    state = relay.handle({"task_id": answer["output"]["task_id"], "timeout_seconds": 3600.0,
                          "poll_interval_seconds": 7.0})
    assert state["timeout_seconds"] == 3600 and isinstance(state["timeout_seconds"], int)
    assert state["poll_interval_seconds"] == 7 and isinstance(state["poll_interval_seconds"], int)
    assert state["status"] == "RUNNING" and not state["done"]


def test_a_context_too_large_for_an_event_is_replaced_by_a_marker_and_the_event_still_goes_out(
    replay, account, relay
):
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)
    huge = {"blob": "z" * 300_000}

    state = relay.handle({"task_id": task_id, "context": huge})

    context = completion(state)["context"]
    assert context["_truncated"] is True and context["_original_bytes"] > 300_000
    assert len(context["_sha256"]) == 64
    assert state["context"] is None  # the finished state carries the context once, in the event
    assert len(json.dumps(state).encode()) < 256 * 1024


def test_a_context_within_the_limit_passes_through_untouched(replay, account, relay):
    answer = sample("unknown")
    replay.script(answer["output"]["task_id"], answer)
    context = {"nested": {"list": [1, 2.5, None, "ü"], "flag": False}, "pad": "p" * (MAX_CONTEXT_BYTES - 200)}
    state = relay.handle({"task_id": answer["output"]["task_id"], "context": context})
    assert completion(state)["context"] == context
