"""What the generators in tools/ share: the one line of template.yaml each writes, and the file they
rewrite, or with `--check` leave alone and exit 1 when it is stale (`make check-template`)."""

from __future__ import annotations

import re
from pathlib import Path


def write_or_check(argv: list[str], path: Path, wanted: str, stale: str) -> int:
    current = path.read_text() if path.is_file() else None
    if "--check" in argv:
        if wanted != current:
            print(f"{path.name}: {stale}")
            return 1
        return 0
    if wanted != current:
        path.write_text(wanted)
    return 0


def with_line(text: str, key: str, value: str) -> str:
    """`text` with its one `<indent>key: ...` line (a YAML entry kept on one line) set to `key: value`."""
    matches = list(re.finditer(rf"^(?P<indent> +){re.escape(key)}: .*$", text, re.MULTILINE))
    if len(matches) != 1:
        raise SystemExit(f"expected one `{key}:` line, found {len(matches)}")
    match = matches[0]
    return f"{text[: match.start()]}{match.group('indent')}{key}: {value}{text[match.end() :]}"


def yaml_single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
