"""AWS's limits where moto does not enforce them (or not as AWS counts them), each checked at its edge
through the definition and the code that ship. The limits are written here as AWS documents them, not
taken from the code, so a cap in the code that outgrows one fails here:

- DynamoDB (Developer Guide, "Constraints" and "Item sizes and formats"): a partition key value is at
  most 2,048 bytes; an item, attribute names and values, at most 400 KB, where 1 KB = 1,024 bytes.
- Step Functions (API reference: StateEnteredEventDetails.input, StateExitedEventDetails.output,
  TaskScheduledEventDetails.parameters): at most 262,144 bytes, "expressed as bytes in UTF-8 encoding".
- EventBridge ("Calculating PutEvents event entry size"): an entry is less than 256 KB, counted as the
  UTF-8 bytes of Source, DetailType, Detail and each of Resources, and 14 bytes for a Time.
- Lambda (Invoke): a synchronous invocation's payload, request and response, at most 6 MB.
- Step Functions (StartExecution `name`): 1 to 80 characters, no white space, brackets `< > { } [ ]`,
  wildcards `? *`, special characters `" # % \\ ^ | ~ ` $ & , ; : /`, control characters (U+0000-001F,
  U+007F-009F, U+FFFE-FFFF) or surrogates; only `0-9 A-Z a-z - _` keep CloudWatch logging possible.

Where AWS's own counting is not known to the byte, the larger reading is taken: "256 KB" as 256,000
bytes, "6 MB" as 6,000,000, and a JSON value as Lambda's Python runtime writes it (`", "`, `": "`).
"""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.stepfunctions.models import StepFunctionBackend
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from wan_relay.models import DEFAULT_SUBMIT_SOURCE, DETAIL_TYPE_COMPLETED, TASK_ID_PATTERN, CompletionDetail
from wan_relay.publish import MAX_CONTEXT_BYTES, fit_context, fit_detail, sanitize_errors
from wan_relay_local.cli import main
from wan_relay_local.replay import ReplayDashScope
from wan_relay_local.stack import EmbeddedStack, Template, execution_name

from tests.conftest import ROOT, completion, sample
from tests.local.test_start import STACK, deployed  # noqa: F401 - the fixture, for `wan-relay start`

DYNAMODB_KEY_BYTES = 2048
DYNAMODB_ITEM_BYTES = 400 * 1024
STATE_PAYLOAD_BYTES = 262_144
EVENT_ENTRY_BYTES = 256_000
LAMBDA_PAYLOAD_BYTES = 6_000_000
EXECUTION_NAME_CHARS = 80

ASL_FILE = ROOT / "statemachine" / "poll_task.asl.json"
LONGEST_TASK_ID = int(re.search(r"\{1,(\d+)\}", TASK_ID_PATTERN).group(1))


# --- the services' own arithmetic ---------------------------------------------------------------


