"""Lambda entry point of the sweeper: one account's sweep for about a minute (an EventBridge rule,
`rate(1 minute)`, starts it every minute; a lease keeps it to one at a time), then a summary of what it did.

Everything else lives in the `wan_relay` package of the shared layer (sweep_host.py, sweeper.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from wan_relay.runtime import sweep_host_from_env

logger = Logger()
metrics = Metrics()

#: a sweep lasts at most this long: the next minute's invocation takes over
SWEEP_SECONDS = 60.0
#: left to the invocation after the sweep: the list answers in flight, the lease's release, the metrics
FINISH_SECONDS = 15.0


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.time()
    sweep = min(context.get_remaining_time_in_millis() / 1000 - FINISH_SECONDS, SWEEP_SECONDS)
    # the lease's holder is this invocation's own: Lambda may run one asynchronous event twice, with the
    # same request id (kept in it for the logs), and two holders of one name would both hold the lease
    holder = f"{context.aws_request_id}/{uuid.uuid4().hex[:12]}"
    host = sweep_host_from_env(holder=holder, metrics=metrics)
    return host.run(started + sweep)
