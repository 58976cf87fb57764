"""`wan-relay replay`: a DashScope with every recorded task, for `wan-relay run` to relay without a
key, used as its own output says; a user's own recorded answer served beside them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

from wan_relay_local.scenarios import SAMPLES, recording_task_id

from tests.conftest import sample

from .conftest import assert_media_files_match, load_event, user_environment

THEIR_TASK = "0385dc79-5ff8-4d82-bcb6-000000000001"


def test_replay_serves_every_recording_and_run_relays_one_as_the_replay_says(wan_relay: Path, tmp_path: Path) -> None:
    theirs = sample("wan2.5-t2i_partial")  # an answer a user saved from DashScope
    theirs["output"]["task_id"] = THEIR_TASK
    (tmp_path / "saved.json").write_text(json.dumps(theirs))

    with subprocess.Popen([str(wan_relay), "replay", str(tmp_path / "saved.json")], env=user_environment(),
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as replay:
        guide = []
        for line in replay.stdout:  # type: ignore[union-attr]
            guide.append(line)
            if line.startswith("Any other task id"):
                break
        exports = dict(re.findall(r"^  export (\w+)=(\S+)$", "".join(guide), re.MULTILINE))
        [command] = [line.split() for line in guide if line.startswith("  .venv/bin/wan-relay run ")]
        header = next(number for number, line in enumerate(guide) if line.startswith("TASK_ID"))
        rows = {line.split()[0]: line.split() for line in guide[header + 1 : -1]}
        # the command as printed (the same script as .venv/bin/wan-relay), with the variables printed
        printed = subprocess.run([str(wan_relay), *command[1:]], env=user_environment(**exports), cwd=tmp_path,
                                 capture_output=True, text=True, timeout=90, check=False)
        saved = subprocess.run([str(wan_relay), "run", THEIR_TASK, "--poll-interval", "1"],
                               env=user_environment(**exports), cwd=tmp_path, capture_output=True, text=True,
                               timeout=90, check=False)
        replay.send_signal(signal.SIGTERM)
        served, _ = replay.communicate(timeout=30)

    assert set(exports) == {"DASHSCOPE_BASE_URL", "DASHSCOPE_API_KEY", "ALLOWED_MEDIA_URLS"}
    assert {recording_task_id(path) for path in SAMPLES.glob("*.json")} | {THEIR_TASK} == set(rows)
    assert rows["wan2-5-t2i-partial"][1:5] == ["PENDING,", "RUNNING,", "SUCCEEDED", "2"]
    assert printed.returncode == 0, printed.stdout + printed.stderr
    task_id = command[-1]
    detail = load_event(tmp_path / "out" / task_id)
    assert detail["status"] == "SUCCEEDED" and detail["media"]
    assert_media_files_match(tmp_path / "out" / task_id, detail)
    assert [line.split(": ")[1] for line in printed.stdout.splitlines() if " poll " in line] == [
        "PENDING, next poll in 10 s", "RUNNING, next poll in 5 s", "SUCCEEDED - relayed"]  # the relay's own policy
    assert saved.returncode == 3, saved.stdout + saved.stderr  # their recording: two images, one refused
    assert load_event(tmp_path / "out" / THEIR_TASK)["status"] == "PARTIAL"
    assert replay.returncode == 0
    assert f"  GET /api/v1/tasks/{task_id}\n" in served and served.rstrip().endswith("replay stopped")


def test_replay_refuses_a_file_that_is_not_a_task_answer(wan_relay: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')

    done = subprocess.run([str(wan_relay), "replay", str(tmp_path / "notes.json")], env=user_environment(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    assert done.stderr == (f"wan-relay: {tmp_path / 'notes.json'} is not a DashScope task answer: "
                           "it has no output.task_status\n")
