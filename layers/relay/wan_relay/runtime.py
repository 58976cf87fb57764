"""Builds a `Relay` (and the sweeper's host) from the environment: configuration, the API key, boto3
clients, HTTP sessions.

Called once per Lambda container (warm starts reuse it). Tests and the local runner build the same
relay with their own clients through `build_relay`. What only a finished task needs (the S3 streamer,
the idempotency ledger and their clients) is built the first time a finished task uses it: most
polls find the task still running and never load `ingest` nor Powertools Idempotency, nor make an S3
or DynamoDB client.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import requests

# Every cold start's first poll reads the key from Secrets Manager: the SDK is part of the typical
# poll, so it is loaded here, in Lambda's init phase, not in that first invocation.
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from .config import Config
from .dashscope import DashScopeClient, PlainApiKey
from .errors import ConfigurationError
from .registry import Hints
from .relay import Relay
from .service_errors import DYNAMODB, SECRETS_MANAGER, aws_error

if TYPE_CHECKING:
    from .claims import ClaimInspector
    from .idempotency import Ledger, NoLedger
    from .ingest import MediaStreamer
    from .sweep_host import SweepHost

SECRET_MAX_AGE_SECONDS = 300

# At DEBUG, botocore logs whole response bodies (GetSecretValue's included: the API key) and request
# headers (the session token), urllib3 logs presigned media URLs. Lambda's DEBUG log level sets the
# root logger, so keep these SDK loggers at INFO whatever the root level is.
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.INFO)
_KEY_FIELDS = ("DASHSCOPE_API_KEY", "api_key", "apiKey", "key")


def api_key_from_secret_string(value: str) -> str:
    """A secret holds the key either as plain text or as JSON with one of the usual field names."""
    return text_from_secret_string(value, "DASHSCOPE_API_KEY_SECRET", _KEY_FIELDS)


def text_from_secret_string(value: str, variable: str, fields: tuple[str, ...]) -> str:
    """A secret's text, plain or in one of `fields` of a JSON object (what the console's key/value form
    stores); anything else is a ConfigurationError naming `variable`, never the value."""
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            raise ConfigurationError(f"the secret in {variable} is not valid JSON") from None
        for name in fields:
            if isinstance(data, dict) and isinstance(data.get(name), str) and data[name].strip():
                return data[name].strip()
        raise ConfigurationError(f"the secret in {variable} holds JSON without a {' or '.join(fields[:2])} field")
    if not value:
        raise ConfigurationError(f"the secret in {variable} is empty")
    return value


class SecretApiKey:
    """The DashScope key from Secrets Manager, read through Powertools' cache at every poll: a rotated
    key reaches every warm container within `max_age`, and `refreshed` reads the secret afresh (once
    DashScope has refused the cached key) instead of failing the task with the old one."""

    refreshable = True

    def __init__(self, secret_id: str, provider: parameters.SecretsProvider | None = None,
                 max_age: int = SECRET_MAX_AGE_SECONDS) -> None:
        self.secret_id = secret_id
        self._provider = provider
        self._max_age = max_age

    def __repr__(self) -> str:
        return f"SecretApiKey({self.secret_id!r})"

    def current(self) -> str:
        return self._read(force_fetch=False)

    def refreshed(self) -> str:
        return self._read(force_fetch=True)

    def _read(self, *, force_fetch: bool) -> str:
        if self._provider is None:  # made on first use, with the SDK's standard retries and timeouts
            self._provider = parameters.SecretsProvider(boto3_client=default_client("secretsmanager"))
        try:
            secret = self._provider.get(self.secret_id, max_age=self._max_age, force_fetch=force_fetch)
        except GetParameterError as exc:
            subject = f"the read of the DashScope key from secret {self.secret_id}"
            raise aws_error(exc, SECRETS_MANAGER, subject) from None
        if not isinstance(secret, str):
            secret = bytes(secret).decode("utf-8", "replace")
        return api_key_from_secret_string(secret)


def api_key_source(config: Config) -> PlainApiKey | SecretApiKey:
    """The plain key for local runs, else the secret."""
    if config.api_key:
        return PlainApiKey(config.api_key)
    return SecretApiKey(config.api_key_secret or "")


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


#: the sweeper's clients give up on a call within this (connect and read timeouts, times the attempts):
#: a SendTaskHeartbeat or a DynamoDB read that hangs must not run its invocation past the 15 s it keeps
#: for releasing the lease (functions/sweeper's FINISH_SECONDS); a call given up is tried again a tick later
SWEEPER_CALL_SECONDS = 12


def sweeper_client(service: str, *, connections: int = 10) -> Any:
    """A client for the sweeper's loop: short timeouts and two attempts, so that no call outlasts
    SWEEPER_CALL_SECONDS (the loop offers again what did not go through); `connections` pooled, one for
    each thread that calls it at once (botocore's default is 10)."""
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=4,
                        max_pool_connections=connections)
    return boto3.client(service, config=config)


