"""Hostile answers, generated: whatever JSON DashScope (or something in between) sends, the
normalizer returns a task or raises the project's ProtocolError, never anything else."""

from __future__ import annotations

import copy
import json

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wan_relay.errors import ProtocolError
from wan_relay.models import Task
from wan_relay.normalize import normalize

from tests.conftest import EVENTS, sample

REAL_ANSWERS = [json.loads(p.read_text()) for p in sorted((EVENTS / "dashscope").glob("*.json"))]

#: characters, lone UTF-16 surrogates among them: JSON can escape one (`"\ud83d"`), no UTF-8 can write it
characters = st.characters() | st.characters(categories=["Cs"])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(characters, max_size=40),
    st.sampled_from(["SUCCEEDED", "FAILED", "PENDING", "UNKNOWN", "https://x.aliyuncs.com/a.png?Expires=99",
                     "2026-01-09 17:18:17.901", "9999-99-99 99:99:99", "0001-01-01 00:00:00",
                     "https://x.aliyuncs.com/a.png?Expires=-62135596800", "image", "text", "video"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                     st.dictionaries(st.text(characters, max_size=12), inner, max_size=6)),
    max_leaves=30,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@st.composite
def mutated_answers(draw):
    """A real answer with one spot replaced by arbitrary JSON, or deleted, or its text by other text."""
    answer = copy.deepcopy(draw(st.sampled_from(REAL_ANSWERS)))
    paths = [p for p in _paths(answer) if p]
    path = draw(st.sampled_from(paths))
    parent = answer
    for step in path[:-1]:
        parent = parent[step]
    change = draw(st.sampled_from(["delete", "replace", "retext"]))
    if change == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif change == "retext" and isinstance(parent[path[-1]], str):
        parent[path[-1]] = draw(st.text(characters, min_size=1, max_size=40))
    else:
        parent[path[-1]] = draw(json_values)
    return answer


def _normalizes_or_refuses(answer) -> None:
    try:
        task = normalize(answer)
    except ProtocolError:
        return
    assert isinstance(task, Task)
    # whatever came in, the task is strict JSON as the relay answers it (no NaN, no odd types, valid
    # UTF-8), and a valid Task: every type and constraint of the model holds
    as_json = msgspec.to_builtins(task)
    json.dumps(as_json, allow_nan=False, ensure_ascii=False).encode()
    assert msgspec.convert(as_json, Task) == task
    assert all(isinstance(m.url, str) and m.url for m in task.media)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_normalizes_or_raises_the_protocol_error(answer):
    _normalizes_or_refuses(answer)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_answers())
def test_mutated_real_answers_normalize_or_raise_the_protocol_error(answer):
    _normalizes_or_refuses(answer)


def test_a_time_before_the_year_1000_is_no_time_rather_than_one_the_task_model_refuses():
    answer = sample("running")
    answer["output"]["submit_time"] = "0999-01-01 00:00:00.000"  # `%Y` writes a 3-digit year on Linux
    assert normalize(answer).submitted_at is None


def test_usage_numbers_json_cannot_carry_arrive_as_null():
    answer = sample("wan2.1-t2v_succeeded")
    answer["usage"].update(duration=float("nan"), fps=float("inf"), extra=[float("-inf"), 1])
    task = normalize(answer)
    assert task.usage.duration_seconds is None and task.usage.fps is None
    assert task.usage.raw["duration"] is None and task.usage.raw["extra"] == [None, 1]
