"""Writes the registry schema (schemas/wan-task-completed.draft4.json) into template.yaml's
`CompletedEventSchema.Content`, which CloudFormation only takes inline.

`python tools/sync_template_schema.py` rewrites the template; `--check` exits 1 when they differ.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
DRAFT4 = ROOT / "schemas" / "wan-task-completed.draft4.json"

# the one `Content:` line of the CompletedEventSchema resource, a single-quoted YAML scalar
_CONTENT_LINE = re.compile(r"^(?P<indent>\s+)Content: '.*'$", re.MULTILINE)


def content_line(indent: str) -> str:
    compact = json.dumps(json.loads(DRAFT4.read_text()), separators=(",", ":"), sort_keys=True)
    return f"{indent}Content: '{compact.replace(chr(39), chr(39) * 2)}'"


def synced(template: str) -> str:
    matches = list(_CONTENT_LINE.finditer(template))
    if len(matches) != 1:
        raise SystemExit(f"expected one single-quoted `Content:` line in {TEMPLATE.name}, found {len(matches)}")
    match = matches[0]
    return template[: match.start()] + content_line(match.group("indent")) + template[match.end() :]


def main(argv: list[str]) -> int:
    current = TEMPLATE.read_text()
    wanted = synced(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{TEMPLATE.name}: CompletedEventSchema.Content differs from {DRAFT4.name}; run make template-schema")
            return 1
        return 0
    if wanted != current:
        TEMPLATE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
