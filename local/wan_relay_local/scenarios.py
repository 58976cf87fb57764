"""The recorded DashScope answers of `events/dashscope/`, scripted on a replay server as tasks that
run: each goes through PENDING and RUNNING to its recorded end, with its times moved to around now
and real PNG images and a playable MP4 behind its URLs. The demo plays four of them; `wan-relay
replay` plays every one (and any answer a user recorded), for `wan-relay run` to relay.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wan_relay.models import TASK_ID_PATTERN

from .lambda_bridge import ROOT
from .replay import Media, ReplayDashScope
from .sample_media import mp4_video, png_image

SAMPLES = ROOT / "events" / "dashscope"
#: the replay server's own key (not a secret): `wan-relay replay` prints it for `run` to use
REPLAY_API_KEY = "sk-replay-key"
_CHINA = timezone(timedelta(hours=8))
_TIME_FIELDS = ("submit_time", "scheduled_time", "end_time")
#: statuses after which DashScope's answer no longer changes
_FINAL = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def china_time(moment: datetime) -> str:
    """A time as DashScope writes it: China time (UTC+8), no zone, milliseconds."""
    return moment.astimezone(_CHINA).strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def media_urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in media_urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in media_urls(v)]
    return [value] if isinstance(value, str) and re.match(r"^https?://", value) else []


class Timeline:
    """One task's times around `now`: submitted, scheduled (started running), ended."""

    def __init__(self, now: datetime, runs_for: float) -> None:
        self.submitted = now - timedelta(seconds=1)
        self.scheduled = now + timedelta(seconds=0.5)
        self.ended = now + timedelta(seconds=runs_for)

    def waiting(self, task_id: str, status: str, *, stamped: bool = True) -> dict[str, Any]:
        """A PENDING or RUNNING answer. Unstamped, it carries no times: the relay then counts the
        task's age from its first poll, whenever that comes (a replay may wait an hour for it)."""
        answer = sample("pending" if status == "PENDING" else "running")
        output = answer["output"]
        output["task_id"] = task_id
        for name in _TIME_FIELDS:
            output.pop(name, None)
        if stamped:
            output["submit_time"] = china_time(self.submitted)
            if status == "RUNNING":
                output["scheduled_time"] = china_time(self.scheduled)
        return answer

    def final(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The recorded end, its times (those it has) moved to this timeline and its URLs' expiry to
        a day after it ended, as DashScope's are."""
        answer = copy.deepcopy(answer)
        output = answer.get("output", {})
        moments = {"submit_time": self.submitted, "scheduled_time": self.scheduled, "end_time": self.ended}
        for name, moment in moments.items():
            if name in output:
                output[name] = china_time(moment)
        expires = int((self.ended + timedelta(hours=24)).timestamp())
        return json.loads(re.sub(r"Expires=\d+", f"Expires={expires}", json.dumps(answer)))


def serve_media(replay: ReplayDashScope, answer: dict[str, Any], seed: str, *,
                video_seconds: float = 2.0) -> dict[str, Any]:
    """The answer with its URLs pointing at `replay`, which serves a PNG (or, for `.mp4`, an MP4)
    behind each, made from `seed`."""
    media: dict[str, Media] = {}
    for number, url in enumerate(media_urls(answer)):
        path = urlsplit(url).path
        if path.endswith(".mp4"):
            media[path] = Media(mp4_video(f"{seed}/{number}", seconds=video_seconds), content_type="video/mp4")
        else:
            media[path] = Media(png_image(f"{seed}/{number}"), content_type="image/png")
    return replay.rehost(answer, media)


# --- every recording, for `wan-relay replay` -------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A recorded answer the replay plays as a task."""

    task_id: str
    source: Path
    #: DashScope's answers poll after poll; the last one repeats
    statuses: tuple[str, ...]
    #: what the last answer holds, in a few words ("2 images, 1 failed")
    holds: str


def recording_task_id(path: Path) -> str:
    """A task id from a recording's name (`wan2.6-t2i_succeeded.json` -> `wan2-6-t2i-succeeded`):
    the recordings reuse a few task ids, and a name says what the task does."""
    return re.sub(r"[^A-Za-z0-9-]", "-", path.stem)[:128]


def _holds(answer: dict[str, Any]) -> str:
    urls = media_urls(answer)
    videos = sum(1 for url in urls if urlsplit(url).path.endswith(".mp4"))
    images = len(urls) - videos
    results = answer.get("output", {}).get("results")
    items = results if isinstance(results, list) else []
    failed = sum(1 for item in items if isinstance(item, dict) and item.get("code"))
    parts = [f"{n} {word}{'s' if n > 1 else ''}" for n, word in ((images, "image"), (videos, "video")) if n]
    if failed:
        parts.append(f"{failed} failed")
    code = answer.get("output", {}).get("code") or answer.get("code")
    if code and not failed:
        parts.append(str(code))
    return ", ".join(parts)


def load_recording(path: Path) -> dict[str, Any]:
    """A recorded task answer (`{"output": {"task_status": ...}}`), or ValueError saying what is wrong."""
    try:
        answer = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("output"), dict) \
            or not answer["output"].get("task_status"):
        raise ValueError(f"{path} is not a DashScope task answer: it has no output.task_status")
    return answer


def script_recording(replay: ReplayDashScope, answer: dict[str, Any], task_id: str, source: Path,
                     now: datetime) -> Recording:
    """Scripts one recorded answer as task `task_id`: a finished task is first PENDING and RUNNING
    (a canceled one PENDING only, an unknown one nothing else); an unfinished one stays as recorded."""
    timeline = Timeline(now, runs_for=1)
    final = timeline.final(answer)
    final["output"]["task_id"] = task_id
    status = str(final["output"]["task_status"])
    if status in _FINAL:
        before = {"UNKNOWN": [], "CANCELED": ["PENDING"]}.get(status, ["PENDING", "RUNNING"])
    else:  # PENDING, RUNNING, SUSPENDED: unstamped, so the waits do not grow with the replay's age
        before = []
        for name in _TIME_FIELDS:
            final["output"].pop(name, None)
    final = serve_media(replay, final, task_id, video_seconds=1.0)
    replay.script(task_id, *[timeline.waiting(task_id, s, stamped=False) for s in before], final)
    return Recording(task_id, source, (*before, status), _holds(final))


def script_recordings(replay: ReplayDashScope, extra: Sequence[Path] = (), now: datetime | None = None
                      ) -> list[Recording]:
    """Every recording of `events/dashscope/`, each under the task id its name gives, then each file
    of `extra` under its own task id (the one its answer names, if it is a valid one)."""
    now = now or datetime.now(UTC)
    theirs = [(path, load_recording(path)) for path in extra]  # a wrong file is said before any work
    recordings = [script_recording(replay, sample(path.stem), recording_task_id(path), path, now)
                  for path in sorted(SAMPLES.glob("*.json"))]
    for path, answer in theirs:
        own = str(answer["output"].get("task_id") or "")
        task_id = own if re.fullmatch(TASK_ID_PATTERN, own) else recording_task_id(path)
        recordings.append(script_recording(replay, answer, task_id, path, now))
    return recordings
