"""Draws the stack (docs/architecture.md, Mermaid) from template.yaml and the state machine's definition:
the resources in the template's own sections, which resource uses which (its Ref, GetAtt and Sub of
another, labelled with the property that holds them), what lies outside the stack, and the states a
task goes through. GitHub renders the diagrams; the text stays reviewable.

`python tools/draw_stack_diagram.py` rewrites docs/architecture.md; `--check` exits 1 when it is stale.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml
from generated import write_or_check
from wan_relay import metrics

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
OUTPUT = ROOT / "docs" / "architecture.md"

_SECTION = re.compile(r"^  # --- (?P<name>.+?) -+$")
_RESOURCE = re.compile(r"^  (?P<id>[A-Za-z0-9]+):$")
_SUB_NAME = re.compile(r"\$\{(?P<name>[A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")
#: what SAM makes of a resource's `Events` (only EventBridgeRule is used here)
_EVENT_SHAPES = {"EventBridgeRule": "EventBridge rule"}


def sections(text: str, resources: dict[str, Any]) -> dict[str, list[str]]:
    """The template's `# --- name ---` sections and the resources declared under each, in order."""
    grouped: dict[str, list[str]] = defaultdict(list)
    current = "resources"
    in_resources = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            in_resources = line.startswith("Resources:")
            continue
        if not in_resources:
            continue
        if section := _SECTION.match(line):
            current = section.group("name")
        elif (resource := _RESOURCE.match(line)) and resource.group("id") in resources:
            grouped[current].append(resource.group("id"))
    return dict(grouped)


def references(node: Any, resources: dict[str, Any]) -> Iterator[str]:
    """Every resource a template fragment names through Ref, Fn::GetAtt or Fn::Sub."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str) and value in resources:
                yield value
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if target in resources:
                    yield target
            elif key == "Fn::Sub":
                pattern = value[0] if isinstance(value, list) else value
                yield from (m.group("name") for m in _SUB_NAME.finditer(pattern) if m.group("name") in resources)
                if isinstance(value, list):
                    yield from references(value[1], resources)
            else:
                yield from references(value, resources)
    elif isinstance(node, list):
        for item in node:
            yield from references(item, resources)


def uses(resources: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(user, used) -> the properties of `user` that name `used`. The dashboard is left out: it names
    everything it graphs, and uses nothing."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            continue
        for prop, value in resource.get("Properties", {}).items():
            for target in references(value, resources):
                if target != logical_id and prop not in edges[(logical_id, target)]:
                    edges[(logical_id, target)].append(prop)
    return {edge: props for edge, props in edges.items() if props}


def _node(logical_id: str, resource: dict[str, Any]) -> str:
    kind = resource["Type"].replace("AWS::", "")
    return f'{logical_id}["{logical_id}<br/>{kind}"]'


def resource_diagram(text: str, template: dict[str, Any]) -> list[str]:
    resources = template["Resources"]
    lines = ["flowchart LR"]
    lines.append('  caller(["caller: StartExecution, or a Wan Task Submitted event"])')
    lines.append('  dashscope(["DashScope API: GET /tasks/{id}"])')
    lines.append('  oss(["media hosts: ALLOWED_MEDIA_URLS"])')
    lines.append('  bus(["EventBridge bus: EventBusName"])')
    lines.append('  subscribers(["subscribers: rules on Wan Task Completed"])')
    for number, (name, members) in enumerate(sections(text, resources).items()):
        lines.append(f'  subgraph section{number}["{name}"]')
        lines.extend(f"    {_node(m, resources[m])}" for m in members)
        lines.append("  end")
    for (user, used), props in sorted(uses(resources).items()):
        lines.append(f'  {user} -- "{", ".join(props)}" --> {used}')
    lines.extend(_own_metric_alarms(template))
    for logical_id, resource in sorted(resources.items()):
        properties = resource.get("Properties", {})
        for event in properties.get("Events", {}).values():
            shape = _EVENT_SHAPES.get(event.get("Type"), event.get("Type"))
            lines.append(f'  bus -- "{shape}" --> {logical_id}')
        variables = properties.get("Environment", {}).get("Variables", {})
        if "DASHSCOPE_BASE_URL" in variables:
            lines.append(f'  {logical_id} -- "queries the task" --> dashscope')
        if "ALLOWED_MEDIA_URLS" in variables:
            lines.append(f'  {logical_id} -- "streams the media" --> oss')
        for service in _definition_services(properties):
            if service == "events":
                lines.append(f'  {logical_id} -- "puts Wan Task Completed" --> bus')
        if resource["Type"] == "AWS::Serverless::StateMachine":
            lines.append(f'  caller -- "starts a task" --> {logical_id}')
    lines.append('  caller -- "puts Wan Task Submitted" --> bus')
    lines.append('  bus -- "Wan Task Completed" --> subscribers')
    return lines


def _own_metric_alarms(template: dict[str, Any]) -> Iterator[str]:
    """An alarm on one of the stack's own metrics (wan_relay.metrics) watches whoever emits it."""
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    resources = template["Resources"]
    emitters = {
        source: next(i for i, r in resources.items() if r["Type"] == kind)
        for source, kind in (("function", "AWS::Serverless::Function"),
                             ("state machine", "AWS::Serverless::StateMachine"))
    }
    by_name = {metric.name: metric for metric in metrics.ALL}
    for logical_id, resource in sorted(resources.items()):
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and properties.get("Namespace") == namespace:
            metric = by_name.get(properties.get("MetricName", ""))
            if metric is not None:
                yield f'  {logical_id} -- "{metric.name}" --> {emitters[metric.source]}'


