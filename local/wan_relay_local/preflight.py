"""Setup mistakes found before a task is started, each said in one line that names what to fix: an
output folder that cannot be written, a DashScope that cannot be reached, no AWS region, no usable
AWS credentials. In the deployed stack the relay retries an unreachable DashScope (a network blip
there is not a setup mistake); on a person's machine a wrong URL should not take minutes to show.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: how long the DashScope check waits for a connection
CONNECT_TIMEOUT_SECONDS = 5.0


class UsageError(Exception):
    """A usage or configuration problem: printed as one line, exit code 2."""


def writable_folder(path: Path, option: str = "--out") -> None:
    """Creates the folder if needed and checks a file can be written in it."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to {option} {path}: {exc.strerror or exc}") from None


def _why_unreachable(exc: BaseException) -> str:
    """The root cause of a failed connection, in words: requests wraps urllib3's error, which wraps
    the socket's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "unknown host name"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        nested = getattr(seen, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(nested, BaseException):
            nested = next((a for a in seen.args if isinstance(a, BaseException)), None)
        seen = nested or seen.__cause__ or seen.__context__
    return "the connection failed"


def dashscope_reachable(base_url: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Any HTTP answer from the host of `base_url` will do (the key is not sent); no answer, a
    refused connection, an unknown name or a failed TLS handshake is a setup error naming the host."""
    import requests

    host = urlsplit(base_url).netloc
    where = f"cannot reach DashScope at {host} (DASHSCOPE_BASE_URL)"
    try:
        requests.head(base_url, timeout=timeout, allow_redirects=False).close()
    except requests.exceptions.ProxyError as exc:
        # the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) refused or failed, not DashScope
        proxy = requests.utils.select_proxy(base_url, requests.utils.get_environ_proxies(base_url)) or ""
        parts = urlsplit(requests.utils.prepend_scheme_if_needed(proxy, "http")) if proxy else None
        # its host and port only: a proxy URL may carry a user and password
        named = f"{parts.hostname}:{parts.port}" if parts and parts.hostname and parts.port else (
            parts.hostname if parts and parts.hostname else "")
        raise UsageError(f"{where}: the proxy {named or '(unnamed)'} (HTTPS_PROXY / HTTP_PROXY) failed: "
                         f"{_why_unreachable(exc)}") from None
    except requests.exceptions.ConnectTimeout:
        raise UsageError(f"{where}: no connection within {timeout:.0f} s") from None
    except requests.exceptions.SSLError as exc:
        raise UsageError(f"{where}: the TLS handshake failed ({_why_unreachable(exc)})") from None
    except requests.exceptions.ConnectionError as exc:
        raise UsageError(f"{where}: {_why_unreachable(exc)}") from None
    except requests.exceptions.RequestException:
        return  # it accepted the connection (a slow or odd answer is the relay's to handle)


def aws_region() -> str:
    """The AWS region, honouring AWS_REGION as the AWS CLI and the other SDKs do (before
    AWS_DEFAULT_REGION): boto3 itself reads only AWS_DEFAULT_REGION and the profile's region."""
    import boto3
    from botocore.exceptions import BotoCoreError

    region = os.environ.get("AWS_REGION", "").strip()
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    try:
        name = boto3.session.Session().region_name
    except BotoCoreError as exc:  # a profile that does not exist...
        raise UsageError(f"AWS: {exc}") from None
    if not name:
        raise UsageError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    return name


def aws_account() -> str:
    """The account the credentials belong to, asked of STS (which needs no permission): missing,
    expired or refused credentials are found before the first poll, not after it."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.session.Session()
        if session.get_credentials() is None:
            raise UsageError("no AWS credentials: set AWS_PROFILE (and run `aws sso login` if it uses SSO), "
                             "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        identity: dict[str, Any] = session.client("sts").get_caller_identity()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise UsageError(f"AWS refused the credentials: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise UsageError(f"AWS: {exc}") from None
    return str(identity["Account"])
