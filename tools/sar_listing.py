"""The template to publish: template.yaml with the listing's `HomePageUrl` and `SourceCodeUrl`, which
exist only once the repository is public, so they are given when publishing (`make package
SOURCE_CODE_URL=https://...`) rather than kept in the template. SAR resolves no intrinsic functions in
its metadata: the addresses are written in as text, after `SemanticVersion`.

    python tools/sar_listing.py --source-code-url URL [--home-page-url URL] --out template.publish.yaml

The output is written beside template.yaml (its CodeUri and DefinitionUri paths are relative to it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
_VERSION_LINE = re.compile(r"^(\s+)SemanticVersion: .*$", re.MULTILINE)


def https_address(value: str) -> str:
    """A public https address (SAR links it on the application's page)."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value) or '"' in value:
        raise argparse.ArgumentTypeError(f"not an https address: {value!r}")
    return value


def with_addresses(template: str, *, source_code_url: str, home_page_url: str | None = None) -> str:
    """The template text with both addresses in the listing (the home page defaults to the source)."""
    if re.search(r"^\s+(HomePageUrl|SourceCodeUrl):", template, re.MULTILINE):
        raise ValueError("the template's listing already has an address: remove it from template.yaml")
    found = list(_VERSION_LINE.finditer(template))
    if len(found) != 1:
        raise ValueError("the template needs exactly one SemanticVersion line in its listing")
    indent = found[0].group(1)
    lines = (f'{indent}HomePageUrl: "{https_address(home_page_url or source_code_url)}"\n'
             f'{indent}SourceCodeUrl: "{https_address(source_code_url)}"\n')
    end = found[0].end() + 1
    return template[:end] + lines + template[end:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-code-url", required=True, type=https_address)
    parser.add_argument("--home-page-url", type=https_address)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.out.resolve().parent != ROOT:
        parser.error("--out must be beside template.yaml: its code paths are relative to it")
    text = with_addresses(TEMPLATE.read_text(), source_code_url=args.source_code_url,
                          home_page_url=args.home_page_url)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
