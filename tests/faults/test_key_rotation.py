"""Key rotation and a failing secret read: the DashScope key is read through the cached secret at
every poll, read afresh once when DashScope refuses it, and a secret that cannot be read this time
(a throttle, a 5xx) is retried while one that cannot be read at all (denied, missing, undecryptable)
is the operator's to fix.

The secret lives in moto's Secrets Manager; faults are answers injected at the SDK's send (its own
retries still run); the loopback DashScope accepts only the key it is told is current."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from wan_relay.budget import DynamoDBBudget
from wan_relay.errors import OperatorError
from wan_relay.normalize import iso_z
from wan_relay.runtime import SecretApiKey, build_relay, default_client

from tests.conftest import completion, relay_config, sample
from tests.faults.aws_faults import Injected

OLD_KEY = "sk-old-0123456789abcdef-ROTATED-AWAY"
NEW_KEY = "sk-new-fedcba9876543210-CURRENT"
SECRET_NAME = "wan-relay/dashscope-api-key"
TASK = sample("pending")["output"]["task_id"]


@pytest.fixture(autouse=True)
def _no_sdk_backoff(monkeypatch):
    """The SDK's retry delays are real sleeps; the retries themselves still happen."""
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)


@pytest.fixture
def secrets(account):
    client = default_client("secretsmanager")
    client.create_secret(Name=SECRET_NAME, SecretString=json.dumps({"api_key": OLD_KEY}))
    return client


def keyed_relay(replay, account, secrets, max_age: int = 300, **overrides: str):
    """A relay whose key comes from the secret, read through Powertools with `secrets` as its client."""
    key = SecretApiKey(SECRET_NAME, provider=SecretsProvider(boto3_client=secrets), max_age=max_age)
    return build_relay(relay_config(replay, **overrides), api_key=key, s3=account.s3, dynamodb=account.dynamodb)


def budgeted_relay(replay, account, secrets):
    """A relay of a stack that parks (Waiting=park): each GET at a slot of the account's budget, 2 a second."""
    return keyed_relay(replay, account, secrets, WAITING="park", PARKED_TABLE="parked", DASHSCOPE_QUERY_BUDGET="2",
                       IDEMPOTENCY_TABLE=account.create_idempotency_table())


def rotate(replay, secrets) -> None:
    """The operator rotates the key: DashScope now accepts only the new one, the secret holds it."""
    secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps({"api_key": NEW_KEY}))
    replay.api_key = NEW_KEY


def refused(replay) -> int:
    return sum(1 for r in replay.requests if r["path"].startswith("/api/") and not r["authorized"])


def count_reads(secrets) -> list[int]:
    reads: list[int] = []
    secrets.meta.events.register("before-send.secrets-manager.GetSecretValue", lambda **_: reads.append(1))
    return reads


def pending_then_done(replay) -> str:
    """A task DashScope answers pending, then succeeded, to the old key only (until `rotate`)."""
    replay.api_key = OLD_KEY
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, sample("pending"), answer)
    return task_id


def test_a_key_rotated_between_polls_is_read_afresh_on_the_401_and_the_task_is_relayed(replay, account, secrets):
    task_id = pending_then_done(replay)
    relay = keyed_relay(replay, account, secrets)
    first = relay.handle({"task_id": task_id, "poll_interval_seconds": 1})
    assert first["done"] is False

    rotate(replay, secrets)  # the container is warm: its cached key is the old one
    second = relay.handle(first)

    assert completion(second)["status"] == "SUCCEEDED"
    assert refused(replay) == 1  # the cached key once, then the secret's new one
    reads = count_reads(secrets)
    relay.handle({"task_id": task_id})
    assert refused(replay) == 1 and reads == []  # the refreshed key is the cached one now


def test_both_keys_of_a_rotation_echoed_in_the_answer_never_reach_the_event(replay, account, secrets):
    """The query asked again with the new key holds both: either may come back in the task's 200 answer."""
    failed = sample("failed_output_code")
    failed["output"]["message"] = f"neither {OLD_KEY} nor {NEW_KEY} may be used here"
    task_id = failed["output"]["task_id"]
    replay.api_key = OLD_KEY
    replay.script(task_id, sample("pending"), failed)
    relay = keyed_relay(replay, account, secrets)
    first = relay.handle({"task_id": task_id, "poll_interval_seconds": 1})

    rotate(replay, secrets)
    detail = completion(relay.handle(first))

    assert refused(replay) == 1  # the answer came to the query asked again with the new key
    assert detail["error"]["message"] == "neither <redacted> nor <redacted> may be used here"


