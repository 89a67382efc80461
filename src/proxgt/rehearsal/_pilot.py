"""What a rehearsal reads from a pilot file: the sites, their links and the run settings.

(Temporary reader until the site runtime's own pilot parser lands; the layout is the one of
``proxgt site``: ``[pilot]``, ``[[site]]``, ``[links]``, then the sections of a run config.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxgt.errors import ProxGTValueError
from proxgt.settings import RunConfig
from proxgt.settings.config import flatten, read_toml

__all__ = ["PilotSite", "Pilot", "read_pilot"]

_PILOT_TABLES = ("pilot", "site", "links")


@dataclass(frozen=True)
class PilotSite:
    name: str
    address: str
    public_key: str | None
    nodes: int


@dataclass(frozen=True)
class Pilot:
    path: Path
    raw: dict[str, Any]
    name: str
    sites: tuple[PilotSite, ...]
    edges: tuple[tuple[str, str], ...]

    @property
    def n_nodes(self) -> int:
        return sum(s.nodes for s in self.sites)

    def node_ids(self, k: int) -> list[int]:
        start = sum(s.nodes for s in self.sites[:k])
        return list(range(start, start + self.sites[k].nodes))

    def settings(self) -> RunConfig:
        run = {k: v for k, v in self.raw.items() if k not in _PILOT_TABLES}
        return RunConfig.from_dict(flatten(run, source=str(self.path)), source=str(self.path))


def read_pilot(path: str | Path) -> Pilot:
    p = Path(path)
    raw = read_toml(p, "pilot file")
    sites_raw = raw.get("site")
    if not isinstance(sites_raw, list) or len(sites_raw) < 2:
        raise ProxGTValueError(f"{p}: a pilot lists at least two [[site]] tables")
    sites = []
    for s in sites_raw:
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise ProxGTValueError(f"{p}: every [[site]] needs a name")
        nodes = s.get("nodes", 1)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ProxGTValueError(f"{p}: site {name}: nodes must be an integer >= 1, got {nodes!r}")
        sites.append(PilotSite(name, str(s.get("address", "")), s.get("public_key"), nodes))
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ProxGTValueError(f"{p}: site names must be unique")
    edges_raw = raw.get("links", {}).get("edges", [])
    edges = []
    for e in edges_raw:
        if not (isinstance(e, list) and len(e) == 2 and all(x in names for x in e) and e[0] != e[1]):
            raise ProxGTValueError(f"{p}: [links] edges: {e!r} is not a pair of two different sites of the pilot")
        edges.append((e[0], e[1]))
    name = raw.get("pilot", {}).get("name", p.stem)
    return Pilot(p, raw, str(name), tuple(sites), tuple(edges))
