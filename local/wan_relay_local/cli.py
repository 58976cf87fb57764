"""`wan-relay`: the demo, a real task relayed through the embedded pipeline (or a real account),
and a task started on a deployed stack. Run `wan-relay --help` for the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .results import EXIT_OTHER, EXIT_SUCCEEDED, EXIT_USAGE, exit_code_for, task_dir

#: the relay's errors that mean "fix the setup or the input", not "the task failed"
_SETUP_ERRORS = ("ConfigurationError", "OperatorError", "InvalidInput")


class UsageError(Exception):
    """A usage or configuration problem: printed as one line, exit code 2."""


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
                        (https://dashscope-result-*.oss-*.aliyuncs.com,https://dashscope-*.oss-accelerate.aliyuncs.com)
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


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="the DashScope task id (as returned on submission)")
    parser.add_argument("--kind", choices=("image", "video"),
                        help="what the task makes; guessed from --model or the answer when not given")
    parser.add_argument("--model", help="the Wan model the task was submitted to (e.g. wan2.6-t2i), copied "
                                        "into the event and used to guess --kind")
    parser.add_argument("--context", metavar="JSON",
                        help="a JSON object passed through untouched into the completion event's context")
    parser.add_argument("--poll-interval", type=int, metavar="SECONDS",
                        help="poll every SECONDS (1-3600) instead of the relay's policy (5 s images, 15 s videos, "
                             "slower for long tasks)")
    parser.add_argument("--timeout", type=int, metavar="SECONDS",
                        help="give up after SECONDS (1-86400, default 86400: DashScope keeps tasks 24 h); "
                             "the task then ends as TIMED_OUT")


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
        help="relay four replayed tasks through an embedded AWS (no account, no key needed)",
        description="Starts an embedded AWS on loopback (moto's server in this process), creates the stack of "
                    "template.yaml on it, starts a replay DashScope on loopback playing four realistic tasks "
                    "(a wan2.6 image, a wan2.5 multi-image task with one image refused, a wan2.7 video, a "
                    "failed task), and runs the real workflow for each. Shows each poll as it happens, prints "
                    "each completion event and writes OUT/<task_id>/event.json with the media from S3. The "
                    "demo polls every second (the real policy waits longer); it takes about 15 seconds.",
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
                    "environment. Shows each poll, prints the completion event, writes "
                    "OUT/<task_id>/event.json (the event's detail, exactly as emitted) and the media next to it. "
                    "With --aws, no embedded AWS: the wait loop runs in this process against the AWS account "
                    "boto3 finds, storing into MEDIA_BUCKET and publishing on EVENT_BUS_NAME.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_RUN_ENVIRONMENT + "\n\n" + _EXIT_CODES,
    )
    _add_task_options(run)
    run.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                     help="where to write OUT/<task_id>/event.json and the media files (default: ./out)")
    run.add_argument("--aws", action="store_true",
                     help="use the real AWS account (boto3's usual credentials; AWS_ENDPOINT_URL unset) with "
                          "MEDIA_BUCKET and EVENT_BUS_NAME, instead of the embedded one")

    start = commands.add_parser(
        "start",
        help="start a deployed stack's workflow for a task and follow it",
        description="Finds the state machine in the outputs of the CloudFormation stack NAME (output "
                    "StateMachineArn), starts an execution named after the task (or follows the one already "
                    "running for it), shows each poll and prints the completion event's detail when it ends. "
                    "Uses boto3's usual credentials and region.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EXIT_CODES,
    )
    _add_task_options(start)
    start.add_argument("--stack", required=True, metavar="NAME", help="the deployed stack's name")
    start.add_argument("--out", type=Path, metavar="DIR",
                       help="also write DIR/<task_id>/event.json and download the media from the stack's bucket")
    return parser


# --- helpers ------------------------------------------------------------------------------------


def _loop_input(args: argparse.Namespace) -> dict[str, Any]:
    """The workflow's input from the options, checked by the relay's own model."""
    from wan_relay.errors import InvalidInput
    from wan_relay.relay import parse_state

    loop_input: dict[str, Any] = {"task_id": args.task_id}
    if args.kind:
        loop_input["kind"] = args.kind
    if args.model:
        loop_input["model"] = args.model
    if args.context is not None:
        try:
            context = json.loads(args.context)
        except ValueError:
            raise UsageError("--context must be JSON, e.g. '{\"order\": 42}'") from None
        if not isinstance(context, dict):
            raise UsageError("--context must be a JSON object, e.g. '{\"order\": 42}'")
        loop_input["context"] = context
    if args.poll_interval is not None:
        loop_input["poll_interval_seconds"] = args.poll_interval
    if args.timeout is not None:
        loop_input["timeout_seconds"] = args.timeout
    try:
        parse_state(loop_input)
    except InvalidInput as exc:
        raise UsageError(exc.message.replace("task_id", "TASK_ID").replace("poll_interval_seconds", "--poll-interval")
                         .replace("timeout_seconds", "--timeout")) from None
    return loop_input


def _check_relay_environment(environ: dict[str, str], *, embedded: bool) -> None:
    from wan_relay.config import Config
    from wan_relay.errors import ConfigurationError

    if embedded and not environ.get("DASHSCOPE_API_KEY", "").strip():
        raise UsageError("set DASHSCOPE_API_KEY: the embedded AWS has no secret to read the key from")
    try:
        Config.from_env({"MEDIA_BUCKET": "embedded", **environ} if embedded else environ)
    except ConfigurationError as exc:
        raise UsageError(exc.message) from None


@contextlib.contextmanager
def _function_log(out_dir: Path) -> Iterator[Path]:
    """The embedded function writes its log lines (Powertools JSON, metrics) to stdout, as in Lambda:
    sent to a file here, so the terminal shows the progress only."""
    path = out_dir / "logs" / "poll-task.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield path


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    # a pipe or a file gets whole lines (grep-able), not lines folded at 80 columns
    terminal = stream.isatty()
    return Console(file=stream, highlight=False, width=None if terminal else 120, soft_wrap=not terminal)


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
    results: dict[str, str | None] = {}
    with ReplayDashScope(api_key=DEMO_API_KEY) as replay, _function_log(out_dir) as log:
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
                    display.event(detail)
                    display.files(pipeline.save(out_dir, detail))

                threads = [threading.Thread(target=relay, args=(t.task_id,), daemon=True) for t in tasks]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
    console.rule("summary")
    ok = True
    for task in tasks:
        got = results.get(task.task_id)
        ok = ok and got == task.expect
        mark = "[green]as expected[/green]" if got == task.expect else f"[red]expected {task.expect}[/red]"
        console.print(f"{task.title:<34} {got or 'no event':<10} {mark}  {task_dir(out_dir, task.task_id)}/",
                      soft_wrap=True)
    console.print(f"Open the pictures and the video in [bold]{out_dir}/[/bold]; how they got there: "
                  f"docs/architecture.md; the function's log is {log}.")
    return EXIT_SUCCEEDED if ok else EXIT_OTHER


def cmd_run(args: argparse.Namespace, stdout: TextIO) -> int:
    loop_input = _loop_input(args)
    environ = dict(os.environ)
    if args.aws:
        return _run_direct(args, loop_input, environ, stdout)
    _check_relay_environment(environ, embedded=True)

    from .display import Display
    from .pipeline import EmbeddedPipeline, relay_environment

    console = _console(stdout)
    task_id = loop_input["task_id"]
    with _function_log(args.out), EmbeddedPipeline(relay_environment(environ)) as pipeline:
        assert pipeline.stack is not None
        console.print(f"relaying {task_id} from {environ.get('DASHSCOPE_BASE_URL') or 'DashScope (Singapore)'} "
                      "through the embedded AWS")
        with Display(console) as display:
            display.track(task_id, loop_input.get("model", ""))
            execution = pipeline.start(loop_input)
            outcome = pipeline.follow(execution, task_id, display.poll)
            emitted = pipeline.emitted(task_id) if outcome.event else None
            detail = emitted["detail"] if emitted else outcome.event
            display.ended(task_id, detail.get("status") if detail else outcome.status)
        if detail is None:
            return _workflow_failure(outcome.error, outcome.cause)
        display.event(detail)
        display.files(pipeline.save(args.out, detail))
    return exit_code_for(detail.get("status"))


def _run_direct(args: argparse.Namespace, loop_input: dict[str, Any], environ: dict[str, str],
                stdout: TextIO) -> int:
    _check_relay_environment(environ, embedded=False)
    import boto3

    if boto3.session.Session().region_name is None:
        # the relay makes its S3 client only when the task is done: say it now, not at the end
        raise UsageError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    from botocore.exceptions import BotoCoreError
    from wan_relay.config import Config
    from wan_relay.errors import WanRelayError
    from wan_relay.publish import EventPublisher
    from wan_relay.runtime import relay_from_env

    from .direct import run_loop
    from .display import Display
    from .results import save_result

    console = _console(stdout)
    task_id = loop_input["task_id"]
    try:
        relay = relay_from_env()
        console.print(f"relaying {task_id} into s3://{environ.get('MEDIA_BUCKET')} with your AWS account")
        with Display(console) as display:
            display.track(task_id, loop_input.get("model", ""))
            state = run_loop(relay, loop_input, on_poll=display.poll)
            detail = state["event"]
            # what the workflow's EmitCompletion state does in the stack
            config = Config.from_env()
            EventPublisher(boto3.client("events"), config.event_bus_name, config.event_source).publish(detail)
            display.ended(task_id, detail.get("status"))
        display.event(detail)
        display.files(save_result(args.out, detail, boto3.client("s3")))
    except WanRelayError as exc:
        name = type(exc).__name__
        print(f"wan-relay: {name}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if name in _SETUP_ERRORS else EXIT_OTHER
    except BotoCoreError as exc:  # no credentials, no region...
        raise UsageError(f"AWS: {exc}") from None
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
    loop_input = _loop_input(args)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from .display import Display
    from .follow import follow_execution
    from .results import save_result
    from .stack import execution_name

    console = _console(stdout)
    task_id = loop_input["task_id"]
    try:
        outputs = _stack_outputs(boto3.client("cloudformation"), args.stack)
        state_machine = outputs.get("StateMachineArn")
        if not state_machine:
            raise UsageError(f"stack {args.stack!r} has no StateMachineArn output: is it a wan-relay stack?")
        sfn = boto3.client("stepfunctions")
        name = execution_name(task_id)
        try:
            execution = sfn.start_execution(stateMachineArn=state_machine, name=name,
                                            input=json.dumps(loop_input))["executionArn"]
            console.print(f"started {execution}")
        except sfn.exceptions.ExecutionAlreadyExists:
            execution = state_machine.replace(":stateMachine:", ":execution:") + f":{name}"
            console.print(f"an execution for {task_id} already exists: following {execution}")
        with Display(console) as display:
            display.track(task_id, loop_input.get("model", ""))
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
        display.event(detail)
        if args.out is not None:
            display.files(save_result(args.out, detail, boto3.client("s3")))
    except (BotoCoreError, ClientError) as exc:
        raise UsageError(f"AWS: {exc}") from None
    return exit_code_for(detail.get("status"))


_COMMANDS = {"demo": cmd_demo, "run": cmd_run, "start": cmd_start}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
