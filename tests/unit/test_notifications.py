"""The receiver of DashScope's task-finished notifications: an authentic notification of a final status is
kept as a hint in the table (read back as the sweeper reads it), anything else is refused with its status,
nothing is ever half-stored, and the token shows up nowhere.

The event is Model Studio's own example ("Receive asynchronous task completion notifications via HTTP
callback URL or MQ", help.aliyun.com/zh/model-studio/async-task-api): a CloudEvents 1.0 envelope, source
`acs.dashscope`, type `dashscope:System:AsyncTaskFinish`, the task in `data` with `start_time` and
`end_time` as `yyyy-MM-dd HH:mm:ss` in China time (its `aliyunpublishtime` 01:45:16Z is `end_time`
09:45:16). The request is API Gateway's HTTP API payload format 2.0 (header names lower-cased, the body
text or base64 with `isBase64Encoded`), which Lambda function URLs share.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hmac
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from wan_relay import metrics as metric_names
from wan_relay.errors import OperatorError, TransientError
from wan_relay.notifications import MAX_BODY_BYTES, TOKEN_HEADER, FixedToken, receive
from wan_relay.registry import HINT_KEPT_SECONDS, Hint, Hints
from wan_relay.runtime import SecretToken, StoredHints
from wan_relay.sweeper import Resume, SweepConfig, Sweeper
from wan_relay_local.lambda_bridge import FakeContext, load_handler
from wan_relay_local.stack import Template

from tests.conftest import ROOT
from tests.faults.aws_faults import Injected, Refused, error

TOKEN = "Q7mZ2xk9LfA0pRt4VbN8cYw3HdJ6sGe1UuKoXi5TnWqMzB"
ACCOUNT = "acct-a"
TABLE = "parked-tasks"
NOW = 1_790_000_000.0
TASK_ID = "a154c328-1f0e-4d7c-9b6a-e52a9a7e9a35"
#: Model Studio's example, with a whole task id where the page masks it
DOCUMENTED = {
    "datacontenttype": "application/json;charset=utf-8",
    "aliyunaccountid": "123456789098",
    "aliyunpublishtime": "2023-10-25T01:45:16.993Z",
    "data": {
        "start_time": "2023-10-25 09:45:09",
        "user_api_unique_key": "apikey:v1:aigc:video-generation:video-synthesis:wan2.7-i2v",
        "task_status": "SUCCEEDED",
        "contain_result": False,
        "end_time": "2023-10-25 09:45:16",
        "task_id": TASK_ID,
        "region": "cn-beijing",
        "request_id": "108f38f5-2b1c-4a8e-9d3f-6504db9080b3",
        "api_key_id": "1250",
    },
    "aliyunoriginalaccountid": "123456789098",
    "specversion": "1.0",
    "aliyuneventbusname": "default",
    "id": "81765e5b-7c35-447a-bd93-bbad8dde2bd9",
    "source": "acs.dashscope",
    "time": "2023-10-25T01:45:16.969Z",
    "aliyunregionid": "cn-beijing",
    "type": "dashscope:System:AsyncTaskFinish",
}
#: 2023-10-25 09:45:16 in China time (UTC+8)
DOCUMENTED_END = 1_698_198_316.0


def notification(**data: Any) -> dict[str, Any]:
    event = copy.deepcopy(DOCUMENTED)
    event["data"].update(data)
    return event


def request(body: Any, *, token: str | None = TOKEN, method: str = "POST", b64: bool = False,
            raw: bool = False) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) request as the EventBridge target sends it."""
    text = body if raw else json.dumps(body)
    headers = {"content-type": "application/json;charset=utf-8", "user-agent": "EventBridge"}
    if token is not None:
        headers[TOKEN_HEADER] = token
    if b64:
        text = base64.b64encode(text.encode() if isinstance(text, str) else text).decode()
    return {
        "version": "2.0", "routeKey": "POST /task-finished", "rawPath": "/task-finished", "rawQueryString": "",
        "headers": headers, "body": text, "isBase64Encoded": b64,
        "requestContext": {"http": {"method": method, "path": "/task-finished", "protocol": "HTTP/1.1",
                                    "sourceIp": "47.74.0.1", "userAgent": "EventBridge"},
                           "requestId": "req-1", "stage": "$default"},
    }


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """The parked-tasks table as template.yaml defines it (the hints live there, partition hint#<account>)."""
    props = Template(parameters={"DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:"
                                 "secret:k-AbCdEf"}).properties("ParkedTasksTable")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, AttributeDefinitions=props["AttributeDefinitions"],
                            KeySchema=props["KeySchema"], BillingMode=props["BillingMode"])
        yield client


