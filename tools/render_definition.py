"""Prints the state machine's definition as a deployment has it: template.yaml's DefinitionSubstitutions
applied, the stack's own resources standing in by placeholder names. The ASL validator reads this, not
statemachine/*.asl.json itself, where a Task's `Resource` (`arn:${Partition}:states:::lambda:invoke`) is
an ARN only once substituted."""

from __future__ import annotations

import sys

from wan_relay_local.stack import STATE_MACHINE, Template


def main() -> int:
    template = Template()
    for logical_id in template.doc["Resources"]:
        template.refs.setdefault(logical_id, f"wan-relay-{logical_id}")
        template.attributes[(logical_id, "Arn")] = f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}"
        template.attributes[(logical_id, "Name")] = f"wan-relay-{logical_id}"
    sys.stdout.write(template.definition(STATE_MACHINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