def asked(replay) -> list[float]:
    """When each task query reached DashScope, refused ones included (its limit may count them)."""
    return sorted(r["at"] for r in replay.requests if r["path"].startswith("/api/"))


def test_with_a_budget_the_get_asked_again_with_the_rotated_key_takes_a_slot_of_its_own(replay, account, secrets):
    """The refused GET took the poll's slot of the account's budget. Sent again at once it would be one
    query more than the budget allows in that second: it waits for a slot of its own."""
    task_id = pending_then_done(replay)
    relay = budgeted_relay(replay, account, secrets)
    first = relay.handle({"task_id": task_id, "poll_interval_seconds": 1})

    rotate(replay, secrets)
    second = relay.handle(first)

    assert completion(second)["status"] == "SUCCEEDED" and refused(replay) == 1
    arrivals = asked(replay)
    assert len(arrivals) == 3  # the first poll, the refused GET, the GET with the new key
    # slots 0.5 s apart, each query sent within half an interval of its slot (a loaded machine is late)
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.5 - 0.25 - 0.01


def spoken_for_at_the_rotation(replay, account, secrets):
    """A budgeted relay whose task's first poll found it pending; then the key is rotated, and while the
    secret is read afresh (after the 401) other workflows take the budget's slots as far as it reaches.
    The relay, its first state, and the slots the others took."""
    task_id = pending_then_done(replay)
    relay = budgeted_relay(replay, account, secrets)
    first = relay.handle({"task_id": task_id, "poll_interval_seconds": 1})
    fleet = relay.fleet
    other_workflows = DynamoDBBudget(account.dynamodb, fleet.table, fleet.account, fleet.budget)
    taken: list[int] = []
    secrets.meta.events.register("before-send.secrets-manager.GetSecretValue",
                                 lambda **_: taken.extend(other_workflows.reserve(fleet.budget.capacity).slots_us))
    rotate(replay, secrets)
    return relay, first, taken


def test_with_the_budget_spoken_for_the_get_is_not_asked_again_and_the_next_poll_uses_the_new_key(
    replay, account, secrets
):
    """Another workflow took the budget's next slots while the secret was read afresh: the GET is not
    sent again now; the poll waits as when the budget is spoken for, and its next GET, at a slot, goes
    with the new key (the one the secret's cache now holds), refused no more."""
    relay, first, taken = spoken_for_at_the_rotation(replay, account, secrets)
    second = relay.handle(first)

    assert taken and second["status"] == "THROTTLED" and second["done"] is False
    assert refused(replay) == 1 and len(asked(replay)) == 2  # the GET was not sent again
    time.sleep(max(0.0, max(taken) / 1e6 - time.time()))  # the other workflows' slots go by
    third = relay.handle(second)
    assert completion(third)["status"] == "SUCCEEDED"
    assert refused(replay) == 1 and len(asked(replay)) == 3



def test_a_poll_that_waits_for_the_spoken_for_budget_counts_in_query_budget_waits(replay, account, secrets):
    from aws_lambda_powertools import Metrics

    relay, first, taken = spoken_for_at_the_rotation(replay, account, secrets)
    relay.metrics = Metrics(namespace="WanRelayTest", service="wan-relay")
    try:
        second = relay.handle(first)
        recorded = relay.metrics.serialize_metric_set()
    finally:
        relay.metrics.clear_metrics()
    assert taken and second["status"] == "THROTTLED" and len(asked(replay)) == 2  # waited, unasked
    assert recorded["QueryBudgetWaits"] == [1.0] and "Throttled" not in recorded

def test_the_last_get_of_a_task_whose_budget_ran_out_is_asked_again_with_the_new_key_slot_or_not(
    replay, account, secrets
):
    """The last poll of a task decides its fate: with the budget spoken for, its GET is sent again with the
    rotated key all the same, rather than the task ending TIMED_OUT on the refused old key."""
    relay, first, taken = spoken_for_at_the_rotation(replay, account, secrets)
    last = relay.handle({**first, "timeout_seconds": 1,
                         "started_at": iso_z(datetime.now(UTC) - timedelta(seconds=5))})

    assert taken and completion(last)["status"] == "SUCCEEDED"
    assert refused(replay) == 1 and len(asked(replay)) == 3


