"""One site of a cross-site pilot: its nodes, through the shared run driver, over its CURVE links.

:func:`run_site` is ``proxgt site``: read the pilot file, open the site's sockets
(:mod:`~proxgt.executors.site.transport`), agree with the neighbours on the settings (HELLO: the hash of the
settings and the proxgt and torch versions, :mod:`proxgt.executors.agreement`), then run the unchanged
algorithm objects through :func:`proxgt.executors.driver.drive` with a :class:`SiteExecutor`, whose
communicator and mixer (:mod:`~proxgt.executors.site.communicator`) exchange rows with the neighbouring sites
only. The site writes its own run folder: config.toml, metrics.csv (its own nodes, on its own data), final.npz
(its nodes' rows), summary.json (with ``site``: bytes, seconds waiting, late and lost messages, refused
connections) and link_trace.csv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from proxgt._io import atomic_write_text
from proxgt.data._shard import NodeShard, ShardRequest
from proxgt.errors import ProxGTValueError
from proxgt.executors.agreement import agreed_settings, settings_fingerprint
from proxgt.executors.driver import FaultHook, TrainFn, drive
from proxgt.executors.site.communicator import SiteCommunicator, SiteMixer
from proxgt.executors.site.data import load_site_shard
from proxgt.executors.site.pilot import Pilot, load_pilot, pilot_run_config
from proxgt.executors.site.transport import SiteAborted, SiteLost, SiteTransport, load_site_key
from proxgt.settings import RunConfig
from proxgt.training import History, RunSpec
from proxgt.training.privacy import private_across_processes

__all__ = ["SiteExecutor", "run_site", "site_settings"]

#: settings each site sets for itself (paths on its own machine)
_LOCAL = ("out", "device", "data", "data_dir", "edge_file")


def site_settings(pilot: Pilot, cfg: RunConfig) -> dict[str, Any]:
    """What every site must hold equal (JSON-safe): the run settings without the sites' own paths, the node graph,
    the sites with their keys and the deadline, the proxgt and torch versions."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _LOCAL}
    settings = agreed_settings(d, 1, len(pilot.sites))
    settings["pilot_graph"] = [list(e) for e in pilot.node_edges()]
    settings["pilot_sites"] = [[s.name, s.public_key, s.nodes] for s in pilot.sites]
    settings["round_deadline_s"] = pilot.round_deadline_s
    return json.loads(json.dumps(settings, default=str))


