"""Media URL allowlist and the streaming copy of one media item into S3.

The body flows from the HTTP socket to S3's multipart upload in parts; memory is bounded by a few
parts whatever the size. While it flows, its bytes are counted and hashed (sha256, for the event);
a body shorter or longer than its Content-Length, or over the size limit, makes the upload abort, so
no object and no unfinished multipart upload is left. Each part goes to S3 with a CRC32 checksum,
which S3 checks on arrival; once stored, the object's length and S3's checksum of it (the composite
of the parts' CRC32s, or the sha256 of a body sent in one PUT) are compared with what was read. An
object an earlier attempt left at the key is kept only if it holds the bytes the source serves.
Redirects are followed by hand, each hop checked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import re
import socket
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from msgspec.structs import replace

from .errors import MediaRejected, MediaTransferError
from .models import MediaRef, StoredMedia, media_type
from .ranged import BodyEnd, RangedCopier, RangedCopy, part_size_for, wants_ranges
from .service_errors import MEDIA_READ_ERRORS, S3, aws_error, media_read_error, media_refusal, media_request_error

if TYPE_CHECKING:
    from .idempotency import UploadRecords

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
READ_SIZE = 1 * MiB
#: (connect, read): a trickle that stops for 30 s is a broken stream, not a slow one
MEDIA_TIMEOUT = (3.05, 30.0)
MAX_REDIRECTS = 3

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
}
_GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream", ""}
_DEFAULT_EXTENSION = {"image": "png", "video": "mp4"}
#: an extension made of a media subtype (`image/svg+xml`: `svg-xml`): short, and plain in an S3 key
_PLAIN_EXTENSION = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class UrlAllowlist:
    """Matches `scheme://host[:port]` of a URL against patterns (`https://dashscope-result-*.oss-*.aliyuncs.com`)
    where each `*` stands for part of one name label: it never matches a dot, as in a TLS
    certificate's wildcard, so `https://*.aliyuncs.com` matches `oss.aliyuncs.com` but not
    `bucket.oss-cn-beijing.aliyuncs.com`.

    Refused whatever the patterns: URLs with credentials, non-http(s) schemes, and IP literals
    unless a pattern names that exact address (a wildcard never matches an IP). Where a name
    resolves to is checked when the connection is made (public_addresses.py).
    """

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._patterns = tuple(p.lower() for p in patterns)
        self._matchers = tuple(
            re.compile("".join("[a-z0-9-]*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", p)))
            for p in self._patterns
        )

    def check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port
        except ValueError:
            raise MediaRejected("the media URL cannot be parsed", code="UrlNotAllowed") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not host:
            raise MediaRejected(f"the media URL's scheme {scheme!r} is not http(s)", code="UrlNotAllowed")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise MediaRejected("the media URL carries credentials", code="UrlNotAllowed")
        host = host.rstrip(".").lower()
        if not re.fullmatch(r"[a-z0-9.-]{1,253}|[0-9a-f:.]{2,45}", host) or "\\" in parts.netloc:
            # parsers disagree on odd hosts (`evil.example\.aliyuncs.com`): accept plain names only
            raise MediaRejected("the media URL's host is not a plain host name", code="UrlNotAllowed")
        origin = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
        is_ip = _is_ip_literal(host)
        for pattern, matcher in zip(self._patterns, self._matchers, strict=True):
            if is_ip and "*" in pattern.split("://", 1)[-1].split(":", 1)[0]:
                continue
            if matcher.fullmatch(origin):
                return
        raise MediaRejected(f"the media URL's origin {origin} is not in ALLOWED_MEDIA_URLS", code="UrlNotAllowed")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # inet_aton also accepts the short and numeric forms (127.1, 2130706433) that resolvers honour
        try:
            socket.inet_aton(host)
        except OSError:
            return False
        return True
    return True


def extension_for(media_type: str, url: str, kind: str) -> str | None:
    """The object's file extension for a media type (`type/subtype` as `models.media_type` reduces a
    header to); None when the type is not an image or a video. A generic type (application/octet-stream,
    which is also what a header that is no media type reduces to), or an image or video type whose
    subtype makes no plain extension (`image/x_png`), takes the URL's extension when it is a known one,
    else the kind's."""
    if media_type in EXTENSIONS:
        return EXTENSIONS[media_type]
    family, _, subtype = media_type.partition("/")
    if media_type not in _GENERIC_TYPES:
        if family not in ("image", "video"):
            return None
        own = subtype.replace("+", "-").split(".")[-1]
        if _PLAIN_EXTENSION.fullmatch(own):
            return own
    suffix = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    return suffix if suffix in set(EXTENSIONS.values()) else _DEFAULT_EXTENSION[kind]


