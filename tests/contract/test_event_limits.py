"""What a completion event may hold, as AWS takes it, where moto checks nothing: every value of the event
is one EventBridge's PutEvents accepts, whatever the caller's context or DashScope's answer held, and the
source the stack (or the subscriber example) is given is one PutEvents accepts.

The limits, as AWS and the RFCs write them (not taken from the code):
- EventBridge PutEvents API reference (docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html):
  "For the JSON number (integer) data type, the constraints are: a minimum value of
  -9,223,372,036,854,775,808 and a maximum value of 9,223,372,036,854,775,807", and "PutEvents will only
  process nested JSON up to 1000 levels deep".
- JSON (RFC 8259, section 6): "Numeric values that cannot be represented ... (such as Infinity and NaN)
  are not permitted".
- EventBridge user guide, "Event structure reference" (eb-events-structure.html): "Customer-generated
  events can have any value here, as long as it doesn't begin with "aws."". CloudFormation's
  AllowedPattern is a Java regex (CloudFormation user guide, "Using regular expressions in CloudFormation
  templates"), which has lookahead, as Python's has.
- RFC 6838, section 4.2: a media type's type and subtype names are each 1 to 127 characters
  (`restricted-name-first *126restricted-name-chars`), case-insensitive.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import boto3
import pytest
from moto import mock_aws
from wan_relay.errors import InvalidInput
from wan_relay.models import media_type
from wan_relay_local.replay import Media, PatternBody
from wan_relay_local.stack import Template

from tests.conftest import BUCKET, ROOT, completion, sample

EVENTBRIDGE_INTEGERS = (-(2**63), 2**63 - 1)
EVENTBRIDGE_LEVELS = 1000
RFC6838_NAME_CHARS = 127
REQUIRED = {"DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf"}
TASK = "f470bbfd-d955-4165-935b-d35b8e2a91c0"
MiB = 1024 * 1024


def nested(levels: int, leaf: Any = True) -> dict[str, Any]:
    """A JSON object `levels` objects deep: nested(1) is {"a": leaf}."""
    value: Any = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def levels(value: Any) -> int:
    """How many objects and arrays deep `value` is (a scalar: 0), walked without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def eventbridge_refuses(detail: Any) -> list[str]:
    """What in an event whose detail is `detail` PutEvents' documented constraints refuse: nothing, or
    the reasons. The event around the detail is one level more."""
    reasons = []
    try:
        json.dumps(detail, allow_nan=False)
    except ValueError:
        reasons.append("NaN or Infinity")
    if levels({"detail": detail}) > EVENTBRIDGE_LEVELS:
        reasons.append("nested too deep")
    stack = [detail]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not EVENTBRIDGE_INTEGERS[0] <= item <= EVENTBRIDGE_INTEGERS[1]:
            reasons.append(f"an integer of {item.bit_length()} bits")
        elif isinstance(item, dict | list):
            stack.extend(item.values() if isinstance(item, dict) else item)
    return reasons


# --- the caller's context: refused at the input check ------------------------------------------


@pytest.mark.parametrize(("context", "where", "words"), [
    ({"order_id": 2**64 - 1}, "$.context.order_id", "64-bit"),  # an unsigned 64-bit id, from a Go or Rust caller
    ({"n": 2**63}, "$.context.n", "64-bit"),
    ({"n": -(2**63) - 1}, "$.context.n", "64-bit"),
    ({"batch": [1, [2, {"ids": [3, 2**70]}]]}, "$.context.batch[1][1].ids[1]", "64-bit"),
    ({"weird key": 2**64}, "$.context[...]", "64-bit"),  # a key that is not a plain name is not echoed
    (nested(65), "$.context.a.a", "64 levels"),
    ({"list": [nested(64)]}, "$.context.list[0]", "64 levels"),
    ({"ratio": math.nan}, "$.context.ratio", "NaN"),  # what Lambda's runtime makes of `NaN` in a direct invoke
    ({"ratio": math.inf}, "$.context.ratio", "Infinity"),
    ({"ratio": -math.inf}, "$.context.ratio", "Infinity"),
], ids=["uint64", "int64+1", "int64-1", "in-lists", "odd-key", "65-levels", "65-levels-in-list", "nan", "inf",
        "-inf"])