class SiteExecutor:
    """This site's nodes (an :class:`~proxgt.executors.driver.Executor`): rank 0 of its own run folder."""

    rank = 0
    world = 1
    folder = None  # the driver's run folder is this site's
    can_checkpoint = False  # a site's checkpoint would need its links' running sums; not yet

    def __init__(self, pilot: Pilot, site: str, transport: SiteTransport, *, out: str | None,
                 site_timeout_s: float, send_delay_s: float = 0.0):
        self.pilot, self.site = pilot, pilot.site(site)
        self.transport = transport
        self.out = out
        self.site_timeout_s = float(site_timeout_s)
        self.send_delay_s = float(send_delay_s)
        self.comm: SiteCommunicator | None = None
        self.mixer: SiteMixer | None = None
        self._sums = 0
        self._sites = [s.name for s in pilot.sites]
        self.lost_sites: list[dict[str, Any]] = []
        self._why: dict[str, str] = {}  # neighbours that said they stopped, and why
        self._done: set[str] = set()  # neighbours that said goodbye (possibly long before this site finishes)
        transport.handlers["bye"] = lambda sender, header, frames: self._done.add(sender)

    # ------------------------------------------------------------------ data
    @property
    def shard(self) -> ShardRequest:
        return ShardRequest(hosted=lambda n: self.site.node_ids, sum_over_processes=self._sum_over_sites,
                            load=self._load)

    def _load(self, cfg: Any) -> NodeShard:
        def gather(tag: str, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
            return {s: m for s, (m, _) in self.transport.allgather(tag, self._sites, meta).items()}

        return load_site_shard(cfg, self.site.node_ids, gather, self.shard)

    def _sum_over_sites(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over the sites, by flooding; every site adds in the pilot's order (same result)."""
        self._sums += 1
        got = self.transport.allgather(f"sum:{self._sums}", self._sites, {},
                                       [t.detach().cpu().contiguous().numpy()])
        total = sum(torch.from_numpy(got[s][1][0].copy()) for s in self._sites)
        assert isinstance(total, torch.Tensor)
        return total.to(dtype=t.dtype, device=t.device)

    # ------------------------------------------------------------------ the Executor protocol
    def communicator(self, spec: RunSpec) -> SiteCommunicator:
        caps = spec.algorithm.capabilities
        if caps.compressed_gossip or spec.settings.compress != "none":
            raise ProxGTValueError("the site runtime does not run compressed gossip yet")
        if not caps.gossip_keys:
            raise ProxGTValueError(f"algorithm {spec.settings.algorithm!r} does not name the quantities it mixes "
                                   "(Capabilities.gossip_keys): a site cannot tell its trackers from its iterates")
        W = spec.topology.W
        W = W.to_dense() if W.layout == torch.sparse_csr else W
        self.comm = SiteCommunicator(self.transport, W, spec.topology.degrees, self.site.node_ids,
                                     self.pilot.owner(), round_deadline_s=self.pilot.round_deadline_s,
                                     site_timeout_s=self.site_timeout_s, send_delay_s=self.send_delay_s)
        self.mixer = SiteMixer(self.comm, spec.rounds, caps.tracked_keys)
        self.transport.handlers["abort"] = self._on_abort  # from now on a stopped neighbour is a lost one
        return self.comm

    def _on_abort(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        comm = self.comm
        assert comm is not None
        if str(header.get("origin")) == sender and sender in comm.out_links:  # a neighbour still in the graph
            comm.lost.add(sender)
            self._why[sender] = f"stopped: {header.get('message', '')}"

    def barrier(self) -> None:
        pass

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x  # final.npz holds this site's rows (summary.json names their node ids)

    def add_summary(self, summary: dict[str, Any], elapsed_s: float, iters_run: int) -> None:
        comm = self.comm
        assert comm is not None
        comm.finish_trace()
        st = self.transport.stats
        summary["site"] = {
            "pilot": self.pilot.name,
            "site": self.site.name,
            "node_ids": list(self.site.node_ids),
            "neighbours": self.pilot.neighbours(self.site.name),
            "iterations": iters_run,
            "bytes_sent": st.bytes_sent,
            "bytes_received": st.bytes_received,
            "messages_sent": st.messages_sent,
            "seconds_waiting": comm.seconds_waiting,
            "messages_late": comm.messages_late,
            "messages_lost": comm.messages_lost,
            "refused_connections": st.refused_connections,
            "dropped_messages": st.dropped_messages,
            "train_s": elapsed_s,
            "lost_sites": self.lost_sites,
            "note": "metrics.csv is over this site's own nodes and data; final.npz holds this site's rows (node_ids); "
                    "messages_late were made good in the next round of their key, messages_lost by a later one",
        }
        if self.out:
            atomic_write_text(Path(self.out) / "link_trace.csv", comm.trace_csv())

    def train(self, train_fn: TrainFn, spec: RunSpec, comm: Any, oracle: Any, *, state: Any, start_wall: float,
              on_row: Any, after_iteration: Any, progress: bool, rows: list[dict[str, float]], folder: Any,
              mixer: Any) -> tuple[Any, Any]:
        """The shared loop with the site's mixer (its rounds exchange running sums themselves), then goodbye.

        A neighbour silent past the site timeout is lost: at the end of the iteration in which a survivor finds
        out (itself, or from the flooded news), the survivors agree on the iteration T to switch at (the largest
        iteration any of them has reached), each runs on to T, then every survivor drops the lost sites' nodes,
        recomputes Metropolis weights on the surviving graph and re-initializes the algorithm at its iterates
        (trackers then describe the surviving network exactly), as a distributed run's survivors do."""
        assert self.comm is not None and self.mixer is not None
        site_comm, site_mixer = self.comm, self.mixer
        wall = start_wall

        def hook(st: Any, w: float) -> None:
            nonlocal wall
            wall = w
            after_iteration(st, w)
            if self._regroup_due() and int(st.t) < spec.iters:
                raise _Regroup(st)

        current = spec
        while True:
            try:
                out = train_fn(current, comm, oracle, state=state, start_wall=wall, on_row=on_row,
                               after_iteration=hook, progress=progress, mixer=site_mixer)
                break
            except _Regroup as rg:
                lost, T = self._agree(int(rg.state.t))
                state = rg.state
                if int(state.t) < T:  # run on to the agreed iteration on the old graph
                    ahead = dataclasses.replace(spec, resolved=spec.resolved.replace(iters=T))
                    state, _ = train_fn(ahead, comm, oracle, state=state, start_wall=wall, on_row=on_row,
                                        after_iteration=after_iteration, progress=False, mixer=site_mixer)
                site_comm.drop_sites(lost, self.pilot.node_edges())
                self.lost_sites += [{"site": name, "iteration": T, "nodes": list(self.pilot.site(name).node_ids),
                                     "reason": self._why.get(name, f"silent for more than {self.site_timeout_s:g} s")}
                                    for name in sorted(lost)]
                state = spec.algorithm.init(state.x, oracle, site_mixer)._replace(t=T)
        self._goodbye()
        return out

    def _regroup_due(self) -> bool:
        assert self.comm is not None
        return bool(self.comm.lost) or bool(self.transport.flooded(f"lost:{self.comm.epoch + 1}"))

    def _agree(self, t: int) -> tuple[set[str], int]:
        """Flood this site's news of lost sites and its iteration among the survivors; (lost sites, switch
        iteration). A surviving site graph that is disconnected ends the run."""
        assert self.comm is not None
        tag = f"lost:{self.comm.epoch + 1}"
        known = set(self.comm.lost) | {n for m in self.transport.flooded(tag).values() for n in m["lost"]}
        known |= {s["site"] for s in self.lost_sites}
        survivors = [s for s in self._sites if s not in known]
        reach = {self.site.name}
        grew = True
        while grew:
            grew = False
            for a, b in self.pilot.links:
                if a in survivors and b in survivors and (a in reach) != (b in reach):
                    reach |= {a, b}
                    grew = True
        if set(survivors) - reach:
            raise SiteLost(f"site(s) {', '.join(sorted(known))} were lost and the surviving sites are no longer "
                           f"connected ({', '.join(sorted(set(survivors) - reach))} cannot be reached)")
        got = self.transport.allgather(tag, survivors, {"lost": sorted(known), "t": t})
        agreed = {n for m, _ in got.values() for n in m["lost"]}
        if agreed != known:
            raise SiteLost(f"the surviving sites disagree on who was lost ({', '.join(sorted(agreed ^ known))})")
        return known, max(int(m["t"]) for m, _ in got.values())

    def _goodbye(self) -> None:
        """Tell the neighbours this site is done and wait for theirs: a site that is still running may need this
        site's last messages, which leave before its sockets close."""
        done = self._done
        done |= {s["site"] for s in self.lost_sites}
        for peer in self.transport.dealers:
            self.transport.send(peer, {"kind": "bye"})
        start = time.monotonic()
        while set(self.transport.dealers) - done:
            for p in set(self.transport.dealers) - done:
                if self.transport.silent_since(p, start) > self.site_timeout_s:
                    done.add(p)  # gone: it cannot need anything more
            self.transport.pump(0.05)


class _Regroup(Exception):
    """Raised after an iteration when a site was lost: the survivors regroup (:meth:`SiteExecutor.train`)."""

    def __init__(self, state: Any):
        super().__init__("a neighbouring site was lost")
        self.state = state


def hello(transport: SiteTransport, settings: dict[str, Any], timeout_s: float) -> str:
    """Exchange settings with every neighbour; a mismatch is one line naming the differing settings. Returns
    the agreed hash."""
    digest = settings_fingerprint(settings)
    got: dict[str, dict[str, Any]] = {}
    # from now on only messages of this run are read: a neighbour that agreed may send before this site has
    # read its HELLO
    transport.run_tag = digest[:16]

    def on_hello(sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        got.setdefault(sender, header)

    transport.handlers["hello"] = on_hello
    for peer in transport.dealers:
        transport.send(peer, {"kind": "hello", "hash": digest, "settings": settings})
    start = time.monotonic()
    while set(transport.dealers) - set(got):
        if time.monotonic() - start > timeout_s:
            missing = sorted(set(transport.dealers) - set(got))
            raise SiteLost(f"neighbouring site(s) {', '.join(missing)} did not answer within {timeout_s:g} s "
                           "(--start-timeout): are they started, and do --peer-address/the pilot's addresses reach "
                           "them?")
        transport.pump(0.05)
    for peer in sorted(got):
        header = got[peer]
        if header.get("hash") == digest:
            continue
        theirs = header.get("settings") or {}
        differ = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
        detail = ", ".join(f"{k} ({settings.get(k)!r} here, {theirs.get(k)!r} there)" for k in differ[:4])
        raise ProxGTValueError(f"site {peer}'s settings differ from this site's: {detail}"
                               f"{' and more' if len(differ) > 4 else ''}; start every site with the same pilot file "
                               "and proxgt version")
    return digest


def run_site(pilot_path: str | Path, site: str, key_file: str | Path, data: str, *, out: str | None = None,
             site_timeout_s: float | None = None, bind: str | None = None,
             peer_addresses: dict[str, str] | None = None, send_delay_s: float = 0.0,
             asynchronous: bool = False, overwrite: bool = False, progress: bool = False,
             fault_hook: FaultHook | None = None, start_timeout_s: float = 600.0) -> History:
    """Run one site of the pilot (``proxgt site``); returns its history. One-line ProxGTValueError on bad input
    or a settings mismatch; :class:`SiteLost` when the sites cannot go on (no neighbour answers at the start, the
    surviving sites are disconnected). ``fault_hook(0, t)`` runs after every iteration (tests stop a site with it)."""
    pilot = load_pilot(pilot_path)
    me = pilot.site(site)
    if asynchronous:
        raise ProxGTValueError("--async is not available on the site runtime yet: sites run synchronous rounds with "
                               "a deadline (late messages are made good by running sums)")
    timeout = pilot.site_timeout_s if site_timeout_s is None else float(site_timeout_s)
    if not timeout > 0:
        raise ProxGTValueError(f"--site-timeout must be > 0 seconds (got {site_timeout_s})")
    if not start_timeout_s > 0:
        raise ProxGTValueError(f"--start-timeout must be > 0 seconds (got {start_timeout_s})")
    if not send_delay_s >= 0:
        raise ProxGTValueError(f"--send-delay must be >= 0 seconds (got {send_delay_s})")
    public, secret = load_site_key(key_file)
    if me.public_key is not None and me.public_key.encode("ascii") != public:
        raise ProxGTValueError(f"--key {key_file} is not site {site}'s key: its public key differs from the one the "
                               f"pilot file lists for {site}")
    addresses = {s.name: s.address for s in pilot.sites}
    for name, addr in (peer_addresses or {}).items():
        pilot.site(name)
        addresses[name] = addr
    neighbours = {}
    for name in pilot.neighbours(site):
        key = pilot.site(name).public_key
        if key is None:
            raise ProxGTValueError(f"pilot file {pilot.path}: site {name!r} has no public_key; a site admits only "
                                   "neighbours whose keys the pilot lists ('proxgt keys new', or a rehearsal's "
                                   "throwaway keys)")
        neighbours[name] = (addresses[name], key)
    out = out or f"runs/pilot-{pilot.name}/{site}"
    Path(out).mkdir(parents=True, exist_ok=True)
    edge_file = Path(out) / "pilot-edges.txt"
    cfg = RunConfig.from_dict(pilot_run_config(pilot, data=data, edge_file=edge_file, out=out), source=pilot.path)
    # under DP each site draws its noise from a secret seed of its own (every site knows the run's seed); its
    # metrics stay on the site, per-site results included
    cfg = private_across_processes(cfg.validate(), metrics_stay_local=True)
    transport = SiteTransport(site, neighbours, public, secret, bind or me.address, site_timeout_s=timeout)
    try:
        # sites are started by hand at different places: the neighbours get longer to come than to answer later
        hello(transport, site_settings(pilot, cfg), max(timeout, start_timeout_s))
        executor = SiteExecutor(pilot, site, transport, out=out, site_timeout_s=timeout, send_delay_s=send_delay_s)
        return drive(executor, cfg, out=out, overwrite=overwrite, progress=progress, fault_hook=fault_hook)
    except SiteAborted as exc:
        with contextlib.suppress(Exception):  # best effort: the error itself is what this site reports
            transport.abort(exc.origin, exc.message)  # passed on: a site further away may be waiting for it too
        raise
    except BaseException as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        with contextlib.suppress(Exception):
            transport.abort(site, text if isinstance(exc, ProxGTValueError) else f"{type(exc).__name__}: {text}")
        raise
    finally:
        transport.close()


def main_line(hist: History) -> str:
    """One line for the terminal: the site's iterations, traffic and late messages."""
    s = hist.summary.get("site", {})
    return (f"site {s.get('site')}: {s.get('iterations')} iterations, {s.get('bytes_sent')} bytes sent, "
            f"{s.get('seconds_waiting', 0.0):.2f} s waiting, {s.get('messages_late')} late and "
            f"{s.get('messages_lost')} lost messages, {s.get('refused_connections')} refused connection attempts")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use 'proxgt site'")