def _definition(properties: dict[str, Any]) -> dict[str, Any] | None:
    uri = properties.get("DefinitionUri")
    return json.loads((ROOT / uri).read_text()) if isinstance(uri, str) else properties.get("Definition")


def _definition_services(properties: dict[str, Any]) -> set[str]:
    """The AWS services a state machine's Task states call (`arn:aws:states:::SERVICE:ACTION`)."""
    definition = _definition(properties)
    if definition is None:
        return set()
    resources = {state.get("Resource", "") for state in _states(definition)}
    return {r.split(":::", 1)[1].split(":")[0] for r in resources if ":::" in r}


def _states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in definition.get("States", {}).values():
        yield state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"])


def _short(errors: list[str]) -> str:
    return errors[0] if len(errors) == 1 else f"{errors[0]} +{len(errors) - 1}"


def workflow_diagram(definition: dict[str, Any]) -> list[str]:
    """The states of one execution and every way from one to the next, as the definition says."""
    lines = ["flowchart TD", f"  start((start)) --> {definition['StartAt']}"]
    for name, state in definition["States"].items():
        kind = state["Type"]
        lines.append(f'  {name}["{name}<br/>{kind}"]')
        if "Next" in state:
            lines.append(f"  {name} --> {state['Next']}")
        for choice in state.get("Choices", []):
            condition = " ".join(f"{k} {json.dumps(v)}" for k, v in choice.items() if k not in ("Next", "Variable"))
            condition = f"{choice.get('Variable', '')} {condition}".strip()
            lines.append(f'  {name} -- "{condition}" --> {choice["Next"]}')
        if "Default" in state:
            lines.append(f'  {name} -- "otherwise" --> {state["Default"]}')
        for catch in state.get("Catch", []):
            lines.append(f'  {name} -. "{_short(catch["ErrorEquals"])}" .-> {catch["Next"]}')
        if kind in ("Succeed", "Fail") or state.get("End"):
            lines.append(f"  {name} --> done((done))")
    return lines


def document() -> str:
    text = TEMPLATE.read_text()
    template = cfn_yaml.loads(text)
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    definition = _definition(machines[0]["Properties"])
    assert definition is not None
    return "\n".join([
        "# The stack, drawn",
        "",
        "Generated from `template.yaml` and the state machine's definition by `make template-sync`",
        "(tools/draw_stack_diagram.py); `make check-template` fails when it is stale. Do not edit by hand.",
        "",
        "## Resources, and what each one uses",
        "",
        "An arrow goes from a resource to one it names (its Ref, GetAtt or Sub), labelled with the property",
        "that names it; the rounded boxes lie outside the stack.",
        "",
        "```mermaid",
        *resource_diagram(text, template),
        "```",
        "",
        "## How a task flows through the workflow",
        "",
        "One execution per task: every state and every way from one to the next. Dotted arrows are Catch",
        "paths, labelled with the first error they catch (and how many more).",
        "",
        "```mermaid",
        *workflow_diagram(definition),
        "```",
        "",
    ])


def main(argv: list[str]) -> int:
    return write_or_check(argv, OUTPUT, document(), "stale; run make template-sync")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
