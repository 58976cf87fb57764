"""The DashScope task-query client: auth, timeouts, a bounded answer size, and typed errors.

It knows nothing of S3 or EventBridge. It does not retry: transient failures are raised as
`TransientError` for the workflow's jittered Retry, throttling as `ThrottledError` for the wait loop.
The one exception is a refused key (HTTP 401): the key's source is read afresh (a rotated secret) and
the query sent once more with the new key, if it is a new one, at a slot of the account's budget of its
own (`slot_to_ask_again`): the refused query took the caller's slot, and DashScope's limit may count it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
import urllib3
from aws_lambda_powertools import Logger

from .errors import BudgetSpent, ProtocolError
from .foreign_text import CODE_CHARS, sanitized
from .service_errors import dashscope_answer_error, dashscope_request_error

logger = Logger(child=True)

#: (connect, read) seconds: a hung DashScope fails the poll long before the Lambda's own timeout
DEFAULT_TIMEOUT = (3.05, 10.0)
#: task answers are a few KB; a larger body is not a task answer
MAX_ANSWER_BYTES = 1024 * 1024


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _without_keys(payload: Any, keys: list[str]) -> Any:
    """The decoded answer (or a header's text) with every key the query was sent with replaced by
    `<redacted>` in each of its strings, names included, however deep. A server may echo the
    Authorization header back, and a task's 200 answer carries text from its submitter (prompts) and
    DashScope's messages: a key in them would reach the event, the execution's history and the logs.
    Scrubbed after decoding, so that a key JSON spells with escapes (`\\u002d` for `-`) is found too;
    without recursion, so that any depth the parser accepts is walked."""
    keys = [key for key in keys if key]
    if not keys:
        return payload

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for key in keys:
                value = value.replace(key, "<redacted>")
        return value

    root = [payload]
    pending: list[list[Any] | dict[Any, Any]] = [root]
    while pending:
        node = pending.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if isinstance(node, dict):
            node.clear()
        for name, value in items:
            node[clean(name)] = clean(value)
            if isinstance(value, list | dict):
                pending.append(value)
    return root[0]


#: a query's wait for a slot of the account's budget before it is sent again (see `DashScopeClient`)
Again = Callable[[], bool] | None


class ApiKey(Protocol):
    """Where the key comes from: `current` for each query, `refreshed` once DashScope refused it."""

    refreshable: bool

    def current(self) -> str: ...

    def refreshed(self) -> str: ...


class PlainApiKey:
    """A key given as it is (local runs, tests): nothing to refresh."""

    refreshable = False

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "PlainApiKey(<redacted>)"

    def current(self) -> str:
        return self._key

    refreshed = current


class DashScopeClient:
    """Queries `GET {base_url}/tasks/{task_id}` (one task) and `GET {base_url}/tasks/` (the task list)
    with a bearer key.

    Each query's `slot_to_ask_again` is what it waits for before it is sent again with a rotated key.
    None: nothing, it goes at once (a stack that keeps no budget). Else it is called first: True, a slot
    of the account's budget was taken for the query and its instant has come; False, none is to be had,
    and `BudgetSpent` is raised: the caller's next query, at a slot of its own, goes with the fresh key,
    which the key's source holds from now on."""

    def __init__(
        self,
        base_url: str,
        api_key: str | ApiKey,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = PlainApiKey(api_key) if isinstance(api_key, str) else api_key
        self._session = session or requests.Session()
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"DashScopeClient(base_url={self._base_url!r})"

    def ready(self, connections: int = 1) -> None:
        """What a query needs before it can be sent, done ahead of a wait for its slot of the budget: the
        key (read through its source's cache, a Secrets Manager call every few minutes), and an open
        connection to DashScope (a new one costs DNS, TCP and TLS: two round trips and more), or
        `connections` of them for as many queries sent at once (the sweeper's list pages). So a query goes
        at its slot and arrives a one-way latency later, as the budget's margin assumes, however cold the
        container or long idle its connection. The connections are best effort: one that cannot be opened
        now is opened by its query, as it would be anyway."""
        self._api_key.current()
        url = f"{self._base_url}/tasks/"
        try:
            request = requests.Request("GET", url).prepare()
            # the pool the query will take its connection from: the settings as Session.request merges them
            settings = self._session.merge_environment_settings(url, {}, None, None, None)
            pool = self._session.get_adapter(url).get_connection_with_tls_context(
                request, settings["verify"], proxies=settings["proxies"], cert=settings["cert"])
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as exc:
            logger.debug("no connection opened ahead of the query", extra={"error": type(exc).__name__})
            return
        held = []
        try:
            # urllib3 (pinned) has no public call to open a pooled connection ahead of its request; each
            # is held until all are open, so that the pool hands out a different one each time
            for _ in range(connections):
                connection = pool._get_conn()
                held.append(connection)
                try:
                    if not connection.is_connected:  # never opened, or closed by DashScope while idle
                        connection.timeout = self._timeout[0]
                        connection.connect()
                except BaseException:
                    # a connect that failed half-way (a TLS handshake timing out) leaves a socket closed
                    # under the connection: closed whole, its query opens a new one
                    connection.close()
                    raise
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as exc:
            logger.debug("no connection opened ahead of the query", extra={"error": type(exc).__name__})
        finally:
            for connection in held:
                pool._put_conn(connection)

    def get_task(self, task_id: str, *, slot_to_ask_again: Again = None) -> dict[str, Any]:
        """The decoded JSON answer for one task; raises the relay's typed errors otherwise."""
        return self._ask(f"{self._base_url}/tasks/{task_id}", None, slot_to_ask_again)

    def list_tasks(self, params: dict[str, str], *, slot_to_ask_again: Again = None) -> dict[str, Any]:
        """One page of the account's task list (`GET {base_url}/tasks/?start_time&end_time&...`, the
        parameters as `sweeper.ListQuery.params` gives them), decoded; `sweeper.parse_page` reads it.
        One query of the account's budget, with the same key handling and errors as `get_task`."""
        return self._ask(f"{self._base_url}/tasks/", params, slot_to_ask_again)

    def _ask(self, url: str, params: dict[str, str] | None, slot_to_ask_again: Again) -> dict[str, Any]:
        keys = [self._api_key.current()]
        response, body = self._query(url, keys[0], params)
        if response.status_code == 401 and self._api_key.refreshable:
            fresh = self._api_key.refreshed()
            if fresh != keys[0]:  # the secret was rotated since it was cached: ask again, once
                if slot_to_ask_again is not None and not slot_to_ask_again():
                    raise BudgetSpent("the DashScope key was rotated; the account's query budget has no slot "
                                      "to ask again with the new one now")
                keys.append(fresh)
                response, body = self._query(url, fresh, params)
        return self._interpret(response, body, keys)

    def _query(self, url: str, key: str, params: dict[str, str] | None = None) -> tuple[requests.Response, bytes]:
        try:
            response = self._session.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise dashscope_request_error(exc, read_timeout=self._timeout[1]) from None
        with response:
            return response, self._read_body(response)

    def _read_body(self, response: requests.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ProtocolError(
                        f"DashScope's answer is larger than {MAX_ANSWER_BYTES} bytes: not a task answer"
                    )
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise dashscope_request_error(exc, reading=True) from None
        return b"".join(chunks)

    def _interpret(self, response: requests.Response, body: bytes, keys: list[str]) -> dict[str, Any]:
        status = response.status_code
        content_type = _without_keys(response.headers.get("Content-Type", "unknown"), keys)
        try:
            payload: Any = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested deeper than the parser goes
            payload = None
        payload = _without_keys(payload, keys)
        if status == 200:
            if not isinstance(payload, dict):
                raise ProtocolError(
                    f"DashScope answered HTTP 200 with a body that is not a JSON object "
                    f"({sanitized(content_type, CODE_CHARS)})"
                )
            return payload

        def text(name: str, limit: int) -> str | None:
            """A field of the error body (the keys already scrubbed: a cut could leave half of one), fit to
            be repeated."""
            value = payload.get(name) if isinstance(payload, dict) else None
            if not isinstance(value, str):
                return None
            return sanitized(value, limit) or None

        code, message, request_id = text("code", CODE_CHARS), text("message", 300), text("request_id", CODE_CHARS)
        detail = f"DashScope answered HTTP {status}"
        if code:
            detail += f" {code}"
        if message:
            detail += f": {message}"
        if request_id:
            detail += f" (request_id {request_id})"
        if payload is None and body:
            detail += f" with a non-JSON body ({sanitized(content_type, CODE_CHARS)})"
        raise dashscope_answer_error(status, code, detail, _retry_after(response.headers.get("Retry-After")))
