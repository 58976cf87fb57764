"""Ranged parallel copy of one media body into S3: concurrent `Range` GETs feed concurrent multipart
part uploads, so a long, window-bound link carries several TCP streams at once.

Same guarantees as the single stream of ingest.py: the sha256 covers the whole body, hashed part by
part in order; every range must be exactly its length and the total exactly the Content-Length;
any failure aborts the multipart upload, so no object and no unfinished upload is left. Each part
goes to S3 with its CRC32 (`ChecksumCRC32`, checked by S3 on arrival); the caller compares S3's
composite checksum with the parts' CRC32s computed here from the bytes read. Memory is bounded: at
most `STREAMS` part buffers exist (48 MiB with 8 MiB parts), whatever the size, and they are reused
from part to part. A body of two parts, which the parallel path would hold whole anyway, is fetched
the same way into one buffer and stored with a single PUT (its checksum: the body's sha256): no
multipart upload to create, complete or leave behind.

Bytes are copied once on their way: the socket reads straight into the part buffer (http.client's
readinto), and the filled buffer goes to hashlib, zlib and botocore as one `bytes` object without a
copy (a BytesIO's buffer: `getbuffer()` to fill it, `getvalue()` to hand it over; BytesIO copies on
write should anything still hold it when it is refilled); botocore signs and sends it through a
file-like view whose reads are slices of it, not copies (_PartBody). hashlib, zlib and the socket
release the GIL on large buffers, so the download, hashing and upload threads run in parallel.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import io
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
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import MediaTransferError, TransientError

MiB = 1024 * 1024
#: the single stream's part size; on a window-bound link a range of P bytes spends P / (P + window)
#: of its time moving bytes, the rest waiting a round trip for its first byte
MIN_PART_SIZE = 8 * MiB
#: S3 allows 10,000 parts; keep a margin like the single-stream path
MAX_PARTS = 9000
#: bytes read into a part buffer at a time (the deadline and cancellation are checked between reads)
READ_CHUNK = 256 * 1024
#: concurrent Range GETs, and so the most part buffers held at once: on a window-bound link each
#: range costs a round trip before its first byte, so a few more streams than upload threads
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
    refusal: Callable[[requests.Response], Exception],
    storage_error: Callable[[ClientError, str], Exception],
    deadline: float | None = None,
    overflowed: Callable[[], bool] | None = None,
) -> RangedCopy | None:
    """Copies the body behind `response` (a 200 not read yet) to `s3://bucket/key` in ranges.

    On a short link (the first answer's headers came within FAST_MS) the parts are read one after
    the other from the first answer instead: one stream is not window-bound there, and ranges would
    only cost requests. `overflowed` then tells, once that answer is read to its Content-Length,
    whether the server sent more (the copy fails: LengthMismatch).

    Returns None, having started nothing, when the host ignores ranges after all (its answer to the
    first one is a 200): the caller then streams `response` whole. `create_args` are the multipart
    upload's ContentType and Metadata.
    """
    copier = _RangedCopier(s3, session, response, size, bucket, key, create_args, max(1, concurrency), timeout,
                           refusal, deadline, overflowed)
    try:
        return copier.run()
    except ClientError as exc:
        raise storage_error(exc, bucket) from None
    except BotoCoreError as exc:
        raise TransientError(f"S3 could not be reached: {type(exc).__name__}", code="S3Unavailable") from None


def _new_buffer(size: int) -> io.BytesIO:
    """A part buffer of `size` zero bytes (untouched pages until the socket fills them)."""
    return io.BytesIO(bytes(size))


class _PartBody:
    """A part's bytes as the file-like body botocore takes, without copies: botocore turns a `bytes`
    Body into a BytesIO, whose every read (1 MiB to sign the payload, 128 KiB blocks to send it) is
    a copy; here a read returns a memoryview slice (hashlib, zlib and sockets take those as bytes),
    and a read of everything from the start returns the bytes object itself. Seekable, for retries."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._view = memoryview(data)
        self._position = 0

    def read(self, amount: int | None = -1) -> bytes | memoryview:
        start = self._position
        end = len(self._data) if amount is None or amount < 0 else min(len(self._data), start + amount)
        self._position = max(start, end)
        if start == 0 and end == len(self._data):
            return self._data
        return self._view[start:end]

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return max(0, len(self._data) - self._position)


def _crc32(data: Any) -> bytes:
    """The CRC32 S3 expects for `ChecksumCRC32` (4 bytes, big-endian); zlib releases the GIL on it."""
    return zlib.crc32(data).to_bytes(4, "big")


def _body_reader(response: requests.Response) -> tuple[Callable[[memoryview], int], Any]:
    """A `readinto` for the body of `response`, and the http.client response behind it (or None).

    http.client's own readinto moves the bytes from the socket straight into the part buffer; it
    still enforces the Content-Length and the chunked framing. urllib3 (identity encoding only,
    which is all the ranged path accepts) is bypassed for the bytes, not for the connection: see
    _release. Without that inner response (another transport), urllib3's read plus one copy."""
    raw = response.raw
    inner = getattr(raw, "_fp", None)
    if inner is not None and callable(getattr(inner, "readinto", None)) and callable(getattr(inner, "isclosed", None)):
        return inner.readinto, inner

    def readinto(view: memoryview) -> int:
        data = raw.read(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)

    return readinto, None


def _release(response: requests.Response, inner: Any) -> None:
    """A body read to its end through http.client hands its connection back to the session's pool,
    as urllib3 itself does when it reads a body to its end (the next range then reuses it: no new
    handshake, no new slow start); closing the response afterwards leaves that connection alone."""
    release = getattr(response.raw, "release_conn", None)
    if inner is not None and inner.isclosed() and callable(release):
        release()


class _Cancelled(Exception):
    """Another part failed first; this one stops quietly."""


class _RangesIgnored(Exception):
    """The host answered a range with the whole body (200) before any 206: it does not serve them."""


class _RangedCopier:
    def __init__(self, s3: Any, session: requests.Session, response: requests.Response, size: int, bucket: str,
                 key: str, create_args: dict[str, Any], concurrency: int, timeout: tuple[float, float],
                 refusal: Callable[[requests.Response], Exception], deadline: float | None,
                 overflowed: Callable[[], bool] | None = None) -> None:
        self.overflowed = overflowed
        self.s3 = s3
        self.session = session
        self.url = response.url
        self.first = response
        self.size = size
        self.bucket = bucket
        self.key = key
        self.create_args = {**create_args, "ChecksumAlgorithm": "CRC32"}
        self.concurrency = concurrency
        self.timeout = timeout
        self.refusal = refusal
        self.deadline = deadline
        self.part_size = part_size_for(size)
        self.count = math.ceil(size / self.part_size)
        self.max_live = STREAMS
        #: two parts at most: held whole anyway, so stored by one PUT (two requests fewer)
        self.single = self.count <= 2
        self._whole = _new_buffer(size) if self.single else None
        self.upload_id: str | None = None
        self._cond = threading.Condition()
        self._buffers: dict[int, io.BytesIO] = {}  # part buffers of the parts started, not yet recycled
        self._spare: list[io.BytesIO] = []  # part buffers free for the next parts
        self._downloaded: set[int] = set()  # filled, not hashed yet
        self._uploaded: dict[int, dict[str, Any]] = {}  # part entries for complete_multipart_upload
        self._part_checksums: dict[int, bytes] = {}
        self._error: BaseException | None = None
        self._uploads: ThreadPoolExecutor | None = None
        self._ready: list[int] = []  # downloaded parts waiting for an upload thread (a heap: lowest first)
        self._open: set[requests.Response] = set()
        self._confirmed = threading.Event()  # a range was answered with a 206
        #: one stream: every part from the first answer, in order (no ranges)
        elapsed = getattr(response, "elapsed", None)
        # (not for a body of two parts: reading the first answer to its end would wait up to 50 ms for
        # a surplus that never comes, ingest's overflow check; one range for the second part is cheaper)
        self.sequential = not self.single and elapsed is not None and elapsed.total_seconds() * 1000 < FAST_MS
        if self.sequential:
            self._confirmed.set()
            self._open.add(response)
        self._created = threading.Event()  # the multipart upload exists (or the copy failed)

    # --- the copy -------------------------------------------------------------------------------

    def run(self) -> RangedCopy | None:
        try:
            digest = self._transfer()
            if self._whole is not None:
                args = {k: v for k, v in self.create_args.items() if k != "ChecksumAlgorithm"}
                self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=_PartBody(self._whole.getvalue()),
                                   ChecksumSHA256=base64.b64encode(digest.digest()).decode(), **args)
                return RangedCopy(size=self.size, sha256=digest, part_checksums=[], checksum_algorithm="SHA256")
            if self.upload_id is None:
                raise MediaTransferError("the multipart upload was never created", code="S3Unavailable")
            parts = [self._uploaded[i] for i in range(self.count)]
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})
        except _RangesIgnored:
            self._abort()
            return None
        except BaseException:
            self._abort()
            raise
        finally:
            self._whole = None
            self._buffers.clear()
            self._spare.clear()
        # what landed (its length, S3's composite checksum) is checked by the caller, as for one stream
        return RangedCopy(size=self.size, sha256=digest,
                          part_checksums=[self._part_checksums[i] for i in range(self.count)])

    def _buffer_for(self, index: int) -> io.BytesIO:
        """Part `index`'s buffer: a spare one when it fits, else a new one (called by the coordinator,
        which counts the buffers: never more than `max_live` exist)."""
        start, end = self._bounds(index)
        if self._whole is not None:
            return self._whole
        if end - start == self.part_size and self._spare:
            return self._spare.pop()
        if self._spare:  # the short last part: its own buffer, one spare fewer
            self._spare.pop()
        return _new_buffer(end - start)

    def _transfer(self) -> Any:
        """Runs the workers; hashes parts in order as they arrive; returns the sha256 object.

        The first ranges go out at once, before anything is known: the first 206 confirms that the
        host serves ranges (only then is part 0 read from the first answer), a 200 before that means
        it ignores them (_RangesIgnored: nothing was read, the caller streams the first answer).

        Part i starts only when i < low + max_live, `low` being the first part not both hashed and
        uploaded: so at most max_live part buffers exist, and the part `low` always gets a worker.
        A part's buffer goes back to the spares once the part is both hashed and uploaded.
        """
        digest = hashlib.sha256()
        hashed = 0
        submitted = 0
        low_uploaded = 0
        pool = ThreadPoolExecutor(max_workers=1 if self.sequential else STREAMS, thread_name_prefix="wan-relay-range")
        uploads = max(1, min(UPLOADS, self.concurrency))
        self._uploads = ThreadPoolExecutor(max_workers=uploads, thread_name_prefix="wan-relay-part")
        try:
            with self._cond:
                while True:
                    if self._error is not None:
                        raise self._error
                    while low_uploaded in self._uploaded:
                        low_uploaded += 1
                    low = min(hashed, low_uploaded)
                    for done in [i for i in self._buffers if i < low]:
                        buffer = self._buffers.pop(done)
                        start, end = self._bounds(done)
                        if end - start == self.part_size and not self.single:
                            self._spare.append(buffer)
                    while submitted < self.count and submitted < low + self.max_live:
                        self._buffers[submitted] = self._buffer_for(submitted)
                        pool.submit(self._part, submitted, self._buffers[submitted])
                        submitted += 1
                    if self.upload_id is None and not self.single:  # while the first ranges travel
                        self._cond.release()
                        try:
                            created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                                      **self.create_args)
                        finally:
                            self._cond.acquire()
                        self.upload_id = created["UploadId"]
                        self._created.set()
                        continue
                    if hashed == self.count and low_uploaded == self.count:
                        break
                    if hashed not in self._downloaded:
                        self._cond.wait(1.0)
                        continue
                    self._downloaded.discard(hashed)
                    start, end = self._bounds(hashed)
                    buffer = self._buffers[hashed]
                    self._cond.release()  # hash outside the lock: hashlib releases the GIL on large buffers
                    try:
                        if self.single:  # its part of the one buffer, which only the download threads share
                            with buffer.getbuffer() as whole, whole[start:end] as view:
                                digest.update(view)
                        else:  # the same bytes object as the upload thread's: no copy
                            digest.update(buffer.getvalue())
                    finally:
                        self._cond.acquire()
                    hashed += 1
        except BaseException as exc:
            with self._cond:
                if self._error is None:
                    self._error = exc
                for response in list(self._open):
                    response.close()
            self._created.set()  # upload threads waiting for it see the error and stop
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._uploads.shutdown(wait=True, cancel_futures=True)
        return digest

    def _part(self, index: int, buffer: io.BytesIO) -> None:
        """Downloads one part into its buffer (a download thread), then hands it to an upload thread."""
        response: requests.Response | None = None
        try:
            if self._error is not None:
                raise _Cancelled
            if index == 0 or self.sequential:
                while not self._confirmed.wait(0.05):
                    if self._error is not None:
                        raise _Cancelled  # the first answer stays unread for the single stream
                response = self.first
            else:
                response = self._get_range(index)
            self._read(response, index, buffer)
            with self._cond:
                self._downloaded.add(index)
                if self.single:
                    self._uploaded[index] = {}  # stored whole by one PUT at the end
                self._cond.notify_all()
            if not self.single:
                assert self._uploads is not None
                with self._cond:
                    heapq.heappush(self._ready, index)
                self._uploads.submit(self._upload_next)
        except BaseException as exc:
            if response is not None and (index > 0 or self.sequential):
                response.close()
            self._fail(exc)

    def _upload_next(self) -> None:
        """Uploads the lowest part waiting (one task per part): the parts the window waits for first."""
        with self._cond:
            index = heapq.heappop(self._ready)
            buffer = self._buffers[index]
        self._upload_part(index, buffer)

    def _upload_part(self, index: int, buffer: io.BytesIO) -> None:
        try:
            self._created.wait()
            if self._error is not None:
                raise _Cancelled
            # the part's CRC32, from the bytes read, handed to S3 (which checks the part against it)
            # rather than letting botocore compute one; the part goes as one bytes object: no copy
            data = buffer.getvalue()
            del buffer
            part_checksum = _crc32(data)
            checksum = base64.b64encode(part_checksum).decode()
            answer = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                         PartNumber=index + 1, Body=_PartBody(data), ChecksumCRC32=checksum)
            del data
            entry = {"PartNumber": index + 1, "ETag": answer["ETag"], "ChecksumCRC32": checksum}
            with self._cond:
                self._part_checksums[index] = part_checksum
                self._uploaded[index] = entry
                self._cond.notify_all()
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None and not isinstance(exc, _Cancelled):
                self._error = exc
            self._cond.notify_all()

    # --- HTTP -----------------------------------------------------------------------------------

    def _bounds(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(self.size, start + self.part_size)

    def _get_range(self, index: int) -> requests.Response:
        start, end = self._bounds(index)
        try:
            response = self.session.get(
                self.url, stream=True, timeout=self.timeout, allow_redirects=False,
                headers={"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"},
            )
        except requests.Timeout:
            raise MediaTransferError("the media host did not answer in time", code="Timeout") from None
        except requests.RequestException as exc:
            raise MediaTransferError(f"could not reach the media host: {type(exc).__name__}",
                                     code="ConnectionError") from None
        if response.status_code == 206:
            found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            length = response.headers.get("Content-Length")
            if (
                found is None
                or (int(found.group(1)), int(found.group(2)) + 1) != (start, end)
                or found.group(3) != str(self.size)
                or (length is not None and length.strip() != str(end - start))
            ):
                response.close()
                raise MediaTransferError(
                    f"the media host answered the range {start}-{end - 1} with another one "
                    f"({response.headers.get('Content-Range', 'none')})", code="LengthMismatch",
                )
            with self._cond:
                self._open.add(response)
            self._confirmed.set()
            return response
        with response:
            if response.status_code == 200 and not self._confirmed.is_set():
                raise _RangesIgnored
            if response.status_code == 200:
                raise MediaTransferError("the media host stopped honouring byte ranges", code="RangeIgnored")
            if response.is_redirect:
                raise MediaTransferError("the media host redirected a byte range", code="RangeRedirected")
            raise self.refusal(response)

    def _read(self, response: requests.Response, index: int, buffer: io.BytesIO) -> None:
        """Exactly the part's bytes of the body into its buffer, then closes the response.

        Part 0 comes from the first answer (the whole body: the rest of it is not read); every other
        part is a range answer of its own, which must end exactly there. Reading that end hands the
        connection back to the session's pool, so the next range reuses it."""
        start, end = self._bounds(index)
        length = end - start
        offset = start if self._whole is not None else 0  # a small body: its part of the one buffer
        readinto, inner = _body_reader(response)
        whole = buffer.getbuffer()
        view = whole[offset : offset + length]
        filled = 0
        try:
            while filled < length:
                if self._error is not None:
                    raise _Cancelled
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise MediaTransferError(
                        f"the media download is too slow: {start + filled} bytes in when its time ran out",
                        code="TooSlow",
                    )
                try:
                    got = readinto(view[filled : filled + min(READ_CHUNK, length - filled)])
                except (Urllib3Error, requests.RequestException, OSError, ValueError, AttributeError) as exc:
                    raise MediaTransferError(
                        f"the media download broke at byte {start + filled}: {type(exc).__name__}",
                        code="StreamBroken",
                    ) from None
                if not got:
                    raise MediaTransferError(
                        f"the media range from byte {start} ended after {filled} of {length} bytes", code="Truncated"
                    )
                filled += got
            if index > 0 and not self.sequential:
                if self._surplus(response, inner):
                    raise MediaTransferError(f"the media range from byte {start} is longer than asked",
                                             code="LengthMismatch")
                _release(response, inner)
            if self.sequential and index < self.count - 1:
                return  # the next part follows on the same answer
            if self.sequential and self.overflowed is not None and self.overflowed():
                raise MediaTransferError("the server sent more bytes than its Content-Length", code="LengthMismatch")
        except BaseException:
            response.close()
            raise
        finally:
            view.release()
            whole.release()
        response.close()
        with self._cond:
            self._open.discard(response)

    @staticmethod
    def _surplus(response: requests.Response, inner: Any) -> bool:
        """Whether a range read to its length has more bytes: only possible without a Content-Length
        (http.client stops at one), where the body ends when the connection does."""
        try:
            if inner is None:
                return bool(response.raw.read(1, decode_content=False))
            return not inner.isclosed() and bool(inner.read(1))
        except (Urllib3Error, requests.RequestException, OSError, ValueError, AttributeError):
            return False  # the range is complete; the connection is simply not reused

    def _abort(self) -> None:
        if self.upload_id is None:
            return
        # the original error matters more; the next attempt aborts stale uploads of this key anyway
        with contextlib.suppress(ClientError, BotoCoreError):
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
