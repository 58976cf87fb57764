"""Configuration from the environment, typed once and failing fast with the variable's name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .models import DEFAULT_EVENT_SOURCE

DEFAULT_BASE_URL = "https://dashscope-intl.aliyuncs.com/api/v1"
#: DashScope's result buckets (`dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com`, `-bj`, `-sh`, `-wlcb`...)
#: in their region or through OSS transfer acceleration, and its other `dashscope-*` buckets through
#: acceleration (`dashscope-463f.oss-accelerate.aliyuncs.com`, in the API reference's example): not any
#: tenant's bucket, not Alibaba's other services
DEFAULT_ALLOWED_MEDIA_URLS = "https://dashscope-result-*.oss-*.aliyuncs.com,https://dashscope-*.oss-accelerate.aliyuncs.com"
DEFAULT_MAX_MEDIA_BYTES = 1024**3


@dataclass(frozen=True)
class Config:
    base_url: str
    media_bucket: str
    api_key_secret: str | None = None
    api_key: str | None = None
    media_prefix: str = "wan/"
    event_bus_name: str = "default"
    event_source: str = DEFAULT_EVENT_SOURCE
    allowed_media_urls: tuple[str, ...] = tuple(DEFAULT_ALLOWED_MEDIA_URLS.split(","))
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    idempotency_table: str | None = None
    #: local runs and tests only (their DashScope and media are on 127.0.0.1): media may come from loopback
    allow_loopback_media: bool = False

    def __repr__(self) -> str:  # the plain key must never reach a log line through repr()
        key = "<redacted>" if self.api_key else None
        return (
            f"Config(base_url={self.base_url!r}, media_bucket={self.media_bucket!r}, "
            f"api_key_secret={self.api_key_secret!r}, api_key={key}, media_prefix={self.media_prefix!r}, "
            f"event_bus_name={self.event_bus_name!r}, event_source={self.event_source!r}, "
            f"allowed_media_urls={self.allowed_media_urls!r}, max_media_bytes={self.max_media_bytes}, "
            f"idempotency_table={self.idempotency_table!r}, allow_loopback_media={self.allow_loopback_media})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name, "")
            value = value.strip()
            return value if value else default

        base_url = (get("DASHSCOPE_BASE_URL", DEFAULT_BASE_URL) or "").rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(
                "DASHSCOPE_BASE_URL must be an http(s) URL such as " + DEFAULT_BASE_URL
            )

        api_key_secret = get("DASHSCOPE_API_KEY_SECRET")
        api_key = get("DASHSCOPE_API_KEY")
        if not api_key_secret and not api_key:
            raise ConfigurationError(
                "set DASHSCOPE_API_KEY_SECRET (a Secrets Manager name or ARN) or DASHSCOPE_API_KEY"
            )

        bucket = get("MEDIA_BUCKET")
        if not bucket:
            raise ConfigurationError("MEDIA_BUCKET is required: the S3 bucket the media is streamed into")

        prefix = env.get("MEDIA_PREFIX", "wan/")
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ConfigurationError("MEDIA_PREFIX must be a relative key prefix without '..' segments")

        allowed = tuple(
            p.strip().lower()
            for p in (get("ALLOWED_MEDIA_URLS", DEFAULT_ALLOWED_MEDIA_URLS) or "").split(",")
            if p.strip()
        )
        for pattern in allowed:
            if "://" not in pattern:
                raise ConfigurationError(
                    f"ALLOWED_MEDIA_URLS entry {pattern!r} must look like scheme://host[:port], "
                    "e.g. https://dashscope-result-*.oss-*.aliyuncs.com"
                )

        raw_max = get("MAX_MEDIA_BYTES", str(DEFAULT_MAX_MEDIA_BYTES)) or ""
        try:
            max_media_bytes = int(raw_max)
        except ValueError:
            raise ConfigurationError(f"MAX_MEDIA_BYTES must be a whole number of bytes, not {raw_max!r}") from None
        if max_media_bytes <= 0:
            raise ConfigurationError("MAX_MEDIA_BYTES must be positive")

        loopback = (get("ALLOW_LOOPBACK_MEDIA_ADDRESSES", "false") or "").lower()
        if loopback not in ("true", "false"):
            raise ConfigurationError(f"ALLOW_LOOPBACK_MEDIA_ADDRESSES must be true or false, not {loopback!r}")

        return cls(
            base_url=base_url,
            media_bucket=bucket,
            api_key_secret=api_key_secret,
            api_key=api_key,
            media_prefix=prefix,
            event_bus_name=get("EVENT_BUS_NAME", "default") or "default",
            event_source=get("EVENT_SOURCE", DEFAULT_EVENT_SOURCE) or DEFAULT_EVENT_SOURCE,
            allowed_media_urls=allowed,
            max_media_bytes=max_media_bytes,
            idempotency_table=get("IDEMPOTENCY_TABLE"),
            allow_loopback_media=loopback == "true",
        )
