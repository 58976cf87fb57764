"""The ranged parallel copy: several Range GETs feeding a multipart upload, with the single stream's
guarantees (whole-body sha256 in order, exact length, abort on any failure) and a fallback when the
host does not serve ranges. On a short link (the first answer comes back fast) the same copy reads
the parts one after the other from the first answer: no range requests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trustme
from wan_relay.errors import MediaTransferError
from wan_relay.ingest import MediaStreamer, UrlAllowlist
from wan_relay.models import MediaRef, StoredMedia
from wan_relay.ranged import FAST_MS, MIN_PART_SIZE
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope

from tests.conftest import BUCKET

PART = MIN_PART_SIZE
SIZE = 3 * PART + 12345  # four parts, the last one short


class _FarHost(ReplayDashScope):
    """A host on a long link: its first answer (no Range) takes longer than FAST_MS to come back."""

    def _handler_class(self) -> Any:
        base = super()._handler_class()

        class Handler(base):
            def do_GET(self) -> None:
                if not self.headers.get("Range"):
                    time.sleep(2 * FAST_MS / 1000)
                super().do_GET()

        return Handler


class _HostThatCutsOneRange(_FarHost):
    """Answers the range starting at `cut_from` with its full Content-Length but only half the bytes."""

    cut_from = 2 * PART

    def _handler_class(self) -> Any:
        base = super()._handler_class()
        cut_from = self.cut_from

        class Handler(base):
            def _media_file(self, media: Media) -> None:
                byte_range = self.headers.get("Range") or ""
                if not byte_range.startswith(f"bytes={cut_from}-"):
                    super()._media_file(media)
                    return
                end = int(byte_range.split("-", 1)[1]) + 1
                self.send_response(206)
                self.send_header("Content-Type", media.content_type)
                self.send_header("Content-Range", f"bytes {cut_from}-{end - 1}/{media.size}")
                self.send_header("Content-Length", str(end - cut_from))
                self.end_headers()
                half = (end - cut_from) // 2
                self.wfile.write(b"".join(media.chunks(cut_from, cut_from + half)))
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


class _HostWithoutRanges(ReplayDashScope):
    """Does not advertise `Accept-Ranges` (and would ignore a Range header anyway)."""

    def _handler_class(self) -> Any:
        base = super()._handler_class()

        class Handler(base):
            def send_header(self, keyword: str, value: str) -> None:
                if keyword.lower() != "accept-ranges":
                    super().send_header(keyword, value)

            def do_GET(self) -> None:
                del self.headers["Range"]
                super().do_GET()

        return Handler


class _HostThatIgnoresRanges(_FarHost):
    """Advertises `Accept-Ranges: bytes` but answers every request with the whole body (200)."""

    def _handler_class(self) -> Any:
        base = super()._handler_class()

        class Handler(base):
            def do_GET(self) -> None:
                del self.headers["Range"]
                super().do_GET()

        return Handler


def _copy(server_class: type[ReplayDashScope], body: PatternBody, s3: Any, task_id: str,
          fault: str | None = None, session: requests.Session | None = None) -> tuple[StoredMedia, list[str]]:
    """Serves `body` from a host of `server_class` and stores it as item 0 of `task_id`: the stored
    item, and the Range headers the host was asked for."""
    server = server_class().start()
    server.add_media("/media/video.mp4", Media(body, content_type="video/mp4", fault=fault))
    streamer = MediaStreamer(s3=s3, session=session or requests.Session(), bucket=BUCKET, prefix="wan/",
                             max_bytes=1 << 31, allowlist=UrlAllowlist((server.origin,)))
    try:
        stored = streamer.store(task_id, MediaRef(index=0, type="video", url=server.media_url("/media/video.mp4")))
        return stored, [r["range"] for r in server.requests if r["range"]]
    finally:
        server.stop()


def test_a_large_body_from_a_far_host_is_copied_in_parallel_ranges_with_the_whole_body_sha256(account):
    body = PatternBody(SIZE, seed="ranged")
    stored, ranges = _copy(_FarHost, body, account.s3, "task-1")

    assert stored.size_bytes == SIZE and stored.sha256 == body.sha256()
    landed = account.s3.get_object(Bucket=BUCKET, Key="wan/task-1/0.mp4")
    data = landed["Body"].read()
    assert len(data) == SIZE and hashlib.sha256(data).hexdigest() == body.sha256()
    assert landed["ContentType"] == "video/mp4" and landed["Metadata"] == {"task-id": "task-1", "index": "0"}
    # the first part comes from the first answer; each other part from its own range
    assert sorted(ranges) == sorted(f"bytes={i * PART}-{min(SIZE, (i + 1) * PART) - 1}" for i in (1, 2, 3))
    assert account.unfinished_uploads() == []


def test_a_cut_range_aborts_the_copy_and_leaves_no_object_nor_unfinished_upload(account):
    with pytest.raises(MediaTransferError) as caught:
        _copy(_HostThatCutsOneRange, PatternBody(SIZE, seed="cut"), account.s3, "task-2")

    assert caught.value.code in ("Truncated", "StreamBroken")
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []


@pytest.mark.parametrize("server_class", [_HostWithoutRanges, _HostThatIgnoresRanges])
def test_a_host_without_working_ranges_gets_the_single_stream_with_the_same_result(account, server_class):
    body = PatternBody(SIZE, seed="whole")
    stored, _ = _copy(server_class, body, account.s3, "task-3")

    assert stored.size_bytes == SIZE and stored.sha256 == body.sha256()
    data = account.s3.get_object(Bucket=BUCKET, Key="wan/task-3/0.mp4")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == body.sha256()
    assert account.unfinished_uploads() == []


def test_a_body_of_two_parts_is_fetched_in_two_ranges_and_stored_by_one_put(account):
    body = PatternBody(2 * PART - 999, seed="two-parts")
    calls: list[str] = []
    account.s3.meta.events.register("provide-client-params.s3.*", lambda model, **_: calls.append(model.name))
    stored, ranges = _copy(_FarHost, body, account.s3, "task-5")

    assert stored.sha256 == body.sha256() and ranges == [f"bytes={PART}-{2 * PART - 1000}"]
    assert "PutObject" in calls and "CreateMultipartUpload" not in calls
    data = account.s3.get_object(Bucket=BUCKET, Key="wan/task-5/0.mp4")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == body.sha256()


def test_a_body_of_one_part_keeps_the_single_stream(account):
    body = PatternBody(PART, seed="small")
    stored, ranges = _copy(ReplayDashScope, body, account.s3, "task-4")

    assert stored.sha256 == body.sha256() and ranges == []


def _composite_crc32(data: bytes, part: int) -> str:
    crcs = b"".join(zlib.crc32(data[i : i + part]).to_bytes(4, "big") for i in range(0, len(data), part))
    return base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()


def test_a_large_body_from_a_near_host_is_read_as_one_stream_in_parts_each_with_its_crc32(account):
    body = PatternBody(SIZE, seed="near")
    stored, ranges = _copy(ReplayDashScope, body, account.s3, "task-6")

    assert stored.size_bytes == SIZE and stored.sha256 == body.sha256() and ranges == []
    data = account.s3.get_object(Bucket=BUCKET, Key="wan/task-6/0.mp4")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == body.sha256()
    head = account.s3.head_object(Bucket=BUCKET, Key="wan/task-6/0.mp4", ChecksumMode="ENABLED")
    # S3 checked every part's CRC32; the object's is the CRC32 of theirs (moto may leave out the "-4")
    assert head["ChecksumCRC32"].split("-")[0] == _composite_crc32(data, PART)
    assert account.unfinished_uploads() == []


@pytest.mark.parametrize(("fault", "code"), [("truncate", "Truncated"), ("overlong", "LengthMismatch")])
def test_a_near_host_sending_less_or_more_than_its_length_fails_the_copy_and_leaves_nothing(account, fault, code):
    with pytest.raises(MediaTransferError) as caught:
        _copy(ReplayDashScope, PatternBody(SIZE, seed=fault), account.s3, "task-7", fault=fault)

    assert caught.value.code in (code, "StreamBroken")
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []


class _HostThatCloses(ReplayDashScope):
    """Says `Connection: close` on every answer and closes the connection after the body."""

    def _handler_class(self) -> Any:
        base = super()._handler_class()

        class Handler(base):
            def end_headers(self) -> None:
                self.send_header("Connection", "close")
                super().end_headers()

        return Handler


@pytest.mark.parametrize("server_class", [ReplayDashScope, _HostWithoutRanges])
def test_a_connection_closed_after_the_body_as_announced_is_not_taken_for_a_surplus(account, server_class):
    closing = type(f"Closing{server_class.__name__}", (_HostThatCloses, server_class), {})
    body = PatternBody(SIZE, seed="closes")
    stored, _ = _copy(closing, body, account.s3, "task-8")

    assert stored.size_bytes == SIZE and stored.sha256 == body.sha256()
    assert account.unfinished_uploads() == []


def test_a_host_without_ranges_sending_more_than_its_length_fails_the_single_stream_and_leaves_nothing(account):
    with pytest.raises(MediaTransferError) as caught:
        _copy(_HostWithoutRanges, PatternBody(SIZE, seed="overlong"), account.s3, "task-9", fault="overlong")

    assert caught.value.code in ("LengthMismatch", "StreamBroken")
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []


@pytest.mark.parametrize("server_class", [ReplayDashScope, _HostWithoutRanges])
def test_a_surplus_is_noticed_when_the_server_said_it_closes_the_connection(account, server_class):
    closing = type(f"Closing{server_class.__name__}", (_HostThatCloses, server_class), {})
    with pytest.raises(MediaTransferError) as caught:
        _copy(closing, PatternBody(SIZE, seed="overlong"), account.s3, "task-10", fault="overlong")

    assert caught.value.code == "LengthMismatch"
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []


class _HostThatHangsUp(ReplayDashScope):
    """Keeps the connection alive by its headers (HTTP/1.1, no `Connection: close`), then ends it right
    after the body: as a server may at any time. `hang_up` ends the connection (a TCP FIN here)."""

    def hang_up(self, connection: socket.socket) -> None:
        connection.shutdown(socket.SHUT_WR)

    def _handler_class(self) -> Any:
        base = super()._handler_class()
        hang_up = self.hang_up

        class Handler(base):
            def _media_file(self, media: Media) -> None:
                super()._media_file(media)
                self.close_connection = True
                hang_up(self.connection)

        return Handler


CA = trustme.CA()


class _TlsHostThatSaysCloseNotify(_HostThatHangsUp):
    """Over TLS: after the body, a close_notify alert (a TLS record that holds no data) on a connection
    its headers keep alive."""

    def __init__(self) -> None:
        super().__init__()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        CA.issue_cert("127.0.0.1").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    @property
    def origin(self) -> str:
        return super().origin.replace("http://", "https://")

    def hang_up(self, connection: socket.socket) -> None:
        connection.settimeout(0.5)  # unwrap sends close_notify, then waits for the client's, which never comes
        with contextlib.suppress(OSError):
            connection.unwrap()


@pytest.fixture
def tls_session() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE replaces the session's CA
    with CA.cert_pem.tempfile() as ca_file:
        session.verify = ca_file
        yield session


@pytest.mark.parametrize("host_class", [_HostThatHangsUp, _TlsHostThatSaysCloseNotify])
@pytest.mark.parametrize("server_class", [ReplayDashScope, _HostWithoutRanges])
def test_a_connection_ended_right_after_the_body_is_not_taken_for_a_surplus(account, tls_session, host_class,
                                                                             server_class):
    # read in parts from the first answer (near host), or as a single stream (no ranges): both check
    # the end of the body for a surplus
    hanging_up = type(f"{host_class.__name__}{server_class.__name__}", (host_class, server_class), {})
    body = PatternBody(SIZE, seed="hangs-up")
    stored, _ = _copy(hanging_up, body, account.s3, "task-11", session=tls_session)

    assert stored.size_bytes == SIZE and stored.sha256 == body.sha256()
    data = account.s3.get_object(Bucket=BUCKET, Key="wan/task-11/0.mp4")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == body.sha256()


class _FarHostWithALongerObject(_FarHost):
    """Its first answer says SIZE bytes; its ranges say the object has 1 KiB more (it changed, or lies)."""

    def _handler_class(self) -> Any:
        base = super()._handler_class()

        class Handler(base):
            def send_header(self, keyword: str, value: str) -> None:
                if keyword.lower() == "content-range":
                    value = value.replace(f"/{SIZE}", f"/{SIZE + 1024}")
                super().send_header(keyword, value)

        return Handler


def test_a_range_announcing_another_total_length_fails_the_copy_and_leaves_nothing(account):
    with pytest.raises(MediaTransferError) as caught:
        _copy(_FarHostWithALongerObject, PatternBody(SIZE, seed="longer"), account.s3, "task-12")

    assert caught.value.code == "LengthMismatch"
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []
