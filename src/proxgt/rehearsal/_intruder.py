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

__all__ = ["main", "attempt"]

_OUTCOMES = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "accepted",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "denied",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
}


def _message(round_: int) -> list[bytes]:
    """A gossip message as a site would send it: a JSON header and the raw float32 rows it announces."""
    rows = np.full(123, 1e3 * (round_ + 1), dtype=np.float32)  # far from any iterate: a delivery would show
    header = {"run": "0" * 16, "kind": "gossip", "key": "x", "round": round_, "iteration": round_, "seq": round_,
              "dtype": "float32", "shape": list(rows.shape)}
    return [json.dumps(header).encode(), rows.tobytes()]


def attempt(ctx: zmq.Context, address: str, server_key: bytes | None, keys: tuple[bytes, bytes] | None,
            round_: int, wait_s: float) -> str:
    """One connection to ``address`` with CURVE (``keys``: own public and secret key) or without (None), sending
    one message; the outcome of its handshake (``accepted``, ``denied``, ``protocol``, ``failed``, ``no answer``)."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if keys is not None and server_key is not None:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_serverkey = server_key
    monitor = sock.get_monitor_socket(zmq.EVENT_ALL)
    try:
        sock.connect(address)
        try:
            sock.send_multipart(_message(round_), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            if not monitor.poll(int(left * 1000) + 1):
                break
            event = recv_monitor_message(monitor)["event"]
            if event in _OUTCOMES:
                return _OUTCOMES[event]
        return "no answer"
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxgt-rehearsal-intruder")
    parser.add_argument("--key", required=True, help="the intruder's secret key file (zmq.auth format)")
    parser.add_argument("--target", action="append", default=[], help="NAME=ADDRESS=SERVER_PUBLIC_KEY")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=0, help="rounds of attempts (0: until stopped)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=2.0)
    args = parser.parse_args(argv)
    public, secret = zmq.auth.load_certificate(args.key)
    assert secret is not None
    targets = []
    for t in args.target:
        name, address, key = t.split("=", 2)
        targets.append((name, address, key.encode()))
    result: dict[str, dict[str, int]] = {name: {} for name, _, _ in targets}
    ctx = zmq.Context()
    try:
        for r in itertools.count():
            if args.rounds and r >= args.rounds:
                break
            for name, address, key in targets:
                for mode, keys in (("curve", (public, secret)), ("plain", None)):
                    outcome = attempt(ctx, address, key, keys, r, args.wait)
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
