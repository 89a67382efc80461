"""Where the torch.distributed path listens: the rendezvous store on one address only (torch's TCPStore binds
every interface by itself, whatever host it is given) and gloo/nccl on loopback when the run stays on one
machine. The store and gloo are unauthenticated and unencrypted (docs/security.md): on one machine nothing of
them may be reachable from elsewhere."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import MutableMapping

__all__ = ["store_socket", "loopback_interface", "is_loopback", "listen_on_loopback", "free_ports"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (held together while picked, so never the same twice)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def store_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` only (never every interface), for the store to serve on
    (``TCPStore(..., master_listen_fd=sock.detach())``). Raises OSError when ``host`` is not an address of this
    machine or the port is taken."""
    last: OSError | None = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(1024)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no address for {host}")


def loopback_interface() -> str | None:
    """The name of this machine's loopback interface ('lo' on Linux, 'lo0' on macOS), or None when not found."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((n for n in names if n in ("lo", "lo0")), None)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (False when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def listen_on_loopback(env: MutableMapping[str, str]) -> None:
    """Make gloo and nccl's bootstrap listen on the loopback interface (``GLOO_SOCKET_IFNAME``,
    ``NCCL_SOCKET_IFNAME`` in ``env``) when every peer is on this machine: gloo otherwise listens on the address
    this machine's host name resolves to, which may face a network."""
    lo = loopback_interface()
    if lo is not None:
        env["GLOO_SOCKET_IFNAME"] = lo
        env["NCCL_SOCKET_IFNAME"] = lo
