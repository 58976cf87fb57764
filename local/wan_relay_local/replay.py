"""A DashScope that answers like the real one, on loopback: task answers played from a script, and
the media bytes behind their URLs, with the faults real networks have (cut bodies, trickles, 403s).

For fleets (issue 13): tasks on a clock (`add_task`: PENDING, RUNNING, then their final answer), the
list endpoint (`GET /api/v1/tasks/?start_time&end_time&model_name&status&task_id&page_no&page_size`,
windows in China time at most 24 h wide, newest first, pages), and an optional per-second limit shared
by the task GET and the list, answering 429 Throttling.RateQuota as DashScope does.

Used by the local demo and by the tests; it is never part of the Lambda layer.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from wan_relay.budget import MICROS, max_in_any_window
from wan_relay.normalize import CHINA_TIME

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


#: the list's window: start_time and end_time at most this far apart (and its default width)
LIST_WINDOW_SECONDS = 24 * 3600
RATE_QUOTA_MESSAGE = "Requests rate limit exceeded, please try again later."


def china_time(epoch: float, *, millis: bool = True) -> str:
    """A task answer's time: China time, no zone marker (`2026-01-09 17:18:17.901`)."""
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(CHINA_TIME)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if millis else text


@dataclass
class TimedTask:
    """A task on DashScope's clock: PENDING from `created_at`, RUNNING from `running_at`, and from
    `ends_at` its final answer (`final`, a task answer whose `output.task_status` is the final status)."""

    task_id: str
    created_at: float
    running_at: float
    ends_at: float
    final: dict[str, Any]
    model: str = "wan2.6-t2i"

    def status(self, now: float) -> str:
        if now >= self.ends_at:
            return str(self.final.get("output", {}).get("task_status", "SUCCEEDED"))
        return "RUNNING" if now >= self.running_at else "PENDING"

    def answer(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        if now >= self.ends_at:
            body = copy.deepcopy(self.final)
            output = body.setdefault("output", {})
        else:
            body = {"request_id": f"replay-{self.task_id}", "output": {"task_status": status}}
            output = body["output"]
        output["task_id"] = self.task_id
        output["submit_time"] = china_time(self.created_at)
        if status != "PENDING":
            output["scheduled_time"] = china_time(self.running_at)
        if now >= self.ends_at:
            output["end_time"] = china_time(self.ends_at)
        return body

    def listed(self, now: float) -> dict[str, Any]:
        """Its row in the list: times in epoch milliseconds, as the list gives them."""
        row: dict[str, Any] = {
            "api_key_id": "replay", "caller_parent_id": "replay", "caller_uid": "replay",
            "gmt_create": int(self.created_at * 1000), "model_name": self.model, "region": "replay",
            "request_id": f"replay-submit-{self.task_id}", "status": self.status(now), "task_id": self.task_id,
            "user_api_unique_key": f"apikey:v1:aigc:replay:{self.model}",
        }
        if now >= self.running_at:
            row["start_time"] = int(self.running_at * 1000)
        if now >= self.ends_at:
            row["end_time"] = int(self.ends_at * 1000)
        return row


class _BadListQuery(ValueError):
    """A list query DashScope would refuse with 400 InvalidParameter."""


def _list_time(value: str, name: str) -> float:
    if not re.fullmatch(r"\d{14}", value):
        raise _BadListQuery(f"{name} must be YYYYMMDDhhmmss")
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TIME).timestamp()
    except ValueError:
        raise _BadListQuery(f"{name} is not a valid time") from None


def _list_int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,9}", value) or int(value) < 1:
        raise _BadListQuery(f"{name} must be a positive integer")
    return int(value)


#: Linux's SO_TIMESTAMPNS (asm-generic: x86-64 and arm64), which Python's socket module does not name
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35) if sys.platform == "linux" else None
_TIMESPEC = struct.Struct("@ll")


class _StampedSocket(socket.socket):
    """A plain connection that notes when the kernel received the bytes of its latest read: a request's
    arrival, however long its handler thread then waits for the interpreter (the replay shares its
    process, and the GIL, with everything the tests run)."""

    received_at: float | None = None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        size, ancillary, _, _ = self.recvmsg_into([view[: nbytes or len(view)]],
                                                  socket.CMSG_SPACE(_TIMESPEC.size), flags)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(data)
                self.received_at = seconds + nanos / 1e9
        return size


class _QuietServer(ThreadingHTTPServer):
    """Connections the fault scripts cut on purpose are not worth a traceback on stderr. Plain connections
    are stamped by the kernel on arrival (Linux), where it can."""

    def server_bind(self) -> None:
        super().server_bind()
        if _SO_TIMESTAMPNS is not None:  # on the listening socket: a connection has it from its first byte
            with contextlib.suppress(OSError):  # no stamps: the handler's clock
                self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)

    #: when each connection was accepted (epoch seconds) and from which client port
    accepted: list[tuple[float, int]]

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self.accepted.append((time.time(), address[1]))
        if _SO_TIMESTAMPNS is None or type(connection) is not socket.socket:  # TLS: the handler's clock
            return connection, address
        stamped = _StampedSocket(connection.family, connection.type, connection.proto, fileno=connection.detach())
        stamped.settimeout(connection.gettimeout())
        return stamped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


