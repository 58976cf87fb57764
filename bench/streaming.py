"""Benchmarks 1 and 2: one media body into S3 (moto's server, its own process) by each competitor,
each run in a fresh process, over loopback and over an emulated long-haul link."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

import boto3

from .processes import ROOT, MiB, aws_env

BUCKET = "bench-media"


@dataclass
class Cell:
    competitor: str
    size: int
    seconds: list[float] = field(default_factory=list)
    rss_growth: list[int] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # the uploader's own CPU time, all threads
    note: str = ""

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        """MiB/s of the median run."""
        return self.size / MiB / self.median_seconds

    @property
    def median_growth(self) -> float:
        return statistics.median(self.rss_growth) / MiB

    @property
    def max_growth(self) -> float:
        return max(self.rss_growth) / MiB


def run_one(competitor: str, url: str, endpoint: str, key: str, timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.uploader", competitor, url, BUCKET, key],
                         capture_output=True, text=True, env=aws_env(endpoint), cwd=ROOT, timeout=timeout,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{competitor} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_matrix(origin: str, endpoint: str, plan: list[tuple[int, list[str], int]], label: str,
               timeout: float = 600) -> list[Cell]:
    """`plan`: (size, competitors, repeats). Competitors alternate within a repeat, in an order that
    rotates from one repeat to the next; each object is
    checked for its size and deleted before the next run so moto's memory does not pile up."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    cells: list[Cell] = []
    for size, competitors, repeats in plan:
        row = {c: Cell(c, size) for c in competitors}
        cells.extend(row.values())
        url = f"{origin}/media/{size}.mp4"
        for attempt in range(repeats):
            # each round starts with another competitor: none always follows the same one (moto's
            # clean-up of the previous object, the page cache, ... would favour some positions)
            shift = attempt % len(competitors)
            for competitor in competitors[shift:] + competitors[:shift]:
                result = run_one(competitor, url, endpoint, f"{competitor}-{attempt}/0.mp4", timeout)
                landed = s3.head_object(Bucket=BUCKET, Key=result["key"])["ContentLength"]
                if landed != size or result["size"] != size:
                    raise RuntimeError(f"{competitor} stored {landed} bytes of {size}")
                s3.delete_object(Bucket=BUCKET, Key=result["key"])
                if s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
                    raise RuntimeError(f"{competitor} left an unfinished multipart upload")
                cell = row[competitor]
                cell.seconds.append(result["seconds"])
                cell.rss_growth.append(result["peak_rss"] - result["idle_rss"])
                cell.cpu_seconds.append(result["cpu_seconds"])
                print(f"  [{label}] {size // MiB:>5} MiB {competitor:<15} {result['seconds']:7.2f} s "
                      f"{size / MiB / result['seconds']:7.1f} MiB/s  +{cell.rss_growth[-1] / MiB:7.1f} MiB",
                      flush=True)
    return cells
