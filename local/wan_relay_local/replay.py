"""A DashScope that answers like the real one, on loopback: task answers played from a script, and
the media bytes behind their URLs, with the faults real networks have (cut bodies, trickles, 403s).

Used by the local demo and by the tests; it is never part of the Lambda layer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class PatternBody:
    """`size` deterministic bytes made from `seed`, produced chunk by chunk (never held whole)."""

    size: int
    seed: str = "wan"

    def block(self) -> bytes:
        digest = hashlib.sha256(self.seed.encode()).digest()
        return (digest * (_CHUNK // len(digest) + 1))[:_CHUNK]

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self.size if end is None else end
        block = self.block()
        position = start
        while position < end:
            offset = position % _CHUNK
            piece = block[offset : offset + min(_CHUNK - offset, end - position)]
            position += len(piece)
            yield piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.iter_range():
            digest.update(piece)
        return digest.hexdigest()


@dataclass
class Media:
    """One media file and how the server misbehaves when serving it."""

    body: bytes | PatternBody
    content_type: str = "image/png"
    status: int = 200
    # fault: None | "truncate" | "overlong" | "chunked" | "chunked_cut" | "no_length" | "trickle" | "reset"
    fault: str | None = None
    error_body: bytes = b""
    location: str | None = None  # a redirect target
    ranges: bool = True  # serves byte ranges (and says so with Accept-Ranges)
    trickle_delay: float = 2.0

    @property
    def size(self) -> int:
        return self.body.size if isinstance(self.body, PatternBody) else len(self.body)

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if isinstance(self.body, PatternBody):
            yield from self.body.iter_range(start, end)
        else:
            data = self.body[start:end]
            for i in range(0, len(data), _CHUNK):
                yield data[i : i + _CHUNK]

    def sha256(self) -> str:
        return self.body.sha256() if isinstance(self.body, PatternBody) else hashlib.sha256(self.body).hexdigest()


@dataclass
class Reply:
    """One answer of the task endpoint."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bool = False  # body is bytes sent as-is (HTML pages, broken JSON)
    reset: bool = False  # close the connection without answering