def test_a_context_no_event_could_carry_is_refused_at_the_input_check(
    replay, account, relay, context, where, words
):
    with pytest.raises(InvalidInput, match="context") as raised:
        relay.handle({"action": "start", "input": {"task_id": TASK, "context": context}})

    message = str(raised.value)
    assert where in message and words in message, message
    assert not re.search(r"\d{19}", message)  # the value is not echoed back
    assert replay.requests == []


def test_a_context_at_the_limits_is_carried_untouched_into_an_event_eventbridge_takes(replay, account, relay):
    answer = replay.rehost(sample("wan2.6-t2i_succeeded"))
    task_id = answer["output"]["task_id"]
    replay.script(task_id, answer)
    context = {"max": 2**63 - 1, "min": -(2**63), "deep": nested(63), "list": [nested(62)], "float": 1e308,
               "small": -5e-324, "flag": False}

    first = relay.handle({"action": "start", "input": {"task_id": task_id, "context": context}})
    state = relay.handle(first)

    detail = completion(state)
    assert detail["context"] == context and levels(context) == 64
    assert eventbridge_refuses(detail) == []


# --- usage.raw, DashScope's own object: what no event could carry is marked, the event goes out -----


def test_usage_an_event_could_not_carry_is_replaced_by_a_marker_and_the_event_goes_out(replay, account, relay):
    answer = replay.rehost(sample("failed_output_code"))
    task_id = answer["output"]["task_id"]
    answer["usage"] = {"image_count": 0, "big": 2**64, "ids": [7, -(2**63) - 1], "deep": nested(80),
                       "ratio": math.nan, "scale": math.inf}  # the replay writes NaN and Infinity as Python does
    replay.script(task_id, answer)

    state = relay.handle({"task_id": task_id})

    detail = completion(state)
    assert detail["status"] == "FAILED"
    assert eventbridge_refuses(detail) == []
    raw = detail["usage"]["raw"]
    assert raw["image_count"] == 0 and raw["ids"][0] == 7  # what fits is kept
    for marked in (raw["big"], raw["ids"][1]):
        assert marked["_truncated"] is True and len(marked["_sha256"]) == 64
    assert levels(raw) <= 64
    deepest = raw["deep"]
    while "a" in deepest:
        deepest = deepest["a"]
    assert deepest["_truncated"] is True
    assert raw["ratio"] is None or raw["ratio"]["_truncated"] is True
    assert raw["scale"] is None or raw["scale"]["_truncated"] is True


# --- the event's source: refused where EventBridge reserves it ----------------------------------


def _sources(pattern: str) -> tuple[list[str], list[str]]:
    accepted = ["wan.relay", "wan.relay.submit", "awsome.relay", "aws-relay", "aws", "my.aws.relay", "s" * 256]
    refused = ["aws.relay", "aws.", "AWS.relay", "Aws.relay", "s" * 257, "", "wan relay", "wan/relay"]
    return ([s for s in accepted if not re.fullmatch(pattern, s)], [s for s in refused if re.fullmatch(pattern, s)])


@pytest.mark.parametrize("parameter", ["EventSource", "SubmitEventSource"])
def test_the_template_refuses_a_source_eventbridge_reserves_for_aws(parameter: str) -> None:
    declared = Template(parameters=REQUIRED).doc["Parameters"][parameter]
    wrongly_refused, wrongly_accepted = _sources(declared["AllowedPattern"])
    assert wrongly_refused == [] and wrongly_accepted == []
    assert re.fullmatch(declared["AllowedPattern"], declared["Default"])


