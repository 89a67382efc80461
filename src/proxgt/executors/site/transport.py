"""A site's authenticated, encrypted links to its neighbours: mutual TLS 1.3 (Python's :mod:`ssl`, OpenSSL).

Sockets and ports (what docs/security.md cites):

* Every site listens on ONE TCP port, its address (``tcp://HOST:PORT`` from the pilot file, or ``--bind``), as a
  TLS 1.3 server that requires a client certificate. Its trust store holds exactly the certificates of its
  neighbours in the pilot file (each site's key pair comes with a self-signed certificate, its ``public_key``;
  there is no certificate authority to run). A client without one of those certificates, or without the
  matching private key, or that does not speak TLS, fails the handshake before a single message is read; each
  such refusal is counted (``refused_connections`` in summary.json) and the first one is logged.
* For each neighbour the site opens one outgoing TLS connection, whose trust store holds that neighbour's
  certificate only: a server that cannot prove the neighbour's key never receives a message. A link that breaks
  is dialled again (every 0.1 s at first, then up to every 2 s); messages wait in order until it is back.
* The sender of a message is the certificate the handshake proved, never a name inside the message. A message
  is a JSON header (run hash prefix, kind, key, round, shapes, frame sizes) followed by raw little-endian tensor
  bytes; nothing is ever unpickled.
* Encryption and integrity are TLS 1.3's (AES-GCM or ChaCha20-Poly1305, ephemeral key exchange); nothing here
  is home-made cryptography. Keys and certificates are made with the ``cryptography`` package (Ed25519).
* Nothing else listens. There is no central server: a site talks to its neighbours only, and values every site
  needs (setup sums, the data's shape) travel by flooding along the site graph (:meth:`SiteTransport.allgather`).

Why TLS rather than CurveZMQ (which proxgt used first): both authenticate both ends by public key and encrypt
everything, but OpenSSL's AES-GCM runs on the CPU's AES instructions, several times faster than CurveZMQ's
XSalsa20-Poly1305 (``bench/bench_site.py --link-only``; docs/benchmarks.md), and a refused handshake is visible
to the site, which counts and logs it.

Trust: sites are honest-but-curious (a neighbour could forward a flooded value under another origin; it cannot
pose as a site it holds no key for). Outsiders on the network can neither connect nor read nor alter a message.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import queue
import select
import socket
import ssl
import stat
import struct
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from proxgt.errors import ProxGTValueError

__all__ = ["SiteAborted", "SiteKey", "SiteLost", "SiteTransport", "TransportStats", "certificate_der",
           "load_site_key", "new_site_keys", "read_public_key", "split_address"]

#: how long close() keeps sending queued messages (a peer still finishing needs them)
_LINGER_MS = 2000
#: a connection must finish its TLS handshake within this, or it counts as refused
_HANDSHAKE_S = 10.0
#: handshakes in progress at once; more connection attempts are refused at once (a flood cannot pile threads up)
_MAX_HANDSHAKES = 32
#: the largest header a peer may announce, and the largest message
_MAX_HEADER = 1 << 20
_MAX_MESSAGE = 1 << 36
#: messages whose frames together are smaller than this go out as one buffer (one TLS record, one packet)
_SMALL = 64 * 1024
_LEN = struct.Struct("<I")


class SiteLost(RuntimeError):
    """The sites cannot go on (a neighbour never answered, the survivors of a lost site are disconnected, ...);
    the message names the site."""


class SiteAborted(SiteLost):
    """Site ``origin`` stopped on an error before training could start (its one-line ``message``)."""

    def __init__(self, origin: str, message: str):
        super().__init__(f"site {origin} stopped: {message}")
        self.origin, self.message = origin, message


# ---------------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class SiteKey:
    """A site's key: ``path``, its secret file (PEM private key and certificate), and ``public_key``, the
    certificate as the pilot file lists it (one line of base64 DER)."""

    path: Path
    public_key: str


def _public_line(cert: Any) -> str:
    """The pilot file's ``public_key`` of a certificate: its DER bytes in base64, one line."""
    from cryptography.hazmat.primitives import serialization

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _pem_certificate(text: bytes) -> Any:
    """The certificate of a key file (``SITE.key``, or ``SITE.key_secret`` after its private key); ValueError if
    it holds none."""
    from cryptography import x509

    at = text.find(b"-----BEGIN CERTIFICATE-----")
    if at < 0:
        raise ValueError("no certificate in it")
    return x509.load_pem_x509_certificate(text[at:])


