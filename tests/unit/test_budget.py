"""The account's query budget: slots one interval apart, whoever reserves them, so no second ever holds
more queries than the budget; stored in DynamoDB with a conditional update (moto), keyed by account."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from wan_relay.budget import MICROS, Budget, DynamoDBBudget, max_in_any_window, reserve, slot_verdict

TABLE = "wan-relay-idempotency"


def test_slots_are_one_interval_apart_from_now_and_stop_at_the_lookahead():
    budget = Budget(19, lookahead_seconds=1.0)
    granted = reserve(budget, None, now_us=5 * MICROS, wanted=100)
    assert granted.slots_us[0] == 5 * MICROS
    assert {b - a for a, b in zip(granted.slots_us, granted.slots_us[1:], strict=False)} == {budget.interval_us}
    assert len(granted.slots_us) == 19 and granted.slots_us[-1] < 6 * MICROS
    # the bucket is spoken for up to the lookahead: nothing more now, the next slot a second later
    assert reserve(budget, granted.next_free_us, 5 * MICROS, 1).slots_us == ()
    assert reserve(budget, granted.next_free_us, 6 * MICROS, 1).slots_us == (granted.next_free_us,)


def test_an_idle_bucket_lends_nothing_ahead_and_a_later_start_can_be_asked_for():
    budget = Budget(20)
    late = reserve(budget, 1 * MICROS, now_us=100 * MICROS, wanted=2)
    assert late.slots_us == (100 * MICROS, 100 * MICROS + 50_000)  # unused past slots are gone, not saved up
    ahead = reserve(budget, None, now_us=0, wanted=1, not_before_us=300_000)
    assert ahead.slots_us == (300_000,)


@pytest.mark.parametrize("rate", [0, -1, 2.5, True])
def test_a_budget_is_a_whole_positive_number_of_queries_a_second(rate):
    with pytest.raises(ValueError, match="whole number"):
        Budget(rate)


def test_a_late_slot_is_given_up_rather_than_crowding_the_next_one():
    assert slot_verdict(1_000_000, 999_000, 20_000) == "wait"
    assert slot_verdict(1_000_000, 1_015_000, 20_000) == "send"
    assert slot_verdict(1_000_000, 1_030_000, 20_000) == "expired"


def test_the_window_count_is_a_sliding_half_open_second():
    assert max_in_any_window([0, 999_999, 1_000_000]) == 2
    assert max_in_any_window([0, 500_000, 999_999, 1_400_000]) == 3
    assert max_in_any_window([]) == 0


calls = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * MICROS),  # when the caller asks (callers may interleave)
        st.integers(min_value=1, max_value=40),  # how many slots it wants
        st.integers(min_value=0, max_value=2 * MICROS),  # how far ahead it needs them (a resume's lead)
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(min_value=1, max_value=25), lookahead=st.floats(min_value=0.05, max_value=3.0), calls=calls)
def test_whoever_reserves_no_second_holds_more_queries_than_the_budget(rate, lookahead, calls):
    """Callers (the sweeper's list pages, its resumes' GETs, fallback polls) take turns on the bucket in
    the order their conditional writes land; each sends its queries exactly at its slots."""
    budget = Budget(rate, lookahead_seconds=lookahead)
    state, sent = None, []
    clock = 0
    for ask_at, wanted, lead in sorted(calls):
        clock = max(clock, ask_at)
        granted = reserve(budget, state, clock, wanted, not_before_us=clock + lead)
        assert len(granted.slots_us) <= wanted
        assert all(clock <= slot < clock + lead + budget.lookahead_us for slot in granted.slots_us)
        state = granted.next_free_us
        sent += granted.slots_us
    assert len(set(sent)) == len(sent)
    assert max_in_any_window(sent) <= rate


# --- stored in DynamoDB -----------------------------------------------------------------------------------


@pytest.fixture
def dynamodb():
    with mock_aws():
        import boto3

        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_callers_of_one_account_share_its_slots(dynamodb):
    clock = Clock()
    sweeper = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(10), clock=clock)
    fallback = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(10), clock=clock)
    first = sweeper.reserve(4)
    second = fallback.reserve(4)
    assert second.slots_us[0] == first.slots_us[-1] + Budget(10).interval_us
    assert max_in_any_window([*first.slots_us, *second.slots_us]) <= 10
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "budget#acct-1"}})["Item"]
    assert int(item["next_free_us"]["N"]) == second.next_free_us
    assert int(item["expiration"]["N"]) > clock.now  # the table's TTL clears an account gone quiet


def test_accounts_have_budgets_of_their_own(dynamodb):
    clock = Clock()
    one = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(5), clock=clock).reserve(5)
    other = DynamoDBBudget(dynamodb, TABLE, "acct-2", Budget(5), clock=clock).reserve(5)
    assert one.slots_us == other.slots_us  # a second fleet on another Alibaba account is not slowed down


class RacingClient:
    """The real client, but another caller's reservation lands between this caller's read and write."""

    def __init__(self, client, rival: DynamoDBBudget) -> None:
        self._client, self._rival, self.exceptions = client, rival, client.exceptions
        self.races = 1

    def get_item(self, **kwargs):
        answer = self._client.get_item(**kwargs)
        if self.races:
            self.races -= 1
            self._rival.reserve(3)
        return answer

    def update_item(self, **kwargs):
        return self._client.update_item(**kwargs)


def test_a_lost_race_reads_again_and_never_grants_a_slot_twice(dynamodb):
    clock = Clock()
    rival = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(10), clock=clock)
    racing = RacingClient(dynamodb, rival)
    caller = DynamoDBBudget(racing, TABLE, "acct-1", Budget(10), clock=clock)
    rival_before = rival.reserve(2)
    mine = caller.reserve(3)
    assert racing.races == 0  # the rival did write in between
    rival_slots = [*rival_before.slots_us, *(rival_before.slots_us[-1] + (i + 1) * Budget(10).interval_us
                                             for i in range(3))]
    assert not set(mine.slots_us) & set(rival_slots)
    assert mine.slots_us[0] == rival_slots[-1] + Budget(10).interval_us


def test_a_bucket_spoken_for_grants_nothing_and_writes_nothing(dynamodb):
    clock = Clock()
    budget = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(4, lookahead_seconds=1.0), clock=clock)
    assert len(budget.reserve(10).slots_us) == 4
    before = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "budget#acct-1"}})["Item"]
    assert budget.reserve(1).slots_us == ()
    assert dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "budget#acct-1"}})["Item"] == before
    clock.now += 1.0
    assert len(budget.reserve(1).slots_us) == 1


# --- a workflow's GET slot (wan_relay.fleet) ---------------------------------------------------------


def _held_up_fleet(dynamodb, clock: Clock, late_by: list[float]):
    """A workflow's Fleet whose waits end `late_by` seconds late, one after the other (a process held up,
    a machine short of CPU), then on time."""
    from wan_relay.fleet import Fleet

    def sleep(seconds: float) -> None:
        clock.now += seconds + (late_by.pop(0) if late_by else 0.0)

    return Fleet(dynamodb=dynamodb, table=TABLE, account="acct-1", budget=Budget(1), clock=clock, sleep=sleep)


def test_a_handed_slot_the_wait_overran_is_given_up_and_the_get_goes_at_a_slot_of_its_own(dynamodb):
    clock = Clock()
    fleet = _held_up_fleet(dynamodb, clock, [0.9])
    handed_us = round((clock.now + 0.6) * MICROS)  # the sweeper's slot for this GET, 0.6 s ahead

    assert fleet.take_slot(handed_us) is True
    # woken 0.9 s past the handed slot, more than the half interval a query may be late: sending then
    # could put a third query in a second of two slots; the GET goes at a slot the budget granted now
    sent_us = round(clock.now * MICROS)
    assert sent_us - handed_us > Budget(1).interval_us // 2
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "budget#acct-1"}}).get("Item", {})
    assert item.get("next_free_us") == {"N": str(sent_us + Budget(1).interval_us)}


def test_a_reserved_slot_the_wait_overran_is_reserved_again_and_a_stalled_workflow_backs_off(dynamodb):
    clock = Clock()
    rival = DynamoDBBudget(dynamodb, TABLE, "acct-1", Budget(1), clock=clock)
    (held,) = rival.reserve(1).slots_us  # another caller's query now: this GET's slot is a second later
    clock.now += 0.2
    fleet = _held_up_fleet(dynamodb, clock, [0.7])
    assert fleet.take_slot() is True
    # the first slot (held + 1 s) was overrun by 0.7 s: the GET waited for the next one the budget gave
    assert round(clock.now * MICROS) == held + 2 * Budget(1).interval_us

    clock.now += 0.2
    stalled = _held_up_fleet(dynamodb, clock, [0.7] * 3)
    assert stalled.take_slot() is False  # every wait overran its slot: no GET, a back-off as after a 429
