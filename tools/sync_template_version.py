"""Writes the project's version (wan_relay.__version__, the one place it is set) into template.yaml's
`AWS::ServerlessRepo::Application.SemanticVersion`, which the Serverless Application Repository reads
as a literal (no intrinsic functions there).

`python tools/sync_template_version.py` rewrites the template; `--check` exits 1 when they differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from generated import with_line, write_or_check
from wan_relay import __version__

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

def synced(text: str) -> str:
    """The template with the listing's `SemanticVersion` (its one line) set to the package's version."""
    return with_line(text, "SemanticVersion", __version__)


def main(argv: list[str]) -> int:
    stale = f"SemanticVersion is not {__version__} (wan_relay.__version__); run make template-sync"
    return write_or_check(argv, TEMPLATE, synced(TEMPLATE.read_text()), stale)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
