"""Setup mistakes are said early, in one line on stderr, exit code 2: a DashScope that cannot be
reached, an output folder that cannot be written, and for `run --aws` the region (AWS_REGION
honoured as the AWS CLI does) and missing credentials, all before the first poll."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore
import pytest
from wan_relay_local.embedded_aws import EmbeddedAws
from wan_relay_local.preflight import UsageError, dashscope_reachable
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, drain_events

from .conftest import load_event, subscribe_queue, user_environment
from .test_run import _script


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _one_line_exit_2(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("wan-relay: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stderr.strip()


@pytest.mark.parametrize(
    ("host", "reason"),
    [("127.0.0.1:{port}", "connection refused"), ("no-such-host.invalid", "unknown host name")],
)
def test_an_unreachable_dashscope_is_a_setup_error_naming_the_host(
    wan_relay: Path, tmp_path: Path, host: str, reason: str
) -> None:
    where = host.format(port=_closed_port())
    started = time.monotonic()

    done = subprocess.run(
        [str(wan_relay), "run", "some-task", "--out", str(tmp_path / "out")],
        env=user_environment(DASHSCOPE_API_KEY=API_KEY, DASHSCOPE_BASE_URL=f"http://{where}/api/v1"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )

    assert time.monotonic() - started < 15  # not minutes of retries (the process itself starts in ~2 s)
    assert _one_line_exit_2(done) == f"wan-relay: cannot reach DashScope at {where} (DASHSCOPE_BASE_URL): {reason}"
    assert API_KEY not in done.stdout + done.stderr


@pytest.fixture
def plain_http_server() -> Iterator[int]:
    """A server that answers plain HTTP, on a loopback port: an https URL to it fails its TLS handshake."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_dashscope_whose_tls_handshake_fails_is_a_setup_error_naming_the_host(plain_http_server: int) -> None:
    where = f"127.0.0.1:{plain_http_server}"
    with pytest.raises(UsageError) as raised:
        dashscope_reachable(f"https://{where}/api/v1")
    assert str(raised.value).startswith(
        f"cannot reach DashScope at {where} (DASHSCOPE_BASE_URL): the TLS handshake failed (")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listen queue is full, so that a new connection is never accepted (Linux drops the SYN
    and the client waits): a DashScope that does not answer, without the network."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_a_dashscope_that_accepts_no_connection_is_a_setup_error_naming_the_host(silent_port: int) -> None:
    where = f"127.0.0.1:{silent_port}"
    with pytest.raises(UsageError) as raised:
        dashscope_reachable(f"http://{where}/api/v1", timeout=1.0)
    assert str(raised.value) == f"cannot reach DashScope at {where} (DASHSCOPE_BASE_URL): no connection within 1 s"


