"""`wan-relay run TASK_ID`: one task through the embedded pipeline (or an AWS account with --aws),
against a server answering like DashScope; the event, the files and the exit code."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from wan_relay_local.cli import main
from wan_relay_local.replay import ReplayDashScope

from tests.conftest import API_KEY, BUCKET, Account, drain_events, sample

from .conftest import assert_media_files_match, load_event, subscribe_queue, user_environment

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
    # one line per poll and one for the outcome, between the header and nothing else
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"relaying {task_id} from {replay.base_url}")
    assert lines[1:-1] == [
        f"{task_id[:8]}… poll 1: PENDING, next poll in 1 s", f"{task_id[:8]}… poll 2: {status} - relayed"
    ]
    assert lines[-1].startswith(f"{'✓' if status == 'SUCCEEDED' else '!'} {task_id[:8]}… {status}: ")
    assert f"files in {tmp_path / 'results' / task_id}/ (event.json, " in lines[-1]
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
    account.queue_url = subscribe_queue()
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
        (["run", "../etc", "--aws"], {"DASHSCOPE_API_KEY": "k"},
         "a task id is 1-128 letters, digits or '-' (as DashScope returned it on submission); TASK_ID '../etc' is not"),
        (["run", "t-1\n"], {"DASHSCOPE_API_KEY": "k"}, "TASK_ID 't-1\\n' is not"),
        (["run", "t-1", "--poll-interval", "0"], {"DASHSCOPE_API_KEY": "k"},
         "--poll-interval is a whole number of seconds from 1 to 3600, not '0'"),
        (["run", "t-1", "--poll-interval", "2.5"], {"DASHSCOPE_API_KEY": "k"},
         "--poll-interval is a whole number of seconds from 1 to 3600, not '2.5'"),
        (["run", "t-1", "--timeout", "90000"], {"DASHSCOPE_API_KEY": "k"},
         "--timeout is a whole number of seconds from 1 to 86400, not '90000'"),
        (["start", "t-1", "--stack", "s", "--timeout", "soon"], {}, "--timeout is a whole number of seconds"),
        (["run", "t-1", "--model", "w" * 129], {"DASHSCOPE_API_KEY": "k"},
         "--model is a Wan model name of 1-128 characters"),
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
    assert not any(jargon in done.stderr for jargon in ("\\Z", "Expected", "$.", "loop input"))  # plain words
    assert not (tmp_path / "out").exists()


def test_every_command_explains_its_options(wan_relay: Path) -> None:
    helps = {
        command: subprocess.run([str(wan_relay), *command.split(), "--help"], capture_output=True, text=True,
                                check=True).stdout
        for command in ("", "demo", "run", "start", "replay")
    }

    assert all(name in helps[""] for name in ("demo", "run", "start", "replay"))
    assert "--out" in helps["demo"]
    for option in ("--kind", "--model", "--context", "--poll-interval", "--timeout", "--out", "--aws", "--json",
                   "DASHSCOPE_API_KEY", "MEDIA_BUCKET", "EVENT_BUS_NAME", "exit codes"):
        assert option in helps["run"], option
    for option in ("--stack", "--kind", "--context", "--json", "StateMachineArn", "exit codes"):
        assert option in helps["start"], option
    for option in ("FILE", "DASHSCOPE_BASE_URL", "ALLOWED_MEDIA_URLS", "events/dashscope/", "UNKNOWN"):
        assert option in helps["replay"], option


def _embedded_run(wan_relay: Path, replay: ReplayDashScope, cwd: Path, *argv: str, **env: str
                  ) -> subprocess.CompletedProcess[str]:
    environment = user_environment(
        DASHSCOPE_BASE_URL=replay.base_url, DASHSCOPE_API_KEY=API_KEY, ALLOWED_MEDIA_URLS=replay.origin, **env
    )
    return subprocess.run([str(wan_relay), "run", *argv], env=environment, cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_run_keeps_the_relays_own_log_lines_in_the_function_log_not_on_the_terminal(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope
) -> None:
    task_id = _script(replay, "wan2.5-t2i_partial")
    answer = replay.rehost(sample("wan2.5-t2i_partial"))
    answer["output"]["results"][2]["url"] = "https://elsewhere.example/a1b2c3d4_2.png"  # outside the allowlist
    pending = _recent(sample("pending"))
    pending["output"]["task_id"] = task_id
    replay.script(task_id, pending, answer)

    done = _embedded_run(wan_relay, replay, tmp_path, task_id, "--poll-interval", "1", "--out", str(tmp_path))

    assert done.returncode == 3, done.stdout + done.stderr  # PARTIAL: image 0 stored, 1 refused by DashScope, 2 by us
    assert done.stderr == ""  # no stray warning
    lines = [json.loads(line) for line in (tmp_path / "logs" / "poll-task.log").read_text().splitlines()]
    relay_lines = {(line.get("level"), line.get("message")): line for line in lines if "message" in line}
    assert relay_lines[("INFO", "task not finished")]["service"] == "wan-relay"
    assert relay_lines[("WARNING", "media item not stored")]["code"] == "UrlNotAllowed"
    assert relay_lines[("INFO", "task completed")]["status"] == "PARTIAL"


def test_run_with_json_prints_the_event_alone_on_stdout_and_ticks_green_only_a_success(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope
) -> None:
    succeeded, failed = _script(replay, "wan2.6-t2i_succeeded"), _script(replay, "failed_output_code")

    ok = _embedded_run(wan_relay, replay, tmp_path, succeeded, "--poll-interval", "1", "--json", FORCE_COLOR="1")
    refused = _embedded_run(wan_relay, replay, tmp_path, failed, "--poll-interval", "1", FORCE_COLOR="1")

    assert (ok.returncode, refused.returncode) == (0, 1), ok.stderr + refused.stderr
    assert json.loads(ok.stdout) == load_event(tmp_path / "out" / succeeded)  # nothing but the event
    assert "\x1b[32m✓" in ok.stderr  # the progress went to stderr, with a green tick
    assert "✓" not in refused.stdout
    outcome = refused.stdout.splitlines()[-1]
    assert "✗" in outcome and "FAILED" in outcome and "DataInspectionFailed" in outcome
    assert "{" not in refused.stdout  # the event is in event.json, not on the terminal
    assert load_event(tmp_path / "out" / failed)["status"] == "FAILED"


def test_poll_interval_gives_way_to_the_long_task_rule_as_its_help_says(
    wan_relay: Path, tmp_path: Path, replay: ReplayDashScope
) -> None:
    help_text = " ".join(subprocess.run([str(wan_relay), "run", "--help"], capture_output=True, text=True,
                                        check=True).stdout.split())
    assert ("A task older than 10 min (images) or 60 min (videos), counted from its submission, is polled every "
            "tenth of its age (at most 300 s) if that is longer than SECONDS") in help_text
    running = sample("running")  # a video task submitted two hours ago
    submitted = datetime.now(UTC).astimezone(timezone(timedelta(hours=8))) - timedelta(hours=2)
    running["output"]["submit_time"] = submitted.strftime("%Y-%m-%d %H:%M:%S.000")
    task_id = running["output"]["task_id"]
    replay.script(task_id, running)
    environment = user_environment(
        DASHSCOPE_BASE_URL=replay.base_url, DASHSCOPE_API_KEY=API_KEY, ALLOWED_MEDIA_URLS=replay.origin,
        PYTHONFAULTHANDLER="1",  # a SIGABRT prints every thread's stack: what a hang waits for
    )

    # as a terminal starts it: Ctrl-C's signal not ignored (a test run in the background of a
    # non-interactive shell inherits SIGINT ignored, and so would the CLI, which then never stops)
    foreground = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])"]
    with subprocess.Popen([*foreground, str(wan_relay), "run", task_id, "--poll-interval", "2", "--out",
                           str(tmp_path)],
                          env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            first_poll = next(line for line in run.stdout if " poll " in line)  # type: ignore[union-attr]
        finally:
            run.send_signal(signal.SIGINT)
        try:
            _, err = run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            run.send_signal(signal.SIGABRT)
            _, stacks = run.communicate(timeout=30)
            pytest.fail(f"`wan-relay run` still running 30 s after Ctrl-C; its threads:\n{stacks}")

    assert first_poll.strip() == f"{task_id[:8]}… poll 1: RUNNING, next poll in 300 s"  # min(300, 7200 / 10)
    assert run.returncode == 130 and err == "wan-relay: interrupted\n"
