"""Network namespaces for a rehearsal: one per site, a veth pair per pilot link, nothing in the host's namespace.

Site ``k`` (0-based) owns ``10.77.0.{k+1}`` (on its loopback device, and as the local end of a point-to-point
address on each of its veth devices, whose peer is the neighbour's address): a site can reach exactly its
neighbours, over the link's own veth pair. Both veth ends live in site namespaces, so no packet of a rehearsal
ever reaches the host's interfaces. ``--rate`` puts a tc token bucket filter (tbf) on both ends of a link;
``--cut`` sets both ends down (the kernel drops the link's route, connects fail with "network unreachable") and
up again (the point-to-point route comes back with the device).

Names carry a random tag (``proxgt-<tag>-<k>``, veth ``pg<tag>l<link>a``) so rehearsals never collide; deleting
a namespace deletes its veth ends, and :meth:`NamespaceNet.teardown` deletes every namespace it made, even after
a partial setup.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence

from proxgt.errors import ProxGTValueError

__all__ = ["NamespaceNet", "namespaces_unavailable", "INTRUDER_ADDRESS"]

INTRUDER_ADDRESS = "10.77.1.1"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (capability 12; root normally does)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 12 & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def namespaces_unavailable() -> str | None:
    """Why this process cannot build a rehearsal's namespaces (None: it can): probes ``ip netns add``."""
    if not _net_admin():
        return "network namespaces need root or CAP_NET_ADMIN (this process has neither)"
    probe = f"proxgt-probe-{secrets.token_hex(3)}"
    try:
        made = _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run 'ip netns add' ({exc})"
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip() or made.returncode}"
    try:
        veth = _ip("link", "add", f"{probe[-8:]}a", "netns", probe, "type", "veth", "peer", "name",
                   f"{probe[-8:]}b", "netns", probe)
        if veth.returncode != 0:
            return f"cannot create veth pairs: {veth.stderr.strip() or veth.returncode}"
    finally:
        _ip("netns", "del", probe)
    return None


class NamespaceNet:
    """The namespaces, veth links and addresses of one rehearsal (see the module docstring)."""

    def __init__(self, n_sites: int, edges: Sequence[tuple[int, int]], *, intruder: bool = False) -> None:
        if n_sites > 253:
            raise ProxGTValueError(f"a rehearsal in namespaces takes at most 253 sites, the pilot has {n_sites}")
        self.tag = secrets.token_hex(3)
        self.n_sites = n_sites
        self.edges = [tuple(e) for e in edges]
        self.intruder = intruder
        self.namespaces: list[str] = []

    # ------------------------------------------------------------------ names
    def namespace(self, k: int) -> str:
        return f"proxgt-{self.tag}-{k}"

    @property
    def intruder_namespace(self) -> str:
        return f"proxgt-{self.tag}-x"

    @staticmethod
    def address(k: int) -> str:
        return f"10.77.0.{k + 1}"

    def link_devices(self, e: int) -> tuple[str, str]:
        """The veth ends of link ``e`` (in the namespaces of ``edges[e][0]`` and ``edges[e][1]``)."""
        return f"pg{self.tag}l{e}a", f"pg{self.tag}l{e}b"

    def prefix(self, k: int | None) -> list[str]:
        """The command prefix that runs a program in site ``k``'s namespace (None: the intruder's)."""
        return ["ip", "netns", "exec", self.intruder_namespace if k is None else self.namespace(k)]

    @property
    def planned(self) -> list[str]:
        """Every namespace :meth:`setup` makes."""
        return [self.namespace(k) for k in range(self.n_sites)] + ([self.intruder_namespace] if self.intruder else [])

    # ------------------------------------------------------------------ building
    def _run(self, *args: str) -> None:
        out = _ip(*args)
        if out.returncode != 0:
            raise ProxGTValueError(f"rehearsal network: 'ip {' '.join(args)}' failed: {out.stderr.strip()}")

    def _add_namespace(self, name: str, address: str) -> None:
        self._run("netns", "add", name)
        self.namespaces.append(name)
        self._run("-n", name, "link", "set", "lo", "up")
        self._run("-n", name, "addr", "add", f"{address}/32", "dev", "lo")

    def _connect(self, ns_a: str, addr_a: str, dev_a: str, ns_b: str, addr_b: str, dev_b: str) -> None:
        self._run("link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        for ns, dev, mine, peer in ((ns_a, dev_a, addr_a, addr_b), (ns_b, dev_b, addr_b, addr_a)):
            self._run("-n", ns, "addr", "add", f"{mine}/32", "peer", f"{peer}/32", "dev", dev)
            self._run("-n", ns, "link", "set", dev, "up")

    def setup(self) -> None:
        """Create the namespaces and links (on failure the caller's :meth:`teardown` removes what was made)."""
        for k in range(self.n_sites):
            self._add_namespace(self.namespace(k), self.address(k))
        for e, (i, j) in enumerate(self.edges):
            a, b = self.link_devices(e)
            self._connect(self.namespace(i), self.address(i), a, self.namespace(j), self.address(j), b)
        if self.intruder:  # an outsider wired to every site: it can reach them all, as a host on their LAN could
            self._add_namespace(self.intruder_namespace, INTRUDER_ADDRESS)
            for k in range(self.n_sites):
                self._connect(self.intruder_namespace, INTRUDER_ADDRESS, f"pg{self.tag}x{k}a",
                              self.namespace(k), self.address(k), f"pg{self.tag}x{k}b")

    def _ends(self, e: int) -> list[tuple[str, str]]:
        i, j = self.edges[e]
        a, b = self.link_devices(e)
        return [(self.namespace(i), a), (self.namespace(j), b)]

    def shape(self, e: int, bits_per_s: float) -> None:
        """A token bucket of ``bits_per_s`` on both ends of link ``e`` (burst: 20 ms of traffic, at least 2 KiB)."""
        burst = max(2048, int(bits_per_s / 8 / 50))
        for ns, dev in self._ends(e):
            self._run("-n", ns, "link", "set", dev, "txqueuelen", "1000")
            out = subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                                  f"{int(bits_per_s)}bit", "burst", str(burst), "latency", "400ms"],
                                 capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise ProxGTValueError(f"rehearsal network: tc tbf on {dev} failed: {out.stderr.strip()}")

    def set_link(self, e: int, up: bool) -> None:
        """Link ``e`` down (both ends) or up again."""
        for ns, dev in self._ends(e):
            self._run("-n", ns, "link", "set", dev, "up" if up else "down")

    def teardown(self) -> list[str]:
        """Delete every namespace made (their veth ends go with them); returns the ones that could not be deleted."""
        left = []
        for name in reversed(self.namespaces):
            pids = _ip("netns", "pids", name).stdout.split()
            for pid in pids:  # a rehearsal's own processes only: nothing else runs in a namespace it created
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            if _ip("netns", "del", name).returncode != 0:
                left.append(name)
        self.namespaces = left
        return left
