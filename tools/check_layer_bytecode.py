"""Checks a built layer (`sam build` output): every module in it comes with bytecode for the runtime's
Python that Lambda uses as it is (unchecked-hash .pyc), so no cold start compiles a module from source.

`python tools/check_layer_bytecode.py .venv-checks/sam-build/RelayLayer/python [cpython-313]`
"""

from __future__ import annotations

import sys
from pathlib import Path

#: PEP 552 flags: bit 0 hash-based, bit 1 check the source; hash-based and unchecked is 0b01
UNCHECKED_HASH = 0b01


def missing_or_checked(root: Path, tag: str) -> list[str]:
    problems = []
    for source in sorted(root.rglob("*.py")):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not pyc.is_file():
            problems.append(f"{source.relative_to(root)}: no {pyc.name}")
            continue
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != UNCHECKED_HASH:
            problems.append(f"{pyc.relative_to(root)}: flags {flags:#b}, not unchecked-hash")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    tag = argv[2] if len(argv) > 2 else "cpython-313"
    if not (root / "wan_relay").is_dir():
        print(f"{root}: no wan_relay package here", file=sys.stderr)
        return 1
    problems = missing_or_checked(root, tag)
    for line in problems[:20]:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} module(s) without usable bytecode", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
