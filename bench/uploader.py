"""One upload, in a fresh process, by one competitor; prints a JSON line with its time and memory.

`python -m bench.uploader COMPETITOR URL BUCKET KEY` with AWS_ENDPOINT_URL pointing at moto's server.
Memory: `idle_rss` is the resident size once imports and clients are ready, `peak_rss` the process's
high-water mark (ru_maxrss) after the transfer; the benchmark reports peak - idle.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from urllib.parse import urlsplit

import boto3
import requests
from botocore.config import Config
from wan_relay import ingest
from wan_relay.ingest import MediaStreamer, UrlAllowlist
from wan_relay.models import MediaRef
from wan_relay.runtime import default_client

COMPETITORS = ("naive", "upload_fileobj", "upload_fileobj_unsigned", "relay_single", "relay")


def _rss_now() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(competitor: str, url: str, bucket: str, key: str) -> dict[str, object]:
    # the competitors use boto3's defaults; the relay the S3 client the stack gives it (payload signing
    # off); the ablation `upload_fileobj_unsigned` is upload_fileobj with that one setting of the relay's
    if competitor.startswith("relay"):
        s3 = default_client("s3")
    elif competitor == "upload_fileobj_unsigned":
        s3 = boto3.client("s3", config=Config(s3={"payload_signing_enabled": False}))
    else:
        s3 = boto3.client("s3")
    session = requests.Session()
    parts = urlsplit(url)
    streamer = MediaStreamer(s3=s3, session=session, bucket=bucket, prefix="", max_bytes=4 << 30,
                             allowlist=UrlAllowlist((f"{parts.scheme}://{parts.netloc}",)))
    if competitor == "relay_single":  # the relay with its ranged path switched off: one stream
        ingest.wants_ranges = lambda *args, **kwargs: False
    s3.list_buckets()  # connections and credentials warm, as in a warm Lambda
    idle = _rss_now()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    if competitor == "naive":
        body = session.get(url, timeout=(3.05, 60)).content
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="video/mp4")
        size = len(body)
        del body
    elif competitor in ("upload_fileobj", "upload_fileobj_unsigned"):
        with session.get(url, stream=True, timeout=(3.05, 60)) as response:
            s3.upload_fileobj(response.raw, bucket, key)
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    elif competitor in ("relay", "relay_single"):
        stored = streamer.store(key.rsplit("/", 1)[0], MediaRef(index=0, type="video", url=url))
        key, size = stored.key, stored.size_bytes
    else:
        raise SystemExit(f"unknown competitor {competitor}")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"competitor": competitor, "seconds": seconds, "size": size, "key": key, "idle_rss": idle,
            "peak_rss": usage.ru_maxrss * 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])), flush=True)
