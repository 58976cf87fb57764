"""Writes the project's version (wan_relay.__version__, the one place it is set) into template.yaml's
`AWS::ServerlessRepo::Application.SemanticVersion`, which the Serverless Application Repository reads
as a literal (no intrinsic functions there).

`python tools/sync_template_version.py` rewrites the template; `--check` exits 1 when they differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from wan_relay import __version__

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

# the one `SemanticVersion:` line, in the template's Metadata
_VERSION_LINE = re.compile(r"^(?P<indent>\s+)SemanticVersion: \S+$", re.MULTILINE)


def synced(text: str) -> str:
    matches = list(_VERSION_LINE.finditer(text))
    if len(matches) != 1:
        raise SystemExit(f"expected one `SemanticVersion:` line in {TEMPLATE.name}, found {len(matches)}")
    match = matches[0]
    return text[: match.start()] + f"{match.group('indent')}SemanticVersion: {__version__}" + text[match.end() :]


def main(argv: list[str]) -> int:
    current = TEMPLATE.read_text()
    wanted = synced(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{TEMPLATE.name}: SemanticVersion is not {__version__} (wan_relay.__version__); make template-sync")
            return 1
        return 0
    if wanted != current:
        TEMPLATE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