def certificate_der(public_key: str) -> bytes:
    """The DER certificate of a pilot file's ``public_key`` (base64); ValueError if it is not one."""
    from cryptography import x509

    try:
        der = base64.b64decode(public_key.encode("ascii"), validate=True)
        x509.load_der_x509_certificate(der)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a certificate line printed by 'proxgt keys new' ({exc})") from None
    return der


def new_site_keys(site: str, out: str | Path) -> tuple[Path, Path, str]:
    """Write ``OUT/SITE.key`` (public: the site's self-signed certificate, PEM) and ``OUT/SITE.key_secret``
    (secret, mode 0600: its Ed25519 private key and the certificate); refuses to replace an existing key. Returns
    (public file, secret file, the public key line for the pilot file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

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
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"proxgt site {site}")])
    now = datetime.datetime.now(datetime.UTC)
    # self-signed: a neighbour trusts exactly this certificate (pinned in the pilot file), no authority signs it
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, None))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    old = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem + cert_pem)
        fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert_pem)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret, _public_line(cert)


def load_site_key(path: str | Path) -> SiteKey:
    """The key in a ``.key_secret`` file written by ``proxgt keys new``; one-line errors."""
    from cryptography.hazmat.primitives import serialization

    p = Path(path)
    if not p.is_file():
        raise ProxGTValueError(f"--key {p}: no such file (make one with 'proxgt keys new --site NAME --out DIR')")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    if mode & 0o077:
        raise ProxGTValueError(f"--key {p} is readable by others (mode {mode:o}): chmod 600 it, and consider the key "
                               "exposed")
    text = p.read_bytes()
    try:
        key = serialization.load_pem_private_key(text, password=None)
        cert = _pem_certificate(text)
    except ValueError as exc:
        what = "holds a public key only: give the SITE.key_secret file" if b"PRIVATE KEY" not in text else \
            f"is not a key file written by 'proxgt keys new' ({exc})"
        raise ProxGTValueError(f"--key {p} {what}") from None
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if key.public_key().public_bytes(*raw) != cert.public_key().public_bytes(*raw):
        raise ProxGTValueError(f"--key {p}: its certificate is not its private key's")
    return SiteKey(p, _public_line(cert))


def read_public_key(path: str | Path) -> str:
    """The public key line (base64 DER certificate) of a ``SITE.key`` or ``SITE.key_secret`` file."""
    return _public_line(_pem_certificate(Path(path).read_bytes()))


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT`` (``tcp://[V6]:PORT``; host ``*`` means every interface)."""
    rest = address.removeprefix("tcp://")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    return ("" if host in ("*", "") else host), int(port)


# ---------------------------------------------------------------------------------------------- links
@dataclass
class TransportStats:
    """What a site measured on its links (summary.json)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    refused_connections: int = 0
    dropped_messages: int = 0  # from an authenticated peer but malformed or of another run
    refused_by: dict[str, int] = field(default_factory=dict)  # why ("unknown key", "no TLS", ...) -> count


def _tls_context(server: bool, key: SiteKey, trusted: Sequence[bytes]) -> ssl.SSLContext:
    """TLS 1.3 only, this site's certificate, and exactly the ``trusted`` certificates (DER) as trust anchors."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(key.path))
    ctx.check_hostname = False  # the peer is named by its pinned certificate, not by a host name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=b"".join(trusted))
    # a pinned self-signed certificate is its own trust anchor, whatever it says of being a CA
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if server:
        # no session tickets: a site then never writes on a link it receives on, so anything its client can read
        # there means the link was closed (_Outbox._closed_by_peer)
        ctx.num_tickets = 0
    return ctx


