"""What S3 holds is what was read (`MediaBucket.verify_landed`), checked against the checksums real S3
returns with HEAD's ChecksumMode: a single PUT's SHA-256 of the whole body, a multipart upload's composite
CRC32 (the CRC32 of its parts' CRC32s, with S3's `-N` part count). moto returns no ChecksumSHA256 on HEAD
and the composite without its suffix (the S3 review), so these answers are given here as S3 gives them."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

import pytest
from wan_relay.errors import MediaTransferError
from wan_relay.ingest import MediaBucket

BODY = bytes(range(256)) * 100
PARTS = [BODY[:10_000], BODY[10_000:20_000], BODY[20_000:]]


class S3:
    def __init__(self, head: dict[str, Any]) -> None:
        self.head, self.deleted = head, []

    def head_object(self, **params: Any) -> dict[str, Any]:
        assert params.get("ChecksumMode") == "ENABLED"
        return {"ContentLength": len(BODY), **self.head}

    def delete_object(self, **params: Any) -> None:
        self.deleted.append(params["Key"])


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


COMPOSITE = b64(zlib.crc32(b"".join(crc(p) for p in PARTS)).to_bytes(4, "big"))


@pytest.mark.parametrize("head", [
    {"ChecksumSHA256": b64(hashlib.sha256(BODY).digest())},  # a single PUT of the whole body
    {"ChecksumCRC32": f"{COMPOSITE}-3"},  # a multipart upload, as S3 answers it
    {"ChecksumCRC32": COMPOSITE},  # ... and as moto does
], ids=["put-sha256", "multipart-crc32", "multipart-crc32-without-count"])
def test_what_s3_holds_is_accepted_when_its_checksum_is_that_of_the_bytes_read(head):
    algorithm = "SHA256" if "ChecksumSHA256" in head else "CRC32"
    parts = [] if algorithm == "SHA256" else [crc(p) for p in PARTS]
    s3 = S3(head)
    MediaBucket(s3, "media").verify_landed("wan/t/0.mp4", len(BODY), hashlib.sha256(BODY).digest(), algorithm, parts)
    assert s3.deleted == []


@pytest.mark.parametrize("head", [
    {"ChecksumSHA256": b64(hashlib.sha256(BODY[:-1] + b"x").digest())},
    {"ChecksumCRC32": f"{b64(crc(b'other'))}-3"},
    {"ContentLength": len(BODY) - 1},
], ids=["put-sha256", "multipart-crc32", "length"])
def test_what_s3_holds_is_deleted_when_it_is_not_what_was_read(head):
    algorithm = "SHA256" if "ChecksumSHA256" in head else "CRC32"
    parts = [] if algorithm == "SHA256" else [crc(p) for p in PARTS]
    s3 = S3(head)
    with pytest.raises(MediaTransferError) as raised:
        MediaBucket(s3, "media").verify_landed("wan/t/0.mp4", len(BODY), hashlib.sha256(BODY).digest(), algorithm,
                                               parts)
    assert raised.value.code == "ChecksumMismatch" and s3.deleted == ["wan/t/0.mp4"]
