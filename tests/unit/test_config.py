"""Configuration from the environment: defaults as documented, and a clear failure naming the variable."""

from __future__ import annotations

import pytest
from wan_relay.config import Config
from wan_relay.errors import ConfigurationError
from wan_relay.runtime import api_key_from_secret_string

BASE = {"DASHSCOPE_API_KEY": "sk-x", "MEDIA_BUCKET": "media"}


def test_defaults_are_the_documented_ones():
    config = Config.from_env(BASE)
    assert config.base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert config.media_prefix == "wan/" and config.event_bus_name == "default" and config.event_source == "wan.relay"
    assert config.allowed_media_urls == (
        "https://dashscope-result*.oss-*.aliyuncs.com", "https://dashscope-*.oss-accelerate.aliyuncs.com")
    assert config.max_media_bytes == 1024**3
    assert config.idempotency_table is None
    assert config.allow_loopback_media is False


def test_a_deployed_function_has_the_narrow_allowlist_and_never_loopback_media():
    from wan_relay_local.stack import Template

    template = Template(parameters={
        "DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf"})
    template.refs.update({"MediaBucket": "media", "IdempotencyTable": "table", "ParkedTasksTable": "parked",
                          "SweeperFunction": "sweeper"})
    config = Config.from_env(template.function_environment("PollTaskFunction"))
    assert config.allowed_media_urls == Config.from_env(BASE).allowed_media_urls
    assert config.allow_loopback_media is False
    # and it parks, with the account's budget a little under DashScope's 20 a second
    assert (config.waiting, config.parked_table, config.query_budget) == ("park", "parked", 19)
    assert config.list_page_size == 100  # the page size the integration test checks DashScope serves


@pytest.mark.parametrize("environment", [
    {"WAITING": "sometimes"}, {"WAITING": "park"}, {"WAITING": "park", "IDEMPOTENCY_TABLE": "t"},
    {"DASHSCOPE_QUERY_BUDGET": "0"}, {"DASHSCOPE_QUERY_BUDGET": "21"}, {"DASHSCOPE_ACCOUNT": "main account"},
    {"DASHSCOPE_LIST_PAGE_SIZE": "9"}, {"DASHSCOPE_LIST_PAGE_SIZE": "1001"},
])
def test_fleet_settings_out_of_range_are_refused_by_name(environment):
    with pytest.raises(ConfigurationError) as caught:
        Config.from_env({**BASE, **environment})
    assert any(name in str(caught.value) for name in environment)


@pytest.mark.parametrize(("value", "allowed"), [("true", True), ("TRUE", True), ("false", False), ("", False)])
def test_loopback_media_is_allowed_only_when_asked_for(value, allowed):
    assert Config.from_env({**BASE, "ALLOW_LOOPBACK_MEDIA_ADDRESSES": value}).allow_loopback_media is allowed


def test_values_are_read_and_cleaned():
    config = Config.from_env({
        **BASE, "DASHSCOPE_BASE_URL": "https://dashscope-us.aliyuncs.com/api/v1/", "MEDIA_PREFIX": "media/wan/",
        "ALLOWED_MEDIA_URLS": " https://*.aliyuncs.com , HTTP://127.0.0.1:9000 ,", "MAX_MEDIA_BYTES": "2048",
        "EVENT_BUS_NAME": "pipelines", "EVENT_SOURCE": "acme.relay", "IDEMPOTENCY_TABLE": "t",
    })
    assert config.base_url == "https://dashscope-us.aliyuncs.com/api/v1"
    assert config.allowed_media_urls == ("https://*.aliyuncs.com", "http://127.0.0.1:9000")
    assert (config.max_media_bytes, config.event_bus_name, config.event_source) == (2048, "pipelines", "acme.relay")


