"""`wan-relay`: the demo, a real task relayed through the embedded pipeline (or a real account), a
task started on a deployed stack, and a replayed DashScope to try `run` on. Run `wan-relay --help`
for the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .function_log import function_log, use_service_name
from .preflight import UsageError, aws_account, aws_region, dashscope_reachable, writable_folder
from .results import EXIT_OTHER, EXIT_SUCCEEDED, EXIT_USAGE, exit_code_for, task_dir
from .task_options import add_task_options, loop_input

#: the relay's errors that mean "fix the setup or the input", not "the task failed"
_SETUP_ERRORS = ("ConfigurationError", "OperatorError", "InvalidInput")
#: the replay answers a poll at most this long after it came in
_REPLAY_TICK_SECONDS = 0.2


# --- the command line ---------------------------------------------------------------------------

_EXIT_CODES = """exit codes (run, start):
  0  the task SUCCEEDED: every media item is in S3
  3  PARTIAL: some media items are in S3, the others failed (see the event's failures)
  1  any other end: FAILED, CANCELED, UNKNOWN, TIMED_OUT, MEDIA_UNAVAILABLE, or the workflow failed
  2  a usage or configuration error (one line on stderr says which)"""

_RUN_ENVIRONMENT = """environment (the relay core's configuration):
  DASHSCOPE_API_KEY     the DashScope API key (never printed); required
  DASHSCOPE_BASE_URL    default https://dashscope-intl.aliyuncs.com/api/v1 (Singapore); Beijing is
                        https://dashscope.aliyuncs.com/api/v1, Virginia https://dashscope-us.aliyuncs.com/api/v1
  ALLOWED_MEDIA_URLS    origins media may be fetched from, default DashScope's result buckets
                        (https://dashscope-result*.oss-*.aliyuncs.com,https://dashscope-*.oss-accelerate.aliyuncs.com)
  ALLOW_LOOPBACK_MEDIA_ADDRESSES  true: media may come from 127.0.0.1 (a local stand-in); the embedded
                        AWS's function has it, a deployed stack never (default false)
  MAX_MEDIA_BYTES       largest media item accepted, default 1 GiB
  MEDIA_PREFIX          S3 key prefix, default wan/
  EVENT_SOURCE          the event's source, default wan.relay
with --aws also:
  MEDIA_BUCKET          the bucket to store the media in (required)
  EVENT_BUS_NAME        the bus to publish the completion event on, default "default"
  DASHSCOPE_API_KEY_SECRET  a Secrets Manager secret holding the key, instead of DASHSCOPE_API_KEY
  IDEMPOTENCY_TABLE     optional: a DynamoDB table of the relay's idempotency records
  and boto3's usual credentials and region (AWS_PROFILE, AWS_REGION, ...)"""


def _add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="also print the completion event's detail as JSON on stdout (the progress then goes "
                             "to stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wan-relay",
        description="Relay finished Wan (Alibaba Cloud DashScope) image and video tasks into S3 and announce "
                    "each with one EventBridge completion event, using the same code and Step Functions "
                    "workflow as the deployed stack.",
        epilog="Run `wan-relay COMMAND --help` for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="relay replayed tasks through an embedded AWS (no account, no key needed)",
        description="Starts an embedded AWS on loopback (moto's server in this process), creates the stack of "
                    "template.yaml on it, starts a replay DashScope on loopback playing four realistic tasks "
                    "(a wan2.6 image, a wan2.5 multi-image task with one image refused, a wan2.7 video, a "
                    "failed task), and runs the real workflow for each. Shows each poll as it happens and each "
                    "task's outcome, and writes OUT/<task_id>/event.json with the media from S3. Then it "
                    "relays two bursts of 12 images through a stack whose workflows park, found by the "
                    "sweeper's list pages (OUT/burst/listed/) and by task-finished notifications "
                    "(OUT/burst/notified/). The demo polls every second (the real policy waits longer); it "
                    "takes about 40 seconds.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 every task ended as scripted, 1 otherwise, 2 usage error.\n"
               "The embedded function's log lines go to OUT/logs/poll-task.log.",
    )
    demo.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                      help="where to write each task's event.json and media (default: ./out)")

    run = commands.add_parser(
        "run",
        help="relay one real task (or any server answering like DashScope) through the embedded pipeline",
        description="Relays one task through the embedded pipeline: an embedded AWS on loopback with the stack "
                    "of template.yaml, the real handler and workflow, and the DashScope named by the "
                    "environment. Shows each poll and the outcome in one line each, writes "
                    "OUT/<task_id>/event.json (the event's detail, exactly as emitted) and the media next to it. "
                    "With --aws, no embedded AWS: the wait loop runs in this process against the AWS account "
                    "boto3 finds, storing into MEDIA_BUCKET and publishing on EVENT_BUS_NAME. "
                    "To try it without a key, run `wan-relay replay` in another shell.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_RUN_ENVIRONMENT + "\n\n" + _EXIT_CODES,
    )
    add_task_options(run)
    run.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                     help="where to write OUT/<task_id>/event.json and the media files (default: ./out)")
    _add_json_option(run)
    run.add_argument("--aws", action="store_true",
                     help="use the real AWS account (boto3's usual credentials; AWS_ENDPOINT_URL unset) with "
                          "MEDIA_BUCKET and EVENT_BUS_NAME, instead of the embedded one")

    start = commands.add_parser(
        "start",
        help="start a deployed stack's workflow for a task and follow it",
        description="Finds the state machine in the outputs of the CloudFormation stack NAME (output "
                    "StateMachineArn), starts an execution named after the task (or follows the one already "
                    "running for it), shows each poll and the outcome in one line each. Uses boto3's usual "
                    "credentials and region (AWS_REGION or AWS_DEFAULT_REGION).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EXIT_CODES,
    )
    add_task_options(start)
    start.add_argument("--stack", required=True, metavar="NAME", help="the deployed stack's name")
    start.add_argument("--out", type=Path, metavar="DIR",
                       help="also write DIR/<task_id>/event.json and download the media from the stack's bucket")
    _add_json_option(start)

    replay = commands.add_parser(
        "replay",
        help="serve a replayed DashScope with every recorded task, for `run` to relay without a key",
        description="Serves, on loopback until Ctrl-C, a DashScope answering like the real one: every recorded "
                    "answer of events/dashscope/ as a task that runs (PENDING, RUNNING, then its recorded end, "
                    "with real PNG and MP4 files behind its URLs), and each FILE given (a task answer you saved "
                    "from DashScope) under its own task id. Prints the DASHSCOPE_BASE_URL, DASHSCOPE_API_KEY "
                    "and ALLOWED_MEDIA_URLS for `wan-relay run`, the task ids it knows, and each request it "
                    "answers. Any other task id is UNKNOWN to it, as to DashScope.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 stopped with Ctrl-C (or SIGTERM), 2 a FILE that is not a task answer.",
    )
    replay.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help="a recorded DashScope task answer (JSON with output.task_status) to serve too")
    return parser