def default_clients() -> tuple[Any, Any]:
    """S3 and DynamoDB clients, as `default_client` makes them.
    The function needs no EventBridge client: the workflow puts the completion event."""
    return default_client("s3"), default_client("dynamodb")


def build_relay(
    config: Config,
    *,
    api_key: str | PlainApiKey | SecretApiKey,
    s3: Any = None,
    dynamodb: Any = None,
    session: requests.Session | None = None,
    metrics: Any = None,
) -> Relay:
    """The relay; the streamer, the ledger and the clients not given are made when a finished task
    first needs them. `session` is the DashScope client's; media is fetched with a session of its
    own, whose connections go to public addresses only (public_addresses.py)."""
    session = session or requests.Session()
    made: dict[str, Any] = {}

    def dynamodb_client() -> Any:
        if "dynamodb" not in made:
            made["dynamodb"] = dynamodb if dynamodb is not None else default_client("dynamodb")
        return made["dynamodb"]

    def make_streamer() -> MediaStreamer:
        from .idempotency import UploadRecords
        from .ingest import MediaStreamer, UrlAllowlist
        from .public_addresses import media_session

        return MediaStreamer(
            s3=s3 if s3 is not None else default_client("s3"),
            session=media_session(allow_loopback=config.allow_loopback_media),
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

    fleet = None
    if config.waiting == "park":  # Config checked both tables are set
        from .budget import Budget
        from .fleet import Fleet
        from .registry import Registry

        def wake_sweeper() -> None:
            default_client("lambda").invoke(FunctionName=config.sweeper_function, InvocationType="Event",
                                            Payload=b"{}")

        fleet = Fleet(dynamodb=dynamodb_client(), table=config.idempotency_table or "", account=config.account,
                      wake=wake_sweeper if config.sweeper_function else None,
                      budget=Budget(rate=config.query_budget), watchdog_seconds=config.park_watchdog_seconds,
                      registry=Registry(dynamodb_client(), config.parked_table or "", config.account))
    return Relay(
        fleet=fleet,
        client=DashScopeClient(config.base_url, api_key, session=session),
        make_streamer=make_streamer,
        event_source=config.event_source,
        metrics=metrics,
        make_ledger=make_ledger,
        make_claims=make_claims if config.idempotency_table else None,
    )


#: the oldest botocore the functions run on: Powertools 3.37's own floor (boto3 1.34.32). The layer ships no
#: SDK: Lambda's runtime brings its own, and AWS may update it under a deployed stack (its version is not
#: published per runtime). The S3 checksum path was checked on 1.35.99, the last release before 1.36
#: changed the default checksums, and on 1.36.0, as on the version the tests pin
MIN_BOTOCORE = (1, 34, 32)


def check_sdk() -> dict[str, str]:
    """The AWS SDK this container runs on (logged once, to tell an SDK update from a code change), or a
    ConfigurationError below MIN_BOTOCORE, which the relay's S3 and Step Functions calls are not known to
    work on."""
    import importlib.metadata

    import boto3
    import botocore

    try:  # by its metadata: importing it would cost every cold start, most of which store no media
        s3transfer = importlib.metadata.version("s3transfer")
    except importlib.metadata.PackageNotFoundError:
        s3transfer = "unknown"
    versions = {"boto3": boto3.__version__, "botocore": botocore.__version__, "s3transfer": s3transfer}
    found = tuple(int(part) for part in re.findall(r"\d+", botocore.__version__)[:3])
    if found < MIN_BOTOCORE:
        wanted = ".".join(map(str, MIN_BOTOCORE))
        raise ConfigurationError(f"the runtime's botocore is {botocore.__version__}; wan-relay needs {wanted} or later "
                                 "(add a newer boto3 to the layer, or update the function's runtime)")
    if versions != _sdk_logged:  # once a container (the sweeper builds its host every invocation)
        Logger(child=True).info("AWS SDK", extra=versions)
        _sdk_logged.clear()
        _sdk_logged.update(versions)
    return versions


_sdk_logged: dict[str, str] = {}


def relay_from_env(metrics: Any = None) -> Relay:
    check_sdk()
    config = Config.from_env()
    api_key = api_key_source(config)
    api_key.current()  # in the container's first invocation: a secret that cannot be read fails it by name
    return build_relay(config, api_key=api_key, metrics=metrics)


def sweep_host_from_env(*, holder: str, metrics: Any = None) -> SweepHost:
    """The sweeper's host for one invocation (`holder`: the lease's holder, a name of its own). It reads
    IDEMPOTENCY_TABLE (the budget and the lease), PARKED_TABLE (the registry), DASHSCOPE_ACCOUNT,
    DASHSCOPE_QUERY_BUDGET, DASHSCOPE_LIST_PAGE_SIZE and the DashScope key and base URL, as the poll function
    does; not MEDIA_BUCKET."""
    check_sdk()
    # the sweeper stores no media: the bucket the poll function requires is not asked of it
    return sweep_host_from_config(
        Config.from_env({"MEDIA_BUCKET": "none (the sweeper stores no media)", **os.environ}),
        holder=holder, metrics=metrics)


def sweep_host_from_config(config: Config, *, holder: str, metrics: Any = None) -> SweepHost:
    """The sweeper's host from a configuration (the embedded stack's, in local runs and tests)."""
    from .budget import Budget
    from .sweep_host import STEP_FUNCTIONS_CONNECTIONS, SweepHost
    from .sweeper import SweepConfig, Sweeper

    if not (config.idempotency_table and config.parked_table):
        raise ConfigurationError("the sweeper needs IDEMPOTENCY_TABLE (the budget, its lease) and PARKED_TABLE")
    api_key = api_key_source(config)
    api_key.current()  # a secret that cannot be read fails the invocation by name, before the lease
    return SweepHost(
        dynamodb=sweeper_client("dynamodb"),
        stepfunctions=sweeper_client("stepfunctions", connections=STEP_FUNCTIONS_CONNECTIONS),
        dashscope=DashScopeClient(config.base_url, api_key),
        idempotency_table=config.idempotency_table,
        parked_table=config.parked_table,
        account=config.account,
        budget=Budget(config.query_budget),
        # heartbeats every third of the parks' watchdog: two may be lost before a park falls back
        sweeper=Sweeper(SweepConfig(rate=config.query_budget, page_size=config.list_page_size,
                                    heartbeat_every_seconds=config.park_watchdog_seconds / 3)),
        holder=holder,
        metrics=metrics,
    )


# --- the receiver of DashScope's task-finished notifications ------------------------------------------

#: a token that does not match the cached one is checked against a fresh read at most this often per
#: container: a rotated token works within this, and a stream of wrong tokens cannot turn into a stream
#: of Secrets Manager reads
TOKEN_REFRESH_SECONDS = 60
#: the fields a JSON token secret may keep it in (the header's name, as the console's key/value form invites)
_TOKEN_FIELDS = ("x-wan-relay-token", "token")


class SecretToken:
    """The notifications' shared token from Secrets Manager, through Powertools' cache (`max_age`); read
    afresh on a mismatch at most every `refresh_every` seconds (notifications.TokenSource). The secret holds
    it as plain text, or as JSON in a `x-wan-relay-token` or `token` field."""

    def __init__(self, secret_id: str, provider: parameters.SecretsProvider | None = None, *,
                 max_age: int = SECRET_MAX_AGE_SECONDS, refresh_every: float = TOKEN_REFRESH_SECONDS,
                 clock: Any = None) -> None:
        self.secret_id = secret_id
        self._provider = provider
        self._max_age = max_age
        self._refresh_every = refresh_every
        self._clock = clock or time.monotonic
        self._refreshed_at: float | None = None

    def __repr__(self) -> str:
        return f"SecretToken({self.secret_id!r})"

    def current(self) -> str:
        return self._read(force_fetch=False)

    def refreshed(self) -> str | None:
        now = self._clock()
        if self._refreshed_at is not None and now - self._refreshed_at < self._refresh_every:
            return None
        self._refreshed_at = now
        return self._read(force_fetch=True)

    def _read(self, *, force_fetch: bool) -> str:
        if self._provider is None:
            self._provider = parameters.SecretsProvider(boto3_client=default_client("secretsmanager"))
        try:
            secret = self._provider.get(self.secret_id, max_age=self._max_age, force_fetch=force_fetch)
        except GetParameterError as exc:
            raise aws_error(exc, SECRETS_MANAGER, f"the read of the notifications' token {self.secret_id}") from None
        if not isinstance(secret, str):
            secret = bytes(secret).decode("utf-8", "replace")
        return text_from_secret_string(secret, f"TASK_FINISHED_TOKEN_SECRET ({self.secret_id})", _TOKEN_FIELDS)


class StoredHints:
    """`registry.Hints` whose DynamoDB failures are the relay's typed errors (notifications.HintStore)."""

    def __init__(self, hints: Any) -> None:
        self._hints = hints

    def put(self, hint: Any) -> None:
        try:
            self._hints.put(hint)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, DYNAMODB, f"the hint for task {hint.task_id}") from None


def receiver_from_env() -> tuple[SecretToken, StoredHints]:
    """The receiver's token and hint store. It reads TASK_FINISHED_TOKEN_SECRET, PARKED_TABLE (the hints
    live beside the parks, partition `hint#<account>`) and DASHSCOPE_ACCOUNT; not the DashScope key nor
    MEDIA_BUCKET: it asks DashScope nothing and stores no media."""
    config = Config.from_env({"MEDIA_BUCKET": "none (the receiver stores no media)",
                              "DASHSCOPE_API_KEY": "none (the receiver asks DashScope nothing)", **os.environ})
    if not (config.task_finished_token_secret and config.parked_table):
        raise ConfigurationError("the receiver needs TASK_FINISHED_TOKEN_SECRET (its token) and PARKED_TABLE")
    hints = Hints(default_client("dynamodb"), config.parked_table, config.account)
    return SecretToken(config.task_finished_token_secret), StoredHints(hints)
