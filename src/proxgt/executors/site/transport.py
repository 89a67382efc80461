"""A site's authenticated, encrypted links to its neighbours: pyzmq sockets with CURVE (CurveZMQ).

Sockets and ports (what secdocs' docs/security.md cites):

* Every site binds ONE socket, a ZeroMQ ``ROUTER``, on its address (``tcp://HOST:PORT`` from the pilot file, or
  ``--bind``). It is a CURVE server: the handshake proves that the client holds the secret key of its public key
  and sets up the session keys; everything after the handshake is encrypted and authenticated
  (Curve25519 key exchange, XSalsa20-Poly1305 per message, from libsodium inside libzmq). A ZAP handler
  (:class:`zmq.auth.thread.ThreadAuthenticator`, a thread of this process) admits only the public keys of the
  site's neighbours in the pilot file; any other key, and any client that does not speak CURVE, is refused
  during the handshake, before a single message is read. Each refusal is counted (a socket monitor's
  ``HANDSHAKE_FAILED_*`` events) and reported in summary.json as ``refused_connections``.
* For each neighbour the site opens one ``DEALER`` socket, a CURVE client that connects to the neighbour's
  address and checks the neighbour's public key from the pilot file (a server without the matching secret key
  cannot complete the handshake). ZeroMQ reconnects by itself after a link comes back.
* The sender of a message is the CURVE identity the handshake proved (ZAP User-Id: the peer's public key),
  never a name inside the message. A message is a JSON header frame (run hash prefix, kind, key, round,
  shapes) followed by raw little-endian tensor frames; nothing is ever unpickled.
* Nothing else listens. There is no central server: a site talks to its neighbours only, and values every site
  needs (setup sums, the data's shape) travel by flooding along the site graph (:meth:`SiteTransport.allgather`).

Trust: sites are honest-but-curious (a neighbour could forward a flooded value under another origin; it cannot
pose as a site it holds no key for). Outsiders on the network can neither connect nor read nor alter a message.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proxgt.errors import ProxGTValueError

__all__ = ["SiteAborted", "SiteLost", "SiteTransport", "TransportStats", "load_site_key", "new_site_keys"]

#: how long a socket may keep sending queued messages after close (a peer still finishing needs them)
_LINGER_MS = 2000
#: the largest frame a message carries: CURVE encrypts each frame as one box, and on loopback one 16 MB frame took
#: about 5x as long as the same bytes in 256 KB frames (docs/benchmarks.md)
PART_BYTES = 256 * 1024
#: the ZAP domain of the sites' sockets (the authenticator answers for it only)
_DOMAIN = "proxgt"


class SiteLost(RuntimeError):
    """The sites cannot go on (a neighbour never answered, the survivors of a lost site are disconnected, ...);
    the message names the site."""


class SiteAborted(SiteLost):
    """Site ``origin`` stopped on an error before training could start (its one-line ``message``)."""

    def __init__(self, origin: str, message: str):
        super().__init__(f"site {origin} stopped: {message}")
        self.origin, self.message = origin, message


def _zmq() -> Any:
    import zmq

    return zmq


def new_site_keys(site: str, out: str | Path) -> tuple[Path, Path, str]:
    """Write ``OUT/SITE.key`` (public) and ``OUT/SITE.key_secret`` (secret, mode 0600) with
    :func:`zmq.auth.create_certificates`; refuses to replace an existing key. Returns (public file, secret file,
    the Z85 public key)."""
    import os

    import zmq.auth

    if not site or "/" in site or site.startswith("."):
        raise ProxGTValueError(f"--site must be a plain site name (got {site!r})")
    folder = Path(out)
    public, secret = folder / f"{site}.key", folder / f"{site}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise ProxGTValueError(f"{p} already exists: a site's key is never replaced silently (remove it first, "
                                   "and give its neighbours the new public key)")
    if folder.exists() and not folder.is_dir():
        raise ProxGTValueError(f"--out {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(str(folder), site)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    key, _ = zmq.auth.load_certificate(str(public))
    return public, secret, key.decode("ascii")


def load_site_key(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file written by ``proxgt keys new``; one-line errors."""
    import os
    import stat

    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise ProxGTValueError(f"--key {p}: no such file (make one with 'proxgt keys new --site NAME --out DIR')")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    if mode & 0o077:
        raise ProxGTValueError(f"--key {p} is readable by others (mode {mode:o}): chmod 600 it, and consider the key "
                               "exposed")
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ProxGTValueError(f"--key {p}: not a key file written by 'proxgt keys new' ({exc})") from None
    if secret is None:
        raise ProxGTValueError(f"--key {p} holds a public key only: give the SITE.key_secret file")
    return public, secret


