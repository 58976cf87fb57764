"""Every command shown in README.md and docs/ is checked as written: the shell blocks are read, each
command is split as a shell would split it and checked against the real thing: `wan-relay` against
its parser (and the replay walkthrough is run, each command's exit code and outcome compared with
the comment beside it), `make` targets against the Makefile, `sam` options against SAM CLI's own
`--help`, samconfig.toml and template.yaml, `aws` commands against botocore's models of the
services (operation, options, required members, JSON values, `file://` paths). What needs an AWS
account cannot run here; it is at least parsed and validated. The deploy guide's JSON, event and
subscriber stack are checked for what they claim.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from botocore.validate import ParamValidator
from moto import mock_aws
from wan_relay.relay import parse_input
from wan_relay_local.cli import build_parser
from wan_relay_local.scenarios import load_recording
from wan_relay_local.stack import Template
from wan_relay_local.task_options import loop_input

from .conftest import ROOT, replay_guide, user_environment

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^(?P<indent> *)```(?P<lang>sh|bash|shell)\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
#: plain shell words the docs use, nothing to check beyond their own syntax
SHELL_WORDS = {"export", "unset", "read", "echo", "printf", "rm", "mktemp", "cd"}
AWS_GLOBAL_OPTIONS = {"--region", "--profile", "--query", "--output", "--endpoint-url", "--no-cli-pager"}
#: AWS CLI commands written by hand (not generated from a service model), with the options the docs use
AWS_CUSTOM_COMMANDS = {
    ("s3", "rb"): {"--force"},
    ("cloudformation", "deploy"): {"--template-file", "--stack-name", "--parameter-overrides", "--capabilities"},
}
AWS_CLI_SERVICES = {"s3api": "s3"}  # the CLI's name -> botocore's, where they differ
SAM = ROOT / ".venv-sam" / "bin" / "sam"


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    words: tuple[str, ...]
    comment: str  # what the line says after `#`

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def _logical_lines(body: str) -> Iterator[tuple[int, str]]:
    """Lines joined across `\\` and across quotes left open (a JSON argument over several lines)."""
    pending, start = "", 0
    for number, line in enumerate(body.splitlines()):
        if not pending:
            start = number
        pending += line + "\n"
        if line.endswith("\\"):
            pending = pending[:-2] + " "
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the argument goes on
            continue
        yield start, pending
        pending = ""


def _split(line: str) -> Iterator[list[str]]:
    """The simple commands of a line: split at `;`, `&&`, `||`, `|`; `$(...)` yields its own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens, current, depth = list(lexer), [], 0
    inner: list[str] = []
    for token in tokens:
        if token == "(" and current and current[-1].endswith("$"):
            depth += 1
            current[-1] = current[-1][:-1] + "SUBSTITUTED"
            continue
        if depth:
            if token == ")":
                depth -= 1
                yield inner
                inner = []
            else:
                inner.append(token)
            continue
        if token in (";", "&&", "||", "|"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def documented_commands() -> list[Command]:
    commands = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in SHELL_BLOCK.finditer(text):
            first_line = text[: block.start("body")].count("\n") + 1
            for offset, line in _logical_lines(block.group("body")):
                comment = line.split(" # ", 1)[1].strip() if " # " in line else ""
                for words in _split(line):
                    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value cmd
                        words = words[1:]
                    if words:
                        commands.append(Command(f"{doc.name}:{first_line + offset}", tuple(words), comment))
    return commands


COMMANDS = documented_commands()


def _redirections(command: Command) -> list[str]:
    """Checks `>`/`<`: output to a word, input from a file that exists (a `<placeholder>` is neither)."""
    words = list(command.words)
    for index, word in enumerate(words):
        if word in (">", ">>", "<"):
            target = words[index + 1] if index + 1 < len(words) else ""
            assert target and target not in ("<", ">"), f"{command}: a redirection without a target"
            if word == "<":
                assert (ROOT / target).exists(), f"{command}: reads {target}, which does not exist (a placeholder?)"
    return [w for i, w in enumerate(words) if w not in (">", ">>", "<") and (i == 0 or words[i - 1] not in (">", ">>"))]


# --- wan-relay -------------------------------------------------------------------------------------


def check_wan_relay(command: Command, argv: list[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{command}: the parser refuses it")
    if args.command in ("run", "start"):
        loop_input(args)  # the task options pass the CLI's own checks
    if args.command == "replay":
        for path in args.files:
            load_recording(ROOT / path)


# --- make ------------------------------------------------------------------------------------------


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), re.M))


