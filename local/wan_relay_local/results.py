"""What a local run leaves for the person who ran it: `DIR/<task_id>/event.json` (the completion
event's detail, as emitted) and the media files copied back from S3 next to it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from wan_relay.models import TASK_ID_PATTERN

#: exit codes of `wan-relay run` and `start`, by completion status
EXIT_SUCCEEDED = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


def exit_code_for(status: str | None) -> int:
    if status == "SUCCEEDED":
        return EXIT_SUCCEEDED
    if status == "PARTIAL":
        return EXIT_PARTIAL
    return EXIT_OTHER


def task_dir(out_dir: Path, task_id: str) -> Path:
    if not re.fullmatch(TASK_ID_PATTERN, task_id):  # also keeps the path inside out_dir
        raise ValueError(f"not a DashScope task id: {task_id!r}")
    return out_dir / task_id


def save_result(out_dir: Path, detail: dict[str, Any], s3: Any) -> list[Path]:
    """Writes event.json and downloads each stored media item; returns the files written."""
    folder = task_dir(out_dir, str(detail["task_id"]))
    folder.mkdir(parents=True, exist_ok=True)
    event_file = folder / "event.json"
    event_file.write_text(json.dumps(detail, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written = [event_file]
    for item in detail.get("media", []):
        name = Path(str(item["key"])).name  # `<index>.<ext>`: the key's last segment
        target = folder / name
        s3.download_file(item["bucket"], item["key"], str(target))
        written.append(target)
    return written


class CompletionEvents:
    """Reads the completion events the stack's observer queue received, keyed by task id."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._events: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _drain(self) -> None:
        while True:
            answer = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return
            for message in messages:
                event = json.loads(message["Body"])
                detail = event.get("detail") or {}
                self._events.setdefault(str(detail.get("task_id")), event)
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def wait_for(self, task_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The whole EventBridge event (envelope and detail) emitted for `task_id`, or None."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._drain()
                found = self._events.get(task_id)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
