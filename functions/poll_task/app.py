"""Lambda entry point of the wait loop: parse the state, run one poll of the relay, answer the state.

Everything else lives in the `wan_relay` package of the shared layer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from wan_relay.relay import Relay
from wan_relay.runtime import relay_from_env

# No Powertools Tracer: `Tracing: Active` has the Lambda service trace every invocation; the X-Ray
# SDK would only add subsegments for the HTTP and AWS calls, for ~100 ms on every cold start.
logger = Logger()
metrics = Metrics()

_relay: Relay | None = None


def _get_relay() -> Relay:
    """Built on the first call, not at import: a configuration error then fails the invocation
    under its own name (ConfigurationError) instead of the container's start-up."""
    global _relay
    if _relay is None:
        _relay = relay_from_env(metrics=metrics)
    return _relay


@logger.inject_lambda_context(correlation_id_path="task_id")
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _get_relay().handle(event, context)