def _verify_failure(exc: ssl.SSLCertVerificationError) -> str:
    """Why a peer's certificate was refused, as summary.json counts it."""
    # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED: a listed key, but a clock (or the key) is off
    return "certificate out of date (check both clocks)" if exc.verify_code in (9, 10) else "unknown key"


@dataclass(frozen=True)
class _Refused:
    """A connection attempt this site refused at the handshake: why, and from where."""

    why: str
    address: Any


@dataclass(frozen=True)
class _NotTheirKey:
    """The process at a neighbour's address did not prove the neighbour's pinned key (found while dialling)."""

    peer: str
    where: str
    why: str


def _read_exact(conn: ssl.SSLSocket, n: int) -> memoryview:
    buf = np.empty(n, dtype=np.uint8).data  # not zeroed first: every byte is read into it
    got = 0
    while got < n:
        k = conn.recv_into(buf[got:], n - got)
        if not k:
            raise EOFError
        got += k
    return buf


class _Outbox:
    """One neighbour's outgoing link: a queue and the thread that dials the neighbour and sends it, in order."""

    def __init__(self, transport: SiteTransport, peer: str, address: str, der: bytes):
        self.t, self.peer, self.der = transport, peer, der
        self.host, self.port = split_address(address)
        self.ctx = _tls_context(False, transport.key, [der])
        self.messages: deque[list[memoryview | bytes]] = deque()
        self.cond = threading.Condition()
        self.conn: ssl.SSLSocket | None = None
        self.stop_at: float | None = None  # close(): send what is queued until then
        self.thread = threading.Thread(target=self._run, name=f"proxgt-site-{peer}", daemon=True)
        self.thread.start()

    def put(self, message: list[memoryview | bytes]) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify()

    def _connect(self) -> ssl.SSLSocket | None:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=_HANDSHAKE_S)
        except OSError:
            return None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self.ctx.wrap_socket(raw, server_hostname=None)
            if conn.getpeercert(binary_form=True) != self.der:  # never: the trust store holds this one only
                conn.close()
                return None
            conn.settimeout(None)
            return conn
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            self.t._inbox.put(_NotTheirKey(self.peer, f"{self.host}:{self.port}", _verify_failure(exc)))
            return None
        except (OSError, ValueError):
            raw.close()
            return None

    def _run(self) -> None:
        pause = 0.1
        while True:
            with self.cond:
                while not self.messages and self.stop_at is None:
                    self.cond.wait()
                if not self.messages or (self.stop_at is not None and time.monotonic() >= self.stop_at):
                    break
                message = self.messages[0]
            if self.conn is not None and self._closed_by_peer():
                self._drop_connection()  # the neighbour's process ended: dial its address again, before sending
            if self.conn is None:
                self.conn = self._connect()
                if self.conn is None:
                    with self.cond:  # dial again soon (woken early by close)
                        self.cond.wait(pause)
                    pause = min(2.0, pause * 2)
                    continue
                pause = 0.1
            try:
                for part in message:
                    self.conn.sendall(part)
            except (OSError, ValueError):
                # the link broke before the whole message left: the receiver drops the partial one, and it goes
                # again, whole, once the link is back
                self._drop_connection()
                continue
            with self.cond:
                self.messages.popleft()
        self._drop_connection()

    def _closed_by_peer(self) -> bool:
        """Whether the neighbour closed this link: it never writes on it (no session tickets), so anything to
        read (its close, an alert, a reset) means the link is gone. A message sent on such a link would vanish."""
        if self.conn is None:
            return True
        try:
            readable, _, _ = select.select([self.conn], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    def stop(self, linger_s: float) -> None:
        with self.cond:
            self.stop_at = time.monotonic() + linger_s
            self.cond.notify()

    def interrupt(self) -> None:
        """Unblock a send that waits on a link that is down."""
        conn = self.conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SiteTransport:
    """This site's links (module docstring). ``handlers[kind](sender, header, frames)`` receives messages;
    :meth:`pump` reads what has arrived, waiting at most ``timeout_s`` for the first message. ``neighbours``:
    name -> (address, public key line)."""

    def __init__(self, name: str, neighbours: dict[str, tuple[str, str]], key: SiteKey, bind: str,
                 *, site_timeout_s: float):
        self.name = name
        self.key = key
        self.peers: tuple[str, ...] = tuple(neighbours)
        self.site_timeout_s = float(site_timeout_s)
        self.stats = TransportStats()
        self.run_tag = ""  # the agreed settings hash prefix (after the HELLO)
        self.handlers: dict[str, Callable[[str, dict[str, Any], list[Any]], None]] = {}
        self.last_heard: dict[str, float] = {}
        self._flood: dict[str, dict[str, tuple[dict[str, Any], list[bytes]]]] = {}
        self.handlers["flood"] = self._on_flood
        self.handlers["abort"] = self._on_abort
        # the reader threads hand over (sender, header or None if malformed, frames, bytes) or a refusal
        self._inbox: queue.SimpleQueue[tuple[str, Any, Any, int] | _Refused | _NotTheirKey] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._handshakes = threading.BoundedSemaphore(_MAX_HANDSHAKES)
        self._conns: set[ssl.SSLSocket] = set()
        self._warned_dial: set[str] = set()
        self._lock = threading.Lock()
        ders = {}
        for peer, (_, public) in neighbours.items():
            try:
                ders[peer] = certificate_der(public)
            except ValueError as exc:
                raise ProxGTValueError(f"site {peer!r}: public_key is {exc}") from None
        self._peer_of = {der: peer for peer, der in ders.items()}
        self._server_ctx = _tls_context(True, key, list(ders.values()))
        host, port = split_address(bind)
        try:
            self._listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                                  else socket.AF_INET)
        except OSError as exc:
            raise ProxGTValueError(f"site {name!r} cannot listen on {bind}: {exc}") from None
        self._listener.settimeout(0.2)
        self._accepting = threading.Thread(target=self._accept, name="proxgt-site-listen", daemon=True)
        self._accepting.start()
        self.outboxes = {peer: _Outbox(self, peer, address, ders[peer])
                         for peer, (address, _) in neighbours.items()}

    # ---------------------------------------------------------------- sending
    def send(self, peer: str, header: dict[str, Any], frames: Sequence[Any] = ()) -> int:
        """Queue one message for ``peer`` (``frames``: bytes or any contiguous buffer, sent without a copy;
        the caller does not change it afterwards); returns the bytes it carries. Never blocks."""
        views = [memoryview(f).cast("B") for f in frames]
        head = json.dumps({"run": self.run_tag, **header, "sizes": [len(v) for v in views]},
                          separators=(",", ":")).encode()
        parts: list[memoryview | bytes] = [_LEN.pack(len(head)) + head, *views]
        n = sum(len(p) for p in parts)
        if n < _SMALL:
            parts = [b"".join(parts)]
        self.outboxes[peer].put(parts)
        self.stats.bytes_sent += n
        self.stats.messages_sent += 1
        return n

    # ---------------------------------------------------------------- receiving
    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                raw, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._handshakes.acquire(blocking=False):
                raw.close()
                self._inbox.put(_Refused("too many handshakes at once", addr))
                continue
            threading.Thread(target=self._serve, args=(raw, addr), name="proxgt-site-in", daemon=True).start()

    def _serve(self, raw: socket.socket, addr: Any) -> None:
        try:
            raw.settimeout(_HANDSHAKE_S)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self._server_ctx.wrap_socket(raw, server_side=True)
            peer = self._peer_of.get(conn.getpeercert(binary_form=True) or b"")
        except ssl.SSLCertVerificationError as exc:
            self._refused(raw, _verify_failure(exc), addr)
            return
        except ssl.SSLError:
            self._refused(raw, "no TLS or a failed handshake", addr)
            return
        except OSError:
            self._refused(raw, "no handshake", addr)
            return
        finally:
            self._handshakes.release()
        if peer is None:  # never: the trust store holds the neighbours' certificates only
            self._refused(conn, "unknown key", addr)
            return
        conn.settimeout(None)
        with self._lock:
            if self._closing.is_set():
                conn.close()
                return
            self._conns.add(conn)
        try:
            while True:
                (n,) = _LEN.unpack(_read_exact(conn, _LEN.size))
                if n > _MAX_HEADER:
                    raise ValueError("header too large")
                header = json.loads(bytes(_read_exact(conn, n)))
                sizes = header.get("sizes") if isinstance(header, dict) else None
                if not (isinstance(sizes, list) and all(isinstance(s, int) and s >= 0 for s in sizes)
                        and sum(sizes) <= _MAX_MESSAGE):
                    raise ValueError("no frame sizes")
                frames = [_read_exact(conn, s) for s in sizes]
                self._inbox.put((peer, header, frames, _LEN.size + n + sum(sizes)))
        except (OSError, EOFError):
            pass  # the link broke or closed: the neighbour dials again
        except ValueError:
            self._inbox.put((peer, None, None, 0))  # not what this transport sends: the link is dropped
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _refused(self, sock: socket.socket, why: str, addr: Any) -> None:
        try:
            sock.close()
        except OSError:
            pass
        self._inbox.put(_Refused(why, addr))

    def pump(self, timeout_s: float) -> int:
        """Dispatch every message that has arrived, waiting up to ``timeout_s`` for the first; returns how many."""
        got = 0
        try:
            item = self._inbox.get(timeout=max(0.0, timeout_s)) if timeout_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return 0
        while True:
            got += self._dispatch(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return got

    def _dispatch(self, item: tuple[str, Any, Any, int] | _Refused | _NotTheirKey) -> int:
        if isinstance(item, _NotTheirKey):  # said once per neighbour: the dialling goes on
            if item.peer not in self._warned_dial:
                self._warned_dial.add(item.peer)
                warnings.warn(f"site {self.name}: the process at {item.where} did not prove site {item.peer}'s key "
                              f"from the pilot file ({item.why}); dialling again", stacklevel=3)
            return 0
        if isinstance(item, _Refused):
            if not self.stats.refused_connections:  # once; every later one is counted in summary.json
                where = item.address[0] if item.address else "?"
                warnings.warn(f"site {self.name} refused a connection attempt from {where} ({item.why}: a key not "
                              "in the pilot file, or no TLS); refusals are counted in summary.json "
                              "(refused_connections)", stacklevel=3)
            self.stats.refused_connections += 1
            self.stats.refused_by[item.why] = self.stats.refused_by.get(item.why, 0) + 1
            return 0
        sender, header, frames, nbytes = item
        if header is None:
            self.stats.dropped_messages += 1
            return 0
        self.stats.bytes_received += nbytes
        self.last_heard[sender] = time.monotonic()
        kind = header.get("kind")
        if kind != "hello" and header.get("run") != self.run_tag:
            self.stats.dropped_messages += 1  # another run's (a site restarted with other settings)
            return 0
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.stats.dropped_messages += 1
            return 0
        handler(sender, header, frames)
        return 1

    def _on_abort(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        raise SiteAborted(str(header.get("origin", sender)), str(header.get("message", "")))

    def abort(self, origin: str, message: str) -> None:
        """Tell every neighbour that site ``origin`` stopped on an error (``message``: one line), so that a site
        waiting for it stops at once (before training) or goes on without it (during training) instead of
        waiting out the site timeout."""
        for peer in self.peers:
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
        for peer in self.peers:  # pass it on: every site receives every origin's value once
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
        for peer in self.peers:
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
        """Close every link (queued messages get ``linger_ms``, default 2 s, to leave; none to the neighbours
        ``gone``, which nobody receives) and stop listening."""
        linger = (_LINGER_MS if linger_ms is None else linger_ms) / 1000
        for peer, box in self.outboxes.items():
            box.stop(0.0 if peer in gone else linger)
        deadline = time.monotonic() + linger + 0.5
        for box in self.outboxes.values():
            box.thread.join(max(0.0, deadline - time.monotonic()))
            if box.thread.is_alive():  # blocked on a link that is down: give up its messages
                box.interrupt()
                box.thread.join(1.0)
        self._closing.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepting.join(1.0)
