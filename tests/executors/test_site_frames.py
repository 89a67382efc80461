"""The site transport's messages: large and small frames arrive whole, writable and in order; a link whose other
end went away is dialled again by itself, and what is sent after it is back arrives."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from proxgt.executors.site.transport import SiteTransport, load_site_key

sys.path.insert(0, str(Path(__file__).parent))
from sites import free_ports, keys  # noqa: E402


def _ends(tmp_path: Path, ports: list[int]) -> tuple[dict[str, str], dict[str, str]]:
    public = keys(tmp_path / "keys", ["a", "b"])
    return public, {"a": f"tcp://127.0.0.1:{ports[0]}", "b": f"tcp://127.0.0.1:{ports[1]}"}


def _transport(tmp_path: Path, me: str, other: str, public: dict[str, str], addr: dict[str, str]) -> SiteTransport:
    key = load_site_key(tmp_path / "keys" / f"{me}.key_secret")
    return SiteTransport(me, {other: (addr[other], public[other])}, key, addr[me], site_timeout_s=10.0)


def _pump_until(t: SiteTransport, done, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        t.pump(0.05)


def test_frames_arrive_whole_writable_and_in_order(tmp_path):
    public, addr = _ends(tmp_path, free_ports(2))
    ends = {me: _transport(tmp_path, me, other, public, addr) for me, other in (("a", "b"), ("b", "a"))}
    got: list[tuple[str, dict, list]] = []
    ends["b"].handlers["round"] = lambda sender, header, frames: got.append(
        (sender, header, [(bytes(f), memoryview(f).readonly) for f in frames]))
    try:
        big = np.arange(3 * 2**20 // 4 + 1000, dtype=np.float32)  # several TLS records and socket reads
        sent = 0
        for k in range(20):
            sent += ends["a"].send("b", {"kind": "round", "k": k}, [big + k, b"xy", b""] if k % 2 else [b"z" * k])
        _pump_until(ends["b"], lambda: len(got) == 20)
        assert [h["k"] for _, h, _ in got] == list(range(20))
        for sender, header, frames in got:
            k = header["k"]
            assert sender == "a"
            assert [f for f, _ in frames] == ([(big + k).tobytes(), b"xy", b""] if k % 2 else [b"z" * k])
            assert not any(readonly for _, readonly in frames)  # each frame a buffer of its own, used in place
        assert sent == ends["b"].stats.bytes_received  # the header and every frame, as counted at both ends
    finally:
        for t in ends.values():
            t.close(linger_ms=0)


def test_a_link_is_dialled_again_after_the_other_end_restarts(tmp_path):
    ports = free_ports(2)
    public, addr = _ends(tmp_path, ports)
    a = _transport(tmp_path, "a", "b", public, addr)
    b = _transport(tmp_path, "b", "a", public, addr)
    got: list[int] = []
    try:
        b.handlers["round"] = lambda sender, header, frames: got.append(header["k"])
        a.send("b", {"kind": "round", "k": 0})
        _pump_until(b, lambda: got == [0])
        assert got == [0]
        b.close(linger_ms=0)  # the neighbour's process ends ...
        time.sleep(0.3)
        b = _transport(tmp_path, "b", "a", public, addr)  # ... and a new one listens at its address
        b.handlers["round"] = lambda sender, header, frames: got.append(header["k"])
        k = 0
        deadline = time.monotonic() + 20
        while (not got or got[-1] == 0) and time.monotonic() < deadline:
            k += 1  # a message may be lost on the broken connection: a later one arrives once a has dialled again
            a.send("b", {"kind": "round", "k": k})
            b.pump(0.1)
        assert got[-1] > 0 and got == sorted(got)
    finally:
        a.close(linger_ms=0)
        b.close(linger_ms=0)
