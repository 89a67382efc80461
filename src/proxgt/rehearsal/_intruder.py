"""The intruder of ``proxgt rehearse --intruder``: a process holding a CURVE key that is not in the pilot file.

It tries, again and again, to connect to every site and to send it messages with well-formed headers: once with
its own CURVE key (the site's ZAP handler must deny it) and once without encryption (a CURVE server refuses
the NULL mechanism). It watches its own sockets' handshake events and writes what happened to a JSON file;
``accepted`` counts handshakes that succeeded, which must stay 0.

Run as ``python -m proxgt.rehearsal._intruder --key KEY_SECRET --out RESULT.json --target NAME=ADDRESS=PUBKEY ...``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence

import numpy as np
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from proxgt._io import atomic_write_text

__all__ = ["main", "attempt", "attempts"]

_OUTCOMES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "accepted",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "denied",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
}


def _message(round_: int) -> list[bytes]:
    """A gossip message as a site sends one (a JSON header and the raw rows it announces), with values far from
    any iterate: had one been delivered, the sites' results would show it."""
    rows = np.full((1, 123), 1e3 * (round_ + 1), dtype=np.float32)
    header = {"run": "0" * 16, "kind": "round", "key": "x", "round": round_, "links": [[0, 1]],
              "dtype": rows.dtype.str, "shape": list(rows.shape)}
    return [json.dumps(header).encode(), rows.tobytes()]


def _socket(ctx: zmq.Context, server_key: bytes | None, keys: tuple[bytes, bytes] | None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if keys is not None and server_key is not None:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_serverkey = server_key
    return sock


def attempts(ctx: zmq.Context, tries: Sequence[tuple[str, bytes | None, tuple[bytes, bytes] | None]], round_: int,
             wait_s: float) -> list[str]:
    """One connection per ``(address, server_key, keys)`` at once, with CURVE (``keys``: own public and secret
    key) or without (None), each sending one message; the outcome of each handshake (``accepted``, ``denied``,
    ``protocol``, ``failed``, or ``no answer`` within ``wait_s``)."""
    socks, monitors = [], []
    outcomes = ["no answer"] * len(tries)
    try:
        for address, server_key, keys in tries:
            sock = _socket(ctx, server_key, keys)
            socks.append(sock)
            monitors.append(sock.get_monitor_socket(zmq.EVENT_ALL))
            sock.connect(address)
            try:
                sock.send_multipart(_message(round_), flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
        poller = zmq.Poller()
        for m in monitors:
            poller.register(m, zmq.POLLIN)
        open_ = set(range(len(tries)))
        deadline = time.monotonic() + wait_s
        while open_ and (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(int(left * 1000) + 1))
            for k in list(open_):
                while monitors[k] in ready and monitors[k].poll(0):
                    event = recv_monitor_message(monitors[k])["event"]
                    if event in _OUTCOMES:
                        outcomes[k] = _OUTCOMES[event]
                        open_.discard(k)
                        break
        return outcomes
    finally:
        for sock, m in zip(socks, monitors, strict=False):
            sock.disable_monitor()
            m.close(linger=0)
            sock.close(linger=0)


def attempt(ctx: zmq.Context, address: str, server_key: bytes | None, keys: tuple[bytes, bytes] | None,
            round_: int, wait_s: float) -> str:
    """One connection (see :func:`attempts`)."""
    return attempts(ctx, [(address, server_key, keys)], round_, wait_s)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxgt-rehearsal-intruder")
    parser.add_argument("--key", required=True, help="the intruder's secret key file (zmq.auth format)")
    parser.add_argument("--target", action="append", default=[], help="NAME=ADDRESS=SERVER_PUBLIC_KEY")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=0, help="rounds of attempts (0: until stopped)")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--wait", type=float, default=2.0)
    args = parser.parse_args(argv)
    public, secret = zmq.auth.load_certificate(args.key)
    assert secret is not None
    targets = []
    for t in args.target:
        name, address, key = t.split("=", 2)
        targets.append((name, address, key.encode()))
    result: dict[str, dict[str, int]] = {name: {} for name, _, _ in targets}
    atomic_write_text(args.out, json.dumps(_summary(result), indent=1))  # started: the rehearsal waits for this
    tries = [(name, mode, (address, key, (public, secret) if mode == "curve" else None))
             for name, address, key in targets for mode in ("curve", "plain")]
    ctx = zmq.Context()
    try:
        for r in itertools.count():
            if args.rounds and r >= args.rounds:
                break
            got = attempts(ctx, [t for _, _, t in tries], r, args.wait)
            for (name, mode, _), outcome in zip(tries, got, strict=True):
                slot = f"{mode} {outcome}"
                result[name][slot] = result[name].get(slot, 0) + 1
            atomic_write_text(args.out, json.dumps(_summary(result), indent=1))
            time.sleep(args.interval)
    finally:
        ctx.term()
    return 0


def _summary(result: dict[str, dict[str, int]]) -> dict[str, object]:
    return {"attempts": sum(sum(v.values()) for v in result.values()),
            "accepted": sum(n for v in result.values() for k, n in v.items() if k.endswith(" accepted")),
            "per_site": result}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
