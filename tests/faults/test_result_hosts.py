"""The default media allowlist: every host DashScope's documentation shows results on, and none of the
names that only look like one."""

from __future__ import annotations

import pytest
from wan_relay.config import Config
from wan_relay.errors import MediaRejected
from wan_relay.ingest import UrlAllowlist


def default_allowlist() -> UrlAllowlist:
    return UrlAllowlist(Config.from_env({"DASHSCOPE_API_KEY": "k", "MEDIA_BUCKET": "b"}).allowed_media_urls)


@pytest.mark.parametrize("url", [
    # the Beijing video models' task answers (HappyHorse i2v / r2v: `output.video_url`)
    "https://dashscope-result.oss-cn-beijing.aliyuncs.com/xxxx.mp4",
    "https://dashscope-result.oss-cn-beijing.aliyuncs.com/1d/a.mp4?Expires=1790300000&Signature=x",
    "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1d/a.png",
])
def test_dashscopes_result_buckets_pass_the_default_allowlist(url):
    default_allowlist().check(url)


@pytest.mark.parametrize("url", [
    "https://dashscope-result.oss-cn-beijing.aliyuncs.com.evil.com/a.mp4",
    "https://dashscope-resultevil.com/a.mp4",
    "https://dashscope-result.evil.com/a.mp4",
    "https://dashscope-result.oss-cn-beijing.evil.aliyuncs.com/a.mp4",  # a * never spans a dot
    "https://evil.dashscope-result.oss-cn-beijing.aliyuncs.com/a.mp4",
    "https://dashscope-result.oss-cn-beijing.aliyuncs.com@evil.com/a.mp4",
    "https://dashscope-result.oss-cn-beijing.aliyuncs.com:8443/a.mp4",
    "http://dashscope-result.oss-cn-beijing.aliyuncs.com/a.mp4",
    "https://dashscope-result.aliyuncs.com/a.mp4",  # not an OSS host
    "https://dashscope-results.oss.aliyuncs.com/a.mp4",  # `oss-*`: a region's endpoint, not OSS's own name
])
def test_names_that_only_look_like_a_result_bucket_are_refused(url):
    with pytest.raises(MediaRejected) as raised:
        default_allowlist().check(url)
    assert raised.value.code == "UrlNotAllowed"
