"""The benchmark's separate processes: moto's S3 server, the media host, the delay line, and helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def aws_env(endpoint: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "PYTHONPATH": str(ROOT)})
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in its own process (it keeps objects in memory: delete them between runs)."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=aws_env())
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def media_host(sizes: list[int]) -> Iterator[str]:
    """The replay server in its own process, serving `/media/{size}.mp4` (PatternBody, Range support)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.media_host", *map(str, sizes)], stdout=subprocess.PIPE,
                            text=True, env=aws_env(), cwd=ROOT)
    try:
        assert proc.stdout is not None
        origin = proc.stdout.readline().strip()
        if not origin.startswith("http://"):
            raise RuntimeError("the media host did not start")
        yield origin
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def delay_line(upstream: str, one_way_ms: float, window: int) -> Iterator[str]:
    """A long-haul link in front of `upstream` (see bench/delay_line.py); yields its origin."""
    port = free_port()
    host, up_port = upstream.rsplit("/", 1)[-1].split(":")
    proc = subprocess.Popen([sys.executable, "-m", "bench.delay_line", str(port), host, up_port, str(one_way_ms),
                             str(window)], env=aws_env(), cwd=ROOT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