class _QuietServer(ThreadingHTTPServer):
    """Connections the fault scripts cut on purpose are not worth a traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>AccessDenied</Code>\n'
    b"  <Message>Request has expired.</Message>\n  <RequestId>6560D2D6A1B9A23631C7E1D0</RequestId>\n"
    b"  <HostId>dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com</HostId>\n</Error>\n"
)


class ReplayDashScope:
    """Serves `/api/v1/tasks/{id}` from scripts and `/media/...` from registered files."""

    def __init__(self, api_key: str = "sk-test-replay-key", host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self._scripts: dict[str, list[Reply]] = {}
        self._polls: dict[str, int] = {}
        self._media: dict[str, Media] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = _QuietServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="replay-dashscope", daemon=True
        )

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v1"

    def start(self) -> ReplayDashScope:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ReplayDashScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ------------------------------------------------------------------------------

    def script(self, task_id: str, *replies: Reply | dict[str, Any]) -> None:
        """Answers for successive polls of a task; the last one repeats."""
        with self._lock:
            self._scripts[task_id] = [r if isinstance(r, Reply) else Reply(r) for r in replies]
            self._polls[task_id] = 0

    def add_media(self, path: str, media: Media) -> str:
        """Registers a file; returns its URL on this server."""
        path = "/" + path.lstrip("/")
        with self._lock:
            self._media[urlsplit(path).path] = media
        return self.origin + path

    def media_url(self, path: str) -> str:
        return self.origin + "/" + path.lstrip("/")

    def polls(self, task_id: str) -> int:
        with self._lock:
            return self._polls.get(task_id, 0)

    def requested_paths(self) -> list[str]:
        with self._lock:
            return [r["path"] for r in self.requests]

    def rehost(self, answer: dict[str, Any], media: dict[str, Media] | None = None) -> dict[str, Any]:
        """A copy of a real answer whose media URLs point at this server, keeping path and query.

        `media` maps a URL's original path to the file to serve there (default: a small PNG/MP4).
        """
        answer = copy.deepcopy(answer)
        media = media or {}

        def swap(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            if isinstance(value, str) and re.match(r"^https?://", value):
                parts = urlsplit(value)
                local_path = f"/media/{parts.hostname}{parts.path}"
                if local_path not in self._media:
                    chosen = media.get(parts.path) or _default_media(parts.path)
                    self.add_media(local_path, chosen)
                origin = urlsplit(self.origin)
                return urlunsplit((origin.scheme, origin.netloc, local_path, parts.query, ""))
            return value

        return swap(answer)

    # --- the HTTP side --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with replay._lock:
                    replay.requests.append({
                        "path": path,
                        "authorized": self.headers.get("Authorization") == f"Bearer {replay.api_key}",
                        "range": self.headers.get("Range"),
                    })
                match = re.fullmatch(r"/api/v1/tasks/([^/]+)", path)
                if match:
                    self._task(match.group(1))
                elif path in replay._media:
                    self._media_file(replay._media[path])
                else:
                    self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _task(self, task_id: str) -> None:
                if self.headers.get("Authorization") != f"Bearer {replay.api_key}":
                    body = {"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                            "request_id": "replay-401"}
                    self._send(401, json.dumps(body).encode(), "application/json")
                    return
                with replay._lock:
                    script = replay._scripts.get(task_id)
                    count = replay._polls.get(task_id, 0)
                    replay._polls[task_id] = count + 1
                if script is None:
                    reply = Reply({"request_id": f"replay-{task_id}",
                                   "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
                else:
                    reply = script[min(count, len(script) - 1)]
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.close_connection = True
                    self.connection.close()
                    return
                body = reply.body if reply.raw else json.dumps(reply.body).encode()
                # a hostile server that echoes the caller's Authorization header back
                body = body.replace(b"{authorization}", (self.headers.get("Authorization") or "").encode())
                content_type = reply.headers.get("Content-Type", "text/html" if reply.raw else "application/json")
                extra = {k: v for k, v in reply.headers.items() if k != "Content-Type"}
                self._send(reply.status, body, content_type, extra)

            def _media_file(self, media: Media) -> None:
                if media.location:
                    self._send(302, b"", "text/plain", {"Location": media.location})
                    return
                if media.status != 200:
                    body = media.error_body or b""
                    self._send(media.status, body, "application/xml" if body.startswith(b"<?xml") else "text/plain")
                    return
                if media.fault == "reset":
                    self.close_connection = True
                    self.connection.close()
                    return
                start, end, status = 0, media.size, 200
                byte_range = self.headers.get("Range")
                if byte_range and media.fault is None and media.ranges:
                    found = re.fullmatch(r"bytes=(\d+)-(\d*)", byte_range.strip())
                    if found:
                        start = int(found.group(1))
                        end = min(media.size, int(found.group(2)) + 1) if found.group(2) else media.size
                        status = 206
                self.send_response(status)
                self.send_header("Content-Type", media.content_type)
                if media.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{media.size}")
                chunked = media.fault in ("chunked", "chunked_cut")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif media.fault == "no_length":
                    self.send_header("Connection", "close")
                else:
                    declared = end - start
                    if media.fault == "overlong":
                        declared -= 1024
                    self.send_header("Content-Length", str(declared))
                self.end_headers()
                sent = 0
                half = (end - start) // 2
                try:
                    for piece in media.chunks(start, end):
                        if media.fault in ("truncate", "chunked_cut") and sent + len(piece) > half:
                            piece = piece[: max(0, half - sent)]
                            self._write(piece, chunked)
                            self.close_connection = True
                            self.wfile.flush()
                            self.connection.shutdown(2)
                            return
                        self._write(piece, chunked)
                        sent += len(piece)
                        if media.fault == "trickle":
                            time.sleep(media.trickle_delay)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
                if media.fault == "no_length":
                    self.close_connection = True

            def _write(self, piece: bytes, chunked: bool) -> None:
                if not piece:
                    return
                if chunked:
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                else:
                    self.wfile.write(piece)

        return Handler


# A 1x1 PNG and a tiny MP4 header: real enough for a viewer to recognise the type.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
    "c0f01f0005000201a1d8c6e70000000049454e44ae426082"
)


def _default_media(path: str) -> Media:
    if path.endswith(".mp4"):
        return Media(PatternBody(256 * 1024, seed=path), content_type="video/mp4")
    if path.endswith((".jpg", ".jpeg")):
        return Media(TINY_PNG, content_type="image/jpeg")
    return Media(TINY_PNG + path.encode(), content_type="image/png")