@pytest.mark.parametrize(("env", "variable"), [
    ({"MEDIA_BUCKET": "media"}, "DASHSCOPE_API_KEY"),
    ({"DASHSCOPE_API_KEY": "sk-x"}, "MEDIA_BUCKET"),
    ({**BASE, "MAX_MEDIA_BYTES": "1GB"}, "MAX_MEDIA_BYTES"),
    ({**BASE, "MAX_MEDIA_BYTES": "0"}, "MAX_MEDIA_BYTES"),
    ({**BASE, "DASHSCOPE_BASE_URL": "dashscope-intl.aliyuncs.com"}, "DASHSCOPE_BASE_URL"),
    ({**BASE, "DASHSCOPE_BASE_URL": "ftp://dashscope.aliyuncs.com"}, "DASHSCOPE_BASE_URL"),
    ({**BASE, "ALLOWED_MEDIA_URLS": "*.aliyuncs.com"}, "ALLOWED_MEDIA_URLS"),
    ({**BASE, "MEDIA_PREFIX": "../other/"}, "MEDIA_PREFIX"),
    ({**BASE, "MEDIA_PREFIX": "/abs/"}, "MEDIA_PREFIX"),
    ({**BASE, "ALLOW_LOOPBACK_MEDIA_ADDRESSES": "yes please"}, "ALLOW_LOOPBACK_MEDIA_ADDRESSES"),
    ({**BASE, "EVENT_SOURCE": "aws.media"}, "EVENT_SOURCE"),  # PutEvents refuses it for every entry
    ({**BASE, "EVENT_SOURCE": "AWS.media"}, "EVENT_SOURCE"),
    ({**BASE, "EVENT_SOURCE": "wan relay"}, "EVENT_SOURCE"),
])
def test_missing_or_invalid_configuration_fails_fast_naming_the_variable(env, variable):
    with pytest.raises(ConfigurationError, match=variable):
        Config.from_env(env)


def test_the_media_prefix_is_capped_in_bytes_of_utf8_not_in_characters():
    """S3 keys are at most 1,024 bytes of UTF-8; the prefix gets 512 of them. 256 characters of two bytes
    each and a slash fit in characters (257) but not in bytes (513)."""
    exactly = "\u00e9" * 255 + "a/"  # 512 bytes
    assert Config.from_env({**BASE, "MEDIA_PREFIX": exactly}).media_prefix == exactly
    over = "\u00e9" * 256 + "/"
    with pytest.raises(ConfigurationError, match=r"MEDIA_PREFIX must be at most 512 bytes of UTF-8 .*, not 513"):
        Config.from_env({**BASE, "MEDIA_PREFIX": over})
    with pytest.raises(ConfigurationError, match="MEDIA_PREFIX must be UTF-8"):  # os.environ's undecodable bytes
        Config.from_env({**BASE, "MEDIA_PREFIX": "wan\udcff/"})


def test_the_plain_key_never_shows_in_the_configuration_repr():
    config = Config.from_env({**BASE, "DASHSCOPE_API_KEY": "sk-very-secret-value"})
    assert "sk-very-secret-value" not in repr(config) and "sk-very-secret-value" not in str(config)


@pytest.mark.parametrize(("secret", "key"), [
    ("sk-plain", "sk-plain"), (" sk-plain\n", "sk-plain"), ('{"DASHSCOPE_API_KEY": "sk-json"}', "sk-json"),
    ('{"api_key": "sk-json2", "note": "x"}', "sk-json2"),
])
def test_the_secret_holds_the_key_as_text_or_json(secret, key):
    assert api_key_from_secret_string(secret) == key


@pytest.mark.parametrize("secret", ["", "{not json", '{"other": "x"}'])
def test_an_unusable_secret_is_a_configuration_error(secret):
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY_SECRET"):
        api_key_from_secret_string(secret)


def test_the_handler_fails_by_name_when_configuration_is_missing(monkeypatch):
    from wan_relay_local.lambda_bridge import FUNCTIONS, FakeContext, load_handler

    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_API_KEY_SECRET", "MEDIA_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    handler = load_handler(FUNCTIONS / "poll_task")
    context = FakeContext(function_name="poll", invoked_function_arn="arn:aws:lambda:us-east-1:1:function:poll")
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY_SECRET"):
        handler({"task_id": "abc"}, context)


def test_the_runtimes_aws_sdk_is_checked_and_named(monkeypatch):
    """The layer ships no SDK: the Lambda runtime's own is used, and AWS may update it under the stack.
    Below the floor the function fails by name at its first call, saying what to do; above it, the
    versions are there to be logged."""
    import botocore
    from wan_relay.errors import ConfigurationError
    from wan_relay.runtime import MIN_BOTOCORE, check_sdk

    assert check_sdk()["botocore"] == botocore.__version__
    monkeypatch.setattr(botocore, "__version__", "1.34.31")
    assert MIN_BOTOCORE > (1, 34, 31)
    with pytest.raises(ConfigurationError, match=r"botocore is 1\.34\.31; wan-relay needs 1\.34\.32 or later"):
        check_sdk()
