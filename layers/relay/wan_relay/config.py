"""Configuration from the environment, typed once and failing fast with the variable's name.

`Config` is the model: each variable is one typed line with its constraint, named as the environment
names it; `Config.from_env` only trims the values (an empty one is an unset one) and splits the list.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from typing import Annotated

import msgspec
from msgspec import Meta, field

from .errors import ConfigurationError
from .models import DEFAULT_EVENT_SOURCE

DEFAULT_BASE_URL = "https://dashscope-intl.aliyuncs.com/api/v1"
#: DashScope's result buckets (`dashscope-result-sg.oss-ap-southeast-1.aliyuncs.com`, `-bj`, `-sh`, `-wlcb`...,
#: and `dashscope-result.oss-cn-beijing.aliyuncs.com`, in the Beijing video models' answers)
#: in their region or through OSS transfer acceleration, and its other `dashscope-*` buckets through
#: acceleration (`dashscope-463f.oss-accelerate.aliyuncs.com`, in the API reference's example): not any
#: tenant's bucket, not Alibaba's other services
DEFAULT_ALLOWED_MEDIA_URLS = "https://dashscope-result*.oss-*.aliyuncs.com,https://dashscope-*.oss-accelerate.aliyuncs.com"
DEFAULT_MAX_MEDIA_BYTES = 1024**3


#: an http(s) URL with a host
_HTTP_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+(/\S*)?$"
#: a relative key prefix without `..` segments (an empty one puts the media at the bucket's root)
_KEY_PREFIX = r"^(?!/)(?!(?:.*/)?\.\.(?:/|$))"
#: `scheme://host[:port]`, with `*` for part of a name label (ingest.UrlAllowlist)
_ORIGIN_PATTERN = r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$"


#: an S3 key is at most 1,024 bytes of UTF-8: the prefix, then `<task_id>/<index>.<ext>` (at most
#: 128 + 1 + 2 + 5, all ASCII). The template's MaxLength counts characters, but its pattern is ASCII.
MAX_MEDIA_PREFIX_BYTES = 512

class Config(msgspec.Struct, frozen=True, kw_only=True):
    base_url: Annotated[str, Meta(pattern=_HTTP_URL, description="must be an http(s) URL such as " + DEFAULT_BASE_URL)
                        ] = field(default=DEFAULT_BASE_URL, name="DASHSCOPE_BASE_URL")
    media_bucket: str = field(default="", name="MEDIA_BUCKET")  # required: checked after the key
    #: one of the two: a Secrets Manager name or ARN (the stack), or the plain key (local runs)
    api_key_secret: str | None = field(default=None, name="DASHSCOPE_API_KEY_SECRET")
    api_key: str | None = field(default=None, name="DASHSCOPE_API_KEY")
    #: at most MAX_MEDIA_PREFIX_BYTES of UTF-8: checked in __post_init__
    media_prefix: Annotated[str, Meta(pattern=_KEY_PREFIX,
                                      description="must be a relative key prefix (no leading /, no .. segment)")
                            ] = field(default="wan/", name="MEDIA_PREFIX")
    #: `wan-relay run --aws` only: in the stack the workflow puts the event
    event_bus_name: str = field(default="default", name="EVENT_BUS_NAME")
    #: EventBridge reserves `aws.` for AWS services and refuses it in PutEvents (the template's EventSource
    #: pattern is the same)
    event_source: Annotated[str, Meta(pattern=r"^(?![Aa][Ww][Ss]\.)[A-Za-z0-9._-]{1,256}\Z",
                                      description="must be 1 to 256 letters, digits, '.', '_' or '-', "
                                                  "not starting with aws. (EventBridge reserves it)")
                            ] = field(default=DEFAULT_EVENT_SOURCE, name="EVENT_SOURCE")
    allowed_media_urls: Annotated[
        tuple[Annotated[str, Meta(pattern=_ORIGIN_PATTERN)], ...],
        Meta(description="entries must look like scheme://host[:port], e.g. https://dashscope-result-*.oss-*.aliyuncs.com"),
    ] = field(default=tuple(DEFAULT_ALLOWED_MEDIA_URLS.split(",")), name="ALLOWED_MEDIA_URLS")
    max_media_bytes: Annotated[int, Meta(gt=0, description="must be a positive whole number of bytes")] = field(
        default=DEFAULT_MAX_MEDIA_BYTES, name="MAX_MEDIA_BYTES")
    idempotency_table: str | None = field(default=None, name="IDEMPOTENCY_TABLE")
    #: the fleet (docs/fleet.md): "park" (a waiting workflow parks on a task token and the sweeper resumes
    #: it) or "poll" (each workflow polls on its own, the fallback's loop)
    waiting: Annotated[str, Meta(pattern=r"^(park|poll)\Z", description="must be park or poll")] = field(
        default="poll", name="WAITING")
    #: the table of parked workflows (partition key `account`, sort key `parked`); required to park
    parked_table: str | None = field(default=None, name="PARKED_TABLE")
    #: the account's DashScope query budget, queries a second for the whole fleet (DashScope allows 20)
    query_budget: Annotated[int, Meta(ge=1, le=20, description="must be a whole number of queries a second, 1 to 20")
                            ] = field(default=19, name="DASHSCOPE_QUERY_BUDGET")
    #: the key of the budget, the registry and the sweeper: one per Alibaba Cloud account
    account: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}\Z",
                                 description="must be 1 to 64 letters, digits, '.', '_' or '-'")] = field(
        default="default", name="DASHSCOPE_ACCOUNT")
    #: the sweeper's function, started (asynchronously) by a park that finds no sweeper running
    sweeper_function: str | None = field(default=None, name="SWEEPER_FUNCTION")
    #: rows a list page of the sweeper asks for: DashScope documents no maximum; 100 is what the
    #: integration test checks (tests/integration/test_list_endpoint.py), a larger page only once it is served
    list_page_size: Annotated[int, Meta(ge=10, le=1000, description="must be a whole number of rows, 10 to 1000")
                              ] = field(default=100, name="DASHSCOPE_LIST_PAGE_SIZE")
    #: a parked workflow not heartbeaten for this long polls on its own (the sweeper beats every third of it)
    park_watchdog_seconds: Annotated[int, Meta(ge=3, le=3600, description="must be 3 to 3600 seconds")] = field(
        default=300, name="PARK_WATCHDOG_SECONDS")
    #: the receiver of DashScope's task-finished notifications: the Secrets Manager secret holding the
    #: token the notifications' header must carry (notifications.py)
    task_finished_token_secret: str | None = field(default=None, name="TASK_FINISHED_TOKEN_SECRET")
    #: local runs and tests only (their DashScope and media are on 127.0.0.1): media may come from loopback
    allow_loopback_media: Annotated[bool, Meta(description="must be true or false")] = field(
        default=False, name="ALLOW_LOOPBACK_MEDIA_ADDRESSES")

    def __post_init__(self) -> None:
        try:
            prefix_bytes = len(self.media_prefix.encode("utf-8"))
        except UnicodeEncodeError:  # bytes the environment did not hold as UTF-8 (os.environ's surrogates)
            raise ValueError("MEDIA_PREFIX must be UTF-8 text: S3 keys are") from None
        if prefix_bytes > MAX_MEDIA_PREFIX_BYTES:
            raise ValueError(f"MEDIA_PREFIX must be at most {MAX_MEDIA_PREFIX_BYTES} bytes of UTF-8 (S3 keys are at "
                             f"most 1,024), not {prefix_bytes}")
        if not self.api_key_secret and not self.api_key:
            raise ValueError("set DASHSCOPE_API_KEY_SECRET (a Secrets Manager name or ARN) or DASHSCOPE_API_KEY")
        if not self.media_bucket:
            raise ValueError("MEDIA_BUCKET is required: the S3 bucket the media is streamed into")
        if self.waiting == "park" and not (self.parked_table and self.idempotency_table):
            raise ValueError(
                "WAITING=park needs PARKED_TABLE (the parked workflows) and IDEMPOTENCY_TABLE (the budget)")

    def __repr__(self) -> str:  # the plain key must never reach a log line through repr()
        fields = {name: getattr(self, name) for name in self.__struct_fields__}
        fields["api_key"] = "<redacted>" if self.api_key else None
        return "Config(" + ", ".join(f"{name}={value!r}" for name, value in fields.items()) + ")"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        names = msgspec.structs.fields(cls)
        values: dict[str, object] = {}
        for spec in names:
            raw = env.get(spec.encode_name)
            if raw is None or (not raw.strip() and spec.encode_name != "MEDIA_PREFIX"):
                continue  # unset: the default
            values[spec.encode_name] = raw.strip() if spec.encode_name != "MEDIA_PREFIX" else raw
        if "DASHSCOPE_BASE_URL" in values:
            values["DASHSCOPE_BASE_URL"] = str(values["DASHSCOPE_BASE_URL"]).rstrip("/")
        if "ALLOWED_MEDIA_URLS" in values:
            values["ALLOWED_MEDIA_URLS"] = [p.strip().lower() for p in str(values["ALLOWED_MEDIA_URLS"]).split(",")
                                            if p.strip()]
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            # names the variable ("Expected `int` >= 1 - at `$.MAX_MEDIA_BYTES`"), never its value; a
            # check of __post_init__ says it in its own words
            raise ConfigurationError(_in_words(str(exc))) from None


def _in_words(message: str) -> str:
    """msgspec's "Expected `int` >= 1 - at `$.MAX_MEDIA_BYTES`" as "MAX_MEDIA_BYTES must be a positive
    whole number of bytes" (the field's description); a check of __post_init__ has its own words."""
    found = re.search(r" - at `\$\.([A-Z_]+)", message)
    if found is None:
        return message
    name = found.group(1)
    hints = typing.get_type_hints(Config, include_extras=True)
    for spec in msgspec.structs.fields(Config):
        if spec.encode_name == name:
            described = [m.description for m in getattr(hints[spec.name], "__metadata__", ()) if m.description]
            if described:
                return f"{name} {described[0]}"
    return f"invalid configuration: {message}"
