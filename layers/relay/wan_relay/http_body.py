"""The urllib3 and http.client internals the media copy relies on, kept in one module (issue 12.8 is
to rebuild them on public APIs): reading a body straight into a buffer, handing a connection back to
the pool, and noticing bytes a server sends past its Content-Length.

Each falls back to urllib3's public API (or to not knowing) when the internals are not there:
tests/unit/test_http_body.py notices when an upgrade takes them away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from .service_errors import MEDIA_READ_ERRORS


def body_reader(response: requests.Response) -> tuple[Callable[[memoryview], int], Any]:
    """A `readinto` for the body of `response`, and the http.client response behind it (or None).

    http.client's own readinto moves the bytes from the socket straight into the part buffer; it
    still enforces the Content-Length and the chunked framing. urllib3 (identity encoding only,
    which is all the ranged path accepts) is bypassed for the bytes, not for the connection: see
    `release`. Without that inner response (another transport), urllib3's read plus one copy."""
    raw = response.raw
    inner = getattr(raw, "_fp", None)
    if inner is not None and callable(getattr(inner, "readinto", None)) and callable(getattr(inner, "isclosed", None)):
        return inner.readinto, inner

    def readinto(view: memoryview) -> int:
        data = raw.read(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)

    return readinto, None


def release(response: requests.Response, inner: Any) -> None:
    """A body read to its end through http.client hands its connection back to the session's pool,
    as urllib3 itself does when it reads a body to its end (the next range then reuses it: no new
    handshake, no new slow start); closing the response afterwards leaves that connection alone."""
    release_conn = getattr(response.raw, "release_conn", None)
    if inner is not None and inner.isclosed() and callable(release_conn):
        release_conn()


def has_surplus(response: requests.Response, inner: Any) -> bool:
    """Whether a body read to the length asked for has more bytes: only possible without a
    Content-Length (http.client stops at one), where the body ends when the connection does."""
    try:
        if inner is None:
            return bool(response.raw.read(1, decode_content=False))
        return not inner.isclosed() and bool(inner.read(1))
    except MEDIA_READ_ERRORS:
        return False  # the body is complete; the connection is simply not reused


class TailGuard:
    """Wraps http.client's socket file to notice bytes sent past Content-Length.

    http.client stops reading at the declared length and closes its file, silently dropping any
    surplus; just before that close, look (for at most 50 ms) whether more bytes are waiting.
    `overflow` is known once the body has been read to its length.
    """

    def __init__(self, fp: Any, sock: Any) -> None:
        self._fp = fp
        self._sock = sock
        self.overflow = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)

    def close(self) -> None:
        try:
            previous = self._sock.gettimeout()
            self._sock.settimeout(0.05)
            try:
                self.overflow = bool(self._fp.peek(1))
            except (OSError, ValueError):
                self.overflow = False
            finally:
                self._sock.settimeout(previous)
        except (OSError, AttributeError):
            pass
        finally:
            self._fp.close()


def guard_tail(response: requests.Response) -> TailGuard | None:
    """Puts a TailGuard under the body of `response` (not read yet); None where it cannot."""
    http_response = getattr(response.raw, "_fp", None)
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    fp = getattr(http_response, "fp", None)
    if http_response is None or sock is None or fp is None or not hasattr(fp, "peek"):
        return None
    guard = TailGuard(fp, sock)
    http_response.fp = guard
    return guard