# --- sam -------------------------------------------------------------------------------------------


@cache
def sam_options(subcommand: str) -> set[str]:
    shown = subprocess.run([str(SAM), subcommand, "--help"], capture_output=True, text=True, check=True,
                           env=user_environment(SAM_CLI_TELEMETRY="0"), timeout=120).stdout
    return set(re.findall(r"(--[a-z0-9-]+)", shown))


@cache
def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def _overrides(words: list[str]) -> dict[str, str]:
    """`--parameter-overrides K=V K2=V2`: the pairs, up to the next option."""
    found: dict[str, str] = {}
    if "--parameter-overrides" in words:
        for word in words[words.index("--parameter-overrides") + 1 :]:
            if word.startswith("--"):
                break
            key, _, value = word.partition("=")
            found[key] = value
    return found


def check_sam(command: Command, words: list[str]) -> None:
    subcommand = words[1]
    if SAM.exists():
        unknown = {w.split("=")[0] for w in words[2:] if w.startswith("--")} - sam_options(subcommand)
        assert not unknown, f"{command}: `sam {subcommand}` has no {sorted(unknown)}"
    environment = words[words.index("--config-env") + 1] if "--config-env" in words else "default"
    assert environment in samconfig(), f"{command}: samconfig.toml has no environment {environment!r}"
    overrides = _overrides(words)
    parameters = Template().doc["Parameters"]
    assert set(overrides) <= set(parameters), f"{command}: template.yaml has no {set(overrides) - set(parameters)}"
    if overrides:
        # the command line replaces the environment's own parameter_overrides: they must be repeated
        configured = samconfig()[environment].get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        own = dict(pair.split("=", 1) for pair in shlex.split(configured))
        assert {k: overrides.get(k) for k in own} == own, f"{command}: drops {environment}'s {own}"


# --- aws -------------------------------------------------------------------------------------------


def _aws_value(shape: Any, value: str, command: Command) -> Any:
    if value.startswith("file://"):
        path = value[len("file://") :]
        if "$" in path:
            return "from-a-file"
        assert (ROOT / path).exists(), f"{command}: {path} does not exist"
        value = (ROOT / path).read_text()
        if shape.type_name == "string":
            return value
    if shape.type_name in ("list", "structure", "map"):
        return json.loads(value)
    if shape.type_name in ("integer", "long"):
        return int(value)
    return value


def check_aws(command: Command, words: list[str]) -> dict[str, Any]:
    """The request the command makes, validated against the service model; returned for more checks."""
    service, operation = words[1], words[2]
    options = [w for w in words[3:] if w.startswith("--")]
    if (service, operation) in AWS_CUSTOM_COMMANDS:
        unknown = set(options) - AWS_CUSTOM_COMMANDS[service, operation] - AWS_GLOBAL_OPTIONS
        assert not unknown, f"{command}: `aws {service} {operation}` takes no {sorted(unknown)}"
        return {}
    model = botocore.session.get_session().get_service_model(AWS_CLI_SERVICES.get(service, service))
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    assert operation in operations, f"{command}: {service} has no operation {operation}"
    shape = model.operation_model(operations[operation]).input_shape
    members = {xform_name(name, "-"): (name, member) for name, member in shape.members.items()}
    params: dict[str, Any] = {}
    index = 3
    while index < len(words):
        option = words[index]
        assert option.startswith("--"), f"{command}: {option!r} is not an option"
        index += 1
        if option in AWS_GLOBAL_OPTIONS:
            index += 1
            continue
        name = option[2:]
        if name.startswith("no-") and name[3:] in members:
            params[members[name[3:]][0]] = False
            continue
        assert name in members, f"{command}: {operations[operation]} has no --{name}"
        member_name, member = members[name]
        if member.type_name == "boolean":
            params[member_name] = True
            continue
        if member.type_name == "list" and member.member.type_name == "string" and not words[index].startswith("["):
            # the AWS CLI's shorthand for a list of strings: the values up to the next option
            values = []
            while index < len(words) and not words[index].startswith("--"):
                values.append(words[index])
                index += 1
            params[member_name] = values
            continue
        params[member_name] = _aws_value(member, words[index], command)
        index += 1
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), f"{command}: {report.generate_report()}"
    return params


