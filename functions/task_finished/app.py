"""Lambda entry point of the receiver of DashScope's task-finished notifications: Alibaba Cloud
EventBridge POSTs each `dashscope:System:AsyncTaskFinish` event to the stack's HTTP API, and a final
status becomes a hint the sweeper reads (it resumes that task's workflow at once).

Everything else lives in the `wan_relay` package of the shared layer (notifications.py, runtime.py).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from wan_relay import metrics as metric_names
from wan_relay.notifications import receive
from wan_relay.runtime import receiver_from_env

logger = Logger()
metrics = Metrics()
#: made in the container's first request (a missing variable fails it by name), kept for the warm ones
_receiver: list[Any] = []


# no `log_event`: the request's headers carry the token
@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _receiver:
        _receiver.extend(receiver_from_env())
    tokens, hints = _receiver
    answer = receive(event, tokens=tokens, hints=hints, clock=time.time)
    metric = metric_names.TASK_FINISHED[answer.outcome]
    metrics.add_metric(name=metric.name, unit=metric.unit, value=1)
    log = logger.warning if answer.status >= 400 else logger.info
    log("task-finished notification", extra={"status": answer.status, "outcome": answer.outcome,
                                             "reason": answer.reason, "task_id": answer.task_id,
                                             "detail": answer.detail})
    return answer.as_http()
