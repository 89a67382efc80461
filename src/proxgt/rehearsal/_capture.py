"""What crosses a link, for checks that nothing readable does: a packet recorder for a rehearsal's namespaces
and the byte streams of a capture folder.

In namespaces, ``python -m proxgt.rehearsal._capture DEVICE FILE`` (run in the namespace of one end of a link)
records every frame of that veth device with an AF_PACKET socket (no tcpdump needed) into FILE, each frame
prefixed by its length (4 bytes, big-endian). :func:`capture_streams` turns a capture folder into byte streams:
the loopback proxies' files are streams already; recorded frames are parsed (Ethernet, IPv4, TCP) and each TCP
connection's payload is put back in sequence order, so a search for a byte string cannot miss a copy that was
cut over two packets.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["capture_streams", "tcp_streams", "main", "FRAMES_SUFFIX"]

FRAMES_SUFFIX = ".frames"
_ETH_P_ALL = 0x0003


def main(argv: Sequence[str] | None = None) -> int:
    device, out = (sys.argv[1:] if argv is None else list(argv))[:2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.bind((device, 0))
    stop = False

    def end(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    sock.settimeout(0.2)
    with open(out, "ab") as fh:
        while not stop:
            try:
                frame = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                if stop:
                    break
                raise
            fh.write(struct.pack(">I", len(frame)) + frame)
            fh.flush()
    return 0


def _frames(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at + 4 <= len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return out


def tcp_streams(data: bytes) -> list[bytes]:
    """The payload of each TCP connection direction in recorded frames, in sequence order (each sequence number
    once: a retransmitted segment counts once)."""
    segments: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = {}
    for frame in _frames(data):
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":  # IPv4 over Ethernet only
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        if ip[9] != 6 or len(ip) < ihl + 20:
            continue
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        off = (tcp[12] >> 4) * 4
        payload = tcp[off:]
        if payload:
            segments.setdefault((ip[12:16], sport, ip[16:20], dport), {})[seq] = payload
    streams = []
    for parts in segments.values():
        start = min(parts)  # sequence numbers of one short capture: no wrap-around handling needed for a search
        buf = bytearray()
        for seq in sorted(parts, key=lambda s: (s - start) % 2**32):
            rel = (seq - start) % 2**32
            piece = parts[seq]
            if rel > len(buf):  # a segment the capture missed: a gap, so no false match across it
                buf.extend(bytes(rel - len(buf)))
            if rel + len(piece) > len(buf):
                buf.extend(piece[len(buf) - rel:])
        streams.append(bytes(buf))
    return streams


def capture_streams(folder: Path) -> list[bytes]:
    """Every byte stream recorded in ``folder``: proxy files as they are, frame files as TCP streams."""
    out: list[bytes] = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        out.extend(tcp_streams(data) if path.name.endswith(FRAMES_SUFFIX) else [data])
    return out


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
