"""What a person sees while tasks are relayed: one line per poll as it happens, a live progress
table on a terminal (plain lines elsewhere), each completion event, and the files written.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .follow import PollSeen

_STYLE = {
    "SUCCEEDED": "green",
    "PARTIAL": "yellow",
    "PENDING": "cyan",
    "RUNNING": "cyan",
    "THROTTLED": "magenta",
}


def _styled(status: str | None) -> str:
    text = escape(status or "?")
    style = _STYLE.get(status or "", "red" if status else "dim")
    return f"[{style}]{text}[/{style}]"


def short(task_id: str) -> str:
    return task_id if len(task_id) <= 13 else task_id[:8] + "…"


class Display:
    """Thread-safe: executions followed in parallel report into one display."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/green]"),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[status]}"),
            TextColumn("[dim]polls[/dim] {task.fields[polls]}"),
            TextColumn("{task.fields[wait]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            redirect_stdout=False,  # the embedded function logs to stdout (a file then)
            redirect_stderr=False,
        )
        self._rows: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Display:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    # --- progress -------------------------------------------------------------------------------

    def track(self, task_id: str, label: str = "") -> None:
        description = f"[bold]{escape(short(task_id))}[/bold] {escape(label)}".rstrip()
        with self._lock:
            self._rows[task_id] = self._progress.add_task(
                description, total=None, status=_styled("STARTED"), polls=0, wait=""
            )

    def poll(self, seen: PollSeen) -> None:
        name = f"[bold]{escape(short(seen.task_id))}[/bold]"
        with self._lock:
            row = self._rows.get(seen.task_id)
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
            if row is not None:
                update: dict[str, Any] = {"status": _styled(seen.status), "polls": seen.polls, "wait": wait}
                if seen.done:
                    update.update(total=1, completed=1)
                self._progress.update(row, **update)

    def ended(self, task_id: str, status: str | None) -> None:
        with self._lock:
            row = self._rows.get(task_id)
            if row is not None:
                self._progress.update(row, total=1, completed=1, status=_styled(status), wait="")

    # --- results --------------------------------------------------------------------------------

    def event(self, detail: dict[str, Any], title: str = "completion event") -> None:
        with self._lock:
            self.console.rule(f"{escape(title)}: {escape(str(detail.get('task_id')))} {_styled(detail.get('status'))}")
            self.console.print_json(data=detail)

    def files(self, paths: list[Path]) -> None:
        with self._lock:
            for path in paths:
                self.console.print(f"  wrote [link=file://{path.resolve()}]{escape(str(path))}[/link]")

    def info(self, message: str) -> None:
        with self._lock:
            self.console.print(message)
