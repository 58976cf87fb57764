"""One Lambda attempt in its own process, killed (os._exit) at a chosen step, for the exactly-once
tests: a real crash leaves what a real crash leaves (no cleanup, no exception handlers run).

usage: python -m tests.faults.attempt KILL_POINT STATE_JSON   (env: AWS_ENDPOINT_URL, relay config)
Prints the handler's answer, or {"errorType": ...} when it raised, as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

import boto3
from wan_relay_local.lambda_bridge import FUNCTIONS, FakeContext, load_handler

KILLED = 137


def _die(**_: object) -> None:
    os._exit(KILLED)


def main() -> None:
    kill_point, state = sys.argv[1], json.loads(sys.argv[2])
    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events
    parts: list[int] = []

    def after_a_part(**_: object) -> None:
        parts.append(1)
        if len(parts) == 1:
            _die()

    if kill_point == "after-first-part":
        events.register("after-call.s3.UploadPart", after_a_part)
    elif kill_point == "after-upload-completed":
        # the object exists in S3; the ledger has not yet recorded that it landed
        events.register("after-call.s3.CompleteMultipartUpload", _die)
    elif kill_point == "after-media-recorded":
        # the ledger's first UpdateItem marks the (one) media item done; the fate is not decided yet
        events.register("after-call.dynamodb.UpdateItem", _die)

    handler = load_handler(FUNCTIONS / "poll_task")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:poll"
    context = FakeContext(function_name="poll", invoked_function_arn=arn,
                          timeout_seconds=float(os.environ.get("ATTEMPT_TIMEOUT_SECONDS", "3")))
    try:
        answer = handler(state, context)
    except Exception as exc:
        answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    if kill_point == "before-answer":
        # the media is stored and the completion decided; Step Functions never hears the answer
        _die()
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