# --- helpers ------------------------------------------------------------------------------------


def _relay_config(environ: dict[str, str], *, embedded: bool) -> Any:
    """The relay's configuration from the environment, a mistake in it said in one line."""
    from wan_relay.config import Config
    from wan_relay.errors import ConfigurationError

    if embedded and not environ.get("DASHSCOPE_API_KEY", "").strip():
        raise UsageError("set DASHSCOPE_API_KEY: the embedded AWS has no secret to read the key from "
                         "(no key? `wan-relay replay` serves recorded tasks)")
    try:
        return Config.from_env({"MEDIA_BUCKET": "embedded", **environ} if embedded else environ)
    except ConfigurationError as exc:
        raise UsageError(exc.message) from None


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    # a pipe or a file gets whole lines (grep-able), not lines folded at 80 columns
    terminal = stream.isatty()
    return Console(file=stream, highlight=False, width=None if terminal else 120, soft_wrap=not terminal)


def _progress_stream(args: argparse.Namespace, stdout: TextIO) -> TextIO:
    """With --json, stdout carries the event alone (for a pipe to jq); the progress goes to stderr."""
    return sys.stderr if getattr(args, "json", False) else stdout


def _print_event(args: argparse.Namespace, detail: dict[str, Any], stdout: TextIO) -> None:
    if args.json:
        stdout.write(json.dumps(detail, indent=2, ensure_ascii=False) + "\n")
        stdout.flush()