# --- the checks ------------------------------------------------------------------------------------


def test_the_docs_show_commands() -> None:
    programs = {Path(c.words[0]).name for c in COMMANDS}
    assert {"wan-relay", "make", "sam", "aws"} <= programs


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_documented_command_is_valid_as_written(command: Command) -> None:
    words = _redirections(command)
    program = words[0]
    if program in SHELL_WORDS:
        return
    if Path(program).name == "wan-relay":
        assert program in ("wan-relay", ".venv/bin/wan-relay"), f"{command}: where the Makefile installs it?"
        check_wan_relay(command, words[1:])
    elif program == "make":
        targets = {w for w in words[1:] if "=" not in w}
        assert targets <= make_targets(), f"{command}: the Makefile has no {targets - make_targets()}"
        makefile = (ROOT / "Makefile").read_text()
        for name in (w.split("=", 1)[0] for w in words[1:] if "=" in w):  # VAR=value: a variable it reads
            assert f"$({name})" in makefile, f"{command}: the Makefile reads no {name}"
    elif program == "sam":
        check_sam(command, words)
    elif program == "aws":
        params = check_aws(command, words)
        if words[1:3] == ["stepfunctions", "start-execution"]:
            parse_input(json.loads(params["input"]))  # the workflow's own check of its input (CheckInput)
        if words[1:3] == ["events", "put-events"]:
            for entry in params["Entries"]:
                parse_input(json.loads(entry["Detail"]))
    else:
        pytest.fail(f"{command}: {program} is not a command these checks know: add how to check it")


