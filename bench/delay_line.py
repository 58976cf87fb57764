"""A long-haul link on loopback: a TCP relay that delays every byte by `one_way_ms` in each direction
and lets at most `window` bytes per connection be in flight (sent but not acknowledged one round trip
later), so each connection is window-bound at about window / RTT, as a single TCP stream on a long
path is. A new connection also pays one round trip (the handshake) before its first byte.

Used because this machine's kernel has no netem (CONFIG_NET_SCH_NETEM is off): see docs/BENCHMARKS.md.
Run as `python -m bench.delay_line LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT ONE_WAY_MS WINDOW_BYTES`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys

READ = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, window: int) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    in_flight: collections.deque[tuple[float, int]] = collections.deque()  # (acknowledged at, bytes)
    flying = 0

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()
            in_flight.append((max(due, loop.time()) + delay, len(chunk)))  # the ack comes back
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            now = loop.time()
            while in_flight and in_flight[0][0] <= now:
                flying -= in_flight.popleft()[1]
            if flying >= window:
                await asyncio.sleep(max(0.0005, in_flight[0][0] - now) if in_flight else 0.001)
                continue
            chunk = await reader.read(min(READ, window - flying))
            if not chunk:
                break
            flying += len(chunk)  # in flight until delivered and acknowledged (see deliver)
            await queue.put((loop.time() + delay, chunk))
    finally:
        await queue.put((0.0, b""))
        with contextlib.suppress(Exception):
            await sender


async def _connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, host: str,
                      port: int, delay: float, window: int) -> None:
    await asyncio.sleep(2 * delay)  # the handshake's round trip
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_pump(client_reader, up_writer, delay, window),
                             _pump(up_reader, client_writer, delay, window))
    except (ConnectionError, OSError):
        pass
    finally:
        for writer in (up_writer, client_writer):
            with contextlib.suppress(Exception):
                writer.close()


async def main(listen: int, host: str, port: int, one_way_ms: float, window: int) -> None:
    delay = one_way_ms / 1000.0
    server = await asyncio.start_server(lambda r, w: _connection(r, w, host, port, delay, window),
                                        "127.0.0.1", listen, limit=4 * READ)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen_port, up_host, up_port, one_way, window_bytes = sys.argv[1:6]
    asyncio.run(main(int(listen_port), up_host, int(up_port), float(one_way), int(window_bytes)))