def test_a_proxy_that_fails_is_named_rather_than_dashscope(wan_relay: Path, tmp_path: Path) -> None:
    proxy, dashscope = f"127.0.0.1:{_closed_port()}", "dashscope.example:8080"
    env = user_environment(DASHSCOPE_API_KEY=API_KEY, DASHSCOPE_BASE_URL=f"http://{dashscope}/api/v1",
                           HTTP_PROXY=f"http://alice:s3cret@{proxy}")
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)

    done = subprocess.run([str(wan_relay), "run", "some-task", "--out", str(tmp_path / "out")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    assert _one_line_exit_2(done) == (f"wan-relay: cannot reach DashScope at {dashscope} (DASHSCOPE_BASE_URL): "
                                      f"the proxy {proxy} (HTTPS_PROXY / HTTP_PROXY) failed: connection refused")
    assert "s3cret" not in done.stdout + done.stderr  # the proxy's password is never printed


def test_an_output_folder_that_cannot_be_written_is_a_setup_error(wan_relay: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    env = user_environment(DASHSCOPE_API_KEY=API_KEY)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(wan_relay), *argv], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)

    assert _one_line_exit_2(run("run", "some-task", "--out", str(a_file))) == \
        f"wan-relay: --out {a_file} is a file, not a folder"
    assert _one_line_exit_2(run("run", "some-task", "--out", str(a_file / "inside"))) == \
        f"wan-relay: cannot write to --out {a_file / 'inside'}: Not a directory"
    assert _one_line_exit_2(run("demo", "--out", str(a_file))) == f"wan-relay: --out {a_file} is a file, not a folder"


# --- run --aws, as a user runs it: a subprocess against an AWS account (moto's server) -------------

REGION = "eu-west-1"
BUCKET = "relayed-media"


@pytest.fixture
def aws_account() -> Iterator[str]:
    """An AWS account in REGION (moto's server on loopback) with the bucket and a subscriber's queue on
    the default bus; yields its endpoint."""
    with EmbeddedAws(region=REGION) as aws:
        boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        subscribe_queue()
        yield aws.endpoint_url


def _run_aws(wan_relay: Path, cwd: Path, replay: ReplayDashScope, task_id: str, **aws: str
             ) -> subprocess.CompletedProcess[str]:
    environment = user_environment(
        DASHSCOPE_BASE_URL=replay.base_url, DASHSCOPE_API_KEY=API_KEY, ALLOWED_MEDIA_URLS=replay.origin,
        MEDIA_BUCKET=BUCKET, AWS_EC2_METADATA_DISABLED="true",  # no instance metadata to ask on this machine
        AWS_CONFIG_FILE=str(cwd / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-credentials"), **aws,
    )
    return subprocess.run(
        [str(wan_relay), "run", task_id, "--aws", "--poll-interval", "1", "--out", str(cwd / "out")],
        env=environment, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def test_run_with_aws_honours_aws_region_and_logs_the_relay_like_the_function(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope, aws_account: str
) -> None:
    task_id = _script(replay, "wan2.6-t2i_succeeded")

    # the stand-in media host is on loopback, which a relay fetches from only when told (never in AWS)
    done = _run_aws(wan_relay, tmp_path, replay, task_id, AWS_REGION=REGION, AWS_ENDPOINT_URL=aws_account,
                    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", ALLOW_LOOPBACK_MEDIA_ADDRESSES="true")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert f"(account 123456789012, {REGION})" in done.stdout.splitlines()[0]
    detail = load_event(tmp_path / "out" / task_id)
    sqs = boto3.client("sqs")
    [emitted] = drain_events(sqs, sqs.get_queue_url(QueueName="completed")["QueueUrl"])
    assert emitted["detail"] == detail and emitted["region"] == REGION
    assert detail["media"][0]["bucket"] == BUCKET
    logged = [json.loads(line) for line in (tmp_path / "out" / "logs" / "poll-task.log").read_text().splitlines()]
    assert [(line["level"], line["message"]) for line in logged] == [
        ("INFO", "AWS SDK"), ("INFO", "task not finished"), ("INFO", "task completed")]
    assert logged[0]["botocore"] == botocore.__version__  # the SDK it ran on, once
    assert all(line["service"] == "wan-relay" for line in logged)


def test_run_with_aws_and_no_credentials_says_so_before_the_first_poll(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope, aws_account: str
) -> None:
    task_id = _script(replay, "wan2.6-t2i_succeeded")

    done = _run_aws(wan_relay, tmp_path, replay, task_id, AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=aws_account)

    assert _one_line_exit_2(done).startswith("wan-relay: no AWS credentials: set AWS_PROFILE")
    assert replay.polls(task_id) == 0



def test_start_with_an_output_folder_that_cannot_be_written_says_so_before_starting_anything(
    wan_relay: Path, tmp_path: Path, aws_account: str
) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    environment = user_environment(
        AWS_REGION=REGION, AWS_ENDPOINT_URL=aws_account, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )

    done = subprocess.run([str(wan_relay), "start", "some-task", "--stack", "wan-relay", "--out", str(a_file)],
                          env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    # before the stack is looked up (there is none in this account): nothing is started
    assert _one_line_exit_2(done) == f"wan-relay: --out {a_file} is a file, not a folder"
