"""docs/architecture.md draws the stack as it is: every resource of template.yaml and every state of the
workflow, regenerated whenever either changes."""

from __future__ import annotations

import json
import re
import sys

from cfnlint.decode import cfn_yaml

from tests.conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"


def drawing() -> object:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import draw_stack_diagram
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return draw_stack_diagram


def test_the_drawing_is_current():
    assert DOC.read_text() == drawing().document(), "run: make template-sync"


def test_every_resource_and_every_state_is_drawn_with_its_ways_out():
    text = DOC.read_text()
    resources = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]
    for logical_id, resource in resources.items():
        assert re.search(rf'^\s+{logical_id}\["{logical_id}<br/>{resource["Type"].replace("AWS::", "")}"\]$',
                         text, re.MULTILINE), logical_id
    states = json.loads((ROOT / "statemachine" / "poll_task.asl.json").read_text())["States"]
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", [])),
                   *(c["Next"] for c in state.get("Catch", []))]
        for target in filter(None, targets):
            assert re.search(rf"^\s+{name} .*-[->] {target}$", text, re.MULTILINE), f"{name} -> {target}"


def test_a_resource_that_names_another_is_drawn_pointing_at_it():
    draw = drawing()
    template = {"Resources": {
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Reader": {"Type": "AWS::Serverless::Function", "Properties": {
            "Environment": {"Variables": {"QUEUE": {"Ref": "Queue"}}},
            "Policies": [{"Statement": [{"Resource": {"Fn::GetAtt": ["Queue", "Arn"]}}]}],
            "Description": {"Fn::Sub": "reads ${Queue.QueueName}"},
        }},
    }}
    assert draw.uses(template["Resources"]) == {("Reader", "Queue"): ["Environment", "Policies", "Description"]}
