"""Builds a `Relay` from the environment: configuration, the API key, boto3 clients, HTTP sessions.

Called once per Lambda container (warm starts reuse it). Tests and the local runner build the same
relay with their own clients through `build_relay`. What only a finished task needs (the S3 streamer,
the idempotency ledger and their clients) is built the first time a finished task uses it: most
polls find the task still running and never load `ingest` nor Powertools Idempotency, nor make an S3
or DynamoDB client.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import requests

# Every cold start's first poll reads the key from Secrets Manager: the SDK is part of the typical
# poll, so it is loaded here, in Lambda's init phase, not in that first invocation.
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from .config import Config
from .dashscope import DashScopeClient
from .errors import ConfigurationError, OperatorError
from .relay import Relay

if TYPE_CHECKING:
    from .claims import ClaimInspector
    from .idempotency import Ledger, NoLedger
    from .ingest import MediaStreamer

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


def default_client(service: str) -> Any:
    """A client with the SDK's standard retry mode (SlowDown, 5xx retried).

    S3 parts carry their CRC32 (`ChecksumCRC32`, computed by the streamer), which S3 checks; botocore
    does not recognise a checksum given that way and would SHA-256 the whole body again to sign it.
    Over TLS with a checksum that is what botocore itself skips, so payload signing is off for S3."""
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60,
                        s3={"payload_signing_enabled": False} if service == "s3" else None)
    return boto3.client(service, config=config)


def default_clients() -> tuple[Any, Any]:
    """S3 and DynamoDB clients, as `default_client` makes them.
    The function needs no EventBridge client: the workflow puts the completion event."""
    return default_client("s3"), default_client("dynamodb")


def build_relay(
    config: Config,
    *,
    api_key: str,
    s3: Any = None,
    dynamodb: Any = None,
    session: requests.Session | None = None,
    metrics: Any = None,
) -> Relay:
    """The relay; the streamer, the ledger and the clients not given are made when a finished task
    first needs them."""
    session = session or requests.Session()
    made: dict[str, Any] = {}

    def dynamodb_client() -> Any:
        if "dynamodb" not in made:
            made["dynamodb"] = dynamodb if dynamodb is not None else default_client("dynamodb")
        return made["dynamodb"]

    def make_streamer() -> MediaStreamer:
        from .idempotency import UploadRecords
        from .ingest import MediaStreamer, UrlAllowlist

        return MediaStreamer(
            s3=s3 if s3 is not None else default_client("s3"),
            session=session,
            bucket=config.media_bucket,
            prefix=config.media_prefix,
            max_bytes=config.max_media_bytes,
            allowlist=UrlAllowlist(config.allowed_media_urls),
            uploads=UploadRecords(config.idempotency_table, dynamodb_client()) if config.idempotency_table else None,
        )

    def make_ledger() -> Ledger | NoLedger:
        from .idempotency import Ledger, NoLedger

        if config.idempotency_table:
            return Ledger(config.idempotency_table, dynamodb_client())
        return NoLedger()

    def make_claims() -> ClaimInspector:
        from .claims import ClaimInspector

        return ClaimInspector(
            table=config.idempotency_table or "",
            dynamodb=dynamodb if dynamodb is not None else default_client("dynamodb"),
            sfn=default_client("stepfunctions"),
        )

    return Relay(
        client=DashScopeClient(config.base_url, api_key, session=session),
        make_streamer=make_streamer,
        event_source=config.event_source,
        metrics=metrics,
        make_ledger=make_ledger,
        make_claims=make_claims if config.idempotency_table else None,
    )


def relay_from_env(metrics: Any = None) -> Relay:
    config = Config.from_env()
    return build_relay(config, api_key=resolve_api_key(config), metrics=metrics)