def _workflow_failure(error: str | None, cause: str | None) -> int:
    """The execution failed without a completion event: one line, exit 2 for a setup problem."""
    message = cause or ""
    with contextlib.suppress(ValueError, TypeError):
        message = json.loads(cause or "").get("errorMessage") or message
    print(f"wan-relay: the workflow failed with {error}: {message}".rstrip(": "), file=sys.stderr)
    return EXIT_USAGE if error in _SETUP_ERRORS else EXIT_OTHER


# --- the commands -------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, stdout: TextIO) -> int:
    from .demo import DEMO_API_KEY, script_demo
    from .display import Display
    from .pipeline import EmbeddedPipeline
    from .replay import ReplayDashScope

    console = _console(stdout)
    out_dir: Path = args.out
    writable_folder(out_dir)
    results: dict[str, str | None] = {}
    with ReplayDashScope(api_key=DEMO_API_KEY) as replay, function_log(out_dir) as log:
        tasks = script_demo(replay)
        environment = {
            "DASHSCOPE_BASE_URL": replay.base_url,
            "DASHSCOPE_API_KEY": DEMO_API_KEY,
            "ALLOWED_MEDIA_URLS": replay.origin,
        }
        console.print(f"[bold]wan-relay demo[/bold]: replay DashScope at {replay.origin}, starting the embedded AWS…")
        with EmbeddedPipeline(environment) as pipeline:
            assert pipeline.stack is not None
            console.print(f"stack deployed: bucket [bold]{pipeline.stack.bucket}[/bold], "
                          f"state machine {pipeline.stack.state_machine_arn}")
            with Display(console) as display:
                executions = {}
                for task in tasks:
                    display.track(task.task_id, f"{task.title} ({task.model})")
                    executions[task.task_id] = pipeline.start(task.loop_input())

                def relay(task_id: str) -> None:
                    outcome = pipeline.follow(executions[task_id], task_id, display.poll)
                    emitted = pipeline.emitted(task_id) if outcome.event else None
                    detail = emitted["detail"] if emitted else outcome.event
                    results[task_id] = detail.get("status") if detail else None
                    display.ended(task_id, results[task_id] or outcome.status)
                    if detail is None:
                        display.info(f"[red]{task_id}: the workflow ended {outcome.status} without an event: "
                                     f"{outcome.error} {outcome.cause or ''}[/red]")
                        return
                    display.outcome(detail, pipeline.save(out_dir, detail))

                threads = [threading.Thread(target=relay, args=(t.task_id,), daemon=True) for t in tasks]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        burst_ok = _demo_burst(console, out_dir / "burst")
    console.rule("summary")
    ok = burst_ok
    for task in tasks:
        got = results.get(task.task_id)
        ok = ok and got == task.expect
        mark = "[green]as expected[/green]" if got == task.expect else f"[red]expected {task.expect}[/red]"
        console.print(f"{task.title:<34} {got or 'no event':<10} {mark}  {task_dir(out_dir, task.task_id)}/",
                      soft_wrap=True)
    console.print(f"Open the pictures and the video in [bold]{out_dir}/[/bold]; how they got there: "
                  f"docs/architecture.md; the function's log is {log}.")
    return EXIT_SUCCEEDED if ok else EXIT_OTHER


