"""The pilot file of a cross-site run: its sites, their links and the run settings, and the node graph they give.

A pilot file (TOML) is shared by every site::

    [pilot]
    name = "three-sites"
    round_deadline_s = 2.0     # a gossip message later than this misses its round (running sums make it good)
    site_timeout_s = 60.0      # a neighbour silent this long is lost
    share_metrics = false      # true: the sites send each other their metrics rows (network_metrics.csv)

    [[site]]
    name = "a"
    address = "tcp://127.0.0.1:7301"   # where the site binds, and where its neighbours connect
    public_key = "..."                 # its certificate (proxgt keys new); absent only in a rehearsal
    nodes = 1                          # nodes the site hosts (default 1)

    [links]
    edges = [["a", "b"], ["b", "c"]]

    # then the sections of a `proxgt run -c` file ([algorithm], [problem], [run], ...)

The node graph: the sites' nodes get consecutive global ids in the order of ``[[site]]``; the nodes of one site
form a clique; a link ``[A, B]`` joins the last node of A with the first node of B (one node link per site link,
so that every message between two sites crosses exactly one link). Every node graph setting (``topology``,
``nodes``, ``edge_file``, ...) is therefore the pilot's, and the run sections may not set it; ``data`` is each
site's own (``proxgt site --data``), never the pilot's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_text
from proxgt.errors import ProxGTValueError
from proxgt.executors.site.transport import certificate_der
from proxgt.settings import RunConfig
from proxgt.settings.config import flatten, read_toml

__all__ = ["Pilot", "PilotSite", "load_pilot", "pilot_run_config", "write_edge_file", "REFUSED_SETTINGS"]

#: run settings a pilot file may not set, and why (one line each)
REFUSED_SETTINGS: dict[str, str] = {
    "topology": "the node graph follows from the pilot's [[site]] and [links]",
    "nodes": "the number of nodes is the sum of the sites' 'nodes'",
    "edge_file": "the node graph follows from the pilot's [[site]] and [links]",
    "weights_file": "the node graph follows from the pilot's [[site]] and [links]",
    "topology_p": "the node graph follows from the pilot's [[site]] and [links]",
    "topology_radius": "the node graph follows from the pilot's [[site]] and [links]",
    "data": "each site reads its own data (proxgt site --data LOCAL); data never appears in the shared file",
    "data_dir": "each site reads its own data (proxgt site --data LOCAL)",
    "out": "each site writes its own run folder (proxgt site --out DIR)",
    "round_deadline": "the sites' deadline is [pilot] round_deadline_s (round_deadline is the simulator's)",
    "message_loss": "a site's messages are lost or late for real; message_loss is the simulator's",
    "link_trace": "a link trace replays a finished pilot in the simulator (proxgt run --link-trace)",
    "link_failure": "a site's links fail for real; link_failure is the simulator's",
    "node_dropout": "node_dropout is the simulator's",
    "node_speed": "the virtual clock is the simulator's",
    "link_latency": "the virtual clock is the simulator's",
    "link_bandwidth": "the virtual clock is the simulator's",
    "asynchronous": "pass --async to proxgt site",
    "on_failure": "a site goes on without a neighbour silent for longer than site_timeout_s",
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PILOT_KEYS = {"name", "round_deadline_s", "site_timeout_s", "share_metrics"}
_SITE_KEYS = {"name", "address", "public_key", "nodes"}


@dataclass(frozen=True)
class PilotSite:
    """One ``[[site]]``: its name, address, public key (its certificate, base64; None in a rehearsal) and global
    node ids."""

    name: str
    address: str
    public_key: str | None
    node_ids: tuple[int, ...]

    @property
    def nodes(self) -> int:
        return len(self.node_ids)


@dataclass(frozen=True)
class Pilot:
    """A parsed, validated pilot file (:func:`load_pilot`)."""

    name: str
    path: str
    sites: tuple[PilotSite, ...]
    links: tuple[tuple[str, str], ...]  # site links in the file's order, each as written
    round_deadline_s: float
    site_timeout_s: float
    settings: dict[str, Any]  # the run sections, flat (as `proxgt run -c` reads them)
    share_metrics: bool = False  # metrics on a site's data leave it only when the pilot file says so

    @property
    def n_nodes(self) -> int:
        return sum(s.nodes for s in self.sites)

    def site(self, name: str) -> PilotSite:
        """The site ``name``; a one-line error naming the pilot's sites otherwise."""
        for s in self.sites:
            if s.name == name:
                return s
        raise ProxGTValueError(f"site {name!r} is not in the pilot file {self.path} (its sites: "
                               f"{', '.join(s.name for s in self.sites)})")

    def neighbours(self, name: str) -> list[str]:
        """The sites linked with ``name``, in the order of ``[[site]]``."""
        linked = {b for a, b in self.links if a == name} | {a for a, b in self.links if b == name}
        return [s.name for s in self.sites if s.name in linked]

    def node_edges(self) -> list[tuple[int, int]]:
        """The node graph's edges (i < j), sorted: cliques inside sites, one node link per site link."""
        edges: set[tuple[int, int]] = set()
        for s in self.sites:
            ids = s.node_ids
            edges.update((ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids)))
        for a, b in self.links:
            i, j = self.site(a).node_ids[-1], self.site(b).node_ids[0]
            edges.add((min(i, j), max(i, j)))
        return sorted(edges)

    def owner(self) -> list[str]:
        """The site of each global node id."""
        return [s.name for s in self.sites for _ in s.node_ids]


