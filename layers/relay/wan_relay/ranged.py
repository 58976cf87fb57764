"""Ranged parallel copy of one media body into S3: concurrent `Range` GETs feed concurrent multipart
part uploads, so a long, window-bound link carries several TCP streams at once.

Same guarantees as the single stream of ingest.py: the sha256 covers the whole body, hashed part by
part in order; every range must be exactly its length and the total exactly the Content-Length;
any failure aborts the multipart upload, so no object and no unfinished upload is left. Each part
goes to S3 with its CRC32 (`ChecksumCRC32`, checked by S3 on arrival); the caller compares S3's
composite checksum with the parts' CRC32s computed here from the bytes read. Memory is bounded: at
most `STREAMS` part buffers exist (48 MiB with 8 MiB parts), whatever the size. A body of two
parts, which the parallel path would hold whole anyway, is fetched the same way and stored with a
single PUT (its checksum: the body's sha256): no multipart upload to create, complete or leave behind.

Public APIs only: a body is read with urllib3's `HTTPResponse.read`/`read1` (`decode_content=False`),
64 KiB at a time, into one of `STREAMS` part buffers made once and reused from part to part (fresh
memory for every part costs a page fault per 4 KiB, and malloc keeps freed parts in each thread's
arena): each read's bytes are copied once into the buffer, and the filled buffer goes to hashlib,
zlib and botocore without a further copy (`_PartBody` serves botocore slices of it). urllib3 hands a
connection back to the pool when a body is read to its end. hashlib, zlib and the socket release the
GIL on large buffers, so reading (download threads), hashing (this thread, in order) and sending
(upload threads) run in parallel.

The pieces, as s3transfer has them: `PartWindow` orders the parts (pure, no I/O); one
`TransferCoordinator` owns the copy's failure and its cleanups; `get_range` and `upload_part` are one
request each, `read_body` reads one part's bytes; `_RangedCopy` runs them on its threads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import math
import re
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError

from .errors import MediaTransferError
from .service_errors import (
    MEDIA_READ_ERRORS,
    S3,
    aws_error,
    media_read_error,
    media_refusal,
    media_request_error,
)

MiB = 1024 * 1024
#: the single stream's part size; on a window-bound link a range of P bytes spends P / (P + window)
#: of its time moving bytes, the rest waiting a round trip for its first byte
MIN_PART_SIZE = 8 * MiB
#: S3 allows 10,000 parts; keep a margin like the single-stream path
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
    """Notices, once a body has been read to its Content-Length, whether the server sent more.

    http.client stops at the declared length and never hands over what follows. On a persistent
    connection (HTTP/1.1, no `Connection: close`) nothing may follow until the next request, so
    urllib3's public `HTTPConnection.is_connected` (False once the idle socket is readable: bytes
    waiting, or closed) tells it. A server that said it closes gets no check. Bytes that came in one
    socket read with the headers (a body of a few KiB) are buffered and dropped by http.client
    unseen; a larger body's end is read with `read1`, which never reads past the length asked.
    Made before the body is read: urllib3 forgets the connection once the body is read to its end."""

    def __init__(self, response: requests.Response) -> None:
        raw = response.raw
        persistent = getattr(raw, "version", 0) == 11 and "close" not in response.headers.get("Connection", "").lower()
        self._connection = getattr(raw, "connection", None) if persistent else None

    @property
    def overflowed(self) -> bool:
        return self._connection is not None and not self._connection.is_connected


# --- ordering: pure --------------------------------------------------------------------------------


class PartWindow:
    """Which parts may start, which one is hashed next, and which buffers may be reused.

    Parts are hashed strictly in order; they are downloaded and uploaded in any order. Part i may
    start only while i < low + width, `low` being the first part not both hashed and uploaded: so at
    most `width` part buffers exist, and part `low` always has one. A part's buffer may be reused
    once every part up to it is hashed and uploaded. No I/O, no threads: the caller holds the lock.
    """

    def __init__(self, count: int, width: int) -> None:
        self.count = count
        self.width = width
        self._started = 0
        self._hashed = 0
        self._low_uploaded = 0
        self._released = 0
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

    def releasable(self) -> list[int]:
        """The parts whose buffers may be reused now (each returned once)."""
        low = self.low
        released = list(range(self._released, low))
        self._released = max(self._released, low)
        return released

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

    @property
    def failed(self) -> bool:
        return self.exception is not None

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
    """The answer to `Range: bytes=start-(end-1)`, checked to be exactly that range, body unread."""
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
                f"the media host answered the range {start}-{end - 1} with another one "
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
              cancelled: Callable[[], bool], ends_body: bool) -> None:
    """The next `len(view)` bytes of the body of `response` (body offset `start`) into `view`.

    `ends_body`: these are the body's last bytes; its end is read with `read1`, which never asks the
    socket for more than the body has left (so BodyEnd can see what follows). A body without a
    Content-Length (a 206 may leave it out) must end there."""
    raw = response.raw
    length = len(view)
    filled = 0
    while filled < length:
        if cancelled():
            raise Cancelled
        if deadline is not None and time.monotonic() > deadline:
            raise MediaTransferError(
                f"the media download is too slow: {start + filled} bytes in when its time ran out", code="TooSlow")
        want = min(READ_CHUNK, length - filled)
        try:
            if ends_body and want == length - filled:
                chunk = raw.read1(want, decode_content=False)
            else:
                chunk = raw.read(want, decode_content=False)
        except MEDIA_READ_ERRORS as exc:
            raise media_read_error(exc, start + filled) from None
        if not chunk:
            raise MediaTransferError(
                f"the media range from byte {start} ended after {filled} of {length} bytes", code="Truncated")
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if ends_body and response.headers.get("Content-Length") is None:
        try:
            surplus = raw.read(1, decode_content=False)
        except MEDIA_READ_ERRORS:
            surplus = b""  # the body is complete; the connection is simply not reused
        if surplus:
            raise MediaTransferError(f"the media range from byte {start} is longer than asked", code="LengthMismatch")


def upload_part(s3: Any, bucket: str, key: str, upload_id: str, index: int,
                chunks: list[memoryview]) -> tuple[dict[str, Any], bytes]:
    """Part `index` (0-based) with its CRC32 from the bytes read, handed to S3, which checks the part
    against it (rather than botocore computing one): its entry for complete_multipart_upload, and
    the CRC32. The part goes as it lies in its buffer: no copy."""
    part_checksum = _crc32(chunks)
    checksum = base64.b64encode(part_checksum).decode()
    answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=index + 1,
                            Body=_PartBody(chunks), ChecksumCRC32=checksum)
    return {"PartNumber": index + 1, "ETag": answer["ETag"], "ChecksumCRC32": checksum}, part_checksum


def _crc32(chunks: list[memoryview]) -> bytes:
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)  # zlib releases the GIL on large buffers
    return crc.to_bytes(4, "big")


class _PartBody:
    """Chunks of bytes as the seekable file-like body botocore takes, without copies: a read of a
    block (how http.client sends a body) returns a memoryview slice of one chunk (sockets take those
    as bytes; a short read is allowed), so the part is never joined; only a read of everything joins.
    Seekable, for retries."""

    def __init__(self, chunks: list[memoryview]) -> None:
        self._chunks = chunks
        self._starts = [0]
        for chunk in chunks:
            self._starts.append(self._starts[-1] + len(chunk))
        self._size = self._starts[-1]
        self._position = 0
        self._chunk = 0  # the chunk holding `_position`

    def read(self, amount: int | None = -1) -> bytes | memoryview:
        if self._position >= self._size:
            return b""
        if amount is None or amount < 0:  # everything left, as bytes (moto in-process reads it so)
            rest = b"".join(self._chunks)[self._position :] if self._position else b"".join(self._chunks)
            self._position = self._size
            return rest
        while self._starts[self._chunk + 1] <= self._position:
            self._chunk += 1
        offset = self._position - self._starts[self._chunk]
        view = self._chunks[self._chunk][offset:]
        if amount is not None and 0 <= amount < len(view):
            view = view[:amount]
        self._position += len(view)
        return view

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = min(self._size, max(0, base + offset))
        self._chunk = 0
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._size - self._position


# --- the copy ------------------------------------------------------------------------------------------


def copy_in_ranges(
    *,
    s3: Any,
    session: requests.Session,
    response: requests.Response,
    size: int,
    bucket: str,
    key: str,
    create_args: dict[str, Any],
    concurrency: int,
    timeout: tuple[float, float],
    deadline: float | None = None,
    body_end: BodyEnd | None = None,
) -> RangedCopy | None:
    """Copies the body behind `response` (a 200 not read yet) to `s3://bucket/key` in ranges.

    On a short link (the first answer's headers came within FAST_MS) the parts are read one after
    the other from the first answer instead: one stream is not window-bound there, and ranges would
    only cost requests. `body_end` (made for that answer) then tells, once it is read to its
    Content-Length, whether the server sent more (the copy fails: LengthMismatch).

    Returns None, having started nothing, when the host ignores ranges after all (its answer to the
    first one is a 200): the caller then streams `response` whole. `create_args` are the multipart
    upload's ContentType and Metadata.
    """
    copy = _RangedCopy(s3, session, response, size, bucket, key, create_args, max(1, concurrency), timeout,
                       deadline, body_end)
    try:
        return copy.run()
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, S3, f"the upload to bucket {bucket}") from None


class _RangedCopy:
    """Runs one copy: the download threads fetch parts, the upload threads send them, this thread
    starts parts as the window allows and hashes them in order."""

    def __init__(self, s3: Any, session: requests.Session, response: requests.Response, size: int, bucket: str,
                 key: str, create_args: dict[str, Any], concurrency: int, timeout: tuple[float, float],
                 deadline: float | None, body_end: BodyEnd | None) -> None:
        self.s3, self.session, self.first, self.url = s3, session, response, response.url
        self.size, self.bucket, self.key, self.timeout, self.deadline = size, bucket, key, timeout, deadline
        self.body_end = body_end
        self.create_args = {**create_args, "ChecksumAlgorithm": "CRC32"}
        self.part_size = part_size_for(size)
        self.count = math.ceil(size / self.part_size)
        #: two parts at most: held whole anyway, so stored by one PUT (two requests fewer)
        self.single = self.count <= 2
        # one stream: every part from the first answer, in order (no ranges); not for a body of two
        # parts, where one range for the second part is as cheap
        elapsed = getattr(response, "elapsed", None)
        self.sequential = not self.single and elapsed is not None and elapsed.total_seconds() * 1000 < FAST_MS
        self.uploads = max(1, min(UPLOADS, concurrency))
        self.coordinator = TransferCoordinator()
        self.window = PartWindow(self.count, STREAMS)
        self.upload_id: str | None = None
        self._created = threading.Event()  # the multipart upload exists (or the copy failed)
        self._confirmed = threading.Event()  # a range was answered with a 206: the host serves them
        if self.sequential:
            self._confirmed.set()
        #: one reusable buffer per window slot: part i uses slot i % STREAMS, free again by the time part
        #: i + STREAMS may start (the window); made on first use
        self._slots: list[bytearray | None] = [None] * STREAMS
        self._parts: dict[int, list[memoryview]] = {}  # each part read (its bytes in its slot), until released
        self._ready: list[int] = []  # downloaded parts waiting for an upload thread (a heap: lowest first)
        self._entries: dict[int, dict[str, Any]] = {}
        self._part_checksums: dict[int, bytes] = {}

    def run(self) -> RangedCopy | None:
        try:
            digest = self._transfer()
            if self.single:
                args = {k: v for k, v in self.create_args.items() if k != "ChecksumAlgorithm"}
                chunks = [chunk for index in range(self.count) for chunk in self._parts[index]]
                self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=_PartBody(chunks),
                                   ChecksumSHA256=base64.b64encode(digest.digest()).decode(), **args)
                return RangedCopy(size=self.size, sha256=digest, part_checksums=[], checksum_algorithm="SHA256")
            if self.upload_id is None:
                raise MediaTransferError("the multipart upload was never created", code="S3.Unreachable")
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": [self._entries[i] for i in range(self.count)]})
        except RangesIgnored:
            return None
        except BaseException as exc:
            self.coordinator.fail(exc)  # a failure of the complete itself, if nothing failed before
            raise
        finally:
            self.coordinator.clean_up()
            self._parts.clear()
            self._slots.clear()
        # what landed (its length, S3's composite checksum) is checked by the caller, as for one stream
        return RangedCopy(size=self.size, sha256=digest,
                          part_checksums=[self._part_checksums[i] for i in range(self.count)])

    def _transfer(self) -> Any:
        """Starts parts as the window allows and hashes them in order; returns the sha256 object.

        The first ranges go out at once, before anything is known: the first 206 confirms that the
        host serves ranges (only then is part 0 read from the first answer), a 200 before that means
        it ignores them (RangesIgnored: nothing was read, the caller streams the first answer)."""
        digest = hashlib.sha256()
        downloads = ThreadPoolExecutor(max_workers=1 if self.sequential else STREAMS,
                                       thread_name_prefix="wan-relay-range")
        uploads = ThreadPoolExecutor(max_workers=self.uploads, thread_name_prefix="wan-relay-part")
        lock = self.coordinator.condition
        try:
            with lock:
                while True:
                    if self.coordinator.exception is not None:
                        raise self.coordinator.exception
                    if not self.single:  # a single PUT needs every part at the end
                        for done in self.window.releasable():
                            self._parts.pop(done, None)
                    for index in self.window.to_start():
                        downloads.submit(self._download, index, uploads)
                    if self.upload_id is None and not self.single:  # while the first ranges travel
                        lock.release()
                        try:
                            self._create_upload()
                        finally:
                            lock.acquire()
                        continue
                    if self.window.done:
                        break
                    index = self.window.next_to_hash()
                    if index is None:
                        lock.wait(1.0)
                        continue
                    chunks = self._parts[index]
                    lock.release()  # hash outside the lock: hashlib releases the GIL on large buffers
                    try:
                        for chunk in chunks:
                            digest.update(chunk)
                    finally:
                        del chunks  # not held here past its release
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
        created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self.create_args)
        self.upload_id = created["UploadId"]
        # registered where the upload is made; the next attempt aborts stale uploads of this key anyway
        self.coordinator.on_failure(self._abort)
        self._created.set()

    def _abort(self) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):  # the original error matters more
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    def _download(self, index: int, uploads: ThreadPoolExecutor) -> None:
        """A download thread: part `index`, then handed to an upload thread."""
        try:
            self.coordinator.raise_if_failed()
            from_first = index == 0 or self.sequential
            if from_first:
                while not self._confirmed.wait(0.05):
                    self.coordinator.raise_if_failed()  # the first answer stays unread for the single stream
                response = self.first
            else:
                response = get_range(self.session, self.url, *self._bounds(index), self.size, self.timeout,
                                     self._confirmed.is_set())
                self._confirmed.set()
            chunks = self._read(response, index, from_first)
            with self.coordinator.condition:
                self._parts[index] = chunks
                self.window.downloaded(index)
                if self.single:
                    self.window.uploaded(index)  # stored whole by one PUT at the end
                else:
                    heapq.heappush(self._ready, index)
                self.coordinator.condition.notify_all()
            if not self.single:
                uploads.submit(self._upload_next)
        except BaseException as exc:
            self.coordinator.fail(exc)

    def _read(self, response: requests.Response, index: int, from_first: bool) -> list[memoryview]:
        """Part `index` of the body from `response`; closes a range's answer once read (the first
        answer once its last part is read, or at once when the other parts come in ranges)."""
        start, end = self._bounds(index)
        last_of_first = from_first and (not self.sequential or index == self.count - 1)
        ends_body = not from_first or (self.sequential and index == self.count - 1)
        self.coordinator.reading(response)
        try:
            slot = self._slots[index % STREAMS]
            if slot is None:
                slot = self._slots[index % STREAMS] = bytearray(self.part_size)
            view = memoryview(slot)[: end - start]
            read_body(response, view, start, deadline=self.deadline, ends_body=ends_body,
                      cancelled=lambda: self.coordinator.failed)
            if from_first and ends_body and self.body_end is not None and self.body_end.overflowed:
                raise MediaTransferError("the server sent more bytes than its Content-Length", code="LengthMismatch")
        except BaseException:
            response.close()
            raise
        if not from_first or last_of_first:
            response.close()
            self.coordinator.done_reading(response)
        return [view]

    def _upload_next(self) -> None:
        """An upload thread: the lowest part waiting (one task per part), the one the window waits for."""
        try:
            with self.coordinator.condition:
                index = heapq.heappop(self._ready)
                chunks = self._parts[index]
            self._created.wait()
            self.coordinator.raise_if_failed()
            entry, part_checksum = upload_part(self.s3, self.bucket, self.key, self.upload_id or "", index, chunks)
            del chunks
            with self.coordinator.condition:
                self._entries[index] = entry
                self._part_checksums[index] = part_checksum
                self.window.uploaded(index)
                self.coordinator.condition.notify_all()
        except BaseException as exc:
            self.coordinator.fail(exc)

    def _bounds(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(self.size, start + self.part_size)
