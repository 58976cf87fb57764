"""Benchmark 3: cold start. Each variant runs in a fresh interpreter that times its own imports (and,
for the first-call variant, building the relay from the environment: config, key, boto3 clients),
so interpreter start-up, the same for all, is left out. Plus the Lambda layer's installed size."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .processes import ROOT

FUNCTION_DIR = ROOT / "functions" / "poll_task"

_TIMER = """
import time, sys
sys.path.insert(0, {function_dir!r})
{stubs}
started = time.perf_counter()
{body}
print((time.perf_counter() - started) * 1000.0)
"""

VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "baseline: import boto3, requests": ("import boto3, requests", {}),
    "baseline + S3 and EventBridge clients": (
        "import boto3, requests\nboto3.client('s3'); boto3.client('events')", {}),
    "handler module (import + module scope)": ("import app", {}),
    "handler module + first call's set-up (relay_from_env)": ("import app\napp._get_relay()", {}),
    "handler module, tracing off (POWERTOOLS_TRACE_DISABLED)": ("import app", {"POWERTOOLS_TRACE_DISABLED": "true"}),
    "estimate: handler module if ingest, publish, idempotency loaded lazily": (
        "import app", {"BENCH_STUB_TERMINAL_MODULES": "1"}),
}

#: for the estimate: what the handler's import would cost if the modules only a finished task needs
#: were imported where they are used (stand-ins answer any name); measured, not a shipped change
_STUBS = """
import os, sys, types
if os.environ.get("BENCH_STUB_TERMINAL_MODULES"):
    for _name in ("wan_relay.ingest", "wan_relay.publish", "wan_relay.idempotency"):
        _module = types.ModuleType(_name)
        _module.__getattr__ = lambda attr: type(attr, (), {})
        sys.modules[_name] = _module
"""


def lambda_env() -> dict[str, str]:
    """What Lambda and template.yaml set (tracing active); no network is touched by any variant."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "wan-relay-poll-task", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "wan-relay", "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false", "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "DASHSCOPE_API_KEY": "sk-bench-not-a-key", "MEDIA_BUCKET": "wan-media-bench",
    })
    return env


def measure(runs: int = 15) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    base = lambda_env()
    for _ in range(runs):
        for name, (body, extra) in VARIANTS.items():
            code = _TIMER.format(function_dir=str(FUNCTION_DIR), body=body, stubs=_STUBS)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**base, **extra}, cwd=FUNCTION_DIR, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"{name}: {out.stderr[-1500:]}")
            times[name].append(float(out.stdout.strip().splitlines()[-1]))
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def layer_size(python_version: str = "3.13", platform: str = "manylinux2014_aarch64") -> dict[str, object]:
    """pip-installs the layer's requirements for the Lambda runtime (python3.13, arm64) into a temp
    folder, adds the wan_relay package, and measures it unzipped and zipped, biggest packages first."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "python"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(target), "--platform", platform, "--python-version", python_version,
               "--implementation", "cp", "--only-binary=:all:", "-r", str(ROOT / "layers/relay/requirements.txt")]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return {"error": out.stderr[-800:]}
        shutil.copytree(ROOT / "layers/relay/wan_relay", target / "wan_relay",
                        ignore=shutil.ignore_patterns("__pycache__"))
        sizes: dict[str, int] = {}
        total = 0
        for path in target.rglob("*"):
            if path.is_file():
                size = path.stat().st_size
                total += size
                top = path.relative_to(target).parts[0]
                name = top.split("-")[0] if top.endswith((".dist-info", ".libs")) else top
                sizes[name] = sizes.get(name, 0) + size
        archive = Path(tmp) / "layer.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(Path(tmp)))
        return {"unzipped": total, "zipped": archive.stat().st_size,
                "largest": sorted(sizes.items(), key=lambda kv: -kv[1])[:8],
                "python": python_version, "platform": platform}