# --- media[].content_type: the media type only ---------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("image/png", "image/png"),
    ("Image/PNG", "image/png"),
    ("video/mp4; codecs=\"avc1.42E01E, mp4a.40.2\"", "video/mp4"),
    ("  image/webp  ;q=1", "image/webp"),
    ("image/vnd.ms-photo", "image/vnd.ms-photo"),
    ("image/" + "p" * RFC6838_NAME_CHARS, "image/" + "p" * RFC6838_NAME_CHARS),
    ("image/" + "p" * (RFC6838_NAME_CHARS + 1), "application/octet-stream"),
    ("image", "application/octet-stream"),
    ("image/png/x", "application/octet-stream"),
    ("image/.png", "application/octet-stream"),
    ("", "application/octet-stream"),
    ("image/pñg", "application/octet-stream"),
])
def test_a_content_type_is_kept_as_its_media_type_only(header: str, expected: str) -> None:
    assert media_type(header) == expected


def test_the_hosts_content_type_parameters_reach_neither_the_object_nor_the_event(replay, account, relay):
    answer = sample("wan2.7-i2v_succeeded")
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    header = 'Video/MP4; codecs="avc1"; name="' + "x" * 6000 + '"'
    answer = replay.rehost(answer, media={path: Media(PatternBody(1 * MiB), content_type=header)})
    replay.script(answer["output"]["task_id"], answer)

    detail = completion(relay.handle({"task_id": answer["output"]["task_id"]}))

    [media] = detail["media"]
    assert media["content_type"] == "video/mp4"
    assert account.s3.head_object(Bucket=BUCKET, Key=media["key"])["ContentType"] == "video/mp4"