def _demo_burst(console: Any, out_dir: Path) -> bool:
    """The demo's second part: a burst of images relayed by a stack that parks its workflows, the
    account's sweeper finding the ended tasks with the list endpoint; against DashScope's own limit. Then
    a second burst whose ends DashScope notifies (its task-finished notification, taken by the stack's
    receiver): the sweeper resumes each workflow on its notification, before the list could show it."""
    from .demo import BURST_LIMIT_QPS, BURST_TASKS, DEMO_API_KEY
    from .pipeline import EmbeddedPipeline
    from .replay import ReplayDashScope

    console.rule("a burst, through the sweeper (Waiting=park)")
    with ReplayDashScope(api_key=DEMO_API_KEY, rate_limit_qps=BURST_LIMIT_QPS) as replay:
        environment = {"DASHSCOPE_BASE_URL": replay.base_url, "DASHSCOPE_API_KEY": DEMO_API_KEY,
                       "ALLOWED_MEDIA_URLS": replay.origin}
        with EmbeddedPipeline(environment, parks=True) as pipeline:
            console.print(f"{BURST_TASKS} images submitted at once; their workflows park, costing nothing "
                          f"while they wait, and the sweeper resumes each when the list shows it ended…")
            listed = _burst(console, pipeline, replay, out_dir / "listed", prefix="b0257", notified=False)
            console.print("the same with DashScope's task-finished notifications (TaskFinishedTokenSecretArn): "
                          "each end reaches the stack's receiver a moment after it, a hint for the sweeper…")
            notified = _burst(console, pipeline, replay, out_dir / "notified", prefix="b0258", notified=True)
    return listed and notified


def _burst(console: Any, pipeline: Any, replay: Any, out_dir: Path, *, prefix: str, notified: bool) -> bool:
    """One burst of the demo's: its tasks started at once, each followed to its event; notified, each end
    is POSTed to the receiver as Alibaba Cloud EventBridge would, 0.3 s after it."""
    from datetime import UTC, datetime

    from wan_relay.notifications import FixedToken, receive
    from wan_relay.registry import Hints

    from .demo import BURST_LIMIT_QPS, script_burst, task_finished_request

    queries_before, throttled_before = len(replay.query_times), replay.throttled
    ends = script_burst(replay, prefix=prefix)
    timers: list[threading.Timer] = []
    if notified:
        token = "demo-token"  # noqa: S105 (the demo's own, on loopback)
        hints = Hints(pipeline.stack.client("dynamodb"), pipeline.stack.parked_table, "default")

        def notify(task_id: str) -> None:
            request = task_finished_request(task_id, token, datetime.now(UTC))
            receive(request, tokens=FixedToken(token), hints=hints, clock=time.time)

        timers = [threading.Timer(ends_after + 0.3, notify, (task_id,)) for task_id, ends_after in ends.items()]
        for timer in timers:
            timer.start()
    started = time.monotonic()
    executions = {task_id: pipeline.start({"task_id": task_id, "kind": "image"}) for task_id in ends}
    statuses = {}
    for task_id, execution in executions.items():
        outcome = pipeline.follow(execution, task_id, lambda seen: None)
        emitted = pipeline.emitted(task_id) if outcome.event else None
        statuses[task_id] = emitted["detail"]["status"] if emitted else None
        if emitted:
            pipeline.save(out_dir, emitted["detail"])
    for timer in timers:
        timer.cancel()
    relayed = sum(status == "SUCCEEDED" for status in statuses.values())
    gets = sum(replay.polls(task_id) for task_id in ends)
    queries = len(replay.query_times) - queries_before
    throttled = replay.throttled - throttled_before
    took = time.monotonic() - started
    console.print(f"relayed {relayed} of {len(ends)} in {took:.0f} s (events and images in {out_dir}/): "
                  f"{queries} DashScope queries, {queries - gets} of them list pages, {throttled} answered 429, "
                  f"at most {replay.max_queries_in_any_second()} in any second (limit {BURST_LIMIT_QPS})")
    return relayed == len(ends) and throttled == 0