class _VerifyingReader:
    """A file-like view of the HTTP body that hashes, counts and polices it as s3transfer reads it."""

    def __init__(
        self, response: requests.Response, expected: int | None, limit: int, deadline: float | None,
        body_end: BodyEnd,
    ) -> None:
        self._raw = response.raw
        self._expected = expected
        self._limit = limit
        self._deadline = deadline
        self.size = 0
        self.sha256 = hashlib.sha256()
        #: CRC32 of each read: s3transfer makes one part of each read (threshold == part size), or
        #: stores the one read with a single PUT
        self.part_checksums: list[bytes] = []
        self.checksum_algorithm = "CRC32"
        self._body_end = body_end

    def read(self, amount: int = -1) -> bytes:
        """Up to `amount` bytes, short only at the end: s3transfer makes a part of each read."""
        want = PART_SIZE if amount is None or amount < 0 else amount
        pieces: list[bytes] = []
        got = 0
        while got < want:
            piece = self._read_some(want - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        data = b"".join(pieces)
        if data:
            self.part_checksums.append(zlib.crc32(data).to_bytes(4, "big"))
        return data

    def drain(self) -> None:
        """Reads the body to its end, counted, hashed and policed as `read` does, keeping none of it."""
        while self._read_some(READ_SIZE):
            pass

    def _read_some(self, want: int) -> bytes:
        try:
            # read1: whatever one socket read brings, so a trickle meets the deadline check in time, and
            # never more than the body has left (BodyEnd looks at what follows)
            chunk = self._raw.read1(min(want, READ_SIZE), decode_content=False)
        except MEDIA_READ_ERRORS as exc:
            raise media_read_error(exc, self.size) from None
        if chunk:
            self.size += len(chunk)
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise MediaTransferError(
                    f"the media download is too slow: {self.size} bytes when its time ran out", code="TooSlow"
                )
            if self.size > self._limit:
                raise MediaRejected(f"the media is larger than MAX_MEDIA_BYTES ({self._limit} bytes)",
                                    code="MediaTooLarge")
            if self._expected is not None and self.size > self._expected:
                raise MediaTransferError("the server sent more bytes than its Content-Length",
                                         code="LengthMismatch")
            self.sha256.update(chunk)
            return chunk
        if self._expected is not None and self.size != self._expected:
            raise MediaTransferError(
                f"the media body ended after {self.size} of {self._expected} bytes", code="Truncated"
            )
        if self._expected is not None and self._body_end.overflowed():
            raise MediaTransferError("the server sent more bytes than its Content-Length", code="LengthMismatch")
        return b""



class MediaBucket:
    """The S3 side of a copy: what an earlier attempt left at a key, the single stream's upload, and
    whether what landed is what was read. Every S3 failure meets its typed error in service_errors."""

    def __init__(self, s3: Any, name: str, uploads: UploadRecords | None = None) -> None:
        self.s3 = s3
        self.name = name
        #: where the UploadId of each multipart upload is recorded as S3 hands it out, so that the retry
        #: of a crashed attempt can abort it; None (no idempotency table): nothing to abort on a retry
        self.uploads = uploads
        if uploads is not None:
            # both paths (s3transfer's and ranged.py's) create their uploads through this client
            s3.meta.events.register("after-call.s3.CreateMultipartUpload", self._record_upload,
                                    unique_id=f"wan-relay-uploads-{id(self)}")

    def landed_earlier(self, key: str, task_id: str, ref: MediaRef, expected: int | None,
                       content_type: str) -> StoredMedia | None:
        """The object an earlier attempt of this task completed, then died before recording it, with its
        sha256 read back from S3; whether it holds the source's bytes is `MediaStreamer.store`'s question.

        Keys are per task and item, and S3 makes a multipart object visible only once it is complete,
        with every part checked against its checksum; the length is checked against the source's. Any
        answer but a match (404, or 403 when the role may not list the bucket) means: not there."""
        try:
            head = self.s3.head_object(Bucket=self.name, Key=key)
        except ClientError:
            return None
        if head.get("Metadata", {}).get("task-id") != task_id:
            return None
        size = head.get("ContentLength")
        if expected is not None and size != expected:
            return None
        digest = hashlib.sha256()
        read = 0
        try:
            body = self.s3.get_object(Bucket=self.name, Key=key, IfMatch=head["ETag"])["Body"]
            for chunk in iter(lambda: body.read(PART_SIZE), b""):
                digest.update(chunk)
                read += len(chunk)
        except ClientError as exc:
            raise self.error(exc) from None
        except (BotoCoreError, *MEDIA_READ_ERRORS) as exc:
            raise MediaTransferError(f"could not read back s3://{self.name}/{key}: {type(exc).__name__}",
                                     code="ReadBack") from None
        if read != size:
            raise MediaTransferError(f"s3://{self.name}/{key} read back {read} of {size} bytes", code="ReadBack")
        return StoredMedia(
            index=ref.index, type=ref.type, bucket=self.name, key=key, s3_uri=f"s3://{self.name}/{key}",
            size_bytes=read, content_type=head.get("ContentType") or content_type, sha256=digest.hexdigest(),
            source_expires_at=ref.expires_at,
        )

    def abort_stale_uploads(self, item: str) -> None:
        """A crashed attempt cannot abort its multipart upload: the retry does, by the key and UploadId
        that attempt recorded for the item (`{prefix}{task_id}/{index}`), before it asks the source (which
        may no longer answer) and starts anew. No listing: ListMultipartUploads is bucket-wide, and
        `s3:prefix` is not a condition key of s3:ListBucketMultipartUploads, so a role cannot be given it
        for one prefix."""
        if self.uploads is None:
            return
        pending = self.uploads.pending(self.name, item)
        if pending is None:
            return
        key, upload_id = pending
        try:
            self.s3.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)
        except ClientError as exc:
            # NoSuchUpload: that upload completed (the object was then deleted as not what was read, or is
            # the item an earlier attempt stored) or was aborted already; either way nothing is left of it
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self.error(exc) from None
        self.uploads.forget(self.name, item)

    def _record_upload(self, parsed: dict[str, Any], **_: Any) -> None:
        """botocore's after-call hook of CreateMultipartUpload: record the new UploadId before any part
        is sent. If it cannot be recorded, abort the upload here (its creator never learns its id)."""
        upload_id, key = parsed.get("UploadId"), parsed.get("Key")
        if not upload_id or not key or parsed.get("Bucket", self.name) != self.name or self.uploads is None:
            return
        try:
            self.uploads.record(self.name, key, upload_id)
        except Exception:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.s3.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)
            raise

    def upload_stream(self, reader: _VerifyingReader, key: str, content_type: str, metadata: dict[str, str],
                      expected: int | None, concurrency: int) -> None:
        part = PART_SIZE if expected is None else part_size_for(expected)
        config = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=concurrency,
            max_io_queue=concurrency,
        )
        # s3transfer's own knob (boto3 does not take it as an argument): parts read ahead of the
        # uploads. Two keep the uploads fed (reading a part is faster than sending it) and bound the
        # memory, with the parts in flight, to a few parts whatever the size (measured: 4 gave +68 MiB
        # at 1 GiB, 2 gives about +45 MiB at the same speed)
        config.max_in_memory_upload_chunks = 2
        extra = {
            "ContentType": content_type,
            "ChecksumAlgorithm": "CRC32",
            "Metadata": metadata,
        }
        try:
            self.s3.upload_fileobj(reader, self.name, key, ExtraArgs=extra, Config=config)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc) from None

    def verify_landed(self, key: str, size: int, sha256: bytes, algorithm: str, part_checksums: list[bytes]) -> None:
        """What S3 holds is what was read: its length, and its checksum, `algorithm` (SHA256 or CRC32):
        S3's composite of the parts' checksums for a multipart upload, the whole body's for a single
        PUT (a body's sha256, or the CRC32 of its one read). A mismatch deletes it."""
        try:
            head = self.s3.head_object(Bucket=self.name, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            raise self.error(exc) from None
        problem = None
        if head.get("ContentLength") != size:
            problem = f"holds {head.get('ContentLength')} bytes, {size} were read"
        stored = (head.get(f"Checksum{algorithm}") or "").split("-", 1)[0]
        if problem is None and stored:
            expected = {_b64(_composite(algorithm, part_checksums))} if part_checksums else set()
            if algorithm == "SHA256":
                expected.add(_b64(sha256))
            elif len(part_checksums) == 1:
                expected.add(_b64(part_checksums[0]))
            if stored not in expected:
                label = {"SHA256": "SHA-256"}.get(algorithm, algorithm)
                problem = f"has a {label} checksum that differs from the bytes read"
        if problem is not None:
            self.discard(key)
            raise MediaTransferError(f"s3://{self.name}/{key} {problem}", code="ChecksumMismatch")

    def discard(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc) from None

    def error(self, exc: ClientError | BotoCoreError) -> Exception:
        return aws_error(exc, S3, f"the upload to bucket {self.name}")


@dataclass
class MediaStreamer:
    """Copies media items from their presigned URLs into `s3://bucket/{prefix}{task_id}/{index}.{ext}`."""

    s3: Any
    session: requests.Session
    bucket: str
    prefix: str
    max_bytes: int
    allowlist: UrlAllowlist
    timeout: tuple[float, float] = MEDIA_TIMEOUT
    max_concurrency: int = 4
    #: the UploadId ledger (see MediaBucket.uploads)
    uploads: UploadRecords | None = None

    def __post_init__(self) -> None:
        self._bucket = MediaBucket(self.s3, self.bucket, self.uploads)

    def store(self, task_id: str, ref: MediaRef, deadline: float | None = None) -> StoredMedia:
        """Streams one item; `deadline` (time.monotonic()) ends a trickle before Lambda's own timeout."""
        self._bucket.abort_stale_uploads(f"{self.prefix}{task_id}/{ref.index}")
        try:
            response = self._open(ref.url)
        except (MediaRejected, MediaTransferError):
            # the source cannot be read (any more): an earlier attempt of this task may have completed the
            # item's object and died before recording it; then that is what the task has in S3
            from .landed import landed_item

            landed = landed_item(self.s3, self.bucket, self.prefix, task_id, ref.index)
            if landed is None:
                raise
            return replace(landed, type=ref.type, source_expires_at=ref.expires_at)
        with response:
            expected = _content_length(response)
            if expected == 0:
                raise MediaRejected("the media URL answered an empty body", code="EmptyMedia")
            if expected is not None and expected > self.max_bytes:
                raise MediaRejected(
                    f"the media is {expected} bytes, over MAX_MEDIA_BYTES ({self.max_bytes})", code="MediaTooLarge"
                )
            header = response.headers.get("Content-Type", "application/octet-stream")
            # the object and the event carry the media type, not the host's parameters (unbounded); a
            # header that is no media type reads as application/octet-stream, typed by the URL or the kind
            content_type = media_type(header)
            extension = extension_for(content_type, ref.url, ref.type)
            if extension is None:
                raise MediaRejected(f"the media URL answered {header[:80]!r}, not an image or video",
                                    code="UnexpectedContentType")
            if content_type in _GENERIC_TYPES:
                content_type = f"{ref.type}/{'jpeg' if extension == 'jpg' else extension}"
            key = f"{self.prefix}{task_id}/{ref.index}.{extension}"
            landed = self._bucket.landed_earlier(key, task_id, ref, expected, content_type)
            if landed is not None:
                return self._kept_if_same(landed, response, expected, deadline)
            copied = self._copy(response, expected, key, content_type, {"task-id": task_id, "index": str(ref.index)},
                                deadline)
            if copied.size == 0:  # a body without a length that came to nothing
                self._bucket.discard(key)
                raise MediaRejected("the media URL answered an empty body", code="EmptyMedia")
            self._bucket.verify_landed(key, copied.size, copied.sha256.digest(), copied.checksum_algorithm,
                                       copied.part_checksums)
        return StoredMedia(
            index=ref.index,
            type=ref.type,
            bucket=self.bucket,
            key=key,
            s3_uri=f"s3://{self.bucket}/{key}",
            size_bytes=copied.size,
            content_type=content_type,
            sha256=copied.sha256.hexdigest(),
            source_expires_at=ref.expires_at,
        )

    def _kept_if_same(self, landed: StoredMedia, response: requests.Response, expected: int | None,
                      deadline: float | None) -> StoredMedia:
        """An object an earlier attempt completed is the item only if it holds the bytes the source serves.

        S3 stores an object only once its bytes match the checksums they were sent with, so an object
        never differs from its own checksum: what verify_landed catches, S3 holding other bytes than were
        read, shows only against the source. An attempt killed between that finding and the delete leaves
        such an object, with the task's metadata and the right length, for this retry. So the source is
        read to its end and the two sha256s compared: the same, the object is kept (no second version);
        different, it is deleted and the item fails as `ChecksumMismatch`, its next try uploading anew. A
        source that cannot be read to its end now (broken off, or too slow for the poll's time: this read
        is one stream, where the first copy may have taken ranges in parallel, and every poll would start
        it anew) is one that cannot be read: the object is kept as S3 holds it, as when the source cannot
        be opened (landed.landed_item)."""
        with BodyEnd(response) as body_end:
            source = _VerifyingReader(response, expected, self.max_bytes, deadline, body_end)
            try:
                source.drain()
            except MediaTransferError:
                return landed
            except MediaRejected:
                pass  # more than MAX_MEDIA_BYTES: not the object, which was within it
            else:
                if source.size == landed.size_bytes and source.sha256.hexdigest() == landed.sha256:
                    return landed
        self._bucket.discard(landed.key)
        raise MediaTransferError(f"{landed.s3_uri}, stored by an earlier attempt, holds other bytes than the "
                                 "media URL serves", code="ChecksumMismatch")

    def _copy(self, response: requests.Response, expected: int | None, key: str, content_type: str,
              metadata: dict[str, str], deadline: float | None) -> RangedCopy | _VerifyingReader:
        """The body of `response` into `key`, by the strategy its answer calls for, picked once: byte
        ranges (ranged.py) when the host serves them and the body is over a part, else one stream
        (s3transfer from the verifying reader). A host whose first range is answered with the whole
        body does not serve ranges after all: nothing was read, so the body goes as one stream."""
        if wants_ranges(response, expected):
            assert expected is not None
            copied = RangedCopier(
                s3=self.s3, session=self.session, first=response, size=expected, bucket=self.bucket, key=key,
                create_args={"ContentType": content_type, "Metadata": metadata}, concurrency=self.max_concurrency,
                timeout=self.timeout, deadline=deadline,
            ).run()
            if copied is not None:
                return copied
        with BodyEnd(response) as body_end:
            reader = _VerifyingReader(response, expected, self.max_bytes, deadline, body_end)
            self._bucket.upload_stream(reader, key, content_type, metadata, expected, self.max_concurrency)
        return reader

    def _open(self, url: str) -> requests.Response:
        """The 200 answer for `url`, redirects followed by hand, each hop checked against the allowlist
        (and, by the session, each connection against the public addresses)."""
        for _hop in range(MAX_REDIRECTS + 1):
            self.allowlist.check(url)
            try:
                response = self.session.get(
                    url, stream=True, timeout=self.timeout, allow_redirects=False,
                    headers={"Accept-Encoding": "identity"},
                )
            except requests.RequestException as exc:
                raise media_request_error(exc) from None
            if response.is_redirect:
                location = response.headers.get("Location", "")
                response.close()
                url = urljoin(url, location)
                continue
            if response.status_code == 200:
                return response
            with response:
                raise media_refusal(response)
        raise MediaRejected(f"the media URL redirected more than {MAX_REDIRECTS} times", code="TooManyRedirects")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _composite(algorithm: str, part_checksums: list[bytes]) -> bytes:
    """S3's checksum of a multipart object: the checksum of its parts' checksums, concatenated."""
    joined = b"".join(part_checksums)
    return hashlib.sha256(joined).digest() if algorithm == "SHA256" else zlib.crc32(joined).to_bytes(4, "big")


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        length = int(value)
    except ValueError:
        raise MediaTransferError("the media host sent an invalid Content-Length", code="LengthMismatch") from None
    if length < 0:
        raise MediaTransferError("the media host sent an invalid Content-Length", code="LengthMismatch")
    return length
