"""The poll function's own log lines (Powertools JSON, metrics) in OUT/logs/poll-task.log, where
Lambda would send them to CloudWatch, so the terminal shows the progress only.

The relay's logger takes its name from POWERTOOLS_SERVICE_NAME when its module is imported, and
reaches a handler only through the logger of that service: the name is set before any command
imports the relay (`use_service_name`), or its lines go nowhere and its warnings to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

#: what Powertools needs in this process (the template sets the same for the function)
POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "wan-relay",
    "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
}


def use_service_name() -> None:
    for name, value in POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def function_log(out_dir: Path, *, handler_here: bool = False) -> Iterator[Path]:
    """Sends stdout (where the function writes, as in Lambda) to the log file.

    `handler_here`: no poll function runs (`run --aws` calls the relay directly), so the relay's
    lines get a Powertools JSON handler on the service's logger for the while."""
    path = out_dir / "logs" / "poll-task.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        if not handler_here:
            yield path
            return
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        name = os.environ.get("POWERTOOLS_SERVICE_NAME", "wan-relay")
        service = logging.getLogger(name)
        formatter = LambdaPowertoolsFormatter()
        formatter.append_keys(service=name)
        handler = logging.StreamHandler(sink)
        handler.setFormatter(formatter)
        level = service.level
        service.addHandler(handler)
        service.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())
        try:
            yield path
        finally:
            service.removeHandler(handler)
            service.setLevel(level)
