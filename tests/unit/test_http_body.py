"""The urllib3 and http.client internals the media copy relies on (wan_relay/http_body.py) are there:
an upgrade that takes one away would quietly turn a fast path or a check off, and fails here instead."""

from __future__ import annotations

import requests
from wan_relay.http_body import body_reader, guard_tail
from wan_relay_local.replay import Media, PatternBody, ReplayDashScope


def test_the_body_is_read_by_http_clients_readinto_and_the_tail_can_be_guarded():
    with ReplayDashScope() as server:
        url = server.add_media("/media/a.mp4", Media(PatternBody(1000), content_type="video/mp4"))
        with requests.get(url, stream=True, timeout=5) as response:
            guard = guard_tail(response)
            readinto, inner = body_reader(response)
            buffer = bytearray(1000)
            got = 0
            while got < 1000:
                got += readinto(memoryview(buffer)[got:])

    assert inner is not None, "http.client's response behind urllib3's is gone: the copy falls back to a slow path"
    assert guard is not None, "the socket file under http.client is gone: bytes past Content-Length go unnoticed"
    assert bytes(buffer) == b"".join(PatternBody(1000).iter_range())
    assert guard.overflow is False


def test_a_surplus_past_the_content_length_is_noticed():
    with ReplayDashScope() as server:
        url = server.add_media("/media/a.mp4", Media(PatternBody(4096), content_type="video/mp4", fault="overlong"))
        with requests.get(url, stream=True, timeout=5) as response:
            guard = guard_tail(response)
            response.raw.read(decode_content=False)

    assert guard is not None and guard.overflow is True