@pytest.fixture
def hints(dynamodb: Any) -> Hints:
    return Hints(dynamodb, TABLE, ACCOUNT)


def deliver(event: dict[str, Any], hints: Hints, tokens: Any = None) -> Any:
    return receive(event, tokens=tokens or FixedToken(TOKEN), hints=StoredHints(hints), clock=lambda: NOW)


def stored(dynamodb: Any) -> list[dict[str, Any]]:
    return dynamodb.scan(TableName=TABLE)["Items"]


# --- a notification kept ----------------------------------------------------------------------------


def test_the_documented_notification_is_kept_as_a_hint_the_sweeper_reads_back(hints: Hints, dynamodb: Any) -> None:
    answer = deliver(request(DOCUMENTED), hints)

    # 200: what EventBridge's HTTP sink takes for delivered (its open-source code read 202 as a failure until 2022)
    assert (answer.status, answer.outcome, answer.task_id) == (200, "hinted", TASK_ID)
    assert list(hints.since(0)) == [Hint(task_id=TASK_ID, status="SUCCEEDED", hinted_at=NOW, ended_at=DOCUMENTED_END)]
    (item,) = stored(dynamodb)
    assert item["account"] == {"S": f"hint#{ACCOUNT}"}  # not a park of the account: the sweeper's registry
    assert int(item["expiration"]["N"]) == int(NOW) + HINT_KEPT_SECONDS  # the table's TTL removes it
    assert json.loads(answer.as_http()["body"]) == {"outcome": "hinted", "reason": "kept for the sweeper",
                                                    "task_id": TASK_ID}


@pytest.mark.parametrize("status", ["FAILED", "CANCELED", "UNKNOWN"])
def test_every_final_status_is_kept(hints: Hints, status: str) -> None:
    assert deliver(request(notification(task_status=status)), hints).status == 200
    assert [h.status for h in hints.since(0)] == [status]


@pytest.mark.parametrize(("end_time", "ended_at"), [
    (1_789_999_990_123, 1_789_999_990.123),  # epoch milliseconds, as the list endpoint's items give them
    ("2026-09-21 21:33:10.500", 1_789_997_590.5),  # China time with milliseconds
    ("1970-01-01 08:00:00", None),  # before DashScope's notifications existed
    ("0001-01-01 00:00:00", None),  # a zero date (it overflowed: a crash, and EventBridge delivered it again)
    (1_790_999_999_000, None),  # in the future, past any clock skew
    ("yesterday", None),
    (None, None),
    (True, None),
    ({"ms": 1}, None),
])
def test_the_end_is_kept_only_when_the_notification_gives_a_sane_one(hints: Hints, end_time: Any,
                                                                      ended_at: float | None) -> None:
    assert deliver(request(notification(end_time=end_time)), hints).status == 200
    (hint,) = hints.since(0)
    assert hint.ended_at == pytest.approx(ended_at) if ended_at is not None else hint.ended_at is None


def test_a_base64_body_is_read_as_its_bytes(hints: Hints) -> None:
    assert deliver(request(DOCUMENTED, b64=True), hints).status == 200
    assert [h.task_id for h in hints.since(0)] == [TASK_ID]


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "SUSPENDED", "SOMETHING_NEW"])
def test_a_status_that_is_not_final_is_taken_and_nothing_is_kept(hints: Hints, dynamodb: Any, status: str) -> None:
    answer = deliver(request(notification(task_status=status)), hints)

    assert (answer.status, answer.outcome) == (200, "not_final")
    assert stored(dynamodb) == []


