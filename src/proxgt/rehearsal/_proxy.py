"""Loopback links for a rehearsal without namespaces: one forwarding proxy per direction of each pilot link.

Site ``i`` reaches neighbour ``j`` through a proxy listening on ``127.0.0.1`` that forwards to ``j``'s port. A
cut closes the proxy's connections and its listening socket, so the site's reconnects are refused until the
link comes back (the same port is bound again); a rate is a token bucket per direction (crude: it paces what
the proxy writes, TCP's own buffers come on top). With ``capture`` every byte the proxy forwards is appended to
one file per connection and direction, for checks on what crosses a link.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

__all__ = ["LoopbackNet"]

_CHUNK = 16384


class _Direction:
    """One direction of one link: a listener on 127.0.0.1 that forwards to ``target_port``."""

    def __init__(self, link: _Link, target_port: int, name: str) -> None:
        self.link, self.target_port, self.name = link, target_port, name
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.next_free = 0.0  # token bucket: when the pacing lets the next byte out
        self.conns = itertools.count()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    async def _serve(self, r_in: asyncio.StreamReader, w_in: asyncio.StreamWriter) -> None:
        if self.link.down:
            w_in.transport.abort()
            return
        try:
            r_out, w_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w_in.transport.abort()
            return
        n = next(self.conns)
        self.writers.update((w_in, w_out))
        await asyncio.gather(self._pump(r_in, w_out, f"{self.name}-c{n}-out"),
                             self._pump(r_out, w_in, f"{self.name}-c{n}-back"))
        self.writers.difference_update((w_in, w_out))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: str) -> None:
        capture = None if self.link.capture_dir is None else (self.link.capture_dir / f"{tag}.bin").open("ab")
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self.link.bytes_per_s:
                    now = time.monotonic()
                    start = max(now, self.next_free)
                    self.next_free = start + len(data) / self.link.bytes_per_s
                    if start > now:
                        await asyncio.sleep(start - now)
                if capture is not None:
                    capture.write(data)
                    capture.flush()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if capture is not None:
                capture.close()
            writer.transport.abort()


class _Link:
    def __init__(self, capture_dir: Path | None) -> None:
        self.down = False
        self.bytes_per_s = 0.0
        self.capture_dir = capture_dir
        if capture_dir is not None:
            capture_dir.mkdir(parents=True, exist_ok=True)


class LoopbackNet:
    """Proxies for ``edges`` between sites listening on ``site_ports`` (all on 127.0.0.1), run by a thread.

    ``peer_port(i, j)``: the port site ``i`` connects to in order to reach site ``j``.
    """

    def __init__(self, site_ports: Sequence[int], edges: Sequence[tuple[int, int]],
                 capture: dict[int, Path] | None = None) -> None:
        self.site_ports = list(site_ports)
        self.edges = [tuple(e) for e in edges]
        self.links = [_Link((capture or {}).get(e)) for e in range(len(self.edges))]
        self.directions: dict[tuple[int, int], _Direction] = {}
        for e, (i, j) in enumerate(self.edges):
            self.directions[(i, j)] = _Direction(self.links[e], self.site_ports[j], f"{i}to{j}")
            self.directions[(j, i)] = _Direction(self.links[e], self.site_ports[i], f"{j}to{i}")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rehearsal-proxies", daemon=True)

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    def setup(self) -> None:
        self.thread.start()
        for d in self.directions.values():
            self._call(d.start())

    def peer_port(self, i: int, j: int) -> int:
        return self.directions[(i, j)].port

    def shape(self, e: int, bits_per_s: float) -> None:
        self.links[e].bytes_per_s = bits_per_s / 8

    def set_link(self, e: int, up: bool) -> None:
        i, j = self.edges[e]
        self.links[e].down = not up

        async def flip() -> None:
            for d in (self.directions[(i, j)], self.directions[(j, i)]):
                await (d.start() if up else d.stop())

        self._call(flip())

    def teardown(self) -> list[str]:
        if self.thread.is_alive():
            async def stop_all() -> None:
                for d in self.directions.values():
                    await d.stop()

            try:
                self._call(stop_all())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()
        return []
