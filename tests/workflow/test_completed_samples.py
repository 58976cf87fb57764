"""The samples in events/completed/ are exactly what the deployed workflow emits, scenario by scenario."""

from __future__ import annotations

import json

import pytest

from tests.contract.completed_samples import COMPLETED, SCENARIOS, emit


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_sample_is_what_the_workflow_emits(workflow, sleeps, name):
    expected = json.loads((COMPLETED / f"{name}.json").read_text())
    assert emit(name, workflow) == expected, "run: python -m tests.contract.completed_samples"