def test_a_notification_delivered_twice_resumes_its_workflow_once(hints: Hints) -> None:
    # EventBridge delivers again after a 5xx or a lost answer: two hints, which the sweeper takes as one end
    assert deliver(request(DOCUMENTED), hints).status == 200
    assert receive(request(DOCUMENTED), tokens=FixedToken(TOKEN), hints=StoredHints(hints),
                   clock=lambda: NOW + 1).status == 200
    read = list(hints.since(0))
    assert [h.task_id for h in read] == [TASK_ID, TASK_ID]

    sweeper = Sweeper(SweepConfig(rate=19))
    sweeper.park(TASK_ID, "video", NOW - 120)
    assert [sweeper.hint(h.task_id, h.hinted_at, ended_at=h.ended_at) for h in read] == [True, False]
    resumes = [a for a in sweeper.plan(NOW + 2, 10) if isinstance(a, Resume)]
    assert resumes == [Resume(task_id=TASK_ID, reason="finished")]
    sweeper.sent(resumes[0], NOW + 2)
    sweeper.hint(TASK_ID, NOW + 3)  # a third delivery, after the resume
    assert not [a for a in sweeper.plan(NOW + 4, 10) if isinstance(a, Resume)]


# --- refused ----------------------------------------------------------------------------------------