def cmd_run(args: argparse.Namespace, stdout: TextIO) -> int:
    loop = loop_input(args)
    environ = dict(os.environ)
    if args.aws:
        return _run_direct(args, loop, environ, stdout)
    config = _relay_config(environ, embedded=True)
    writable_folder(args.out)
    dashscope_reachable(config.base_url)

    from .display import Display
    from .pipeline import EmbeddedPipeline, relay_environment

    console = _console(_progress_stream(args, stdout))
    task_id = loop["task_id"]
    with function_log(args.out), EmbeddedPipeline(relay_environment(environ)) as pipeline:
        assert pipeline.stack is not None
        console.print(f"relaying {task_id} from {config.base_url} through the embedded AWS")
        with Display(console) as display:
            display.track(task_id, loop.get("model", ""))
            execution = pipeline.start(loop)
            outcome = pipeline.follow(execution, task_id, display.poll)
            emitted = pipeline.emitted(task_id) if outcome.event else None
            detail = emitted["detail"] if emitted else outcome.event
            display.ended(task_id, detail.get("status") if detail else outcome.status)
        if detail is None:
            return _workflow_failure(outcome.error, outcome.cause)
        display.outcome(detail, pipeline.save(args.out, detail))
    _print_event(args, detail, stdout)
    return exit_code_for(detail.get("status"))


