"""Answers AWS never gave, injected into a boto3 client so the SDK's retry logic, its error parsing
and the relay's handling all run as they would against the real service.

Two depths: `Injected` answers at the HTTP send (the SDK retries as usual; moto still sees the
request, so use it for retried faults), `Refused` answers before the call is sent at all (nothing
reaches moto: use it where the request must not take effect, such as a refused PutEvents entry).
`Unreachable` fails every send as a connection that could not be made (the SDK retries it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        return self._body


class Injected:
    """The next `times` sends of `operation` answer `status` with `body`; every send is counted."""

    def __init__(self, client: Any, operation: str, status: int, body: bytes, times: int,
                 content_type: str = "application/xml") -> None:
        self.calls = 0
        self.injected = 0
        self._status, self._body, self._times, self._type = status, body, times, content_type
        service = client.meta.service_model.service_name
        client.meta.events.register_first(f"before-send.{service}.{operation}", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse | None:
        self.calls += 1
        if self.injected >= self._times:
            return None
        self.injected += 1
        headers = {"Content-Type": self._type, "Content-Length": str(len(self._body))}
        return AWSResponse(request.url, self._status, headers, _Body(self._body))


class Refused:
    """The next `times` calls of `operation` return `parsed` with HTTP `status`, without being sent."""

    def __init__(self, client: Any, operation: str, status: int, parsed: dict[str, Any], times: int) -> None:
        self.calls = 0
        self._status, self._parsed, self._times = status, parsed, times
        service = client.meta.service_model.service_name
        client.meta.events.register_first(f"before-call.{service}.{operation}", self._answer)

    def _answer(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if self.calls >= self._times:
            return None
        self.calls += 1
        parsed = {**self._parsed, "ResponseMetadata": {"HTTPStatusCode": self._status}}
        return AWSResponse("https://injected.invalid", self._status, {}, _Body(b"")), parsed


class Unreachable:
    """Every send of `operation` fails as a connection that could not be made; every send is counted."""

    def __init__(self, client: Any, operation: str) -> None:
        self.calls = 0
        service = client.meta.service_model.service_name
        client.meta.events.register_first(f"before-send.{service}.{operation}", self._refuse)

    def _refuse(self, request: Any, **_: Any) -> None:
        self.calls += 1
        raise EndpointConnectionError(endpoint_url=request.url)


def s3_error(code: str, message: str) -> bytes:
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return xml.encode()


def error(code: str, message: str) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": message}}