def _fail(path: str, what: str) -> ProxGTValueError:
    return ProxGTValueError(f"pilot file {path}: {what}")


def _number(value: Any, key: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value != value:
        raise _fail(path, f"[pilot] {key} must be a number > 0 (seconds); got {value!r}")
    return float(value)


def _sites(raw: Any, path: str) -> tuple[PilotSite, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, "no [[site]] tables: list every site with its name and address")
    sites: list[PilotSite] = []
    seen: dict[str, str] = {}
    offset = 0
    for k, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            raise _fail(path, f"[[site]] number {k} is not a table")
        unknown = sorted(set(entry) - _SITE_KEYS)
        if unknown:
            raise _fail(path, f"[[site]] number {k} has unknown key(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(_SITE_KEYS))})")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(path, f"[[site]] number {k} needs a name of letters, digits, '_', '.' or '-' (got {name!r})")
        if name in seen:
            raise _fail(path, f"two sites are named {name!r}")
        address = entry.get("address")
        if not isinstance(address, str) or not re.match(r"^tcp://[^\s:/]+(:\d{1,5})$|^tcp://\[[0-9a-fA-F:.]+\]:\d{1,5}$",
                                                        address):
            raise _fail(path, f"site {name!r} needs an address tcp://HOST:PORT (got {address!r})")
        if address in seen.values():
            raise _fail(path, f"sites {[n for n, a in seen.items() if a == address][0]!r} and {name!r} have the "
                              f"same address {address}")
        seen[name] = address
        key = entry.get("public_key")
        if key is not None:
            try:
                certificate_der(key if isinstance(key, str) else "?")
            except ValueError as exc:
                old = isinstance(key, str) and len(key) == 40  # a CurveZMQ key: sites used CURVE before TLS
                raise _fail(path, f"site {name!r}: public_key is {exc}" + (
                    "; it looks like a CurveZMQ key of an earlier proxgt: make the site's keys anew" if old else "")
                    ) from None
        nodes = entry.get("nodes", 1)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise _fail(path, f"site {name!r}: nodes must be an int >= 1 (got {nodes!r})")
        sites.append(PilotSite(name, address, key, tuple(range(offset, offset + nodes))))
        offset += nodes
    return tuple(sites)


def _links(raw: Any, sites: tuple[PilotSite, ...], path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or set(raw) != {"edges"}:
        raise _fail(path, "[links] must hold exactly one key, edges = [[\"a\", \"b\"], ...]")
    edges = raw["edges"]
    names = {s.name for s in sites}
    if not isinstance(edges, list):
        raise _fail(path, "[links] edges must be a list of [site, site] pairs")
    out: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for e in edges:
        if not (isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)):
            raise _fail(path, f"[links] edge {e!r} is not a pair of site names")
        a, b = e
        for v in (a, b):
            if v not in names:
                raise _fail(path, f"[links] edge [{a!r}, {b!r}] names site {v!r}, which has no [[site]] table")
        if a == b:
            raise _fail(path, f"[links] edge [{a!r}, {b!r}] links a site with itself")
        if frozenset(e) in seen:
            raise _fail(path, f"[links] lists the link between {a!r} and {b!r} twice")
        seen.add(frozenset(e))
        out.append((a, b))
    # every site reachable: a site without a path to the others could never agree with them
    reach = {sites[0].name}
    grew = True
    while grew:
        grew = False
        for a, b in out:
            if (a in reach) != (b in reach):
                reach |= {a, b}
                grew = True
    cut = [s.name for s in sites if s.name not in reach]
    if cut:
        raise _fail(path, f"the sites are not connected: no link path from {sites[0].name!r} to "
                          f"{', '.join(repr(c) for c in cut)}")
    return tuple(out)


def load_pilot(path: str | Path) -> Pilot:
    """Read and validate a pilot file; every problem is a one-line :class:`ProxGTValueError`."""
    where = str(path)
    raw = read_toml(path, "pilot file")
    head = raw.pop("pilot", None)
    if not isinstance(head, dict):
        raise _fail(where, "missing [pilot] table (name, round_deadline_s, site_timeout_s)")
    unknown = sorted(set(head) - _PILOT_KEYS)
    if unknown:
        raise _fail(where, f"[pilot] has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_PILOT_KEYS))})")
    name = head.get("name", Path(where).stem)
    if not isinstance(name, str) or not name:
        raise _fail(where, f"[pilot] name must be a non-empty string (got {name!r})")
    deadline = _number(head.get("round_deadline_s", 2.0), "round_deadline_s", where)
    timeout = _number(head.get("site_timeout_s", 60.0), "site_timeout_s", where)
    share = head.get("share_metrics", False)
    if not isinstance(share, bool):
        raise _fail(where, f"[pilot] share_metrics must be true or false; got {share!r}")
    sites = _sites(raw.pop("site", None), where)
    if "links" not in raw:
        if len(sites) > 1:
            raise _fail(where, "missing [links] edges = [[\"a\", \"b\"], ...]: which sites talk to which")
        links: tuple[tuple[str, str], ...] = ()
    else:
        links = _links(raw.pop("links"), sites, where)
    settings = flatten(raw, source=where)
    for key in settings:
        if key in REFUSED_SETTINGS:
            raise _fail(where, f"the run sections may not set {key!r}: {REFUSED_SETTINGS[key]}")
    RunConfig.from_dict(settings, source=where)  # unknown or malformed settings: the usual one-line errors
    pilot = Pilot(name=name, path=where, sites=sites, links=links, round_deadline_s=deadline,
                  site_timeout_s=timeout, settings=settings, share_metrics=share)
    if len(sites) == 1 and pilot.n_nodes == 1:
        raise _fail(where, "one site with one node has no one to talk to: give a site 'nodes' > 1 or add sites")
    return pilot


def write_edge_file(pilot: Pilot, path: str | Path) -> Path:
    """Write the pilot's node graph as an edge list (the ``edge_file`` of ``topology = "file"``)."""
    lines = [f"# node graph of pilot {pilot.name!r} (proxgt.executors.site.pilot)"]
    lines += [f"{i} {i}" for i in range(pilot.n_nodes)]  # declares every node, in id order
    lines += [f"{i} {j}" for i, j in pilot.node_edges()]
    p = Path(path)
    atomic_write_text(p, "\n".join(lines) + "\n")
    return p


def pilot_run_config(pilot: Pilot, *, data: str, edge_file: str | Path, link_trace: str | Path | None = None,
                     out: str | None = None) -> dict[str, Any]:
    """The flat settings of the simulator run that reproduces ``pilot`` (``proxgt run -c``): the pilot's run
    sections, its node graph (written to ``edge_file``), ``data`` (the whole data set the sites' shards were cut
    from, or a site's own file for that site's run), plain mixing, and ``link_trace`` (the sites' recorded late
    and lost messages) when given."""
    settings = dict(pilot.settings)
    mixing = settings.get("mixing", "auto")
    if mixing not in ("auto", "plain"):
        raise ProxGTValueError(f"pilot file {pilot.path}: mixing = {mixing!r}: sites mix with plain rounds (their "
                               "trackers go by running sums, which a Chebyshev or fastmix recurrence does not keep)")
    write_edge_file(pilot, edge_file)
    settings.update(mixing="plain", nodes=pilot.n_nodes, topology="file", edge_file=str(edge_file), data=data)
    if link_trace is not None:
        settings["link_trace"] = str(link_trace)
    if out is not None:
        settings["out"] = out
    return settings
