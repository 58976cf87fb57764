"""Benchmark 3: cold start. Each variant runs in a fresh interpreter that times its own work, so
interpreter start-up, the same for all, is left out: the imports of the shipped handler module and
its module scope, then, for the later rows, what the first invocation of a new container does on
top of it, through `app.lambda_handler` as Lambda calls it. The code runs from a copy laid out as
Lambda has it (`as_deployed`); the world it talks to is on loopback: moto's server (Secrets Manager
holds the key, as in the stack; S3 and the idempotency table) and the replay DashScope.
Plus the Lambda layer's installed size."""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .processes import ROOT

if TYPE_CHECKING:
    from wan_relay_local.replay import ReplayDashScope

FUNCTION_DIR = ROOT / "functions" / "poll_task"
SECRET_NAME = "wan-relay/bench-dashscope-api-key"
API_KEY = "sk-bench-not-a-key"
BUCKET = "wan-media-bench"
TABLE = "wan-relay-bench-idempotency"
RUNNING_TASK = "bench-running-task"

#: the child: an event and a Lambda context are made before the clock starts
_TIMER = """
import time, sys
sys.path.insert(0, {function_dir!r})

class Context:
    function_name = "wan-relay-poll-task"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:wan-relay-poll-task"
    aws_request_id = "bench-request"
    log_group_name = "/aws/lambda/wan-relay-poll-task"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 900_000

context = Context()
event = {event!r}
started = time.perf_counter()
{body}
print((time.perf_counter() - started) * 1000.0)
"""

#: name -> (what is timed, whether the event is a task that finished: a fresh one per run)
VARIANTS: dict[str, tuple[str, bool]] = {
    "baseline: import boto3, requests": ("import boto3, requests", False),
    "baseline + S3 and DynamoDB clients": (
        "import boto3, requests\nboto3.client('s3'); boto3.client('dynamodb')", False),
    "handler module (import + module scope)": ("import app", False),
    "handler module + first call's set-up (relay_from_env, key from Secrets Manager)": (
        "import app\napp._get_relay()", False),
    "handler module + a typical first poll (task still running)": (
        "import app\nanswer = app.lambda_handler(event, context)\nassert not answer['done'], answer", False),
    "handler module + a terminal first poll (one image into S3, the completion decided)": (
        "import app\nanswer = app.lambda_handler(event, context)\nassert answer['status'] == 'SUCCEEDED', answer",
        True),
}


def lambda_env() -> dict[str, str]:
    """What Lambda and template.yaml set, without the AWS world (see `World.env`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "DASHSCOPE_"))}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "wan-relay-poll-task", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "wan-relay", "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
        "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "MEDIA_BUCKET": BUCKET, "IDEMPOTENCY_TABLE": TABLE,
    })
    return env


class World:
    """moto's server and the replay DashScope, on loopback, with what the stack would hold."""

    def __init__(self, endpoint_url: str, replay: ReplayDashScope) -> None:
        self.endpoint_url = endpoint_url
        self.replay = replay
        self._finished = json.loads((ROOT / "events/dashscope/wan2.6-t2i_succeeded.json").read_text())

    def env(self) -> dict[str, str]:
        return {
            **lambda_env(),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "DASHSCOPE_API_KEY_SECRET": SECRET_NAME,
            "DASHSCOPE_BASE_URL": self.replay.base_url,
            "ALLOWED_MEDIA_URLS": self.replay.origin,
            "ALLOW_LOOPBACK_MEDIA_ADDRESSES": "true",
        }

    def event(self, finished: bool) -> dict[str, object]:
        """The loop input: the task still running, or a fresh task id that DashScope reports finished."""
        if not finished:
            return {"task_id": RUNNING_TASK}
        task_id = f"bench-{uuid.uuid4()}"
        answer = self.replay.rehost(self._finished)
        answer["output"]["task_id"] = task_id
        self.replay.script(task_id, answer)
        return {"task_id": task_id}


@contextmanager
def world() -> Iterator[World]:
    import boto3
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from wan_relay_local.replay import ReplayDashScope

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing",
                   "aws_secret_access_key": "testing"}
        boto3.client("secretsmanager", **options).create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"api_key": API_KEY}))
        boto3.client("s3", **options).create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", **options).create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        with ReplayDashScope(api_key=API_KEY) as replay:
            running = json.loads((ROOT / "events/dashscope/running.json").read_text())
            running["output"]["task_id"] = RUNNING_TASK
            replay.script(RUNNING_TASK, running)
            yield World(endpoint, replay)
    finally:
        server.stop()


def run_once(body: str, event: dict[str, object], env: dict[str, str], function_dir: Path = FUNCTION_DIR) -> float:
    """One fresh interpreter; the milliseconds it measured."""
    code = _TIMER.format(function_dir=str(function_dir), body=body, event=event)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=function_dir, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-1500:])
    return float(out.stdout.strip().splitlines()[-1])


@contextmanager
def as_deployed(root: Path = ROOT) -> Iterator[tuple[Path, dict[str, str]]]:
    """The function and the `wan_relay` package as Lambda has them, on a disk the process may not write
    to: the function's source alone (its build compiles nothing, so each cold start compiles app.py), the
    package with the unchecked-hash bytecode the layer's build ships (layers/relay/Makefile), for this
    Python. The dependencies come with their bytecode too (pip's here, the layer build's there).
    Yields the function's folder and the environment that puts the package first."""
    with tempfile.TemporaryDirectory() as tmp:
        function_dir = Path(tmp) / "function"
        shutil.copytree(root / "functions/poll_task", function_dir, ignore=shutil.ignore_patterns("__pycache__"))
        package = Path(tmp) / "layer/wan_relay"
        shutil.copytree(root / "layers/relay/wan_relay", package, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                        str(package)], check=True)
        yield function_dir, {"PYTHONPATH": str(Path(tmp) / "layer"), "PYTHONDONTWRITEBYTECODE": "1"}


def measure(runs: int = 15) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with world() as bench, as_deployed() as (function_dir, deployed):
        env = {**bench.env(), **deployed}
        for _ in range(runs):
            for name, (body, finished) in VARIANTS.items():
                try:
                    times[name].append(run_once(body, bench.event(finished), env, function_dir))
                except RuntimeError as exc:
                    raise RuntimeError(f"{name}: {exc}") from None
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def _python313() -> str | None:
    """The Lambda runtime's Python here: $PYTHON313, pyenv's 3.13, or a python3.13 on PATH."""
    if os.environ.get("PYTHON313"):
        return os.environ["PYTHON313"]
    found = subprocess.run(["pyenv", "which", "python3.13"], capture_output=True, text=True, check=False,
                           env={**os.environ, "PYENV_VERSION": "3.13.0"}) if shutil.which("pyenv") else None
    if found is not None and found.returncode == 0:
        return found.stdout.strip()
    return shutil.which("python3.13")


def layer_size(python_version: str = "3.13", platform: str = "manylinux2014_aarch64") -> dict[str, object]:
    """Builds the layer as `sam build` does (`make build-RelayLayer` in layers/relay: the requirements'
    wheels for python3.13 arm64, the wan_relay package, bytecode for all of it) into a temp folder, and
    measures it unzipped and zipped, biggest packages first."""
    python313 = _python313()
    if python313 is None:
        return {"error": "no python3.13 to build the layer with (set PYTHON313)"}
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "python"
        out = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT / "layers/relay"), "build-RelayLayer",
                              f"ARTIFACTS_DIR={tmp}", f"PYTHON313={python313}"],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return {"error": (out.stderr or out.stdout)[-800:]}
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
