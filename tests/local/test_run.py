"""`wan-relay run TASK_ID`: one task through the embedded pipeline (or an AWS account with --aws),
against a server answering like DashScope; the event, the files and the exit code."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from wan_relay.models import DEFAULT_EVENT_SOURCE, DETAIL_TYPE_COMPLETED
from wan_relay_local.cli import main
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, BUCKET, Account, drain_events, sample

from .conftest import assert_media_files_match, load_event, user_environment

# moto's server and state machines run in this process; each run takes a few seconds


def _recent(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as a task submitted a moment ago (China time, as DashScope writes it)."""
    moment = datetime.now(UTC).astimezone(timezone(timedelta(hours=8))) - timedelta(seconds=2)
    answer["output"]["submit_time"] = moment.strftime("%Y-%m-%d %H:%M:%S.000")
    return answer


def _script(replay: ReplayDashScope, final: str) -> str:
    answer = replay.rehost(sample(final))
    task_id = answer["output"]["task_id"]
    pending = _recent(sample("pending"))
    pending["output"]["task_id"] = task_id
    replay.script(task_id, pending, answer)
    return task_id


@pytest.mark.parametrize(
    ("final", "status", "exit_code"),
    [("wan2.6-t2i_succeeded", "SUCCEEDED", 0), ("wan2.5-t2i_partial", "PARTIAL", 3)],
)
def test_run_relays_a_task_through_the_embedded_pipeline(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope, final: str, status: str, exit_code: int
) -> None:
    task_id = _script(replay, final)
    env = user_environment(
        DASHSCOPE_BASE_URL=replay.base_url, DASHSCOPE_API_KEY=API_KEY, ALLOWED_MEDIA_URLS=replay.origin
    )

    done = subprocess.run(
        [str(wan_relay), "run", task_id, "--model", "wan2.6-t2i", "--context", '{"order": 42}',
         "--poll-interval", "1", "--timeout", "120", "--out", str(tmp_path / "results")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )

    assert done.returncode == exit_code, done.stdout + done.stderr
    folder = tmp_path / "results" / task_id
    detail = load_event(folder)
    assert (detail["status"], detail["model"], detail["context"]) == (status, "wan2.6-t2i", {"order": 42})
    assert detail["media"]
    assert_media_files_match(folder, detail)
    assert f"{task_id[:8]}… poll 1: PENDING, next poll in 1 s" in done.stdout
    assert json.dumps(detail["event_id"]) in done.stdout  # the event is printed
    logs = (tmp_path / "results" / "logs" / "poll-task.log").read_text()
    for text in (done.stdout, done.stderr, logs, (folder / "event.json").read_text()):
        assert API_KEY not in text
    assert all(request["authorized"] for request in replay.requests if "/tasks/" in request["path"])


def test_run_reports_a_key_dashscope_refuses_in_one_line_and_exits_2(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope
) -> None:
    task_id = _script(replay, "wan2.6-t2i_succeeded")
    env = user_environment(
        DASHSCOPE_BASE_URL=replay.base_url, DASHSCOPE_API_KEY="sk-wrong-key", ALLOWED_MEDIA_URLS=replay.origin
    )

    done = subprocess.run(
        [str(wan_relay), "run", task_id, "--out", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        "wan-relay: the workflow failed with OperatorError: DashScope answered HTTP 401 InvalidApiKey: "
        "Invalid API-key provided. (request_id replay-401)\n"
    )
    assert "sk-wrong-key" not in done.stdout + (tmp_path / "logs" / "poll-task.log").read_text()
    assert not (tmp_path / task_id).exists()


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def aws_account(replay: ReplayDashScope, account: Account, monkeypatch: pytest.MonkeyPatch) -> Account:
    """An AWS account (moto) with the bucket, and the variables `run --aws` reads."""
    monkeypatch.setenv("DASHSCOPE_BASE_URL", replay.base_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
    monkeypatch.setenv("ALLOWED_MEDIA_URLS", replay.origin)
    monkeypatch.setenv("ALLOW_LOOPBACK_MEDIA_ADDRESSES", "true")
    monkeypatch.setenv("MEDIA_BUCKET", BUCKET)
    for name in ("EVENT_BUS_NAME", "IDEMPOTENCY_TABLE", "DASHSCOPE_API_KEY_SECRET", "MEDIA_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    # a subscriber on the default bus: a rule copying completion events to a queue
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue_url = sqs.create_queue(QueueName="completed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="completed", EventPattern=json.dumps(
        {"source": [DEFAULT_EVENT_SOURCE], "detail-type": [DETAIL_TYPE_COMPLETED]}))
    events.put_targets(Rule="completed", Targets=[{"Id": "q", "Arn": queue_arn}])
    account.queue_url = queue_url
    return account


def completed_events(account: Account) -> list[dict]:
    """What the subscriber's queue received."""
    return drain_events(boto3.client("sqs"), account.queue_url)


def test_run_with_aws_relays_into_the_accounts_bucket_and_bus(
    aws_account: Account, replay: ReplayDashScope, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = _script(replay, "wan2.7-i2v_succeeded")

    code, out, _ = _run_in_process(["run", task_id, "--aws", "--poll-interval", "1", "--out", str(tmp_path)], capsys)

    assert code == 0
    [emitted] = completed_events(aws_account)
    assert load_event(tmp_path / task_id) == emitted["detail"]
    assert emitted["detail"]["kind"] == "video"
    stored = aws_account.objects()[emitted["detail"]["media"][0]["key"]]
    assert (tmp_path / task_id / "0.mp4").read_bytes() == stored
    assert f"{task_id[:8]}… poll 1: PENDING, next poll in 1 s" in out


def test_run_exits_1_when_dashscope_reports_the_task_failed(
    aws_account: Account, replay: ReplayDashScope, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = _script(replay, "failed_output_code")

    code, _out, _ = _run_in_process(["run", task_id, "--aws", "--poll-interval", "1", "--out", str(tmp_path)], capsys)

    assert code == 1
    detail = load_event(tmp_path / task_id)
    assert (detail["status"], detail["error"]["code"]) == ("FAILED", "DataInspectionFailed")
    assert [e["detail"] for e in completed_events(aws_account)] == [detail]
    assert sorted(p.name for p in (tmp_path / task_id).iterdir()) == ["event.json"]


def test_run_with_aws_and_a_missing_bucket_says_so_in_one_line(
    aws_account: Account, replay: ReplayDashScope, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEDIA_BUCKET")

    code, _, err = _run_in_process(["run", "some-task", "--aws", "--out", str(tmp_path)], capsys)

    assert code == 2
    assert err.strip() == "wan-relay: MEDIA_BUCKET is required: the S3 bucket the media is streamed into"


def test_run_with_aws_and_no_region_says_so_before_polling(
    aws_account: Account, replay: ReplayDashScope, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_id = _script(replay, "wan2.7-i2v_succeeded")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    code, _, err = _run_in_process(["run", task_id, "--aws", "--out", str(tmp_path)], capsys)

    assert code == 2
    assert err.strip().startswith("wan-relay: no AWS region")
    assert replay.polls(task_id) == 0


@pytest.mark.parametrize(
    ("argv", "env", "reason"),
    [
        (["run", "t-1"], {}, "set DASHSCOPE_API_KEY"),
        (["run", "t-1"], {"DASHSCOPE_API_KEY": "k", "DASHSCOPE_BASE_URL": "ftp://x"}, "DASHSCOPE_BASE_URL must be"),
        (["run", "t-1", "--context", "[1]"], {"DASHSCOPE_API_KEY": "k"}, "--context must be a JSON object"),
        (["run", "t-1", "--context", "{oops"], {"DASHSCOPE_API_KEY": "k"}, "--context must be JSON"),
        (["run", "../etc", "--aws"], {"DASHSCOPE_API_KEY": "k"}, "TASK_ID"),
        (["run", "t-1", "--poll-interval", "0"], {"DASHSCOPE_API_KEY": "k"}, "--poll-interval"),
        (["start", "t-1", "--stack", "nope"], {}, "AWS: Could not connect"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(
    wan_relay: Path, tmp_path: Path, argv: list[str], env: dict[str, str], reason: str
) -> None:
    moto = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run(
        [str(wan_relay), *argv], env=user_environment(**env, **(moto if argv[0] == "start" else {})),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("wan-relay: ")
    assert reason in done.stderr
    assert not (tmp_path / "out").exists()


def test_every_command_explains_its_options(wan_relay: Path) -> None:
    helps = {
        command: subprocess.run([str(wan_relay), *command.split(), "--help"], capture_output=True, text=True,
                                check=True).stdout
        for command in ("", "demo", "run", "start")
    }

    assert all(name in helps[""] for name in ("demo", "run", "start"))
    assert "--out" in helps["demo"]
    for option in ("--kind", "--model", "--context", "--poll-interval", "--timeout", "--out", "--aws",
                   "DASHSCOPE_API_KEY", "MEDIA_BUCKET", "EVENT_BUS_NAME", "exit codes"):
        assert option in helps["run"], option
    for option in ("--stack", "--kind", "--context", "StateMachineArn", "exit codes"):
        assert option in helps["start"], option