def _joined(parts: Sequence[Any]) -> memoryview:
    """The parts of one frame in one new writable buffer (a receiver may use it in place)."""
    out = bytearray(sum(len(p) for p in parts))
    at = 0
    for p in parts:
        out[at:at + len(p)] = p
        at += len(p)
    return memoryview(out)


class _Allowed:
    """ZAP credentials provider: the neighbours' public keys only."""

    def __init__(self, keys: set[bytes]):
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


@dataclass
class TransportStats:
    """What a site measured on its links (summary.json)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    refused_connections: int = 0
    dropped_messages: int = 0  # from an authenticated peer but malformed or of another run
    refused_by: dict[str, int] = field(default_factory=dict)  # monitor event name -> count


class SiteTransport:
    """This site's sockets (module docstring). ``handlers[kind](sender, header, frames)`` receives messages;
    :meth:`pump` reads what has arrived, waiting at most ``timeout_s`` for the first message."""

    def __init__(self, name: str, neighbours: dict[str, tuple[str, str]], public: bytes, secret: bytes, bind: str,
                 *, site_timeout_s: float):
        zmq = _zmq()
        from zmq.auth.thread import ThreadAuthenticator

        self.name = name
        self.neighbours = dict(neighbours)  # name -> (address, Z85 public key)
        self.site_timeout_s = float(site_timeout_s)
        self.stats = TransportStats()
        self.run_tag = ""  # the agreed settings hash prefix (after the HELLO)
        self.handlers: dict[str, Callable[[str, dict[str, Any], list[Any]], None]] = {}
        self.last_heard: dict[str, float] = {}
        self._flood: dict[str, dict[str, tuple[dict[str, Any], list[bytes]]]] = {}
        self.handlers["flood"] = self._on_flood
        self.handlers["abort"] = self._on_abort
        self.dealers: dict[str, Any] = {}
        self._backlog: dict[str, list[list[Any]]] = {}  # messages a link could not queue yet (_flush)
        self.monitor: Any = None
        # CURVE encrypts and decrypts in ZeroMQ's I/O threads, about 1 ms per MB and direction on one core here
        # (bench/bench_site.py --link-only): one thread per link lets a site with several neighbours use its cores
        self.ctx = zmq.Context(io_threads=max(1, min(len(self.neighbours) + 1, os.cpu_count() or 1)))
        self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("proxgt.site.zap"))
        self.auth.start()
        keys = {k.encode("ascii") for _, k in self.neighbours.values()}
        self.auth.configure_curve_callback(domain=_DOMAIN, credentials_provider=_Allowed(keys))
        self._key_of = {k: n for n, (_, k) in self.neighbours.items()}
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.curve_server = True
        self.router.curve_publickey = public
        self.router.curve_secretkey = secret
        self.router.zap_domain = _DOMAIN.encode()
        self.router.rcvhwm = 0
        self.router.linger = 0
        self._events = {getattr(zmq, n): n for n in ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL",
                                                      "EVENT_HANDSHAKE_FAILED_NO_DETAIL")}
        mask = 0
        for ev in self._events:
            mask |= ev
        self.monitor = self.router.get_monitor_socket(mask)
        try:
            self.router.bind(bind)
        except zmq.ZMQError as exc:
            self.close()
            raise ProxGTValueError(f"site {name!r} cannot listen on {bind}: {exc}") from None
        for peer, (address, key) in self.neighbours.items():
            s = self.ctx.socket(zmq.DEALER)
            s.curve_publickey = public
            s.curve_secretkey = secret
            s.curve_serverkey = key.encode("ascii")
            s.sndhwm = 0  # never drop or block: a link that is down queues (memory) until it comes back
            s.linger = _LINGER_MS
            s.reconnect_ivl = 100
            s.reconnect_ivl_max = 2000
            s.connect(address)
            self.dealers[peer] = s
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    # ---------------------------------------------------------------- sending
    def send(self, peer: str, header: dict[str, Any], frames: Sequence[Any] = ()) -> int:
        """Queue one message for ``peer`` (``frames``: bytes or any contiguous buffer, sent without a copy);
        returns the bytes it carries. A frame larger than :data:`PART_BYTES` travels as several parts (the
        header's ``parts`` counts them), which the receiver joins again."""
        views = [memoryview(f).cast("B") for f in frames]
        counts = [max(1, -(-len(v) // PART_BYTES)) for v in views]
        head = json.dumps({"run": self.run_tag, **header, "parts": counts}, separators=(",", ":")).encode()
        parts = [head, *(v[i * PART_BYTES:(i + 1) * PART_BYTES] for v, c in zip(views, counts, strict=True)
                         for i in range(c))]
        backlog = self._backlog.setdefault(peer, [])
        backlog.append(parts)
        self._flush(peer)
        n = sum(len(p) for p in parts)
        self.stats.bytes_sent += n
        self.stats.messages_sent += 1
        return n

    def _flush(self, peer: str) -> None:
        """Queue ``peer``'s backlog on its socket, in order, without blocking: a link whose CURVE handshake failed
        (a process at the neighbour's address with another key) has no queue until it reconnects, and a blocking
        send would stop this site until then."""
        zmq = _zmq()
        backlog = self._backlog.get(peer, [])
        while backlog:
            try:
                self.dealers[peer].send_multipart(backlog[0], flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            backlog.pop(0)

    # ---------------------------------------------------------------- receiving
    def pump(self, timeout_s: float) -> int:
        """Dispatch every message that has arrived, waiting up to ``timeout_s`` for the first; returns how many."""
        zmq = _zmq()
        for peer in [p for p, b in self._backlog.items() if b]:
            self._flush(peer)
        got = 0
        wait_ms = max(0, int(timeout_s * 1000))
        while True:
            events = dict(self.poller.poll(wait_ms))
            if not events:
                return got
            wait_ms = 0
            if self.monitor in events:
                self._read_monitor()
            if self.router in events:
                while True:
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    got += self._dispatch(frames)

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        zmq = _zmq()
        while True:
            try:
                msg = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            name = self._events.get(msg["event"])
            if name is not None:
                if not self.stats.refused_connections:  # once; every later one is counted in summary.json
                    where = bytes(msg["endpoint"]).decode(errors="replace")
                    warnings.warn(f"site {self.name} refused a connection attempt on {where} ({name[6:].lower()}: a "
                                  "key not in the pilot file, or no CURVE); refusals are counted in summary.json "
                                  "(refused_connections)", stacklevel=2)
                self.stats.refused_connections += 1
                self.stats.refused_by[name] = self.stats.refused_by.get(name, 0) + 1

    def _dispatch(self, frames: list[Any]) -> int:
        if len(frames) < 2:
            self.stats.dropped_messages += 1
            return 0
        user = frames[1].get("User-Id")
        sender = self._key_of.get(user) if isinstance(user, str) else None
        if sender is None:  # never: ZAP admits the neighbours' keys only
            self.stats.dropped_messages += 1
            return 0
        self.stats.bytes_received += sum(len(f.buffer) for f in frames[1:])
        self.last_heard[sender] = time.monotonic()
        try:
            header = json.loads(bytes(frames[1].buffer))
            kind = header["kind"]
        except (ValueError, KeyError, TypeError):
            self.stats.dropped_messages += 1
            return 0
        if kind != "hello" and header.get("run") != self.run_tag:
            self.stats.dropped_messages += 1  # another run's (a site restarted with other settings)
            return 0
        handler = self.handlers.get(kind)
        if handler is None:
            self.stats.dropped_messages += 1
            return 0
        buffers = [f.buffer for f in frames[2:]]
        counts = header.get("parts", [1] * len(buffers))  # absent: every frame whole
        if not (isinstance(counts, list) and all(isinstance(c, int) and c >= 1 for c in counts)
                and sum(counts) == len(buffers)):
            self.stats.dropped_messages += 1  # not a message this transport sent
            return 0
        joined, k = [], 0
        for c in counts:  # a frame sent in several parts, joined again into one writable buffer (no second copy)
            joined.append(buffers[k] if c == 1 else _joined(buffers[k:k + c]))
            k += c
        handler(sender, header, joined)
        return 1

    def _on_abort(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        raise SiteAborted(str(header.get("origin", sender)), str(header.get("message", "")))

    def abort(self, origin: str, message: str) -> None:
        """Tell every neighbour that site ``origin`` stopped on an error (``message``: one line), so that a site
        waiting for it stops at once (before training) or goes on without it (during training) instead of
        waiting out the site timeout."""
        for peer in self.dealers:
            self.send(peer, {"kind": "abort", "origin": origin, "message": message})

    def silent_since(self, peer: str, start: float) -> float:
        """Seconds since ``peer`` was last heard (or since ``start``, if later)."""
        return time.monotonic() - max(start, self.last_heard.get(peer, start))

    # ---------------------------------------------------------------- flooding (no central server)
    def _on_flood(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        tag, origin = str(header["tag"]), str(header["origin"])
        box = self._flood.setdefault(tag, {})
        if origin in box or origin == self.name:
            return
        data = [bytes(f) for f in frames]
        box[origin] = (header, data)
        for peer in self.dealers:  # pass it on: every site receives every origin's value once
            if peer != sender:
                self.send(peer, header, data)

    def flooded(self, tag: str) -> dict[str, dict[str, Any]]:
        """The values of ``tag`` received so far (origin -> meta), before this site takes part itself."""
        return {origin: head["meta"] for origin, (head, _) in self._flood.get(tag, {}).items()}

    def allgather(self, tag: str, sites: list[str], meta: dict[str, Any], arrays: Sequence[np.ndarray] = ()
                  ) -> dict[str, tuple[dict[str, Any], list[np.ndarray]]]:
        """Every site's ``(meta, arrays)`` under ``tag`` (``sites``: all of them), by flooding along the site
        graph; waits at most the site timeout for a value that does not come."""
        arrays = [np.ascontiguousarray(a) for a in arrays]
        header: dict[str, Any] = {"kind": "flood", "tag": tag, "origin": self.name, "meta": meta,
                  "arrays": [[str(a.dtype), list(a.shape)] for a in arrays]}
        data = [a.tobytes() for a in arrays]
        for peer in self.dealers:
            self.send(peer, header, data)
        self._flood.setdefault(tag, {})[self.name] = (header, data)
        return self.gathered(tag, sorted(set(sites) | {self.name}))

    def gathered(self, tag: str, sites: list[str]) -> dict[str, tuple[dict[str, Any], list[np.ndarray]]]:
        """The ``(meta, arrays)`` that ``sites`` flood under ``tag`` (this site's own too, if it sent one), without
        taking part: waits at most the site timeout for a value that does not come."""
        box = self._flood.setdefault(tag, {})
        start = time.monotonic()
        while set(sites) - set(box):
            if time.monotonic() - start > self.site_timeout_s:
                missing = sorted(set(sites) - set(box))
                raise SiteLost(f"site(s) {', '.join(missing)} did not send their part of '{tag.split(':')[0]}' "
                               f"within {self.site_timeout_s:g} s")
            self.pump(0.05)
        got = self._flood.pop(tag)
        out: dict[str, tuple[dict[str, Any], list[np.ndarray]]] = {}
        for origin in sites:
            head, raw = got[origin]
            arrs = [np.frombuffer(b, dtype=np.dtype(dt)).reshape(shape)
                    for b, (dt, shape) in zip(raw, head["arrays"], strict=True)]
            out[origin] = (head["meta"], arrs)
        return out

    # ---------------------------------------------------------------- end
    def close(self, linger_ms: int | None = None, *, gone: Sequence[str] = ()) -> None:
        """Close every socket (queued messages get ``linger_ms``, default 2 s, to leave; none to the neighbours
        ``gone``, which nobody receives) and stop the ZAP thread."""
        for peer, s in self.dealers.items():
            if linger_ms is not None or peer in gone:
                s.linger = 0 if peer in gone else linger_ms
            s.close()
        if self.monitor is not None:
            self.router.disable_monitor()
            self.monitor.close(linger=0)
        self.router.close(linger=0)
        self.auth.stop()
        self.ctx.term()
