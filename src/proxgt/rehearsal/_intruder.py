"""The intruder of ``proxgt rehearse --intruder``: a process holding a key that is not in the pilot file.

It tries, again and again, to connect to every site and to send it messages with well-formed headers: once over
TLS with its own certificate (the site must refuse it: its trust store holds the neighbours' certificates only)
and once without encryption (a TLS server refuses bytes that are no handshake). It writes what happened to a JSON
file; ``accepted`` counts connections that a site kept open after the message, which must stay 0.

Run as ``python -m proxgt.rehearsal._intruder --key KEY_SECRET --out RESULT.json --target NAME=ADDRESS ...``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence

import numpy as np

from proxgt._io import atomic_write_text

__all__ = ["main", "attempt", "attempts"]


def _message(round_: int) -> bytes:
    """A gossip message framed as a site sends one (a JSON header and the raw rows it announces), with values far
    from any iterate: had one been delivered, the sites' results would show it."""
    rows = np.full((1, 123), 1e3 * (round_ + 1), dtype=np.float32)
    header = json.dumps({"run": "0" * 16, "kind": "round", "key": "x", "round": round_, "links": [[0, 1]],
                         "dtype": rows.dtype.str, "shape": list(rows.shape),
                         "sizes": [rows.nbytes]}).encode()
    return struct.pack("<I", len(header)) + header + rows.tobytes()


def _tls(key_file: str | None) -> ssl.SSLContext | None:
    if key_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the intruder does not care who the site is; the site cares who it is
    ctx.load_cert_chain(key_file)
    return ctx


def attempt(address: str, key_file: str | None, round_: int, wait_s: float) -> str:
    """One connection to ``address`` (``tcp://HOST:PORT``), over TLS with the certificate of ``key_file`` or in
    plaintext (None), that sends one message and then waits ``wait_s`` for the site to hang up. The outcome:
    ``denied`` (the TLS handshake failed, or the site ended the connection: TLS 1.3 tells a client that its
    certificate was refused only after the client's side of the handshake), ``protocol`` (plaintext: the site
    hung up), ``accepted`` (the connection stayed open: the site took it), or ``no answer`` (nothing listens)."""
    from proxgt.executors.site.transport import split_address

    host, port = split_address(address)
    try:
        raw = socket.create_connection((host or "127.0.0.1", port), timeout=wait_s)
    except OSError:
        return "no answer"
    refused = "denied" if key_file is not None else "protocol"
    try:
        raw.settimeout(wait_s)
        conn: socket.socket = raw
        ctx = _tls(key_file)
        if ctx is not None:
            try:
                conn = ctx.wrap_socket(raw, server_hostname=None)
            except (ssl.SSLError, OSError):
                return refused
        try:
            conn.sendall(_message(round_))
            return refused if not conn.recv(1) else "accepted"  # a site never writes to an incoming link
        except TimeoutError:
            return "accepted"
        except (ssl.SSLError, OSError):
            return refused
    finally:
        raw.close()


def attempts(tries: Sequence[tuple[str, str | None]], round_: int, wait_s: float) -> list[str]:
    """:func:`attempt` for each ``(address, key_file)`` at once."""
    out = ["no answer"] * len(tries)

    def one(k: int) -> None:
        out[k] = attempt(tries[k][0], tries[k][1], round_, wait_s)

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(tries))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(wait_s * 3 + 5)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxgt-rehearsal-intruder")
    parser.add_argument("--key", required=True, help="the intruder's secret key file (proxgt keys new)")
    parser.add_argument("--target", action="append", default=[], help="NAME=ADDRESS")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=0, help="rounds of attempts (0: until stopped)")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--wait", type=float, default=5.0, help="seconds a site has to hang up")
    args = parser.parse_args(argv)
    targets = [tuple(t.split("=", 1)) for t in args.target]
    result: dict[str, dict[str, int]] = {name: {} for name, _ in targets}
    atomic_write_text(args.out, json.dumps(_summary(result), indent=1))  # started: the rehearsal waits for this
    tries = [(name, mode, (address, args.key if mode == "tls" else None))
             for name, address in targets for mode in ("tls", "plain")]
    for r in itertools.count():
        if args.rounds and r >= args.rounds:
            break
        got = attempts([t for _, _, t in tries], r, args.wait)
        for (name, mode, _), outcome in zip(tries, got, strict=True):
            slot = f"{mode} {outcome}"
            result[name][slot] = result[name].get(slot, 0) + 1
        atomic_write_text(args.out, json.dumps(_summary(result), indent=1))
        time.sleep(args.interval)
    return 0


def _summary(result: dict[str, dict[str, int]]) -> dict[str, object]:
    return {"attempts": sum(sum(v.values()) for v in result.values()),
            "accepted": sum(n for v in result.values() for k, n in v.items() if k.endswith(" accepted")),
            "per_site": result}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