def _run_direct(args: argparse.Namespace, loop: dict[str, Any], environ: dict[str, str],
                stdout: TextIO) -> int:
    config = _relay_config(environ, embedded=False)
    # the relay makes its S3 client only when the task is done: region and credentials are checked now
    region = aws_region()
    account = aws_account()
    writable_folder(args.out)
    dashscope_reachable(config.base_url)
    import boto3
    from botocore.exceptions import BotoCoreError
    from wan_relay.errors import WanRelayError
    from wan_relay.publish import EventPublisher
    from wan_relay.runtime import relay_from_env

    from .direct import run_loop
    from .display import Display
    from .results import save_result

    console = _console(_progress_stream(args, stdout))
    task_id = loop["task_id"]
    try:
        with function_log(args.out, handler_here=True):
            relay = relay_from_env()
            console.print(f"relaying {task_id} from {config.base_url} into s3://{config.media_bucket} "
                          f"(account {account}, {region})")
            with Display(console) as display:
                display.track(task_id, loop.get("model", ""))
                state = run_loop(relay, loop, on_poll=display.poll)
                detail = state["event"]
                # what the workflow's EmitCompletion state does in the stack
                EventPublisher(boto3.client("events"), config.event_bus_name, config.event_source).publish(detail)
                display.ended(task_id, detail.get("status"))
        display.outcome(detail, save_result(args.out, detail, boto3.client("s3")))
    except WanRelayError as exc:
        name = type(exc).__name__
        print(f"wan-relay: {name}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if name in _SETUP_ERRORS else EXIT_OTHER
    except BotoCoreError as exc:
        raise UsageError(f"AWS: {exc}") from None
    _print_event(args, detail, stdout)
    return exit_code_for(detail.get("status"))


def _stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise UsageError(f"cannot read stack {stack!r}: {exc.response['Error'].get('Message', exc)}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def _claimed_by(outputs: dict[str, str], task_id: str) -> str | None:
    """The execution holding the task's lock (another execution relays the task), if readable."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    table = outputs.get("IdempotencyTableName")
    if not table:
        return None
    try:
        item = boto3.client("dynamodb").get_item(TableName=table, Key={"id": {"S": f"lock#{task_id}"}}).get("Item")
    except (BotoCoreError, ClientError):
        return None
    return (item or {}).get("execution", {}).get("S")


def cmd_start(args: argparse.Namespace, stdout: TextIO) -> int:
    loop = loop_input(args)
    aws_region()
    aws_account()
    if args.out is not None:
        writable_folder(args.out)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from .display import Display
    from .follow import follow_execution
    from .results import save_result
    from .stack import execution_name

    console = _console(_progress_stream(args, stdout))
    task_id = loop["task_id"]
    try:
        outputs = _stack_outputs(boto3.client("cloudformation"), args.stack)
        state_machine = outputs.get("StateMachineArn")
        if not state_machine:
            raise UsageError(f"stack {args.stack!r} has no StateMachineArn output: is it a wan-relay stack?")
        sfn = boto3.client("stepfunctions")
        name = execution_name(task_id)
        try:
            execution = sfn.start_execution(stateMachineArn=state_machine, name=name,
                                            input=json.dumps(loop))["executionArn"]
            console.print(f"started {execution}")
        except sfn.exceptions.ExecutionAlreadyExists:
            execution = state_machine.replace(":stateMachine:", ":execution:") + f":{name}"
            console.print(f"an execution for {task_id} already exists: following {execution}")
        with Display(console) as display:
            display.track(task_id, loop.get("model", ""))
            outcome = follow_execution(sfn, execution, task_id=task_id, on_poll=display.poll)
            if outcome.status == "SUCCEEDED" and outcome.event is None:
                owner = _claimed_by(outputs, task_id)
                if owner and owner != execution:
                    display.info(f"another execution relays {task_id}: following {owner}")
                    outcome = follow_execution(sfn, owner, task_id=task_id, on_poll=display.poll)
            detail = outcome.event
            display.ended(task_id, detail.get("status") if detail else outcome.status)
        if detail is None:
            if outcome.status == "SUCCEEDED":
                print(f"wan-relay: another execution relays {task_id}; its event is emitted there", file=sys.stderr)
                return EXIT_OTHER
            return _workflow_failure(outcome.error, outcome.cause)
        files = save_result(args.out, detail, boto3.client("s3")) if args.out is not None else None
        display.outcome(detail, files)
    except (BotoCoreError, ClientError) as exc:
        raise UsageError(f"AWS: {exc}") from None
    _print_event(args, detail, stdout)
    return exit_code_for(detail.get("status"))


def _shown_path(path: Path) -> str:
    from .lambda_bridge import ROOT

    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return str(path)


def cmd_replay(args: argparse.Namespace, stdout: TextIO) -> int:
    from .replay import ReplayDashScope
    from .scenarios import REPLAY_API_KEY, script_recordings

    def say(line: str = "") -> None:
        print(line, file=stdout, flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with ReplayDashScope(api_key=REPLAY_API_KEY) as replay:
        try:
            recordings = script_recordings(replay, list(args.files))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        say(f"wan-relay replay: a DashScope on {replay.origin} playing {len(recordings)} recorded tasks; "
            "Ctrl-C stops it.")
        say()
        say("Relay one of them (in another shell, from this folder):")
        say(f"  export DASHSCOPE_BASE_URL={replay.base_url}")
        say(f"  export DASHSCOPE_API_KEY={REPLAY_API_KEY}")
        say(f"  export ALLOWED_MEDIA_URLS={replay.origin}")
        example = next((r for r in recordings if r.statuses[-1] == "SUCCEEDED" and r.holds == "1 image"),
                       recordings[0])
        say(f"  .venv/bin/wan-relay run {example.task_id}")
        say()
        width = max(len(r.task_id) for r in recordings) + 2
        say(f"{'TASK_ID':<{width}}{'ANSWERS, POLL AFTER POLL':<30}{'THE LAST ONE HOLDS':<28}RECORDED IN")
        for recording in recordings:
            say(f"{recording.task_id:<{width}}{', '.join(recording.statuses):<30}{recording.holds or '-':<28}"
                f"{_shown_path(recording.source)}")
        say("Any other task id is UNKNOWN here, as at DashScope. Each request answered:")
        signal.signal(signal.SIGTERM, stop)
        answered = 0
        try:
            while True:
                time.sleep(_REPLAY_TICK_SECONDS)
                for request in replay.requests[answered:]:
                    answered += 1
                    refused = "/tasks/" in request["path"] and not request["authorized"]
                    say(f"  GET {request['path']}" + ("  refused (HTTP 401): not the key above" if refused else ""))
        except KeyboardInterrupt:
            say("replay stopped")
    return EXIT_SUCCEEDED


_COMMANDS = {"demo": cmd_demo, "run": cmd_run, "start": cmd_start, "replay": cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_service_name()  # before any command imports the relay (see function_log)
    stdout = sys.stdout
    try:
        import rich  # noqa: F401
    except ImportError:
        print("wan-relay: the local tools need their extra: pip install 'wan-relay[local]'", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args, stdout)
    except UsageError as exc:
        print(f"wan-relay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wan-relay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
