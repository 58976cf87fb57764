"""Writes the registry schema (schemas/wan-task-completed.draft4.json) into template.yaml's
`CompletedEventSchema.Content`, which CloudFormation only takes inline.

`python tools/sync_template_schema.py` rewrites the template; `--check` exits 1 when they differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from generated import with_line, write_or_check, yaml_single_quoted

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
DRAFT4 = ROOT / "schemas" / "wan-task-completed.draft4.json"


def synced(template: str) -> str:
    """The template with `CompletedEventSchema.Content` (its one `Content:` line) set to the schema."""
    compact = json.dumps(json.loads(DRAFT4.read_text()), separators=(",", ":"), sort_keys=True)
    return with_line(template, "Content", yaml_single_quoted(compact))


def main(argv: list[str]) -> int:
    stale = f"CompletedEventSchema.Content differs from {DRAFT4.name}; run make template-schema"
    return write_or_check(argv, TEMPLATE, synced(TEMPLATE.read_text()), stale)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