@dataclass(frozen=True)
class Query:
    """A task or list query as the limiter saw it: when it arrived, what it asked, whether it was refused."""

    arrived_at: float
    target: str  # path and query string
    throttled: bool


EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>AccessDenied</Code>\n'
    b"  <Message>Request has expired.</Message>\n  <RequestId>6560D2D6A1B9A23631C7E1D0</RequestId>\n"
    b"  <HostId>dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com</HostId>\n</Error>\n"
)


class ReplayDashScope:
    """Serves `/api/v1/tasks/{id}` from scripts (or tasks on a clock), the task list `/api/v1/tasks/`,
    and `/media/...` from registered files.

    `rate_limit_qps`: at most this many task and list queries in any second (a sliding one); more are
    answered HTTP 429 `Throttling.RateQuota` and not counted, as DashScope's 20 a second per account.
    `max_page_size`: the largest list page served (the documentation gives none). `clock`: the epoch
    seconds the tasks on a clock and the limiter read."""

    def __init__(
        self,
        api_key: str = "sk-test-replay-key",
        host: str = "127.0.0.1",
        *,
        rate_limit_qps: int | None = None,
        max_page_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.rate_limit_qps = rate_limit_qps
        self.max_page_size = max_page_size
        self.clock = clock
        self._scripts: dict[str, list[Reply]] = {}
        self._scripted_at: dict[str, float] = {}
        self._timed: dict[str, TimedTask] = {}
        self._polls: dict[str, int] = {}
        self._media: dict[str, Media] = {}
        self.requests: list[dict[str, Any]] = []
        #: when each task or list query arrived (throttled ones too), and how many were throttled
        self.query_times: list[float] = []
        self.queries: list[Query] = []
        self.throttled = 0
        #: in whole microseconds, as max_queries_in_any_second counts them: epoch floats one second apart
        #: can differ by a little less than 1.0
        self._accepted: deque[int] = deque()
        self._lock = threading.Lock()
        self._server = _QuietServer((host, 0), self._handler_class())
        #: when each connection was accepted (epoch seconds, real time) and from which client port
        self.connections: list[tuple[float, int]] = []
        self._server.accepted = self.connections
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
            self._scripted_at[task_id] = self.clock()
            self._polls[task_id] = 0

    def add_task(
        self,
        task_id: str,
        final: dict[str, Any],
        *,
        created_at: float | None = None,
        running_after: float = 0.5,
        ends_after: float = 20.0,
        model: str = "wan2.6-t2i",
    ) -> TimedTask:
        """A task on the clock: PENDING from `created_at` (default: now), RUNNING `running_after` seconds
        later, and `final` (a task answer, its media rehosted here with `rehost`) from `ends_after`
        seconds after its creation. The GET and the list both see it so."""
        created = self.clock() if created_at is None else created_at
        task = TimedTask(task_id, created, created + min(running_after, ends_after), created + ends_after,
                         copy.deepcopy(final), model)
        with self._lock:
            self._timed[task_id] = task
            self._polls.setdefault(task_id, 0)
        return task

    def max_queries_in_any_second(self) -> int:
        """The most task and list queries that arrived within any one second."""
        with self._lock:
            times = [round(moment * MICROS) for moment in self.query_times]
        return max_in_any_window(times)

    def crowding(self) -> str:
        """For a failure message: each throttled query with the queries that arrived in the second before
        it (offsets in seconds, what each asked)."""
        with self._lock:
            queries = list(self.queries)
        lines = []
        for query in (q for q in queries if q.throttled):
            lines.append(f"throttled at {query.arrived_at:.3f}; the second before it:")
            lines.extend(f"  {q.arrived_at - query.arrived_at:+.3f} s {'429' if q.throttled else '   '} {q.target}"
                         for q in queries if 0 <= query.arrived_at - q.arrived_at < 1 and q is not query)
        return "\n".join(lines) or "no query throttled"

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

    # --- the task list ---------------------------------------------------------------------------

    def _list_page(self, query: dict[str, str]) -> dict[str, Any]:
        """The list endpoint's answer: tasks created within the window (China-time whole seconds, both
        ends included), filtered on `model_name`, `status` and `task_id` as given, newest first."""
        now = self.clock()
        start = _list_time(query["start_time"], "start_time") if query.get("start_time") else None
        end = _list_time(query["end_time"], "end_time") if query.get("end_time") else None
        if start is None and end is None:
            start, end = now - LIST_WINDOW_SECONDS, now
        elif start is None:
            start = end - LIST_WINDOW_SECONDS  # type: ignore[operator]
        elif end is None:
            end = start + LIST_WINDOW_SECONDS
        if end - start > LIST_WINDOW_SECONDS:  # type: ignore[operator]
            raise _BadListQuery("the time between start_time and end_time must not exceed 24 hours")
        page_no = _list_int(query.get("page_no"), "page_no", 1)
        page_size = min(_list_int(query.get("page_size"), "page_size", 10), self.max_page_size)
        with self._lock:
            rows = [task.listed(now) for task in self._timed.values() if task.created_at <= now]
            for task_id, script in self._scripts.items():
                if task_id not in self._timed:
                    rows.append(self._scripted_row(task_id, script))
        wanted = {name: query[name] for name in ("model_name", "status", "task_id") if query.get(name)}
        rows = [row for row in rows
                if start <= math.floor(row["gmt_create"] / 1000) <= end  # type: ignore[operator]
                and all(row.get(name) == value for name, value in wanted.items())]
        rows.sort(key=lambda row: row["gmt_create"], reverse=True)
        return {
            "request_id": "replay-list",
            "total": len(rows),
            "total_page": max(1, math.ceil(len(rows) / page_size)),
            "page_no": page_no,
            "page_size": page_size,
            "data": rows[(page_no - 1) * page_size : page_no * page_size],
        }

    def _scripted_row(self, task_id: str, script: list[Reply]) -> dict[str, Any]:
        """A scripted task in the list: the status its next poll would answer, created at the first
        `submit_time` (China time) its answers give, or when it was scripted."""
        def output(reply: Reply) -> dict[str, Any]:
            body = reply.body.get("output") if isinstance(reply.body, dict) else None
            return body if isinstance(body, dict) else {}

        created = self._scripted_at.get(task_id, 0.0)
        submitted = next((output(r)["submit_time"] for r in script if isinstance(output(r).get("submit_time"), str)),
                         None)
        for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            if submitted is not None:
                try:
                    created = datetime.strptime(submitted, fmt).replace(tzinfo=CHINA_TIME).timestamp()
                    break
                except ValueError:
                    continue
        status = output(script[min(self._polls.get(task_id, 0), len(script) - 1)]).get("task_status")
        return {"task_id": task_id, "status": status if isinstance(status, str) else "UNKNOWN",
                "gmt_create": int(created * 1000), "model_name": None}

    # --- the HTTP side --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                with replay._lock:
                    replay.requests.append({
                        "path": path,
                        "at": self._arrived_at(),  # a refused key's query too: DashScope's limit may count it
                        "port": self.client_address[1],  # the connection it came on (see `connections`)
                        "authorized": self.headers.get("Authorization") == f"Bearer {replay.api_key}",
                        "range": self.headers.get("Range"),
                        "query": parts.query,
                    })
                match = re.fullmatch(r"/api/v1/tasks/([^/]+)", path)
                if path in ("/api/v1/tasks", "/api/v1/tasks/"):
                    self._list(parse_qs(parts.query, keep_blank_values=True))
                elif match:
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

            def _admitted(self) -> bool:
                """The key, then the account's per-second limit (shared by the GET and the list)."""
                if self.headers.get("Authorization") != f"Bearer {replay.api_key}":
                    body = {"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                            "request_id": "replay-401"}
                    self._send(401, json.dumps(body).encode(), "application/json")
                    return False
                with replay._lock:
                    now = self._arrived_at()
                    replay.query_times.append(now)
                    now_us = round(now * MICROS)
                    # arrivals stamped by the kernel can be handled out of order: refused is a query that
                    # would make any second hold more than the limit, whichever was handled first
                    replay._accepted = deque(at for at in replay._accepted if now_us - at < 2 * MICROS)
                    window = [at for at in replay._accepted if abs(now_us - at) < MICROS]
                    limited = (replay.rate_limit_qps is not None
                               and max_in_any_window([*window, now_us]) > replay.rate_limit_qps)
                    if limited:
                        replay.throttled += 1
                    else:
                        replay._accepted.append(now_us)
                    replay.queries.append(Query(now, self.path, limited))
                if limited:
                    body = {"code": "Throttling.RateQuota", "message": RATE_QUOTA_MESSAGE,
                            "request_id": "replay-429"}
                    self._send(429, json.dumps(body).encode(), "application/json")
                    return False
                return True

            def _arrived_at(self) -> float:
                """When the request reached the server: the kernel's stamp where there is one and the
                replay runs on real time, else the replay's clock now."""
                received_at = getattr(self.connection, "received_at", None)
                return received_at if received_at is not None and replay.clock is time.time else replay.clock()

            def _list(self, query: dict[str, list[str]]) -> None:
                if not self._admitted():
                    return
                try:
                    body = replay._list_page({name: values[-1] for name, values in query.items()})
                except _BadListQuery as exc:
                    body = {"code": "InvalidParameter", "message": str(exc), "request_id": "replay-400"}
                    self._send(400, json.dumps(body).encode(), "application/json")
                    return
                self._send(200, json.dumps(body).encode(), "application/json")

            def _task(self, task_id: str) -> None:
                if not self._admitted():
                    return
                with replay._lock:
                    script = replay._scripts.get(task_id)
                    timed = replay._timed.get(task_id)
                    count = replay._polls.get(task_id, 0)
                    replay._polls[task_id] = count + 1
                if script is None and timed is not None:
                    reply = Reply(timed.answer(replay.clock()))
                elif script is None:
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