def json_bytes(value: Any) -> int:
    """A JSON value's UTF-8 bytes as Lambda's Python runtime writes it (awslambdaric: `ensure_ascii`
    off from python3.12, default separators): never fewer than a compact rendering's."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def lambda_invoke_result(payload: Any) -> dict[str, Any]:
    """The result of a `lambda:invoke` Task as AWS records it in a history (the shape of AWS-recorded
    histories in localstack's snapshot tests), with header values at their usual length."""
    headers = {
        "Connection": "keep-alive",
        "Content-Length": str(json_bytes(payload)),
        "Content-Type": "application/json",
        "Date": "Wed, 09 Dec 2026 09:18:18 GMT",
        "X-Amz-Executed-Version": "$LATEST",
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": str(uuid.uuid4()),
        "X-Amzn-Trace-Id": "Root=1-6756b5fa-3f1c9a0b7d2e4c5f6a7b8c9d;Parent=53995c3f42cd8ad8;Sampled=1;"
                           "Lineage=1:7e3a2b1c:0",
    }
    return {
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {name: [value] for name, value in headers.items()},
            "HttpHeaders": headers,
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": str(uuid.uuid4())},
        "StatusCode": 200,
    }


def eventbridge_entry_bytes(entry: dict[str, Any]) -> int:
    """EventBridge's documented arithmetic for a PutEventsRequestEntry."""
    size = 14 if entry.get("Time") is not None else 0
    size += len(entry["Source"].encode()) + len(entry["DetailType"].encode())
    if entry.get("Detail") is not None:
        size += len(entry["Detail"].encode())
    return size + sum(len(resource.encode()) for resource in entry.get("Resources") or [])


def _attribute_value_bytes(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":  # 1 byte per two significant digits, plus 1
        digits = Decimal(data).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _attribute_value_bytes(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(_attribute_value_bytes(v) + 1 for v in data)
    raise AssertionError(f"no size rule here for {kind}")


def dynamodb_item_bytes(item: dict[str, dict[str, Any]]) -> int:
    """DynamoDB's documented arithmetic: each attribute's name and value."""
    return sum(len(name.encode()) + _attribute_value_bytes(value) for name, value in item.items())


_NAME_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f\ufffe\uffff\ud800-\udfff]")


def execution_name_problem(name: str) -> str | None:
    """Why Step Functions would refuse `name` (or lose its CloudWatch logs), or None."""
    if not 1 <= len(name) <= EXECUTION_NAME_CHARS:
        return f"{len(name)} characters"
    if _NAME_FORBIDDEN.search(name):
        return f"forbidden character {_NAME_FORBIDDEN.search(name).group()!r}"
    if not re.fullmatch(r"[0-9A-Za-z_-]+", name):
        return "characters CloudWatch Logs cannot take"
    return None


# --- DynamoDB ---------------------------------------------------------------------------------


def test_the_task_lock_key_fits_a_dynamodb_partition_key_for_the_longest_task_id() -> None:
    """Every lock key the definition writes or reads (ClaimTask, ExpireLock), for the longest id the
    input accepts. An id over that length must be refused before ClaimTask writes: tests/workflow."""
    formats = re.findall(r"States\.Format\('([^']*)', \$\.task_id\)", ASL_FILE.read_text())
    assert formats, "the definition has no task lock"
    for template in formats:
        key = template.replace("{}", "f" * LONGEST_TASK_ID)
        assert len(key.encode()) <= DYNAMODB_KEY_BYTES, template


# --- S3 -----------------------------------------------------------------------------------------

S3_KEY_BYTES = 1024  # "The object key name ... can be up to 1,024 bytes long" (S3 user guide, object keys)


def test_the_longest_media_key_the_stack_can_write_fits_s3(replay, account, make_relay) -> None:
    """The longest prefix the template and the configuration accept, the longest task id, the largest
    index an answer may list and the longest extension: a key S3 takes. One character more of prefix is
    refused by both, before anything runs."""
    from wan_relay.config import MAX_MEDIA_PREFIX_BYTES, Config
    from wan_relay.errors import ConfigurationError
    from wan_relay.ingest import EXTENSIONS
    from wan_relay.normalize import MAX_RESULT_ITEMS

    template = Template(parameters={"DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:k"})
    declared = template.doc["Parameters"]["MediaPrefix"]
    assert declared["MaxLength"] == MAX_MEDIA_PREFIX_BYTES
    prefix = ("p" * 99 + "/") * (MAX_MEDIA_PREFIX_BYTES // 100) + "q" * (MAX_MEDIA_PREFIX_BYTES % 100 - 1) + "/"
    assert len(prefix) == MAX_MEDIA_PREFIX_BYTES and re.fullmatch(declared["AllowedPattern"], prefix)
    assert not re.fullmatch(declared["AllowedPattern"], "\u00e9/")  # ASCII only: its MaxLength counts bytes too
    key = f"{prefix}{'f' * LONGEST_TASK_ID}/{MAX_RESULT_ITEMS - 1}.{max(EXTENSIONS.values(), key=len)}"
    assert len(key.encode()) <= S3_KEY_BYTES
    environment = {"DASHSCOPE_API_KEY": "k", "MEDIA_BUCKET": "b"}
    assert Config.from_env({**environment, "MEDIA_PREFIX": prefix}).media_prefix == prefix
    with pytest.raises(ConfigurationError, match="MEDIA_PREFIX"):
        Config.from_env({**environment, "MEDIA_PREFIX": "r" + prefix})


class DynamoWrites:
    """Every item the relay's DynamoDB client writes, as stored after each call (PutItem, and the
    `SET` clauses of UpdateItem applied to it), through botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.keys: list[str] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "PutItem":
            key = params["Item"]["id"]["S"]
            self.items[key] = copy.deepcopy(params["Item"])
        elif model.name == "UpdateItem":
            key = params["Key"]["id"]["S"]
            item = self.items.setdefault(key, copy.deepcopy(params["Key"]))
            names = params.get("ExpressionAttributeNames", {})
            values = params["ExpressionAttributeValues"]
            clause = params["UpdateExpression"].removeprefix("SET ")
            for assignment in clause.split(","):
                name, placeholder = (part.strip() for part in assignment.split("="))
                item[names.get(name, name)] = values[placeholder]
        else:
            return
        self.keys.append(key)


# --- the largest detail, through every service that carries it --------------------------------

#: the widest characters for each encoding on the way: ASCII fills UTF-8 byte for byte; a CJK
#: character is 3 bytes in UTF-8 and 6 escaped; an emoji 4 and 12 (Powertools' record escapes them)
FILLERS = {"ascii": "p", "cjk": "界", "emoji": "😀"}


def longest_event_source() -> str:
    pattern = Template(parameters={"DashScopeApiKeySecretArn": "arn"}).doc["Parameters"]["EventSource"]
    return "s" * int(re.search(r"\{1,(\d+)\}", pattern["AllowedPattern"]).group(1))


def context_at_cap(filler: str) -> dict[str, Any]:
    """The largest context `fit_context` passes through untouched: one character more is cut."""

    def context(chars: int) -> dict[str, Any]:
        return {"pipeline": "catalogue", "note": filler * chars}

    kept, cut = 0, MAX_CONTEXT_BYTES + 1
    while cut - kept > 1:
        middle = (kept + cut) // 2
        kept, cut = (middle, cut) if fit_context(context(middle)) == context(middle) else (kept, middle)
    return context(kept)


def failed_answer(task_id: str, filler: str, prompt_chars: int) -> dict[str, Any]:
    """A FAILED answer with every text DashScope writes into the event long: the prompt is the one
    that grows; error texts, request id and usage are long too."""
    answer = copy.deepcopy(sample("failed_output_code"))
    output = answer["output"]
    output["task_id"] = task_id
    output["orig_prompt"] = filler * prompt_chars
    output["actual_prompt"] = filler * 500
    output["message"] = filler * 1000
    output["code"] = "DataInspectionFailed" + filler * 100
    answer["request_id"] = str(uuid.uuid4()) + filler * 100
    answer["usage"] = {"image_count": 0, "size": filler * 64, "notes": filler * 2000}
    return answer


@pytest.fixture
def writes(account) -> DynamoWrites:
    return DynamoWrites(account.dynamodb)


def relay_largest_detail(make_relay, replay: ReplayDashScope, filler: str) -> Iterator[tuple[dict, dict, dict]]:
    """Runs the relay on answers whose prompt grows, with a context at its cap, the longest task id
    and model: yields (loop input, answer state, DashScope answer) for the longest prompt that keeps
    the context in the event, then for one character more."""
    relay = make_relay(idempotent=True)
    context = context_at_cap(filler)
    runs = 0

    def run(prompt_chars: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        nonlocal runs
        runs += 1
        task_id = f"{runs:04d}-" + "e" * (LONGEST_TASK_ID - 5)
        answer = failed_answer(task_id, filler, prompt_chars)
        replay.script(task_id, answer)
        loop_input = {"task_id": task_id, "model": "m" * 128, "context": context, "timeout_seconds": 86_400}
        return loop_input, relay.handle(loop_input), answer

    low, high = 0, 300_000 // len(filler.encode())  # the context stays at `low`, is cut at `high`
    assert run(high)[1]["event"]["context"]["_truncated"] is True
    while high - low > 1:
        middle = (low + high) // 2
        if run(middle)[1]["event"]["context"] == context:
            low = middle
        else:
            high = middle
    yield run(low)
    yield run(high)


@pytest.mark.parametrize("filler", FILLERS.values(), ids=FILLERS.keys())
def test_the_largest_detail_fits_every_service_that_carries_it(make_relay, replay, writes, filler) -> None:
    """At the edge: the longest answer that still keeps a context at its cap in the event, and one
    character more (the context is then a marker). Each payload is measured as the service counts it."""
    source = longest_event_source()
    kept, cut = relay_largest_detail(make_relay, replay, filler)
    for (loop_input, state, answer), context_kept in ((kept, True), (cut, False)):
        detail = completion(state)
        assert (detail["context"] == loop_input["context"]) is context_kept
        assert json_bytes(answer) < 1024 * 1024  # an answer DashScope's client reads (at most 1 MiB)

        # Lambda: the request (the loop state) and the response, synchronous
        assert json_bytes(loop_input) <= LAMBDA_PAYLOAD_BYTES
        assert json_bytes(state) <= LAMBDA_PAYLOAD_BYTES
        # Step Functions: PollTask's result (Lambda's answer in its envelope) is the largest payload;
        # the state after it, and the input of EmitCompletion and ExpireLock, are the answer itself
        assert json_bytes(lambda_invoke_result(state)) <= STATE_PAYLOAD_BYTES
        # EventBridge: the entry EmitCompletion puts, with the longest source the template allows
        entry = {"Source": source, "DetailType": DETAIL_TYPE_COMPLETED,
                 "Detail": json.dumps(detail, ensure_ascii=False)}
        assert eventbridge_entry_bytes(entry) < EVENT_ENTRY_BYTES
        delivered = {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE_COMPLETED, "source": source,
                     "account": "123456789012", "time": "2026-12-09T09:18:18Z", "region": "ap-southeast-1",
                     "resources": [], "detail": detail}
        assert json_bytes(delivered) < EVENT_ENTRY_BYTES  # the event as delivered, envelope and all

    # DynamoDB: the task's fate (the whole detail, as Powertools stores it) and every key written
    assert writes.keys
    for key, item in writes.items.items():
        assert len(key.encode()) <= DYNAMODB_KEY_BYTES
        assert dynamodb_item_bytes(item) <= DYNAMODB_ITEM_BYTES, key
    fate = max(writes.items.values(), key=dynamodb_item_bytes)
    assert "data" in fate and dynamodb_item_bytes(fate) > 100 * 1024  # the fate record was measured


# --- whatever DashScope sends, the detail fits -------------------------------------------------

_texts = st.builds(lambda char, count: char * count, st.sampled_from([*FILLERS.values(), "é", '"', "\n"]),
                   st.integers(0, 120_000))


def _detail(draw: Any) -> dict[str, Any]:
    text = lambda: draw(_texts)  # noqa: E731 - one fresh text per field
    media = [
        {"index": i, "type": "image", "bucket": "b" * 63, "key": f"wan/{'t' * 128}/{i}.png",
         "s3_uri": f"s3://{'b' * 63}/wan/{'t' * 128}/{i}.png", "size_bytes": 10, "content_type": "image/png",
         "sha256": "0" * 64, "source_expires_at": None}
        for i in range(draw(st.integers(0, 4)))
    ]
    return {
        "schema_version": "1.0", "event_id": str(uuid.uuid4()), "task_id": "t" * 128, "status": "FAILED",
        "provider_status": text(), "kind": "image", "model": "m" * 128, "context": {"note": text()},
        "request_id": text(), "prompt": {"original": text(), "actual": text()},
        "timing": {"submitted_at": None, "scheduled_at": None, "ended_at": None, "queue_seconds": None,
                   "run_seconds": None, "detected_at": "2026-12-09T09:18:18.000Z"},
        "media": media,
        "failures": [{"index": 9 + i, "code": text(), "message": text()} for i in range(draw(st.integers(0, 4)))],
        "texts": [{"index": i, "text": text()} for i in range(draw(st.integers(0, 3)))],
        "usage": {"image_count": 1, "ratio": text(), "size": text(), "raw": {"notes": text()}},
        "error": {"code": text(), "message": text(), "category": "provider", "retryable": False},
        "polls": 7,
    }


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_whatever_dashscope_sent_the_detail_fits_an_event_and_a_dynamodb_item(data) -> None:
    detail = _detail(data.draw)
    fitted = fit_detail(copy.deepcopy(detail))
    msgspec.convert(fitted, CompletionDetail)  # still a valid detail
    assert fitted["media"] == detail["media"]  # what landed in S3 is never cut
    if json_bytes(detail) <= 150 * 1024 and len(json.dumps(detail)) <= 300 * 1024:
        # a detail that fits is left alone, but for its error texts, which are always made fit to repeat
        assert fitted == sanitize_errors(detail)
    entry = {"Source": longest_event_source(), "DetailType": DETAIL_TYPE_COMPLETED,
             "Detail": json.dumps(fitted, ensure_ascii=False)}
    assert eventbridge_entry_bytes(entry) < EVENT_ENTRY_BYTES
    # the fate record as Powertools writes it: id, status, expiries and the JSON of {"detail": ...}
    record = {"id": {"S": "wan-relay.completion#" + "0" * 32}, "status": {"S": "COMPLETED"},
              "expiration": {"N": "1796310381"}, "in_progress_expiration": {"N": "1796137581000"},
              "data": {"S": json.dumps({"detail": fitted}, sort_keys=True)}}
    assert dynamodb_item_bytes(record) <= DYNAMODB_ITEM_BYTES


# --- the loop state between polls ---------------------------------------------------------------


def test_a_running_answer_cannot_push_the_loop_state_past_step_functions_limit(replay, account, relay) -> None:
    answer = replay.rehost(sample("running"))
    answer["output"]["task_status"] = "RUNNING" + "G" * 300_000
    replay.script(answer["output"]["task_id"], answer)

    state = relay.handle({"task_id": answer["output"]["task_id"], "context": context_at_cap("p")})

    assert state["done"] is False
    assert json_bytes(lambda_invoke_result(state)) <= STATE_PAYLOAD_BYTES


# --- execution names ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "valid"), [
    ("f470bbfd-d955-4165-935b-d35b8e2a91c0", True), ("a" * 80, True), ("under_score", True),
    ("a" * 81, False), ("", False), ("has space", False), ("a/b", False), ("a:b", False), ("tab\there", False),
    ("x{y}", False), ("ü", False), ("\u0085", False),
])
def test_the_execution_name_rules_read_as_documented(name: str, valid: bool) -> None:
    assert (execution_name_problem(name) is None) is valid


TASK_IDS = {
    "uuid": "f470bbfd-d955-4165-935b-d35b8e2a91c0",
    "80": "8" * 80,
    "81": "8" * 81,
    "128": "f470bbfd-" * 14 + "f4",
    "invalid-10kB": "x" * 10_240,
    "invalid-chars": "../a b:c/d",
}


@pytest.fixture
def started_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every execution started on moto (which checks none of it when it runs them)."""
    names: list[str] = []
    for backend in (StepFunctionBackend, StepFunctionsParserBackend):
        original = backend.start_execution

        def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any,
                            _original: Any = original, **kwargs: Any) -> Any:
            names.append(name)
            return _original(self, state_machine_arn, name, *args, **kwargs)

        monkeypatch.setattr(backend, "start_execution", start_execution)
    return names


def test_every_task_id_gets_a_valid_execution_name_of_its_own() -> None:
    names = {label: execution_name(task_id) for label, task_id in TASK_IDS.items()}
    for label, name in names.items():
        assert execution_name_problem(name) is None, label
    assert names["uuid"] == TASK_IDS["uuid"] and names["80"] == TASK_IDS["80"]  # a valid name stays itself
    assert len(set(names.values())) == len(names)
    # ids that differ only after the 80th character no longer share a name (the old `[:80]` did)
    assert execution_name("8" * 81) != execution_name("8" * 82)
    assert execution_name(TASK_IDS["128"]) == execution_name(TASK_IDS["128"])  # a restart is still a duplicate


def test_the_embedded_stack_names_its_executions_validly(started_names: list[str]) -> None:
    from moto import mock_aws
    from wan_relay_local.lambda_bridge import InProcessLambdas
    from wan_relay_local.stack import deploy_embedded_stack

    with mock_aws(), InProcessLambdas() as lambdas:
        stack: EmbeddedStack = deploy_embedded_stack(environment={"DASHSCOPE_API_KEY": "k"}, lambdas=lambdas)
        for task_id in TASK_IDS.values():
            stack.start({"task_id": task_id})
            stack.start_from_event({"source": DEFAULT_SUBMIT_SOURCE, "detail-type": "Wan Task Submitted",
                                    "id": str(uuid.uuid4()), "detail": {"task_id": task_id}})
    assert len(started_names) == 2 * len(TASK_IDS)
    for name in started_names:
        assert execution_name_problem(name) is None, name


def test_wan_relay_start_names_and_follows_the_execution_of_the_longest_task_id(
    deployed: EmbeddedStack, replay: ReplayDashScope, started_names: list[str],  # noqa: F811
) -> None:
    task_id = TASK_IDS["128"]
    answer = replay.rehost(sample("unknown"))
    answer["output"]["task_id"] = task_id
    replay.script(task_id, answer)
    first = deployed.start({"task_id": task_id})

    code = main(["start", task_id, "--stack", STACK])  # finds the execution already started, by its name

    assert code == 1  # UNKNOWN, followed to its end
    assert started_names == [execution_name(task_id)] * 2
    sfn = boto3.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    assert execution["executionArn"] == first
    assert execution_name_problem(execution["name"]) is None
