"""`make bench`: runs every benchmark, then writes docs/BENCHMARKS.md and the plots under docs/.

Raw results go to out/bench/results.json first; `python -m bench.run --render` redraws the report
from them without measuring again. `--quick` runs one small pass (for trying the harness).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata

from . import coldstart, fleet, polls, streaming
from .processes import ROOT, MiB, delay_line, media_host, moto_server

OUT = ROOT / "out" / "bench"
DOCS = ROOT / "docs"
ONE_WAY_MS = 75.0
WINDOW = 2 * MiB  # per-connection bytes in flight on the long-haul link
WIDE_WINDOW = 4 * MiB  # the sensitivity run


def machine() -> dict[str, object]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = int(info.readline().split()[1])
    versions = {}
    for name in ("boto3", "botocore", "s3transfer", "requests", "urllib3", "moto", "aws-lambda-powertools",
                 "msgspec", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip()
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(mem_kib / 1024 / 1024, 1), "kernel": platform.release(),
            "python": platform.python_version(), "versions": versions, "commit": commit or "-"}


def streaming_plans(quick: bool) -> tuple[list, list, list]:
    everyone = ["naive", "upload_fileobj", "relay_single", "relay"]
    # on loopback (plain HTTP), also upload_fileobj with payload signing off, as the relay's client has it
    loopback_all = ["naive", "upload_fileobj", "upload_fileobj_unsigned", "relay_single", "relay"]
    if quick:
        return [(16 * MiB, loopback_all, 1)], [(64 * MiB, ["upload_fileobj", "relay"], 1)], []
    loopback = [(16 * MiB, loopback_all, 5), (256 * MiB, loopback_all, 5), (1024 * MiB, loopback_all, 5)]
    far = [(256 * MiB, everyone, 3), (1024 * MiB, ["upload_fileobj"], 2), (1024 * MiB, ["relay"], 3)]
    wide = [(256 * MiB, ["upload_fileobj", "relay"], 1)]
    return loopback, far, wide


SECTIONS = ("streaming", "coldstart", "polls", "fleet")


def measure(quick: bool, sections: tuple[str, ...] = SECTIONS, results: dict | None = None) -> dict[str, object]:
    started = time.monotonic()
    results = dict(results or {})
    results.update({"machine": machine(), "one_way_ms": ONE_WAY_MS, "window": WINDOW, "wide_window": WIDE_WINDOW})
    if "streaming" in sections:
        _streaming(quick, results)
    if "coldstart" in sections:
        print("3. cold start", flush=True)
        results["coldstart"] = coldstart.measure(5 if quick else 40)
        results["layer"] = coldstart.layer_size()
    if "polls" in sections:
        print("4. polls, delay and dollars", flush=True)
        results["polls"] = [
            {"policy": r.policy, "kind": r.kind, "mean_polls": r.mean_polls, "median_delay": r.delay("0.5"),
             "p95_delay": r.delay("0.95"), "mean_delay": r.delay("mean"), "transitions": r.transitions,
             "dollars": r.dollars_per_1000(), "peak_qps": r.peak_qps, "peak_qps_10s": r.peak_qps_10s}
            for r in polls.simulate(2000 if quick else 20_000)
        ]
    if "fleet" in sections:
        print("5. one account's fleet: the sweeper against today's loop", flush=True)
        results["fleet"] = fleet.measure()
    if set(sections) == set(SECTIONS):
        results["elapsed_s"] = time.monotonic() - started
    return results


def _streaming(quick: bool, results: dict[str, object]) -> None:
    loopback, far, wide = streaming_plans(quick)
    sizes = sorted({size for plan in (loopback, far, wide) for size, _, _ in plan})
    print("1. streaming into S3 over loopback", flush=True)
    with moto_server() as endpoint, media_host(sizes) as origin:
        cells = streaming.run_matrix(origin, endpoint, loopback, "loopback")
        results["loopback"] = [dataclasses.asdict(c) for c in cells]
        print(f"2. the long-haul link ({2 * ONE_WAY_MS:.0f} ms RTT, {WINDOW // MiB} MiB window)", flush=True)
        with delay_line(origin, ONE_WAY_MS, WINDOW) as far_origin:
            results["far"] = [dataclasses.asdict(c) for c in streaming.run_matrix(far_origin, endpoint, far, "far")]
        if wide:
            with delay_line(origin, ONE_WAY_MS, WIDE_WINDOW) as wide_origin:
                results["wide"] = [dataclasses.asdict(c)
                                   for c in streaming.run_matrix(wide_origin, endpoint, wide, "far-4MiB")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one small pass")
    parser.add_argument("--render", action="store_true", help="redraw from out/bench/results.json")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="measure only this section again, keeping the others' results")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT / "results.json"
    if not args.render:
        previous = json.loads(raw.read_text()) if args.only and raw.exists() else None
        results = measure(args.quick, tuple(args.only or SECTIONS), previous)
        raw.write_text(json.dumps(results, indent=1))
    results = json.loads(raw.read_text())
    from .report import render

    DOCS.mkdir(exist_ok=True)
    render(results, DOCS)
    print(f"wrote {DOCS / 'BENCHMARKS.md'} ({results.get('elapsed_s', 0) / 60:.1f} min of measuring)", file=sys.stderr)


if __name__ == "__main__":
    main()
