"""The HTTP session media is fetched with: every connection it opens (first request, each redirect
hop, each byte range) goes to a public address, or is refused before it is opened.

The allowlist (ingest.UrlAllowlist) checks names; a name can still resolve to a loopback, private,
link-local (169.254.169.254: the instance metadata), multicast or reserved address. Here the name
is resolved once per request, every address it resolves to must be global (`ipaddress`' is_global,
IPv4 inside IPv6 included), and the connection goes to the address that was checked: a second
resolution (DNS rebinding) never gets a say. The name stays the Host header, the TLS server name
and the name the certificate must carry.

Public APIs only, the way saleor's requests-hardened pins addresses: requests' HTTPAdapter hooks
`build_connection_pool_key_attributes` (requests >= 2.32.2) and `add_headers`, and urllib3's pool
keywords `server_hostname` and `assert_hostname`. The DashScope API client does not use this
session: it talks to the configured endpoint, not to URLs taken from an answer.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from .errors import MediaRejected

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def why_not_public(address: Address, *, allow_loopback: bool = False) -> str | None:
    """None when the relay may connect to `address`; else what kind of address it is."""
    for candidate in _with_embedded_ipv4(address):
        if candidate.is_loopback:
            if allow_loopback:
                continue
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_unspecified:
            return "the unspecified address"
        if candidate.is_private:
            return "a private address"
        if candidate.is_reserved or not candidate.is_global:
            return "a reserved address"
        if isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local:
            return "a site-local address"
    return None


def _with_embedded_ipv4(address: Address) -> list[Address]:
    """The address as it is reached: an IPv4-mapped or NAT64 address is the IPv4 address it carries
    (::ffff:169.254.169.254 and 64:ff9b::a9fe:a9fe reach the metadata service as surely as
    169.254.169.254 does); a 6to4 or Teredo address is checked with its IPv4 address too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:  # a DNS64 answer: the IPv4 address behind the NAT64 gateway
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address, *(embedded for embedded in (address.sixtofour, *(address.teredo or ())) if embedded)]


def public_address(host: str, port: int, *, allow_loopback: bool = False) -> str:
    """The address to connect to for `host`: every address the name resolves to must be public
    (one that is not makes the whole name suspect); IPv4 first, as Lambda's network has it."""
    name = host.strip("[]")
    try:
        answers = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise requests.ConnectionError(f"the media host name could not be resolved: {type(exc).__name__}") from None
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0]) for answer in answers
                 if answer[0] in (socket.AF_INET, socket.AF_INET6)]
    if not addresses:
        raise requests.ConnectionError("the media host name resolved to no IP address")
    for address in addresses:
        reason = why_not_public(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise MediaRejected(f"the media host {name} resolves to {address}, {reason}: not fetched",
                                code="AddressNotAllowed")
    chosen = min(addresses, key=lambda a: a.version)
    return str(chosen) if chosen.version == 4 else f"[{chosen}]"


class PublicAddressAdapter(HTTPAdapter):
    """Connects each request to the checked address of its URL's host (see the module docstring)."""

    def __init__(self, *, allow_loopback: bool = False, **kwargs: Any) -> None:
        self.allow_loopback = allow_loopback
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = host_params["host"]
        port = host_params["port"] or _DEFAULT_PORTS.get(host_params["scheme"], 80)
        host_params["host"] = public_address(name, port, allow_loopback=self.allow_loopback)
        if host_params["scheme"] == "https":  # the certificate is checked against the name, not the address
            pool_kwargs["server_hostname"] = name.strip("[]")
            pool_kwargs["assert_hostname"] = name.strip("[]")
        return host_params, pool_kwargs

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        """The Host header http.client would have sent for the name (it would send the address)."""
        url = parse_url(request.url)
        host = url.host or ""
        if url.port is not None and url.port != _DEFAULT_PORTS.get(url.scheme or ""):
            host = f"{host}:{url.port}"
        request.headers["Host"] = host


def media_session(*, allow_loopback: bool = False) -> requests.Session:
    """A session whose every connection, http and https, goes to a public address only."""
    session = requests.Session()
    adapter = PublicAddressAdapter(allow_loopback=allow_loopback)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
