"""Text the relay repeats from another party's answer (DashScope's error and failure messages, OSS's
XML error body) into its errors and events: bounded in length, one line of printable characters,
and without what a URL's query string carries (a presigned URL's query string is a credential)."""

from __future__ import annotations

import re
import unicodedata

#: a message longer than this is cut: enough for any real error message, too little to smuggle a payload
MESSAGE_CHARS = 500
#: error codes are short identifiers (`InvalidApiKey`, `Throttling.RateQuota`, `AccessDenied`)
CODE_CHARS = 100

_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://[^\s\"'<>?#]*)([?#][^\s\"'<>]*)?")
_CREDENTIAL = re.compile(
    r"(?i)\b(signature|ossaccesskeyid|accesskeyid|access_token|security-token|"
    r"x-(?:amz|oss)-(?:signature|credential|security-token))=[^\s&\"'<>]+"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"'<>]+")
#: control, format (bidirectional overrides, zero-width), line and paragraph separator characters
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def sanitized(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` fit to be repeated: URLs without their query string, no credentials, no control or
    invisible characters (a newline cannot forge a log line, a bidi override cannot hide a word),
    whitespace collapsed, at most `limit` characters."""
    text = _URL.sub(lambda m: m.group(1) + ("?<redacted>" if m.group(2) else ""), text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    text = _BEARER.sub("Bearer <redacted>", text)
    text = "".join(" " if unicodedata.category(c) in _INVISIBLE else c for c in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: max(0, limit - 12)].rstrip() + " [truncated]"
    return text
