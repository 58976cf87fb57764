"""The event contract: the published schema is the model's, and the samples are valid events of every
status (that they are exactly what the workflow emits: tests/workflow/test_completed_samples.py)."""

from __future__ import annotations

import json

import jsonschema
from wan_relay.models import DEFAULT_EVENT_SOURCE, DETAIL_TYPE_COMPLETED
from wan_relay.schema import DRAFT4_FILE, SCHEMA_FILE, completion_schema, render, to_draft4

from tests.conftest import ROOT

from .completed_samples import COMPLETED, SCENARIOS

SCHEMAS = ROOT / "schemas"


def test_the_published_schemas_are_generated_from_the_event_model():
    schema = completion_schema()
    assert (SCHEMAS / SCHEMA_FILE).read_text() == render(schema), "run: make schema"
    assert (SCHEMAS / DRAFT4_FILE).read_text() == render(to_draft4(schema)), "run: make schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft4Validator.check_schema(to_draft4(schema))


def test_every_scenario_has_a_sample_and_every_sample_is_valid():
    assert sorted(p.stem for p in COMPLETED.glob("*.json")) == sorted(SCENARIOS)
    statuses = set()
    for path in COMPLETED.glob("*.json"):
        event = json.loads(path.read_text())
        assert event["source"] == DEFAULT_EVENT_SOURCE and event["detail-type"] == DETAIL_TYPE_COMPLETED
        jsonschema.validate(event["detail"], completion_schema())
        jsonschema.validate(event["detail"], to_draft4(completion_schema()))
        statuses.add(event["detail"]["status"])
    assert statuses == {"SUCCEEDED", "PARTIAL", "FAILED", "CANCELED", "UNKNOWN", "TIMED_OUT", "MEDIA_UNAVAILABLE"}

