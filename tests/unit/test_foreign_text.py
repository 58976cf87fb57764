"""foreign_text.sanitized: what makes another party's text fit to be repeated in events and errors."""

from __future__ import annotations

import pytest
from wan_relay.foreign_text import sanitized


@pytest.mark.parametrize(("text", "expected"), [
    ("Request has expired.", "Request has expired."),
    ("line one\nline two\r\n\tthree", "line one line two three"),
    ("red\x1b[31m alert\x07", "red [31m alert"),
    ("file \u202egnp.exe and \u200bhidden", "file gnp.exe and hidden"),
    ("see https://b.oss-cn-beijing.aliyuncs.com/k.png?Expires=1&Signature=s3cr3t now",
     "see https://b.oss-cn-beijing.aliyuncs.com/k.png?<redacted> now"),
    ("https://host/path#frag", "https://host/path?<redacted>"),
    ("https://host/plain/path.png", "https://host/plain/path.png"),
    ("StringToSign Signature=abc%2B OSSAccessKeyId=LTAI5t x-amz-security-token=tok",
     "StringToSign Signature=<redacted> OSSAccessKeyId=<redacted> x-amz-security-token=<redacted>"),
    ("header was Bearer sk-0123456789", "header was Bearer <redacted>"),
])
def test_text_is_one_printable_line_without_credentials(text, expected):
    assert sanitized(text) == expected


def test_long_text_is_cut_to_the_limit_and_says_so():
    cut = sanitized("word " * 1000, limit=100)
    assert len(cut) <= 100 and cut.endswith(" [truncated]")
    assert sanitized("short", limit=100) == "short"
