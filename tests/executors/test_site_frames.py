"""Large tensor frames travel in parts under CURVE (each part one box; far faster on loopback than one large box,
docs/benchmarks.md) and reach the handler whole."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from proxgt.executors.site.transport import PART_BYTES, SiteTransport, load_site_key  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sites import free_ports, keys  # noqa: E402

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def test_a_large_frame_travels_in_parts_and_arrives_whole(tmp_path):
    public = keys(tmp_path / "keys", ["a", "b"])
    ports = free_ports(2)
    addr = {"a": f"tcp://127.0.0.1:{ports[0]}", "b": f"tcp://127.0.0.1:{ports[1]}"}
    ends = {}
    for me, other in (("a", "b"), ("b", "a")):
        pub, sec = load_site_key(tmp_path / "keys" / f"{me}.key_secret")
        ends[me] = SiteTransport(me, {other: (addr[other], public[other])}, pub, sec, addr[me], site_timeout_s=10.0)
    got: list[tuple[str, dict, list]] = []
    ends["b"].handlers["round"] = lambda sender, header, frames: got.append(
        (sender, header, [(bytes(f), memoryview(f).readonly) for f in frames]))
    try:
        big = np.arange(PART_BYTES // 4 * 2 + 1000, dtype=np.float32)  # two full parts and a bit
        small = b"xy"
        sent = ends["a"].send("b", {"kind": "round"}, [big, small])
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            ends["b"].pump(0.05)
        (sender, header, frames), = got
        assert sender == "a" and header["parts"] == [3, 1]
        assert [f for f, _ in frames] == [big.tobytes(), small]
        assert not frames[0][1]  # joined parts: a buffer of the message's own, used in place without a copy
        assert sent == ends["b"].stats.bytes_received  # the header and every part, as counted at both ends
    finally:
        for t in ends.values():
            t.close(linger_ms=0)