def test_the_make_targets_the_docs_name_run_what_the_docs_say() -> None:
    """`make run` runs the demo (tests/local/test_demo.py runs that command); `make integration` the
    smoke test with its opt-in set."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: .*\n\t\$\(BIN\)/wan-relay demo$", makefile, re.M)
    assert re.search(r"^integration: .*\n\tWAN_RELAY_INTEGRATION=1 .*pytest tests/integration", makefile, re.M)


def test_the_smoke_tests_variables_are_all_documented() -> None:
    smoke = (ROOT / "tests" / "integration" / "test_deployed_stack.py").read_text()
    needed = set(re.findall(r'need\("([A-Z_]+)"\)', smoke)) | set(re.findall(r'"(WAN_RELAY_[A-Z_]+_TASK_ID)"', smoke))
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    section = deploy[deploy.index("## The smoke test") : deploy.index("## Tear down")]
    assert needed >= {"WAN_RELAY_STACK", "WAN_RELAY_IMAGE_TASK_ID", "WAN_RELAY_VIDEO_TASK_ID", "DASHSCOPE_API_KEY"}
    assert all(f"export {name}=" in section for name in needed), needed


def test_the_deploy_guides_loop_input_is_one_the_workflow_accepts() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    [block] = [b for b in re.findall(r"```json\n(.*?)```", deploy, re.S) if '"task_id"' in b]
    assert parse_input(json.loads(block)).task_id == "f470bbfd-d955-4165-935b-d35b8e2a91c0"


# --- the subscriber stack of docs/deploy.md --------------------------------------------------------


def test_the_subscriber_stack_is_the_one_shown_and_passes_cfn_lint() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    shown = [b for b in re.findall(r"```yaml\n(.*?)```", deploy, re.S) if b.startswith("AWSTemplateFormatVersion")]
    assert shown == [(ROOT / "docs" / "subscriber.yaml").read_text()]
    done = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "docs/subscriber.yaml"], cwd=ROOT,
                          capture_output=True, text=True, env=user_environment(AWS_DEFAULT_REGION="us-east-1"),
                          check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SQS..QueuePolicy")
def test_the_subscriber_stack_delivers_successes_and_lets_eventbridge_send() -> None:
    """On moto: the rule and its target deliver the SUCCEEDED and PARTIAL events and not the others.
    moto does not evaluate the queue policy (and its CloudFormation skips QueuePolicy), so the policy is
    checked for what AWS needs: an SQS target is authorized by the queue's resource policy allowing
    events.amazonaws.com sqs:SendMessage, here for this rule only (EventBridge user guide, "Using
    resource-based policies for Amazon EventBridge", Amazon SQS permissions)."""
    template = Template(ROOT / "docs" / "subscriber.yaml")
    [statement] = template.doc["Resources"]["RelayedMediaQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Allow", {"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    assert statement["Resource"] == {"Fn::GetAtt": ["RelayedMediaQueue", "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["RelayedMediaRule", "Arn"]}}}
    samples = {p.stem: json.loads(p.read_text()) for p in (ROOT / "events" / "completed").glob("*.json")}
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="wan-relay-subscriber",
                                    TemplateBody=(ROOT / "docs" / "subscriber.yaml").read_text())
        [stack] = cloudformation.describe_stacks(StackName="wan-relay-subscriber")["Stacks"]
        queue_url = next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "QueueUrl")
        events = boto3.client("events", region_name="us-east-1")
        for sample in samples.values():
            events.put_events(Entries=[{"Source": sample["source"], "DetailType": sample["detail-type"],
                                        "Detail": json.dumps(sample["detail"])}])
        sqs = boto3.client("sqs", region_name="us-east-1")
        received = []
        while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                received.append(json.loads(message["Body"])["detail"]["status"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    statuses = [sample["detail"]["status"] for sample in samples.values()]
    expected = sorted(status for status in statuses if status in ("SUCCEEDED", "PARTIAL"))
    assert sorted(received) == expected and len(expected) < len(samples)


# --- the replay walkthrough of docs/local.md, run as written ---------------------------------------


def _walkthrough() -> tuple[Command, list[Command]]:
    """`wan-relay replay` and the block of `run` commands that follows it, each with its `# mark STATUS, exit N`."""
    local = [c for c in COMMANDS if c.where.startswith("local.md:")]
    replay = next(c for c in local if c.words[1:] == ("replay",))
    runs = [c for c in local if c.words[1] == "run" and re.search(r", exit \d+$", c.comment)]
    return replay, runs


def test_the_replay_walkthrough_runs_as_the_docs_say(wan_relay: Path, tmp_path: Path) -> None:
    replay_command, runs = _walkthrough()
    assert len(runs) >= 4
    with subprocess.Popen([str(wan_relay), *replay_command.words[1:]], env=user_environment(), cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as replay:
        _, exports = replay_guide(replay)

        def run(command: Command) -> subprocess.CompletedProcess[str]:
            folder = tmp_path / command.words[2]
            folder.mkdir()
            return subprocess.run([str(wan_relay), *command.words[1:]], env=user_environment(**exports), cwd=folder,
                                  capture_output=True, text=True, timeout=120, check=False)

        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            results = list(pool.map(run, runs))
        replay.terminate()
        replay.communicate(timeout=30)

    for command, done in zip(runs, results, strict=True):
        mark, status, code = re.fullmatch(r"(\S) (\w+).*, exit (\d+)", command.comment).groups()  # type: ignore[union-attr]
        outcome = done.stdout.splitlines()[-1] if done.stdout else done.stderr
        assert done.returncode == int(code), f"{command}: {done.stdout}{done.stderr}"
        assert outcome.startswith(f"{mark} ") and f" {status}: " in outcome, f"{command}: {outcome}"
