"""The media host of the streaming benchmark: the project's replay server in a process of its own,
serving `/media/{size}.mp4` as deterministic bodies (PatternBody) with Range support."""

from __future__ import annotations

import sys
import threading

from wan_relay_local.replay import Media, PatternBody, ReplayDashScope


def main() -> None:
    server = ReplayDashScope().start()
    for size in map(int, sys.argv[1:]):
        server.add_media(f"/media/{size}.mp4", Media(PatternBody(size, seed=f"bench-{size}"), content_type="video/mp4"))
    print(server.origin, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
