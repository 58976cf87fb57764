"""`wan-relay replay`: a DashScope with every recorded task, for `wan-relay run` to relay without a
key, used as its own output says; a user's own recorded answer served beside them."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

from wan_relay_local.scenarios import SAMPLES, recording_task_id

from tests.conftest import sample

from .conftest import ROOT, assert_media_files_match, load_event, replay_guide, user_environment

THEIR_TASK = "0385dc79-5ff8-4d82-bcb6-000000000001"


def test_replay_serves_every_recording_and_a_saved_answer_for_run_to_relay(wan_relay: Path, tmp_path: Path) -> None:
    theirs = sample("wan2.5-t2i_partial")  # an answer a user saved from DashScope
    theirs["output"]["task_id"] = THEIR_TASK
    (tmp_path / "saved.json").write_text(json.dumps(theirs))

    with subprocess.Popen([str(wan_relay), "replay", str(tmp_path / "saved.json")], env=user_environment(),
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as replay:
        guide, exports = replay_guide(replay)
        [command] = [line.split() for line in guide if line.startswith("  .venv/bin/wan-relay run ")]
        header = next(number for number, line in enumerate(guide) if line.startswith("TASK_ID"))
        rows = {line.split()[0]: line.split() for line in guide[header + 1 : -1]}
        saved = subprocess.run([str(wan_relay), "run", THEIR_TASK, "--poll-interval", "1"],
                               env=user_environment(**exports), cwd=tmp_path, capture_output=True, text=True,
                               timeout=90, check=False)
        replay.send_signal(signal.SIGTERM)
        served, _ = replay.communicate(timeout=30)

    assert set(exports) == {"DASHSCOPE_BASE_URL", "DASHSCOPE_API_KEY", "ALLOWED_MEDIA_URLS"}
    assert {recording_task_id(path) for path in SAMPLES.glob("*.json")} | {THEIR_TASK} == set(rows)
    assert rows["wan2-5-t2i-partial"][1:5] == ["PENDING,", "RUNNING,", "SUCCEEDED", "2"]
    # the command it prints is the first of the docs' walkthrough, which test_docs_commands runs as written
    assert shlex.join(command) in (ROOT / "docs" / "local.md").read_text()
    assert saved.returncode == 3, saved.stdout + saved.stderr  # their recording: two images, one refused
    folder = tmp_path / "out" / THEIR_TASK
    detail = load_event(folder)
    assert (detail["status"], [f["code"] for f in detail["failures"]]) == ("PARTIAL", ["DataInspectionFailed"])
    assert_media_files_match(folder, detail)
    assert replay.returncode == 0
    assert f"  GET /api/v1/tasks/{THEIR_TASK}\n" in served and served.rstrip().endswith("replay stopped")


def test_replay_refuses_a_file_that_is_not_a_task_answer(wan_relay: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')

    done = subprocess.run([str(wan_relay), "replay", str(tmp_path / "notes.json")], env=user_environment(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    assert done.stderr == (f"wan-relay: {tmp_path / 'notes.json'} is not a DashScope task answer: "
                           "it has no output.task_status\n")
