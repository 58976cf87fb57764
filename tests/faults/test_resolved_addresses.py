"""SSRF by name resolution: a media host name that passes the allowlist but resolves to a loopback,
private, link-local (169.254.169.254) or otherwise non-public address is refused when the connection
would be made: on the first request, on a redirect hop, and on the byte ranges of a ranged copy. The
connection goes to the address that was checked, with the name kept for Host, SNI and the certificate.

No network: `socket.getaddrinfo` answers from a table for the test's names (every other name and
every address literal resolve as usual), and every server is on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from wan_relay.errors import MediaRejected
from wan_relay.ingest import MediaStreamer, UrlAllowlist
from wan_relay.models import MediaRef
from wan_relay.public_addresses import media_session
from wan_relay.ranged import MIN_PART_SIZE
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope

from tests.conftest import BUCKET, completion, sample
from tests.unit.test_ranged import _FarHost

#: a name the default-style allowlist pattern accepts (`http://dashscope-result-*.oss-*.aliyuncs.com:PORT`)
NAME = "dashscope-result-test.oss-test.aliyuncs.com"
_real_getaddrinfo = socket.getaddrinfo


class Resolver:
    """getaddrinfo for the test's names: each name answers its next list of addresses (the last
    one repeats), and every lookup is counted."""

    def __init__(self) -> None:
        self.table: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        self.table[name] = list(answers)

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.table:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        self.lookups.append(name)
        answers = self.table[name]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, int(port or 0), 0, 0) if ":" in a else (a, int(port or 0)))
            for a in addresses
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    fake = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def named_url(server: ReplayDashScope, path: str) -> str:
    return f"http://{NAME}:{server.origin.rsplit(':', 1)[1]}{path}"


def allowlist_for(server: ReplayDashScope) -> str:
    port = server.origin.rsplit(":", 1)[1]
    return f"http://dashscope-result-*.oss-*.aliyuncs.com:{port},{server.origin}"


def named_video_task(replay: ReplayDashScope, media: Media) -> str:
    """A video task whose media URL names NAME (on the replay's port)."""
    answer = sample("wan2.7-i2v_succeeded")
    replay.add_media("/media/named.mp4", media)
    answer["output"]["video_url"] = named_url(replay, "/media/named.mp4") + "?Expires=1&Signature=abc"
    replay.script(answer["output"]["task_id"], answer)
    return answer["output"]["task_id"]


def media_requests(replay: ReplayDashScope) -> list[str]:
    return [p for p in replay.requested_paths() if p.startswith("/media/")]


@pytest.mark.parametrize(("addresses", "kind"), [
    (["169.254.169.254"], "link-local"),
    (["10.1.2.3"], "private"),
    (["127.0.0.1"], "loopback"),
    (["::ffff:169.254.169.254"], "link-local"),
    (["47.74.0.1", "192.168.0.10"], "private"),  # one public answer does not excuse the other
], ids=["metadata", "private", "loopback", "ipv4-mapped-metadata", "mixed"])
def test_a_name_that_resolves_to_a_non_public_address_is_refused_before_connecting(
    replay, account, make_relay, resolver, addresses, kind
):
    relay = make_relay(ALLOWED_MEDIA_URLS=allowlist_for(replay), ALLOW_LOOPBACK_MEDIA_ADDRESSES="false")
    task_id = named_video_task(replay, Media(PatternBody(1000), content_type="video/mp4"))
    resolver.answer(NAME, addresses)

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "MEDIA_UNAVAILABLE"
    assert detail["error"]["code"] == "AddressNotAllowed" and kind in detail["error"]["message"]
    assert detail["failures"][0]["code"] == "AddressNotAllowed"
    assert resolver.lookups == [NAME] and media_requests(replay) == []  # resolved, never connected
    assert account.objects() == {} and account.unfinished_uploads() == []


def test_the_same_name_on_loopback_is_fetched_where_loopback_is_allowed_from_the_address_checked(
    replay, account, make_relay, resolver
):
    """The local switch, and the control for the test above: the connection goes to the address
    checked (the name is looked up once: no second resolution decides)."""
    relay = make_relay(ALLOWED_MEDIA_URLS=allowlist_for(replay))  # ALLOW_LOOPBACK_MEDIA_ADDRESSES=true
    task_id = named_video_task(replay, Media(PatternBody(1000), content_type="video/mp4"))
    resolver.answer(NAME, ["127.0.0.1"], ["169.254.169.254"])  # a second lookup would be refused

    detail = completion(relay.handle({"task_id": task_id}))

    assert detail["status"] == "SUCCEEDED" and detail["media"][0]["size_bytes"] == 1000
    assert resolver.lookups == [NAME] and media_requests(replay) == ["/media/named.mp4"]


def test_a_redirect_to_an_allowed_name_that_resolves_to_the_metadata_address_is_refused(
    replay, account, make_relay, resolver
):
    relay = make_relay(ALLOWED_MEDIA_URLS=allowlist_for(replay))
    answer = sample("wan2.7-i2v_succeeded")
    hop = named_url(replay, "/latest/meta-data/iam/security-credentials/")
    answer["output"]["video_url"] = replay.add_media("/media/first-hop.mp4", Media(b"", location=hop))
    replay.script(answer["output"]["task_id"], answer)
    resolver.answer(NAME, ["169.254.169.254"])

    detail = completion(relay.handle({"task_id": answer["output"]["task_id"]}))

    assert detail["status"] == "MEDIA_UNAVAILABLE" and detail["error"]["code"] == "AddressNotAllowed"
    assert "169.254.169.254" in detail["error"]["message"]
    assert media_requests(replay) == ["/media/first-hop.mp4"]  # the hop was never requested
    assert account.objects() == {}


def test_byte_ranges_are_checked_too_a_name_rebound_to_the_metadata_address_fails_the_copy(account, resolver):
    """The first answer came from a public (here: loopback, allowed) address; the name then resolves
    to 169.254.169.254 for the ranges: each range is refused, the multipart upload is aborted."""
    server = _FarHost().start()
    size = 3 * MIN_PART_SIZE + 5
    server.add_media("/media/video.mp4", Media(PatternBody(size), content_type="video/mp4"))
    resolver.answer(NAME, ["127.0.0.1"], ["169.254.169.254"])
    allowlist = UrlAllowlist(tuple(allowlist_for(server).split(",")))
    streamer = MediaStreamer(s3=account.s3, session=media_session(allow_loopback=True), bucket=BUCKET,
                             prefix="wan/", max_bytes=1 << 31, allowlist=allowlist)
    try:
        with pytest.raises(MediaRejected) as raised:
            streamer.store("task-1", MediaRef(index=0, type="video", url=named_url(server, "/media/video.mp4")))
        ranges = [r["range"] for r in server.requests if r["range"]]
    finally:
        server.stop()

    assert raised.value.code == "AddressNotAllowed" and "169.254.169.254" in raised.value.message
    assert len(resolver.lookups) > 1 and ranges == []  # every range looked the name up; none was sent
    assert account.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert account.unfinished_uploads() == []


# --- https: the pinned address still talks TLS to the name ----------------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its own CA): the certificate file and the key file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _TlsServer:
    """An https server on 127.0.0.1 presenting `cert_file`; records each request's SNI and Host."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.seen: list[tuple[str | None, str | None]] = []
        server_names: list[str | None] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                seen.append((server_names[-1] if server_names else None, self.headers.get("Host")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[_TlsServer, Path]]:
    cert_file, key_file = _certificate(tmp_path, NAME)
    with _TlsServer(cert_file, key_file) as server:
        yield server, cert_file


def test_over_https_the_pinned_address_is_sent_the_name_as_sni_and_host_and_its_certificate_checked(
    tls_server, resolver
):
    server, ca_file = tls_server
    resolver.answer(NAME, ["127.0.0.1"])
    session = media_session(allow_loopback=True)

    answer = session.get(f"https://{NAME}:{server.port}/a.png", timeout=5, verify=str(ca_file))

    assert answer.content == b"ok"
    assert server.seen == [(NAME, f"{NAME}:{server.port}")]


def test_over_https_a_certificate_for_another_name_is_refused(tmp_path, tls_server, resolver):
    server, ca_file = tls_server
    other = "dashscope-result-other.oss-test.aliyuncs.com"
    resolver.answer(other, ["127.0.0.1"])  # another name, served by the same address and certificate
    session = media_session(allow_loopback=True)

    with pytest.raises(requests.exceptions.SSLError, match=r"match|mismatch"):
        session.get(f"https://{other}:{server.port}/a.png", timeout=5, verify=str(ca_file))
    assert server.seen == []


def test_the_address_check_knows_the_kinds_of_non_public_addresses():
    from wan_relay.public_addresses import why_not_public

    refused = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
               "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
               "fec0::1", "ff02::1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "192.0.2.1"]
    public = ["47.74.0.1", "8.8.8.8", "2606:4700::1111", "::ffff:47.74.0.1", "64:ff9b::2f4a:1"]
    assert [a for a in refused if why_not_public(ipaddress.ip_address(a)) is None] == []
    assert [a for a in public if why_not_public(ipaddress.ip_address(a)) is not None] == []
    assert why_not_public(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert why_not_public(ipaddress.ip_address("169.254.169.254"), allow_loopback=True) is not None
