"""Ranged parallel copy of one media body into S3: concurrent `Range` GETs feed concurrent multipart
part uploads, so a long, window-bound link carries several TCP streams at once.

Same guarantees as ingest.py's single stream: the sha256 covers the whole body, hashed in order;
every range is exactly its length, of a body of the first answer's length; any failure aborts the
multipart upload (nothing left behind). Each part goes with its CRC32 (`ChecksumCRC32`, which S3
checks); the caller compares S3's composite checksum with these. Memory is bounded: at most `STREAMS`
part buffers (48 MiB with 8 MiB parts), made once and reused (fresh memory costs a page fault per
4 KiB, and malloc keeps freed parts in each thread's arena). A body of two parts goes in one PUT.

Public APIs only: bodies are read with urllib3's `read1` (`decode_content=False`), which never asks
the socket for more than the body has left; each read is copied once into a part buffer, which goes
to hashlib, zlib and botocore without a further copy. Those and the socket release the GIL on large
buffers, so reading, hashing (in order) and sending run in parallel. As s3transfer has it:
`PartWindow` orders the parts (pure); one `TransferCoordinator` owns failure and cleanup;
`get_range` and `upload_part` are one request each; `RangedCopier` runs them on its threads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import math
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError

from .errors import MediaTransferError
from .service_errors import MEDIA_READ_ERRORS, S3, aws_error, media_read_error, media_refusal, media_request_error

MiB = 1024 * 1024
#: the single stream's part size; on a window-bound link a range of P bytes spends P / (P + window)
#: of its time moving bytes, the rest waiting a round trip for its first byte
MIN_PART_SIZE = 8 * MiB
#: S3 allows 10,000 parts; keep a margin
MAX_PARTS = 9000
#: bytes read at a time (the deadline and cancellation are checked between reads): each read returns a
#: new bytes object; below malloc's mmap threshold (128 KiB) it is reused from the reading thread's
#: heap (256 KiB reads left 1-2 MiB behind in each thread's arena: +62 MiB over idle on a long link)
READ_CHUNK = 64 * 1024
#: concurrent Range GETs, and so the most parts held at once: on a window-bound link each range
#: costs a round trip before its first byte, so a few more streams than upload threads
STREAMS = 6
#: part uploads at a time, at most (and at most the streamer's concurrency): where S3 is the slower
#: side (a fast link), it gets several parts at once; on a long link most of these threads wait
UPLOADS = 4
#: a first answer whose headers came back within this many ms (request to headers, handshake included)
#: is on a short link: one stream is not window-bound there, and range requests would only add work
FAST_MS = 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class RangedCopy:
    """What the copy read: same `size` and `sha256` attributes as ingest's verifying reader."""

    size: int
    sha256: Any  # hashlib sha256 object over the whole body, in order
    #: CRC32 of each part, in order (4 bytes, big-endian), as sent with the part: ingest checks S3's
    #: composite checksum against them; empty when the body went up in one PUT (checksum: sha256)
    part_checksums: list[bytes] = field(default_factory=list)
    checksum_algorithm: str = "CRC32"


def wants_ranges(response: requests.Response, expected: int | None, part_size: int = MIN_PART_SIZE) -> bool:
    """Worth it and possible: a known length above one part, from a host that serves byte ranges."""
    accept = response.headers.get("Accept-Ranges", "")
    encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
    return (
        expected is not None
        and expected > part_size
        and "bytes" in [v.strip().lower() for v in accept.split(",")]
        and not encoded
    )


def part_size_for(size: int) -> int:
    return max(MIN_PART_SIZE, math.ceil(size / MAX_PARTS))


