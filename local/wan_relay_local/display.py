"""What a person sees while tasks are relayed: one line per poll as it happens and one line per
outcome (a green tick for SUCCEEDED only), and on a terminal a live table of the tasks in flight
that goes away when they end. The event itself is in event.json (and on stdout with `--json`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from .follow import PollSeen

_STYLE = {
    "SUCCEEDED": "green",
    "PARTIAL": "yellow",
    "PENDING": "cyan",
    "RUNNING": "cyan",
    "THROTTLED": "magenta",
}

#: the outcome's mark: a tick only when every media item is in S3
_MARK = {"SUCCEEDED": "[green]✓[/green]", "PARTIAL": "[yellow]![/yellow]"}
_FAILED_MARK = "[red]✗[/red]"
_MESSAGE_CHARS = 200


def _styled(status: str | None) -> str:
    text = escape(status or "?")
    style = _STYLE.get(status or "", "red" if status else "dim")
    return f"[{style}]{text}[/{style}]"


def mark(status: str | None) -> str:
    return _MARK.get(status or "", _FAILED_MARK)


def short(task_id: str) -> str:
    return task_id if len(task_id) <= 13 else task_id[:8] + "…"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _one_line(text: Any) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= _MESSAGE_CHARS else words[: _MESSAGE_CHARS - 1] + "…"


def summary(detail: dict[str, Any]) -> str:
    """What became of the task, in a few words: what was stored where, or why nothing was."""
    media = detail.get("media") or []
    failures = detail.get("failures") or []
    error = detail.get("error") or {}
    stored = ""
    if media:
        kinds = {item.get("type") for item in media}
        word = kinds.pop() if len(kinds) == 1 else "media item"
        folder = str(media[0].get("s3_uri", "")).rsplit("/", 1)[0]
        stored = f"{_plural(len(media), str(word))} stored in {folder}/"
    if failures:
        failed = ", ".join(f"#{f.get('index')} {f.get('code')}" for f in failures)
        stored = f"{stored}; {len(failures)} failed ({failed})" if stored else f"{len(failures)} failed ({failed})"
    if error:
        reason = _one_line(f"{error.get('code')}: {error.get('message')}").rstrip(".")
        return f"{stored}; {reason}" if stored else reason
    return stored or f"DashScope answered {detail.get('provider_status')}"


class _StateColumn(ProgressColumn):
    """A spinner while the task runs, then its outcome's mark."""

    def __init__(self) -> None:
        super().__init__()
        self._spinner = SpinnerColumn()

    def render(self, task: Task) -> Any:
        if task.finished:
            return Text.from_markup(task.fields.get("mark", ""))
        return self._spinner.render(task)


class Display:
    """Thread-safe: executions followed in parallel report into one display."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # the live table only where it can be redrawn in place; elsewhere the lines say it all
        self._progress = Progress(
            _StateColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[status]}"),
            TextColumn("[dim]polls[/dim] {task.fields[polls]}"),
            TextColumn("{task.fields[wait]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,  # the embedded function logs to stdout (a file then)
            redirect_stderr=False,
        ) if console.is_terminal else None
        self._rows: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _update(self, task_id: str, **fields: Any) -> None:
        row = self._rows.get(task_id)
        if self._progress is not None and row is not None:
            self._progress.update(row, **fields)

    # --- progress -------------------------------------------------------------------------------

    def track(self, task_id: str, label: str = "") -> None:
        description = f"[bold]{escape(short(task_id))}[/bold] {escape(label)}".rstrip()
        with self._lock:
            if self._progress is not None:
                self._rows[task_id] = self._progress.add_task(
                    description, total=None, status=_styled("STARTED"), polls=0, wait="", mark=""
                )

    def poll(self, seen: PollSeen) -> None:
        name = f"[bold]{escape(short(seen.task_id))}[/bold]"
        with self._lock:
            if seen.error is not None:
                self.console.print(f"{name} [red]poll failed[/red] with {escape(seen.error)}")
                return
            if seen.done:
                line = f"{name} poll {seen.polls}: {_styled(seen.status)} - relayed"
                wait = ""
            else:
                line = f"{name} poll {seen.polls}: {_styled(seen.status)}, next poll in {seen.wait_seconds} s"
                wait = f"[dim]next in[/dim] {seen.wait_seconds} s"
            self.console.print(line)
            self._update(seen.task_id, status=_styled(seen.status), polls=seen.polls, wait=wait)

    def ended(self, task_id: str, status: str | None) -> None:
        with self._lock:
            self._update(task_id, total=1, completed=1, status=_styled(status), wait="", mark=mark(status))

    # --- results --------------------------------------------------------------------------------

    def outcome(self, detail: dict[str, Any], files: list[Path] | None = None) -> None:
        """The one line a task ends with: its mark, status and summary, and where its files are."""
        status = detail.get("status")
        line = (f"{mark(status)} [bold]{escape(short(str(detail.get('task_id'))))}[/bold] {_styled(status)}: "
                f"{escape(summary(detail))}")
        if files:
            folder = files[0].parent
            line += f"; files in [link=file://{folder.resolve()}]{escape(str(folder))}/[/link] " \
                    f"({escape(', '.join(p.name for p in files))})"
        with self._lock:
            self.console.print(line, soft_wrap=True)

    def info(self, message: str) -> None:
        with self._lock:
            self.console.print(message)
