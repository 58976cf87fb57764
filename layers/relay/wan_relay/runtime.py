"""Builds a `Relay` from the environment: configuration, the API key, boto3 clients, HTTP sessions.

Called once per Lambda container (warm starts reuse it). Tests and the local runner build the same
relay with their own clients through `build_relay`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from .config import Config
from .dashscope import DashScopeClient
from .errors import ConfigurationError, OperatorError
from .idempotency import Ledger, NoLedger
from .ingest import MediaStreamer, UrlAllowlist
from .relay import Relay

SECRET_MAX_AGE_SECONDS = 300

# At DEBUG, botocore logs whole response bodies (GetSecretValue's included: the API key) and request
# headers (the session token), urllib3 logs presigned media URLs. Lambda's DEBUG log level sets the
# root logger, so keep these SDK loggers at INFO whatever the root level is.
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.INFO)
_KEY_FIELDS = ("DASHSCOPE_API_KEY", "api_key", "apiKey", "key")


def api_key_from_secret_string(value: str) -> str:
    """A secret holds the key either as plain text or as JSON with one of the usual field names."""
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            raise ConfigurationError("the secret in DASHSCOPE_API_KEY_SECRET is not valid JSON") from None
        for name in _KEY_FIELDS:
            if isinstance(data, dict) and isinstance(data.get(name), str) and data[name].strip():
                return data[name].strip()
        raise ConfigurationError(
            "the secret in DASHSCOPE_API_KEY_SECRET holds JSON without a DASHSCOPE_API_KEY or api_key field"
        )
    if not value:
        raise ConfigurationError("the secret in DASHSCOPE_API_KEY_SECRET is empty")
    return value


def resolve_api_key(config: Config) -> str:
    """The plain key for local runs, else the secret, cached by Powertools for a few minutes."""
    if config.api_key:
        return config.api_key
    from aws_lambda_powertools.utilities import parameters  # only Lambda needs Secrets Manager
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        secret = parameters.get_secret(config.api_key_secret or "", max_age=SECRET_MAX_AGE_SECONDS)
    except GetParameterError as exc:
        raise OperatorError(
            f"cannot read the DashScope key from secret {config.api_key_secret}: {type(exc.__cause__).__name__}",
            code="SecretUnavailable",
        ) from None
    if not isinstance(secret, str):
        secret = bytes(secret).decode("utf-8", "replace")
    return api_key_from_secret_string(secret)


def default_clients() -> tuple[Any, Any]:
    """S3 and DynamoDB clients with the SDK's standard retry mode (SlowDown, 5xx retried).
    The function needs no EventBridge client: the workflow puts the completion event."""
    import boto3
    from botocore.config import Config as BotoConfig

    retries = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    return (
        boto3.client("s3", config=retries),
        boto3.client("dynamodb", config=retries),
    )


def build_relay(
    config: Config,
    *,
    api_key: str,
    s3: Any,
    dynamodb: Any = None,
    session: requests.Session | None = None,
    metrics: Any = None,
) -> Relay:
    session = session or requests.Session()
    if config.idempotency_table:
        if dynamodb is None:
            import boto3

            dynamodb = boto3.client("dynamodb")
        ledger: Ledger | NoLedger = Ledger(config.idempotency_table, dynamodb)
    else:
        ledger = NoLedger()
    return Relay(
        client=DashScopeClient(config.base_url, api_key, session=session),
        streamer=MediaStreamer(
            s3=s3,
            session=session,
            bucket=config.media_bucket,
            prefix=config.media_prefix,
            max_bytes=config.max_media_bytes,
            allowlist=UrlAllowlist(config.allowed_media_urls),
        ),
        event_source=config.event_source,
        metrics=metrics,
        ledger=ledger,
    )


def relay_from_env(metrics: Any = None) -> Relay:
    config = Config.from_env()
    s3, dynamodb = default_clients()
    return build_relay(config, api_key=resolve_api_key(config), s3=s3, dynamodb=dynamodb, metrics=metrics)
