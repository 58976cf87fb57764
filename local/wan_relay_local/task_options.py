"""The task options of `run` and `start` (TASK_ID, --kind, --model, --context, --poll-interval,
--timeout): added to a parser, explained in the words of the wait policy they change, and turned into
the workflow's loop input with each mistake said in plain words, before the relay's own model (whose
messages speak of fields and patterns) checks it again.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

import msgspec.inspect
from wan_relay.models import TASK_ID_PATTERN, LoopState
from wan_relay.policy import DEFAULT_INTERVAL_SECONDS, LONG_RUNNING_SECONDS, MAX_POLLS, MAX_WAIT_SECONDS

from .preflight import UsageError

TASK_ID_RULE = "a task id is 1-128 letters, digits or '-' (as DashScope returned it on submission)"


def _int_bounds(field: str) -> tuple[int, int]:
    """The bounds the relay's loop-input model sets on an integer field."""
    info = next(f for f in msgspec.inspect.type_info(LoopState).fields if f.name == field)
    kinds = info.type.types if isinstance(info.type, msgspec.inspect.UnionType) else (info.type,)
    number = next(t for t in kinds if isinstance(t, msgspec.inspect.IntType))
    return int(number.ge), int(number.le)


def _text_limit(field: str) -> int:
    info = next(f for f in msgspec.inspect.type_info(LoopState).fields if f.name == field)
    kinds = info.type.types if isinstance(info.type, msgspec.inspect.UnionType) else (info.type,)
    return int(next(t for t in kinds if isinstance(t, msgspec.inspect.StrType)).max_length)


POLL_INTERVAL_BOUNDS = _int_bounds("poll_interval_seconds")
TIMEOUT_BOUNDS = _int_bounds("timeout_seconds")


def poll_interval_help() -> str:
    """What --poll-interval does, from the policy's own numbers (wan_relay.policy)."""
    low, high = POLL_INTERVAL_BOUNDS
    return (
        f"poll every SECONDS ({low}-{high}) from the first poll on, instead of the wait policy (first poll when "
        f"the task can first be done, then every {DEFAULT_INTERVAL_SECONDS['image']} s for images, "
        f"{DEFAULT_INTERVAL_SECONDS['video']} s for videos). A task older than "
        f"{LONG_RUNNING_SECONDS['image'] // 60} min (images) or {LONG_RUNNING_SECONDS['video'] // 60} min "
        f"(videos), counted from its submission, is polled every tenth of its age (at most {MAX_WAIT_SECONDS} s) "
        f"if that is longer than SECONDS: the loop stops after {MAX_POLLS:,} polls"
    )


def add_task_options(parser: argparse.ArgumentParser) -> None:
    low, high = TIMEOUT_BOUNDS
    parser.add_argument("task_id", metavar="TASK_ID", help="the DashScope task id (as returned on submission)")
    parser.add_argument("--kind", choices=("image", "video"),
                        help="what the task makes; guessed from --model or the answer when not given")
    parser.add_argument("--model", help="the Wan model the task was submitted to (e.g. wan2.6-t2i), copied "
                                        "into the event and used to guess --kind")
    parser.add_argument("--context", metavar="JSON",
                        help="a JSON object passed through untouched into the completion event's context")
    parser.add_argument("--poll-interval", metavar="SECONDS", help=poll_interval_help())
    parser.add_argument("--timeout", metavar="SECONDS",
                        help=f"give up SECONDS ({low}-{high}, default {high}: DashScope keeps tasks 24 h) after "
                             "the first poll; the task then ends as TIMED_OUT")


def _whole_seconds(option: str, value: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise UsageError(f"{option} is a whole number of seconds from {low} to {high}, not {value!r}")
    return number


def loop_input(args: argparse.Namespace) -> dict[str, Any]:
    """The workflow's input from the options; a mistake is a UsageError in plain words."""
    if not re.fullmatch(TASK_ID_PATTERN, args.task_id):
        shown = args.task_id if len(args.task_id) <= 60 else args.task_id[:57] + "..."
        raise UsageError(f"{TASK_ID_RULE}; TASK_ID {shown!r} is not")
    value: dict[str, Any] = {"task_id": args.task_id}
    if args.kind:
        value["kind"] = args.kind
    if args.model is not None:
        limit = _text_limit("model")
        if not args.model.strip() or len(args.model) > limit:
            raise UsageError(f"--model is a Wan model name of 1-{limit} characters, e.g. wan2.6-t2i")
        value["model"] = args.model
    if args.context is not None:
        try:
            context = json.loads(args.context)
        except ValueError:
            raise UsageError("--context must be JSON, e.g. '{\"order\": 42}'") from None
        if not isinstance(context, dict):
            raise UsageError("--context must be a JSON object, e.g. '{\"order\": 42}'")
        value["context"] = context
    if args.poll_interval is not None:
        value["poll_interval_seconds"] = _whole_seconds("--poll-interval", args.poll_interval, POLL_INTERVAL_BOUNDS)
    if args.timeout is not None:
        value["timeout_seconds"] = _whole_seconds("--timeout", args.timeout, TIMEOUT_BOUNDS)
    _relay_accepts(value)
    return value


def _relay_accepts(value: dict[str, Any]) -> None:
    """The relay's own check, the one the workflow's first poll makes: whatever it refuses that the
    checks above let through is still said before anything starts."""
    from wan_relay.errors import InvalidInput
    from wan_relay.relay import parse_state

    try:
        parse_state(value)
    except InvalidInput as exc:
        raise UsageError(f"the relay refuses these options: {exc.message}") from None