REFUSED = {
    "a GET": (request(DOCUMENTED, method="GET"), 405),
    "no token": (request(DOCUMENTED, token=None), 401),
    "an empty token": (request(DOCUMENTED, token=""), 401),
    "a wrong token of the same length": (request(DOCUMENTED, token=TOKEN[::-1]), 401),
    "the token's first half": (request(DOCUMENTED, token=TOKEN[: len(TOKEN) // 2]), 401),
    "the token and more": (request(DOCUMENTED, token=TOKEN + "x"), 401),
    "a token with characters outside ASCII": (request(DOCUMENTED, token=TOKEN[:-1] + "é"), 401),
    "a body over the cap": (request({**DOCUMENTED, "padding": "x" * MAX_BODY_BYTES}), 413),
    "a base64 body over the cap": (request({**DOCUMENTED, "padding": "x" * MAX_BODY_BYTES}, b64=True), 413),
    "no body": (request("", raw=True), 400),
    "malformed JSON": (request('{"source": "acs.dashscope", "type": ', raw=True), 400),
    "not base64": (request("not base64!", raw=True) | {"isBase64Encoded": True}, 400),
    "another source": (request({**DOCUMENTED, "source": "acs.oss"}), 400),
    "another type": (request({**DOCUMENTED, "type": "dashscope:System:BatchTaskFinish"}), 400),
    "no data": (request({k: v for k, v in DOCUMENTED.items() if k != "data"}), 400),
    "no task id": (request({**DOCUMENTED, "data": {"task_status": "SUCCEEDED"}}), 400),
    "a task id with a slash": (request(notification(task_id="../../lock#x")), 400),
    "a task id of 129 characters": (request(notification(task_id="a" * 129)), 400),
    "a task id that is a number": (request(notification(task_id=123)), 400),
    "no status": (request({**DOCUMENTED, "data": {"task_id": TASK_ID}}), 400),
    "a status of 65 characters": (request(notification(task_status="S" * 65)), 400),
    "an array of events": (request([DOCUMENTED]), 400),
    "a JSON string": (request("acs.dashscope"), 400),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_request_that_is_not_an_authentic_notification_is_refused_and_nothing_is_kept(
    hints: Hints, dynamodb: Any, case: str,
) -> None:
    event, status = REFUSED[case]

    answer = deliver(event, hints)

    assert (answer.status, answer.outcome) == (status, "rejected")
    assert stored(dynamodb) == []
    if status == 405:
        assert answer.as_http()["headers"]["allow"] == "POST"


def test_the_token_is_compared_by_hmac_compare_digest_on_bytes(hints: Hints, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[Any, Any]] = []

    def says_equal(a: Any, b: Any) -> bool:  # what decides, if compare_digest is what decides
        compared.append((a, b))
        return True

    monkeypatch.setattr(hmac, "compare_digest", says_equal)
    answer = deliver(request(DOCUMENTED, token="anything at all"), hints)

    assert answer.status == 200
    assert compared == [(b"anything at all", TOKEN.encode())]


# --- failures of the secret and the table: 5xx, delivered again, nothing half-kept --------------------


class _FailingTokens:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def current(self) -> str:
        raise self.error

    def refreshed(self) -> str | None:
        raise self.error


@pytest.mark.parametrize(("error", "status"), [
    (TransientError("Secrets Manager failed: ThrottlingException", code="SecretsManager.ThrottlingException"), 503),
    (OperatorError("Secrets Manager refused the read: AccessDeniedException", code="SecretsManager.AccessDenied"), 500),
])
def test_a_token_that_cannot_be_read_answers_5xx(hints: Hints, dynamodb: Any, error: Exception, status: int) -> None:
    answer = deliver(request(DOCUMENTED), hints, tokens=_FailingTokens(error))

    assert (answer.status, answer.outcome) == (status, "failed")
    assert stored(dynamodb) == []


def test_dynamodb_failing_past_the_sdks_retries_answers_503_so_eventbridge_delivers_again(
    hints: Hints, dynamodb: Any,
) -> None:
    # what PutItem's last retry answers when DynamoDB keeps failing (sent nowhere: nothing reaches the table)
    Refused(dynamodb, "PutItem", 500, error("InternalServerError", "Internal server error"), times=1)

    answer = deliver(request(DOCUMENTED), hints)

    assert (answer.status, answer.outcome, answer.task_id) == (503, "failed", TASK_ID)
    assert stored(dynamodb) == []
    assert deliver(request(DOCUMENTED), hints).status == 200  # the redelivery, once DynamoDB is back
    assert len(stored(dynamodb)) == 1


def test_dynamodb_refusing_the_write_answers_500(hints: Hints, dynamodb: Any) -> None:
    Refused(dynamodb, "PutItem", 400, error("AccessDeniedException", "not authorized"), times=1)

    answer = deliver(request(DOCUMENTED), hints)

    assert (answer.status, answer.outcome) == (500, "failed")
    assert json.loads(answer.as_http()["body"]) == {"outcome": "failed", "reason": "the hint could not be kept",
                                                    "task_id": TASK_ID}
    assert "AccessDeniedException" in (answer.detail or "")  # the operator reads what to fix, in the log
    assert stored(dynamodb) == []


# --- a rotated token ----------------------------------------------------------------------------------


def test_a_rotated_token_is_taken_at_once_and_wrong_tokens_do_not_become_secret_reads(hints: Hints) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(Name="wan-relay/task-finished-token", SecretString=TOKEN)["ARN"]
    from aws_lambda_powertools.utilities import parameters

    reads = Injected(secrets, "GetSecretValue", 200, b"", times=0)  # counts the reads, answers none itself
    now = [0.0]
    tokens = SecretToken(arn, parameters.SecretsProvider(boto3_client=secrets), clock=lambda: now[0])
    assert deliver(request(DOCUMENTED), hints, tokens).status == 200
    rotated = TOKEN[::-1]
    secrets.put_secret_value(SecretId=arn, SecretString=rotated)

    assert deliver(request(DOCUMENTED, token=rotated), hints, tokens).status == 200  # within the cache's age
    assert deliver(request(DOCUMENTED, token=TOKEN), hints, tokens).status == 401  # the old one no longer
    for _ in range(20):
        assert deliver(request(DOCUMENTED, token="forged"), hints, tokens).status == 401
    assert reads.calls == 2  # the first read, and one afresh: not one per wrong token
    now[0] += 61
    assert deliver(request(DOCUMENTED, token="forged"), hints, tokens).status == 401
    assert reads.calls == 3


# --- hostile requests ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)


def _mutated(value: Any, path: list[str]) -> dict[str, Any]:
    event = copy.deepcopy(DOCUMENTED)
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.builds(_mutated, json_values, st.sampled_from([["source"], ["type"], ["data"], ["data", "task_id"],
                                                      ["data", "task_status"], ["data", "end_time"]])
              ).map(json.dumps),
    st.integers(1, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 20_000).map(lambda depth: '{"data":' * depth + "1" + "}" * depth),
)


class _Kept:
    def __init__(self) -> None:
        self.hints: list[Hint] = []

    def put(self, hint: Hint) -> None:
        self.hints.append(hint)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, b64=st.booleans(), method=st.sampled_from(["POST", "post", "GET", None]),
       token=st.one_of(st.just(TOKEN), st.text(max_size=60)))
def test_no_request_makes_the_receiver_fail_or_answer_5xx(body: str, b64: bool, method: str | None,
                                                           token: str) -> None:
    event = request(body, raw=True, token=token, b64=b64 and body.isascii())
    if method is None:
        del event["requestContext"]
    else:
        event["requestContext"]["http"]["method"] = method
    kept = _Kept()

    answer = receive(event, tokens=FixedToken(TOKEN), hints=kept, clock=lambda: NOW)

    assert 200 <= answer.status < 500
    assert (answer.outcome == "hinted") == bool(kept.hints)
    assert answer.status == 200 or not kept.hints
    assert all(h.task_id == answer.task_id for h in kept.hints)


@settings(max_examples=100, deadline=None)
@given(event=st.dictionaries(st.sampled_from(["headers", "body", "isBase64Encoded", "requestContext", "httpMethod"]),
                             json_values, max_size=5))
def test_no_event_shape_makes_the_receiver_fail(event: dict[str, Any]) -> None:
    answer = receive(event, tokens=FixedToken(TOKEN), hints=_Kept(), clock=lambda: NOW)

    assert 200 <= answer.status < 500


# --- the function: its answers, its logs and its metrics -------------------------------------------------


#: a secret's ARN as a typo or a deleted secret leaves it in TASK_FINISHED_TOKEN_SECRET
MISSING_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wan-relay/typo-XyZ123"


@contextlib.contextmanager
def receiver(dynamodb: Any, monkeypatch: pytest.MonkeyPatch, secret: str | None = TOKEN) -> Iterator[Any]:
    """The function as deployed: its handler, the token in Secrets Manager (`secret`: the secret's text;
    None: TASK_FINISHED_TOKEN_SECRET names a secret that does not exist), the hints in the table."""
    secret_id = MISSING_SECRET if secret is None else boto3.client("secretsmanager", region_name="us-east-1"
                                                                   ).create_secret(Name="task-finished-token",
                                                                                   SecretString=secret)["ARN"]
    for name, value in {"TASK_FINISHED_TOKEN_SECRET": secret_id, "PARKED_TABLE": TABLE, "DASHSCOPE_ACCOUNT": ACCOUNT,
                        "POWERTOOLS_SERVICE_NAME": "wan-relay", "POWERTOOLS_METRICS_NAMESPACE": "WanRelay",
                        "POWERTOOLS_LOG_LEVEL": "DEBUG", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DASHSCOPE_API_KEY_SECRET", raising=False)
    handler = load_handler(ROOT / "functions" / "task_finished")
    context = FakeContext(function_name="wan-relay-TaskFinishedFunction",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x")
    yield lambda event: handler(event, context)


def test_the_function_answers_logs_and_counts_each_outcome_without_the_token(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    printed = io.StringIO()
    forged = "forged-" + TOKEN[:20]
    with receiver(dynamodb, monkeypatch) as invoke, contextlib.redirect_stdout(printed):
        answers = [
            invoke(request(DOCUMENTED)),
            invoke(request(notification(task_status="RUNNING"))),
            invoke(request(DOCUMENTED, token=forged)),
            invoke(request({"source": "acs.dashscope"})),
        ]

    assert [a["statusCode"] for a in answers] == [200, 200, 401, 400]
    assert len(stored(dynamodb)) == 1
    output = printed.getvalue() + caplog.text + json.dumps(answers)
    assert TOKEN not in output and forged not in output and TOKEN[:20] not in output
    assert TASK_ID in output  # task ids are logged
    answered = json.dumps(answers)  # nothing of the configuration either: the secret, the account, the table
    assert "secretsmanager" not in answered and "task-finished-token" not in answered
    assert ACCOUNT not in answered and TABLE not in answered
    emitted = [json.loads(line) for line in printed.getvalue().splitlines() if '"_aws"' in line]
    counted = [name for record in emitted for d in record["_aws"]["CloudWatchMetrics"] for name in
               (m["Name"] for m in d["Metrics"])]
    assert counted == [metric_names.TASK_FINISHED[o].name for o in ("hinted", "not_final", "rejected", "rejected")]
    listed = {m.name: m for m in metric_names.ALL if m.source == "receiver"}
    assert set(counted) < set(listed) and all(r["service"] == "wan-relay" for r in emitted)


def test_a_token_secret_that_cannot_be_read_answers_5xx_naming_nothing_of_the_stack_and_logs_why(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    with receiver(dynamodb, monkeypatch, secret=None) as invoke:
        answers = [invoke(request(DOCUMENTED, token=None)), invoke(request(DOCUMENTED, token="probe"))]

    # anyone can send these: no header is refused unread; any token makes the receiver read the secret, and
    # the answer then says what failed, not which secret of which account
    assert [a["statusCode"] for a in answers] == [401, 500]
    assert json.loads(answers[1]["body"]) == {"outcome": "failed", "reason": "the token could not be checked"}
    answered = json.dumps(answers)
    assert "123456789012" not in answered and "typo" not in answered and "secretsmanager" not in answered
    (logged,) = [r for r in caplog.records if getattr(r, "outcome", None) == "failed"]
    # the operator reads which secret and why, in the log
    assert MISSING_SECRET in logged.detail and "ResourceNotFoundException" in logged.detail
    assert stored(dynamodb) == []


def test_an_empty_token_secret_answers_500_somebody_has_to_fix_it(dynamodb: Any, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with receiver(dynamodb, monkeypatch, secret=" \n\t ") as invoke:
        answer = invoke(request(DOCUMENTED))

    assert answer["statusCode"] == 500  # not 503: it will not heal by itself
    assert json.loads(answer["body"]) == {"outcome": "failed", "reason": "the token could not be checked"}
    (logged,) = [r for r in caplog.records if getattr(r, "outcome", None) == "failed"]
    assert "TASK_FINISHED_TOKEN_SECRET" in logged.detail and "empty" in logged.detail
    assert stored(dynamodb) == []


@pytest.mark.parametrize("secret", [
    json.dumps({"x-wan-relay-token": TOKEN}),  # the console's key/value form, keyed by the header's name
    json.dumps({"token": f" {TOKEN}\n", "rotated": "2026-12-01"}),
], ids=["x-wan-relay-token", "token"])
def test_a_json_token_secret_gives_the_token_in_its_field(dynamodb: Any, monkeypatch: pytest.MonkeyPatch,
                                                          secret: str) -> None:
    with receiver(dynamodb, monkeypatch, secret=secret) as invoke:
        answers = [invoke(request(DOCUMENTED)), invoke(request(DOCUMENTED, token=secret))]

    assert [a["statusCode"] for a in answers] == [200, 401]  # the token, not the secret's whole text
    assert len(stored(dynamodb)) == 1


@pytest.mark.parametrize("secret", [
    json.dumps({"wan-relay": TOKEN}),  # a key/value secret under another key
    json.dumps({"x-wan-relay-token": 12345}),
    "{" + TOKEN,  # not JSON
], ids=["another key", "not a string", "not JSON"])
def test_a_json_token_secret_without_the_token_answers_500_and_the_log_says_why(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, secret: str,
) -> None:
    with receiver(dynamodb, monkeypatch, secret=secret) as invoke:
        answer = invoke(request(DOCUMENTED))

    assert answer["statusCode"] == 500  # somebody has to fix the secret; EventBridge delivers again meanwhile
    assert json.loads(answer["body"]) == {"outcome": "failed", "reason": "the token could not be checked"}
    (logged,) = [r for r in caplog.records if getattr(r, "outcome", None) == "failed"]
    assert "TASK_FINISHED_TOKEN_SECRET" in logged.detail and "JSON" in logged.detail
    assert TOKEN not in caplog.text and TOKEN[:20] not in caplog.text
    assert stored(dynamodb) == []


def test_a_request_whose_token_secret_cannot_be_read_counts_in_task_finished_errors(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed = io.StringIO()
    with receiver(dynamodb, monkeypatch, secret=None) as invoke, contextlib.redirect_stdout(printed):
        answer = invoke(request(DOCUMENTED))

    assert answer["statusCode"] == 500
    emitted = [json.loads(line) for line in printed.getvalue().splitlines() if '"_aws"' in line]
    counted = {name: record[name] for record in emitted for d in record["_aws"]["CloudWatchMetrics"]
               for name in (m["Name"] for m in d["Metrics"])}
    assert counted == {metric_names.TASK_FINISHED["failed"].name: [1.0]}
    assert all(record["service"] == "wan-relay" for record in emitted)