def image_served_as(replay, header: str) -> str:
    """The one-image task, its image (a `.png` URL) served with `header` as its Content-Type."""
    answer = sample("wan2.6-t2i_succeeded")
    [image] = answer["output"]["choices"][0]["message"]["content"]
    path = image["image"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    answer = replay.rehost(answer, media={path: Media(PatternBody(64 * 1024), content_type=header)})
    replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


@pytest.mark.parametrize(("header", "stored_as", "extension"), [
    ("image/x_png", "image/x_png", "png"),  # RFC 6838 allows `_`; no plain extension: the URL's
    ("image/svg+xml", "image/svg+xml", "svg-xml"),
    ("image/" + "p" * RFC6838_NAME_CHARS, "image/" + "p" * RFC6838_NAME_CHARS, "png"),
    # no media type at all: read as application/octet-stream, the type from the URL
    ("image/" + "p" * (RFC6838_NAME_CHARS + 1), "image/png", "png"),
    ("garbage", "image/png", "png"),
    ("image png", "image/png", "png"),
], ids=["underscore", "plus", "127-character-subtype", "128-character-subtype", "garbage", "a-space"])
def test_an_odd_or_invalid_content_type_still_stores_the_image(replay, account, relay, header, stored_as, extension):
    task_id = image_served_as(replay, header)

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "SUCCEEDED"
    [media] = detail["media"]
    assert media["content_type"] == stored_as and media["key"] == f"wan/{task_id}/0.{extension}"
    assert account.s3.head_object(Bucket=BUCKET, Key=media["key"])["ContentType"] == stored_as


@pytest.mark.parametrize("header", ["text/html; charset=utf-8", "application/json", "text/plain"])
def test_a_content_type_that_is_not_an_image_or_video_fails_the_item(replay, account, relay, header):
    task_id = image_served_as(replay, header)

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "MEDIA_UNAVAILABLE" and detail["media"] == []
    assert detail["failures"][0]["code"] == "UnexpectedContentType"
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


@pytest.mark.parametrize("how", ["read back for the item", "read back for the task"])
def test_an_object_stored_with_parameters_in_its_content_type_is_announced_with_its_media_type(
    replay, account, relay, how
):
    """An object an earlier attempt stored (a release that kept the host's whole header) is read back from
    S3: on the item's retry (ingest), or when the task's fate is decided without an answer (landed)."""
    answer = sample("wan2.7-i2v_succeeded")
    task_id = answer["output"]["task_id"]
    path = answer["output"]["video_url"].split("aliyuncs.com", 1)[1].split("?", 1)[0]
    body = PatternBody(1 * MiB, seed="earlier")
    answer = replay.rehost(answer, media={path: Media(body, content_type="video/mp4")})
    replay.script(task_id, answer)
    account.s3.put_object(Bucket=BUCKET, Key=f"wan/{task_id}/0.mp4", Body=b"".join(body.iter_range()),
                          ContentType="video/mp4; name=" + "x" * 2000, Metadata={"task-id": task_id, "index": "0"})

    if how == "read back for the item":
        state = relay.handle({"task_id": task_id})
    else:  # the budget ran out while the function kept failing: the event names what S3 holds
        state = relay.handle({"task_id": task_id, "started_at": "2000-01-01T00:00:00.000Z",
                              "error": {"Error": "States.Timeout", "Cause": "{}"}})

    [media] = completion(state)["media"]
    assert media["content_type"] == "video/mp4" and media["size_bytes"] == 1 * MiB


# --- docs/subscriber.yaml: nothing dropped silently, the stack's own source matched ----------------


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SQS..QueuePolicy")
def test_the_subscriber_example_keeps_what_it_cannot_deliver_and_matches_the_stacks_source() -> None:
    """A target's failed deliveries are retried by its RetryPolicy (at most 185 attempts, 60 s to 24 h),
    then sent to its dead-letter queue, which EventBridge may send to only by the queue's own policy (for
    that rule); without one they are dropped (EventBridge user guide, "Using dead-letter queues to process
    undelivered events", and the RetryPolicy of the API reference). moto neither retries nor evaluates the
    policy: they are checked as written, and the pattern by moto's delivery."""
    subscriber_yaml = (ROOT / "docs" / "subscriber.yaml").read_text()
    subscriber = Template(ROOT / "docs" / "subscriber.yaml").doc
    stack = Template(parameters=REQUIRED).doc
    declared = subscriber["Parameters"]["EventSource"]
    assert declared["Default"] == stack["Parameters"]["EventSource"]["Default"]
    assert declared["AllowedPattern"] == stack["Parameters"]["EventSource"]["AllowedPattern"]
    rule = subscriber["Resources"]["RelayedMediaRule"]["Properties"]
    assert rule["EventPattern"]["source"] == [{"Ref": "EventSource"}]
    [target] = rule["Targets"]
    retry = target["RetryPolicy"]
    assert 0 < retry["MaximumRetryAttempts"] <= 185 and 60 <= retry["MaximumEventAgeInSeconds"] <= 86_400
    dead_letters = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert subscriber["Resources"][dead_letters]["Type"] == "AWS::SQS::Queue" and dead_letters != "RelayedMediaQueue"
    policies = [r["Properties"] for r in subscriber["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    [statement] = [statement for policy in policies if policy["Queues"] == [{"Ref": dead_letters}]
                   for statement in policy["PolicyDocument"]["Statement"]]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Allow", {"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    assert statement["Resource"] == {"Fn::GetAtt": [dead_letters, "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["RelayedMediaRule", "Arn"]}}}

    event = json.loads((ROOT / "events" / "completed" / "succeeded_image.json").read_text())
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="subscriber", TemplateBody=subscriber_yaml,
                                    Parameters=[{"ParameterKey": "EventSource", "ParameterValue": "shop.media"}])
        [described] = cloudformation.describe_stacks(StackName="subscriber")["Stacks"]
        queue_url = next(o["OutputValue"] for o in described["Outputs"] if o["OutputKey"] == "QueueUrl")
        events = boto3.client("events", region_name="us-east-1")
        for source in ("shop.media", event["source"]):
            events.put_events(Entries=[{"Source": source, "DetailType": event["detail-type"],
                                        "Detail": json.dumps(event["detail"])}])
        sqs = boto3.client("sqs", region_name="us-east-1")
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["source"] for m in received] == ["shop.media"]