class BodyEnd:
    """Tells, once a body is read to its Content-Length, whether the server sent more. Made before
    the body's end is read; a context manager.

    http.client stops at the length and lets go of the connection (closes it after `Connection:
    close`), so this peeks (MSG_PEEK) at a duplicate of the body's socket, made from urllib3's public
    `HTTPResponse.fileno()`: bytes waiting are a surplus; nothing, or the stream's end, is not.
    Plain HTTP only: over TLS a record without data (close_notify, KeyUpdate) looks like one with
    data to all but the TLS session, which no public API hands out; no check rather than a false
    failure. Not seen either: a surplus that came in one read with the headers (http.client buffers
    and drops it), or after the check."""

    def __init__(self, response: requests.Response) -> None:
        self._socket: socket.socket | None = None
        if urlsplit(response.url).scheme == "http":
            with contextlib.suppress(OSError, ValueError):
                self._socket = socket.socket(fileno=os.dup(response.raw.fileno()))

    def __enter__(self) -> BodyEnd:
        return self

    def __exit__(self, *_: object) -> None:
        if self._socket is not None:
            self._socket.close()

    def overflowed(self) -> bool:
        if self._socket is None:
            return False
        try:
            return bool(self._socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing waiting (BlockingIOError), or a reset after the body
            return False


# --- ordering: pure --------------------------------------------------------------------------------


class PartWindow:
    """Which parts may start, which one is hashed next, and which buffers may be reused.

    Parts are hashed strictly in order; they are downloaded and uploaded in any order. Part i may
    start only while i < low + width, `low` being the first part not both hashed and uploaded: so at
    most `width` part buffers are in use, part `low` always has one, and part i's buffer is free for
    part i + width when that starts. No I/O, no threads: the caller holds the lock.
    """

    def __init__(self, count: int, width: int) -> None:
        self.count = count
        self.width = width
        self._started = 0
        self._hashed = 0
        self._low_uploaded = 0
        self._downloaded: set[int] = set()
        self._uploaded: set[int] = set()

    @property
    def low(self) -> int:
        while self._low_uploaded in self._uploaded:
            self._low_uploaded += 1
        return min(self._hashed, self._low_uploaded)

    def to_start(self) -> list[int]:
        """The parts that may start now (each returned once)."""
        end = min(self.count, self.low + self.width)
        started = list(range(self._started, end))
        self._started = max(self._started, end)
        return started

    def downloaded(self, index: int) -> None:
        self._downloaded.add(index)

    def uploaded(self, index: int) -> None:
        self._uploaded.add(index)

    def next_to_hash(self) -> int | None:
        """The next part in order, once it is downloaded."""
        return self._hashed if self._hashed in self._downloaded else None

    def hashed(self, index: int) -> None:
        if index != self._hashed:
            raise ValueError(f"part {index} hashed out of order (next is {self._hashed})")
        self._downloaded.discard(index)
        self._hashed += 1

    @property
    def done(self) -> bool:
        return self._hashed == self.count and self.low == self.count


# --- failure and cleanup: one owner ----------------------------------------------------------------


class Cancelled(Exception):
    """Another part failed first; this one stops quietly."""


class RangesIgnored(Exception):
    """The host answered a range with the whole body (200) before any 206: it does not serve them."""


class TransferCoordinator:
    """Owns a copy's failure and cleanup, as s3transfer's TransferCoordinator does: the first
    exception wins (later ones are its consequences); the answers being read are closed the moment
    the copy fails, so no reader waits out its timeout; the cleanups registered where a resource is
    made (the multipart upload's abort) run once, after every worker has stopped."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.exception: BaseException | None = None
        self._open: set[requests.Response] = set()
        self._failure_cleanups: list[Callable[[], None]] = []

    def raise_if_failed(self) -> None:
        if self.exception is not None:
            raise Cancelled

    def fail(self, exc: BaseException) -> None:
        with self.condition:
            if self.exception is not None or isinstance(exc, Cancelled):
                self.condition.notify_all()
                return
            self.exception = exc
            open_answers, self._open = list(self._open), set()
            self.condition.notify_all()
        for response in open_answers:
            response.close()

    def reading(self, response: requests.Response) -> None:
        """`response` is being read: closed if the copy fails."""
        with self.condition:
            if self.exception is None:
                self._open.add(response)
                return
        response.close()
        raise Cancelled

    def done_reading(self, response: requests.Response) -> None:
        with self.condition:
            self._open.discard(response)

    def on_failure(self, cleanup: Callable[[], None]) -> None:
        self._failure_cleanups.append(cleanup)

    def clean_up(self) -> None:
        """After the workers stopped: the failure cleanups, once, newest first."""
        cleanups, self._failure_cleanups = self._failure_cleanups[::-1], []
        if self.exception is not None:
            for cleanup in cleanups:
                cleanup()


# --- one request each --------------------------------------------------------------------------------


def get_range(session: requests.Session, url: str, start: int, end: int, size: int,
              timeout: tuple[float, float], ranges_confirmed: bool) -> requests.Response:
    """The answer to `Range: bytes=start-(end-1)`, checked to be exactly that range of a body of
    `size` bytes (the first answer's length: a host whose object changed or lied announces another
    total), body unread."""
    try:
        response = session.get(url, stream=True, timeout=timeout, allow_redirects=False,
                               headers={"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"})
    except requests.RequestException as exc:
        raise media_request_error(exc) from None
    if response.status_code == 206:
        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        length = response.headers.get("Content-Length")
        if (
            found is None
            or (int(found.group(1)), int(found.group(2)) + 1) != (start, end)
            or found.group(3) != str(size)
            or (length is not None and length.strip() != str(end - start))
        ):
            response.close()
            raise MediaTransferError(
                f"the media host answered the range {start}-{end - 1} of {size} bytes with another one "
                f"({response.headers.get('Content-Range', 'none')[:100]})", code="LengthMismatch",
            )
        return response
    with response:
        if response.status_code == 200 and not ranges_confirmed:
            raise RangesIgnored
        if response.status_code == 200:
            raise MediaTransferError("the media host stopped honouring byte ranges", code="RangeIgnored")
        if response.is_redirect:
            raise MediaTransferError("the media host redirected a byte range", code="RangeRedirected")
        raise media_refusal(response)


def read_body(response: requests.Response, view: memoryview, start: int, *, deadline: float | None,
              cancelled: Callable[[], bool]) -> None:
    """The next `len(view)` bytes of the body of `response` (body offset `start`) into `view`. A body
    without a Content-Length (a 206 may leave it out) must end there."""
    raw = response.raw
    filled = 0
    while filled < len(view):
        if cancelled():
            raise Cancelled
        if deadline is not None and time.monotonic() > deadline:
            raise MediaTransferError(
                f"the media download is too slow: {start + filled} bytes in when its time ran out", code="TooSlow")
        try:
            chunk = raw.read1(min(READ_CHUNK, len(view) - filled), decode_content=False)
        except MEDIA_READ_ERRORS as exc:
            raise media_read_error(exc, start + filled) from None
        if not chunk:
            raise MediaTransferError(
                f"the media range from byte {start} ended after {filled} of {len(view)} bytes", code="Truncated")
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if response.headers.get("Content-Length") is None:
        try:
            surplus = raw.read(1, decode_content=False)
        except MEDIA_READ_ERRORS:
            surplus = b""  # the body is complete; the connection is simply not reused
        if surplus:
            raise MediaTransferError(f"the media range from byte {start} is longer than asked", code="LengthMismatch")


def upload_part(s3: Any, bucket: str, key: str, upload_id: str, index: int,
                part: memoryview) -> tuple[dict[str, Any], bytes]:
    """Part `index` (0-based) with its CRC32 from the bytes read, handed to S3, which checks the part
    against it (rather than botocore computing one): its entry for complete_multipart_upload, and
    the CRC32. The part goes as it lies in its buffer: no copy."""
    part_checksum = zlib.crc32(part).to_bytes(4, "big")  # zlib releases the GIL on large buffers
    checksum = base64.b64encode(part_checksum).decode()
    answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=index + 1,
                            Body=_PartBody(part), ChecksumCRC32=checksum)
    return {"PartNumber": index + 1, "ETag": answer["ETag"], "ChecksumCRC32": checksum}, part_checksum


class _PartBody:
    """Bytes in a buffer as the seekable file-like body botocore takes, without a copy: a read of a
    block (how http.client sends a body) returns a memoryview slice (sockets take those as bytes);
    only a read of everything (moto in-process reads so) makes bytes."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def read(self, amount: int | None = -1) -> bytes | memoryview:
        start = self._position
        if amount is None or amount < 0:
            self._position = len(self._view)
            return bytes(self._view[start:])
        self._position = min(len(self._view), start + amount)
        return self._view[start : self._position] if self._position > start else b""

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._position, len(self._view))[whence]
        self._position = min(len(self._view), max(0, base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view) - self._position


# --- the copy ------------------------------------------------------------------------------------------


@dataclass
class RangedCopier:
    """Copies the body behind `first` (a 200 not read yet) to `s3://bucket/key` in ranges: the
    download threads fetch parts, the upload threads send them, `run`'s thread starts parts as the
    window allows and hashes them in order.

    On a short link (the first answer's headers came within FAST_MS) the parts are read one after
    the other from the first answer instead: one stream is not window-bound there, and ranges would
    only cost requests; once it is read to its Content-Length, a surplus fails the copy
    (LengthMismatch, see BodyEnd). `create_args` are the upload's ContentType and Metadata.
    """

    s3: Any
    session: requests.Session
    first: requests.Response
    size: int
    bucket: str
    key: str
    create_args: dict[str, Any]
    concurrency: int
    timeout: tuple[float, float]
    deadline: float | None = None

    def __post_init__(self) -> None:
        self.part_size = part_size_for(self.size)
        self.count = math.ceil(self.size / self.part_size)
        #: two parts at most: held whole anyway, so stored by one PUT (two requests fewer)
        self.single = self.count <= 2
        # one stream: every part from the first answer, in order (no ranges); not for a body of two
        # parts, where one range for the second part is as cheap
        elapsed = getattr(self.first, "elapsed", None)
        self.sequential = not self.single and elapsed is not None and elapsed.total_seconds() * 1000 < FAST_MS
        self.coordinator = TransferCoordinator()
        self.window = PartWindow(self.count, STREAMS)
        self.upload_id: str | None = None
        self._created = threading.Event()  # the multipart upload exists (or the copy failed)
        self._confirmed = threading.Event()  # a range was answered with a 206: the host serves them
        if self.sequential:
            self._confirmed.set()
        #: part i is read into slot i % STREAMS, free again by the time part i + STREAMS may start (the
        #: window), made on first use; a body of two parts into one buffer, the PUT's body
        self._slots: dict[int, memoryview] = {}
        self._whole = memoryview(bytearray(self.size)) if self.single else None
        self._parts: dict[int, memoryview] = {}  # each part read, until hashed
        #: downloaded parts waiting for an upload thread, (index, part), a heap: the lowest first
        self._ready: list[tuple[int, memoryview]] = []
        self._sent: dict[int, tuple[dict[str, Any], bytes]] = {}  # each part's upload entry and CRC32

    def run(self) -> RangedCopy | None:
        """What was copied; None, having started nothing, when the host ignores ranges after all (its
        answer to the first one is a 200): the caller then streams the first answer whole."""
        try:
            digest = self._transfer()
            if self.single:
                self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=_PartBody(self._whole),
                                   ChecksumSHA256=base64.b64encode(digest.digest()).decode(), **self.create_args)
                return RangedCopy(size=self.size, sha256=digest, checksum_algorithm="SHA256")
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": [self._sent[i][0] for i in range(self.count)]})
        except RangesIgnored:
            return None
        except BaseException as exc:
            self.coordinator.fail(exc)  # a failure of the complete itself, if nothing failed before
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise aws_error(exc, S3, f"the upload to bucket {self.bucket}") from None
            raise
        finally:
            self.coordinator.clean_up()
            self._parts.clear()
            self._slots.clear()
            self._whole = None
        # what landed (its length, S3's composite checksum) is checked by the caller, as for one stream
        return RangedCopy(size=self.size, sha256=digest,
                          part_checksums=[self._sent[i][1] for i in range(self.count)])

    def _transfer(self) -> Any:
        """Starts parts as the window allows and hashes them in order; returns the sha256 object.

        The first ranges go out at once, before anything is known: the first 206 confirms that the
        host serves ranges (only then is part 0 read from the first answer), a 200 before that means
        it ignores them (RangesIgnored: nothing was read, the caller streams the first answer)."""
        digest = hashlib.sha256()
        downloads = ThreadPoolExecutor(max_workers=1 if self.sequential else STREAMS,
                                       thread_name_prefix="wan-relay-range")
        uploads = ThreadPoolExecutor(max_workers=max(1, min(UPLOADS, self.concurrency)),
                                     thread_name_prefix="wan-relay-part")
        lock = self.coordinator.condition
        try:
            with lock:
                for index in self.window.to_start():
                    downloads.submit(self._download, index, uploads)
            if not self.single:
                self._create_upload()  # while the first ranges travel
            with lock:
                while True:
                    if self.coordinator.exception is not None:
                        raise self.coordinator.exception
                    for index in self.window.to_start():
                        downloads.submit(self._download, index, uploads)
                    if self.window.done:
                        break
                    index = self.window.next_to_hash()
                    if index is None:
                        lock.wait(1.0)
                        continue
                    part = self._parts.pop(index)
                    lock.release()  # hash outside the lock: hashlib releases the GIL on large buffers
                    try:
                        digest.update(part)
                    finally:
                        del part  # not held here past its release
                        lock.acquire()
                    self.window.hashed(index)
        except BaseException as exc:
            self.coordinator.fail(exc)
            self._created.set()  # upload threads waiting for it see the failure and stop
            raise
        finally:
            downloads.shutdown(wait=True, cancel_futures=True)
            uploads.shutdown(wait=True, cancel_futures=True)
        return digest

    def _create_upload(self) -> None:
        created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="CRC32",
                                                  **self.create_args)
        self.upload_id = created["UploadId"]
        # registered where the upload is made; the next attempt aborts stale uploads of this key anyway
        self.coordinator.on_failure(self._abort)
        self._created.set()

    def _abort(self) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):  # the original error matters more
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    def _download(self, index: int, uploads: ThreadPoolExecutor) -> None:
        """A download thread: part `index` into its buffer, then handed to an upload thread. An answer
        is closed once done with (a range's at once; the first answer after its last part, or after
        part 0 when the others come in ranges); the first answer read to its end is checked for a
        surplus. On failure the coordinator closes it."""
        try:
            self.coordinator.raise_if_failed()
            start, end = self._bounds(index)
            from_first = index == 0 or self.sequential
            if from_first:
                while not self._confirmed.wait(0.05):
                    self.coordinator.raise_if_failed()  # the first answer stays unread for the single stream
                response = self.first
            else:
                response = get_range(self.session, self.first.url, start, end, self.size, self.timeout,
                                     self._confirmed.is_set())
                self._confirmed.set()
            if self._whole is not None:
                part = self._whole[start:end]
            else:
                if index % STREAMS not in self._slots:
                    self._slots[index % STREAMS] = memoryview(bytearray(self.part_size))
                part = self._slots[index % STREAMS][: end - start]
            ends_first = from_first and end == self.size
            self.coordinator.reading(response)
            with BodyEnd(response) if ends_first else contextlib.nullcontext() as body_end:
                read_body(response, part, start, deadline=self.deadline,
                          cancelled=lambda: self.coordinator.exception is not None)
                if body_end is not None and body_end.overflowed():
                    raise MediaTransferError("the server sent more bytes than its Content-Length",
                                             code="LengthMismatch")
            if not (from_first and self.sequential) or ends_first:
                response.close()
                self.coordinator.done_reading(response)
            with self.coordinator.condition:
                self._parts[index] = part
                self.window.downloaded(index)
                if self.single:
                    self.window.uploaded(index)  # stored whole by one PUT at the end
                else:
                    heapq.heappush(self._ready, (index, part))
                self.coordinator.condition.notify_all()
            if not self.single:
                uploads.submit(self._upload_next)
        except BaseException as exc:
            self.coordinator.fail(exc)

    def _upload_next(self) -> None:
        """An upload thread: the lowest part waiting (one task per part), the one the window waits for."""
        try:
            with self.coordinator.condition:
                index, part = heapq.heappop(self._ready)
            self._created.wait()
            self.coordinator.raise_if_failed()
            sent = upload_part(self.s3, self.bucket, self.key, self.upload_id or "", index, part)
            del part
            with self.coordinator.condition:
                self._sent[index] = sent
                self.window.uploaded(index)
                self.coordinator.condition.notify_all()
        except BaseException as exc:
            self.coordinator.fail(exc)

    def _bounds(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(self.size, start + self.part_size)
