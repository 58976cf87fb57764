"""`make run` runs `wan-relay demo`: four replayed tasks through the embedded AWS, files a person can open."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import assert_media_files_match, load_event, user_environment


def media_names(detail: dict) -> list[str]:
    return [Path(item["key"]).name for item in detail["media"]]

EXPECTED = {
    "f470bbfd-d955-4165-935b-d35b8e2a91c0": ("SUCCEEDED", "image", 1),  # wan2.6 text-to-image
    "a1b2c3d4-0000-4c5d-8e9f-111122223333": ("PARTIAL", "image", 2),  # wan2.5, one of three refused
    "af6efbc0-4bef-4194-8246-0a1b2c3d4e5f": ("SUCCEEDED", "video", 1),  # wan2.7 image-to-video
    "86ecf553-d340-4e21-af6e-0a1b2c3d4e5f": ("FAILED", "image", 0),  # refused by DashScope
}


def test_demo_relays_four_tasks_and_leaves_their_events_and_media(wan_relay: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    done = subprocess.run(
        [str(wan_relay), "demo", "--out", str(out)],
        env=user_environment(), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for task_id, (status, kind, media) in EXPECTED.items():
        folder = out / task_id
        detail = load_event(folder)
        assert (detail["task_id"], detail["status"], detail["kind"]) == (task_id, status, kind)
        assert len(detail["media"]) == media
        assert_media_files_match(folder, detail)
        # the polls were shown as they happened, then the event
        assert f"{task_id[:8]}… poll 1: PENDING, next poll in 1 s" in done.stdout
        assert f"{task_id[:8]}… poll 2: RUNNING, next poll in 1 s" in done.stdout
        [outcome] = [line for line in done.stdout.splitlines() if line[2:].startswith(f"{task_id[:8]}… {status}: ")]
        assert outcome[0] == {"SUCCEEDED": "✓", "PARTIAL": "!"}.get(status, "✗")
        assert outcome.endswith(f"files in {folder}/ ({', '.join(['event.json', *media_names(detail)])})")
    partial = load_event(out / "a1b2c3d4-0000-4c5d-8e9f-111122223333")
    assert [f["code"] for f in partial["failures"]] == ["DataInspectionFailed"]
    assert (out / "af6efbc0-4bef-4194-8246-0a1b2c3d4e5f" / "0.mp4").stat().st_size > 100_000
    # then a burst through the sweeper: every image relayed, one GET each and a list page or two, no 429;
    # and one whose ends DashScope notifies: resumed on their notifications, not a list page
    listed, notified = [line for line in done.stdout.splitlines() if line.startswith("relayed ")]
    for burst, few_pages in ((listed, range(1, 4)), (notified, [0])):
        assert burst.startswith("relayed 12 of 12") and ", 0 answered 429," in burst
        queries, pages = (int(n) for n in re.search(r"(\d+) DashScope queries, (\d+) of them list pages",
                                                    burst).groups())
        assert queries - pages == 12 and pages in few_pages, burst
    for folder in ("listed", "notified"):
        events = [load_event(task) for task in (out / "burst" / folder).iterdir()]
        assert sorted(e["status"] for e in events) == ["SUCCEEDED"] * 12 and all(e["media"] for e in events)
    # the function's own log lines are kept out of the display, in a file
    assert '"level"' not in done.stdout
    assert "task not finished" in (out / "logs" / "poll-task.log").read_text()