def test_the_key_is_read_through_the_cache_at_every_poll_so_a_rotation_needs_no_refused_query(
    replay, account, secrets
):
    replay.api_key = OLD_KEY
    replay.script(TASK, sample("pending"))
    relay = keyed_relay(replay, account, secrets, max_age=0)  # an expired cache at every poll
    relay.handle({"task_id": TASK})

    rotate(replay, secrets)
    relay.handle({"task_id": TASK})

    assert refused(replay) == 0


def test_the_cached_key_is_not_read_again_within_its_max_age(replay, account, secrets):
    replay.api_key = OLD_KEY
    replay.script(TASK, sample("pending"))
    relay = keyed_relay(replay, account, secrets)
    reads = count_reads(secrets)
    for _ in range(3):
        relay.handle({"task_id": TASK})
    assert len(reads) == 1


def test_a_key_that_is_refused_after_a_fresh_read_too_is_an_operator_error_sent_once(replay, account, secrets):
    replay.api_key = NEW_KEY  # DashScope no longer knows the key, and the secret was not rotated
    replay.script(TASK, sample("pending"))
    relay = keyed_relay(replay, account, secrets)
    reads = count_reads(secrets)

    with pytest.raises(OperatorError) as raised:
        relay.handle({"task_id": TASK})

    assert raised.value.code == "InvalidApiKey"
    assert OLD_KEY not in str(raised.value)
    assert refused(replay) == 1  # the same key is not sent twice
    assert len(reads) == 2  # the cached read, then the forced one


def secrets_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


@pytest.mark.parametrize(("status", "code"), [
    (400, "ThrottlingException"), (500, "InternalServiceError"), (503, "ServiceUnavailable"),
])
def test_a_secret_read_that_may_heal_is_a_transient_error_backed_off(replay, account, secrets, status, code):
    replay.api_key = OLD_KEY
    relay = keyed_relay(replay, account, secrets)
    injected = Injected(secrets, "GetSecretValue", status, secrets_error(code, "Rate exceeded"), times=99,
                        content_type="application/x-amz-json-1.1")

    # a TransientError, which the poll backs off within the task's budget like any other trouble
    state = relay.handle({"task_id": TASK})

    assert state["done"] is False and state["troubles"] == 1 and state["wait_seconds"] >= 1
    assert state["last_error"]["code"] == f"SecretsManager.{code}" and code in state["last_error"]["message"]
    assert injected.calls == 6  # the first attempt and the SDK's five retries (standard mode) ran first
    assert replay.requests == []


@pytest.mark.parametrize("code", ["AccessDeniedException", "DecryptionFailure", "ResourceNotFoundException"])
def test_a_secret_that_cannot_be_read_at_all_is_an_operator_error(replay, account, secrets, code):
    relay = keyed_relay(replay, account, secrets)
    injected = Injected(secrets, "GetSecretValue", 400, secrets_error(code, "no"), times=99,
                        content_type="application/x-amz-json-1.1")

    with pytest.raises(OperatorError) as raised:
        relay.handle({"task_id": TASK})

    assert raised.value.code == f"SecretsManager.{code}" and code in raised.value.message
    assert injected.calls == 1  # not retried


def test_a_secret_that_does_not_exist_is_an_operator_error(replay, account, secrets):
    key = SecretApiKey("wan-relay/no-such-secret", provider=SecretsProvider(boto3_client=secrets))
    relay = build_relay(relay_config(replay), api_key=key, s3=account.s3, dynamodb=account.dynamodb)
    with pytest.raises(OperatorError, match="no-such-secret: ResourceNotFoundException"):
        relay.handle({"task_id": TASK})


def test_the_default_provider_reads_the_secret_with_the_stacks_client(replay, account, secrets):
    """Without an injected provider the key source makes its own (standard retries), on first use."""
    replay.api_key = OLD_KEY
    replay.script(TASK, sample("pending"))
    relay = build_relay(relay_config(replay), api_key=SecretApiKey(SECRET_NAME), s3=account.s3)
    assert relay.handle({"task_id": TASK})["done"] is False
