"""One site of a cross-site pilot: its nodes, through the shared run driver, over its TLS links.

:func:`run_site` is ``proxgt site``: read the pilot file, open the site's sockets
(:mod:`~proxgt.executors.site.transport`), agree with the neighbours on the settings (HELLO: the hash of the
settings and the proxgt and torch versions, :mod:`proxgt.executors.agreement`), then run the unchanged
algorithm objects through :func:`proxgt.executors.driver.drive` with a :class:`SiteExecutor`, whose
communicator and mixer (:mod:`~proxgt.executors.site.communicator`) exchange rows with the neighbouring sites
only. The site writes its own run folder: config.toml, metrics.csv (its own nodes, on its own data), final.npz
(its nodes' rows), summary.json (with ``site``: bytes, seconds waiting, late and lost messages, refused
connections) and link_trace.csv.

Membership changes by regrouping, the same way for a lost site and for one that rejoins: at the end of the
iteration in which a site learns of it (a neighbour silent past the site timeout or stopped; a lost neighbour
asking to join), it floods the news; the sites of the new membership agree on the switch iteration T (the largest
iteration any of the sites already present has reached), the sites present run on to T, a rejoining site jumps to
T from its checkpoint (it does not train the iterations it missed), and then every site recomputes Metropolis
weights on the graph of the sites now present, enters the next membership epoch (messages carry it) and
re-initializes the algorithm at its current iterates, so that the trackers describe the new network exactly.

A site checkpoints its own state (the driver's checkpoint, every ``checkpoint_every`` iterations, by default
every ``log_every``): its nodes' algorithm state, the membership, and every value it received from the other
sites while setting up (:meth:`SiteExecutor.checkpoint_state`), so that ``proxgt site --rejoin`` can rebuild the
site's data set-up without the others, who are training and flood no set-up values again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxgt._io import atomic_write_text, json_safe
from proxgt.data._shard import NodeShard, ShardRequest
from proxgt.errors import ProxGTValueError
from proxgt.executors.agreement import agreed_settings, settings_fingerprint
from proxgt.executors.checkpoint import find_checkpoint, read_checkpoint_file
from proxgt.executors.driver import FaultHook, ResumePlan, TrainFn, drive
from proxgt.executors.site.communicator import SiteCommunicator, SiteMixer
from proxgt.executors.site.data import load_site_shard
from proxgt.executors.site.pilot import Pilot, load_pilot, pilot_run_config
from proxgt.executors.site.transport import SiteAborted, SiteLost, SiteTransport, load_site_key
from proxgt.settings import RunConfig
from proxgt.training import History, RunSpec
from proxgt.training.folder import CsvLog
from proxgt.training.privacy import dp_requested, private_across_processes

__all__ = ["Rejoin", "SiteExecutor", "run_site", "site_settings"]

#: settings each site sets for itself (paths on its own machine, how often it checkpoints)
_LOCAL = ("out", "device", "data", "data_dir", "edge_file", "checkpoint_every")


def site_settings(pilot: Pilot, cfg: RunConfig) -> dict[str, Any]:
    """What every site must hold equal (JSON-safe): the run settings without the sites' own paths, the node graph,
    the sites with their keys and the deadline, the proxgt and torch versions."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _LOCAL}
    settings = agreed_settings(d, 1, len(pilot.sites))
    settings["pilot_graph"] = [list(e) for e in pilot.node_edges()]
    settings["pilot_sites"] = [[s.name, s.public_key, s.nodes] for s in pilot.sites]
    settings["round_deadline_s"] = pilot.round_deadline_s
    settings["share_metrics"] = pilot.share_metrics
    return json.loads(json.dumps(settings, default=str))


@dataclasses.dataclass
class Rejoin:
    """What a site that rejoins the run brings (``run_site(..., rejoin=True)``): the set-up record of its checkpoint
    and its neighbours' answers to its HELLO (the membership it joins)."""

    setup: list[dict[str, Any]]
    answers: dict[str, dict[str, Any]]


class SiteExecutor:
    """This site's nodes (an :class:`~proxgt.executors.driver.Executor`): rank 0 of its own run folder."""

    rank = 0
    world = 1
    folder = None  # the driver's run folder is this site's
    can_checkpoint = True  # its own file (checkpoint_state): enough to rejoin, not to replay the links' sums

    def __init__(self, pilot: Pilot, site: str, transport: SiteTransport, *, out: str | None,
                 site_timeout_s: float, send_delay_s: float = 0.0, settings: dict[str, Any] | None = None,
                 rejoin: Rejoin | None = None):
        self.pilot, self.site = pilot, pilot.site(site)
        self.transport = transport
        self.out = out
        self.site_timeout_s = float(site_timeout_s)
        self.send_delay_s = float(send_delay_s)
        self.settings = settings or {}  # what HELLO carried (a lost neighbour that rejoins must match it)
        self.digest = settings_fingerprint(self.settings)
        self.comm: SiteCommunicator | None = None
        self.mixer: SiteMixer | None = None
        self._sums = 0
        self._sites = [s.name for s in pilot.sites]
        self.lost_sites: list[dict[str, Any]] = []
        self.rejoined_sites: list[dict[str, Any]] = []
        self.refused_rejoins: list[dict[str, Any]] = []
        self.absent: set[str] = set()  # sites out of the graph (lost, not back)
        self._why: dict[str, str] = {}  # neighbours that said they stopped, and why
        self._done: set[str] = set()  # neighbours that said goodbye (possibly long before this site finishes)
        self._greeted: set[str] = set()  # lost neighbours whose HELLO matched: they may ask to join
        self._joining: set[str] = set()  # ... and did: they join at the end of this iteration
        self._aborted: set[str] = set()  # ... and stopped afterwards
        self._pending: dict[str, dict[str, Any]] = {}  # HELLOs of neighbours not dropped yet (they restarted)
        self.setup: list[dict[str, Any]] = []  # every value received while setting up (checkpoint_state)
        self._csv_logs: dict[str, CsvLog] = {}  # network.csv, network_metrics.csv
        self._training = False
        self._rejoin = rejoin
        self._replay: list[dict[str, Any]] | None = None
        self._skipped = 0  # iterations this site jumped over when it rejoined
        transport.handlers["bye"] = self._on_bye
        if rejoin is not None:
            first = rejoin.answers[min(rejoin.answers)]
            self.absent = set(first["absent"])
            self.lost_sites = list(first["lost_sites"])
            self.rejoined_sites = list(first["rejoined_sites"])
            self._replay = list(rejoin.setup)

    # ------------------------------------------------------------------ data
    @property
    def shard(self) -> ShardRequest:
        return ShardRequest(hosted=lambda n: self.site.node_ids, sum_over_processes=self._sum_over_sites,
                            load=self._load)

    def _load(self, cfg: Any) -> NodeShard:
        def gather(tag: str, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
            return {s: m for s, (m, _) in self._allgather(tag, meta).items()}

        return load_site_shard(cfg, self.site.node_ids, gather, self.shard)

    def _sum_over_sites(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over the sites, by flooding; every site adds in the pilot's order (same result)."""
        self._sums += 1
        got = self._allgather(f"sum:{self._sums}", {}, [t.detach().cpu().contiguous().numpy()])
        total = sum(torch.from_numpy(np.array(got[s][1][0])) for s in self._sites)
        assert isinstance(total, torch.Tensor)
        return total.to(dtype=t.dtype, device=t.device)

    def _allgather(self, tag: str, meta: dict[str, Any], arrays: Sequence[np.ndarray] = ()
                   ) -> dict[str, tuple[dict[str, Any], list[np.ndarray]]]:
        """:meth:`SiteTransport.allgather` over every site; before training the values are recorded (the
        checkpoint keeps them), and a rejoining site replays them instead (the others flood them no more)."""
        mine = json.dumps(json_safe(meta), sort_keys=True)
        if self._replay is not None:
            entry = self._replay.pop(0) if self._replay else None
            if entry is None or entry["tag"] != tag or entry["sites"][self.site.name]["meta"] != mine:
                raise ProxGTValueError(f"site {self.site.name}'s set-up ({tag.split(':')[0]}) differs from the one its "
                                       "checkpoint recorded: rejoin with the same --data and pilot file")
            self.setup.append(entry)  # its next checkpoints keep the record (it may be lost again)
            return {s: (json.loads(v["meta"]), [a.numpy() for a in v["arrays"]]) for s, v in entry["sites"].items()}
        got = self.transport.allgather(tag, self._sites, meta, arrays)
        if not self._training:
            self.setup.append({"tag": tag, "sites": {
                s: {"meta": mine if s == self.site.name else json.dumps(m, sort_keys=True),
                    "arrays": [torch.from_numpy(np.array(a)) for a in arrs]} for s, (m, arrs) in got.items()}})
        return got

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
        self.comm.regroup_pending = self._regroup_pending
        if self._rejoin is not None:  # the membership it joins: messages of its epoch and later are kept
            first = self._rejoin.answers[min(self._rejoin.answers)]
            self.comm.epoch = int(first["epoch"])
        self.transport.handlers["abort"] = self._on_abort  # from now on a stopped neighbour is a lost one
        self.transport.handlers["hello"] = self._on_hello  # ... and one that comes back may rejoin
        self.transport.handlers["join"] = self._on_join
        return self.comm

    def checkpoint_state(self) -> dict[str, Any]:
        """The site's part of its checkpoint file: the settings hash, the membership and the set-up record."""
        comm = self.comm
        assert comm is not None
        return {"site": {"settings_hash": self.digest, "epoch": comm.epoch, "absent": sorted(self.absent),
                         "lost_sites": self.lost_sites, "rejoined_sites": self.rejoined_sites,
                         "setup": self.setup}}

    def _on_abort(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        comm = self.comm
        assert comm is not None
        if str(header.get("origin")) != sender:
            return
        if sender in comm.out_links:  # a neighbour still in the graph
            comm.lost.add(sender)
            self._why[sender] = f"stopped: {header.get('message', '')}"
        elif sender in self._greeted:  # a rejoining one: it does not join, or is lost again once it has
            self._why[sender] = f"stopped: {header.get('message', '')}"
            self._aborted.add(sender)
            self._greeted.discard(sender)
            self._joining.discard(sender)

    def _on_bye(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        if self._rejoin is not None:
            raise _finished_first(sender, self.site.name)
        self._done.add(sender)

    def _on_hello(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        """A neighbour's HELLO during training: a lost one that restarted. Answered (with the settings and the
        membership) once it is out of the graph; it may join if its settings match and it asks to rejoin."""
        if sender not in self.absent:
            self._pending[sender] = header  # restarted before this site found it silent: answered once dropped
            return
        comm = self.comm
        assert comm is not None
        self.transport.send(sender, {"kind": "hello", "hash": self.digest, "settings": self.settings,
                                     "training": True, "epoch": comm.epoch, "absent": sorted(self.absent),
                                     "lost_sites": self.lost_sites, "rejoined_sites": self.rejoined_sites})
        if header.get("hash") != self.digest:
            why = settings_mismatch(sender, self.settings, header.get("settings") or {})
            self.refused_rejoins.append({"site": sender, "reason": why})
            warnings.warn(f"{why}; site {sender} may not rejoin and site {self.site.name} goes on", stacklevel=2)
        elif header.get("rejoin"):
            self._greeted.add(sender)
            self._aborted.discard(sender)

    def _on_join(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        comm = self.comm
        assert comm is not None
        # it joins at the end of this iteration, unless the membership changed since its HELLO was answered (it
        # would wait for an agreement under another epoch's tag: it gives up after the site timeout instead)
        if sender in self._greeted and sender in self.absent and header.get("epoch") == comm.epoch:
            self._joining.add(sender)

    def barrier(self) -> None:
        pass

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x  # final.npz holds this site's rows (summary.json names their node ids)

    def _share_row(self, row: dict[str, float]) -> None:
        """``[pilot] share_metrics``: send this site's metrics row to every site present and write all of theirs to
        network_metrics.csv (one row per site and logged iteration). A site that does not send its row within the
        site timeout is left out of that iteration (one warning), as a lost one is left out of the run."""
        comm = self.comm
        assert comm is not None
        t = int(row["iter"])
        members = [s for s in self._sites if s not in self.absent]
        try:
            got = self.transport.allgather(f"metrics:{comm.epoch}:{t}", members,
                                           {"row": {k: float(v) for k, v in row.items()}})
        except SiteLost as exc:
            warnings.warn(f"site {self.site.name}: network_metrics.csv has no row for iteration {t} ({exc})",
                          stacklevel=2)
            return
        rows = [{"site": name, **got[name][0]["row"]} for name in members]
        self._log_rows("network_metrics.csv", ["site", *row], rows)

    def _log_network(self, t: int) -> None:
        """One row of network.csv: what this site measured of the network at iteration t, from the values its
        neighbours sent (nothing computed on data)."""
        comm = self.comm
        assert comm is not None
        if comm.neighbour_gap is not None:
            self._log_rows("network.csv", ["iter", "neighbour_gap"], [{"iter": t, "neighbour_gap": comm.neighbour_gap}])

    def _log_rows(self, name: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the CSV file ``name`` of this site's folder (one that exists goes on: a site that
        rejoins keeps its rows); a site without a folder writes none."""
        if not self.out:
            return
        log = self._csv_logs.get(name)
        if log is None:
            log = self._csv_logs[name] = CsvLog(Path(self.out) / name)
            if log.path.exists():
                log.go_on(columns)
        log.append(rows)

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
            "iterations": iters_run - self._skipped,
            "bytes_sent": st.bytes_sent,
            "bytes_received": st.bytes_received,
            "messages_sent": st.messages_sent,
            "seconds_waiting": comm.seconds_waiting,
            "messages_late": comm.messages_late,
            "messages_lost": comm.messages_lost,
            "refused_connections": st.refused_connections,
            "refused_by": dict(st.refused_by),
            "dropped_messages": st.dropped_messages,
            "train_s": elapsed_s,
            "lost_sites": self.lost_sites,
            "rejoined_sites": self.rejoined_sites,
            "neighbour_gap": comm.neighbour_gap,
            "refused_rejoins": self.refused_rejoins,
            "note": "metrics.csv is over this site's own nodes and data; final.npz holds this site's rows (node_ids); "
                    "messages_late were made good in the next round of their key, messages_lost by a later one; "
                    "neighbour_gap (and network.csv) is the largest ||x_j - x_i|| / ||x_i|| between this site's rows "
                    "and the rows its neighbours sent in the same round",
        }
        if self.out:
            atomic_write_text(Path(self.out) / "link_trace.csv", comm.trace_csv())

    def train(self, train_fn: TrainFn, spec: RunSpec, comm: Any, oracle: Any, *, state: Any, start_wall: float,
              on_row: Any, after_iteration: Any, progress: bool, rows: list[dict[str, float]], folder: Any,
              mixer: Any) -> tuple[Any, Any]:
        """The shared loop with the site's mixer (its rounds exchange running sums themselves), then goodbye.

        Membership changes (module docstring) interrupt the loop at the end of an iteration: the sites of the new
        membership agree on the switch iteration T, those present run on to T, a rejoining site jumps there from
        its checkpoint, and every site regroups and re-initializes the algorithm at its iterates."""
        assert self.comm is not None and self.mixer is not None
        site_mixer = self.mixer
        self._training = True
        self._replay = None
        wall = start_wall

        def hook(st: Any, w: float) -> None:
            nonlocal wall
            wall = w
            after_iteration(st, w)
            t = int(st.t)
            if t % spec.settings.log_every == 0 or t == spec.iters:
                self._log_network(t)
            if self._regroup_due() and t < spec.iters:
                raise _Regroup(st)

        def logged(row: dict[str, float]) -> None:
            on_row(row)
            if self.pilot.share_metrics:
                self._share_row(row)

        if self._rejoin is not None:
            t_checkpoint = int(state.t)
            for peer in self.transport.peers:
                if peer not in self.absent:
                    self.transport.send(peer, {"kind": "join", "epoch": self.comm.epoch})
            lost, join, T, members = self._agree(t_checkpoint)
            self._rejoin = None  # in the run from here on (a goodbye no longer means it came too late)
            state = self._switch(spec, state, oracle, lost, join, T, members)
            self._skipped = T - t_checkpoint
        while True:
            try:
                out = train_fn(spec, comm, oracle, state=state, start_wall=wall, on_row=logged,
                               after_iteration=hook, progress=progress, mixer=site_mixer)
                break
            except _Regroup as rg:
                lost, join, T, members = self._agree(int(rg.state.t))
                state = rg.state
                if int(state.t) < T:  # run on to the agreed iteration on the old graph
                    ahead = dataclasses.replace(spec, resolved=spec.resolved.replace(iters=T))
                    state, _ = train_fn(ahead, comm, oracle, state=state, start_wall=wall, on_row=logged,
                                        after_iteration=after_iteration, progress=False, mixer=site_mixer)
                state = self._switch(spec, state, oracle, lost, join, T, members)
        self._goodbye()
        return out

    def _regroup_due(self) -> bool:
        assert self.comm is not None
        return bool(self.comm.lost) or bool(self._joining) or self._regroup_pending()

    def _regroup_pending(self) -> bool:
        """Another site floods the news of a membership change: it waits for this one at the end of the
        iteration, and sends no round messages until then."""
        assert self.comm is not None
        return bool(self.transport.flooded(f"regroup:{self.comm.epoch + 1}"))

    def _agree(self, t: int) -> tuple[set[str], set[str], int, list[str]]:
        """Flood this site's news (lost sites, sites that join) and its iteration among the sites present that
        stay; (lost, joining, switch iteration, the new membership). A rejoining site only listens: the others
        never wait for it. A disconnected graph ends the run."""
        assert self.comm is not None
        tag = f"regroup:{self.comm.epoch + 1}"
        if self._rejoin is not None:
            got = self.transport.gathered(tag, [s for s in self._sites if s not in self.absent])
            lost = {n for m, _ in got.values() for n in m["lost"]}
            join = {n for m, _ in got.values() for n in m["join"]}
            if self.site.name not in join:
                raise SiteLost(f"the other sites regrouped without site {self.site.name} (their membership changed "
                               "meanwhile): try --rejoin again")
        else:
            news = list(self.transport.flooded(tag).values())
            lost = (set(self.comm.lost) | {n for m in news for n in m["lost"]}) - self.absent
            join = (self._joining | {n for m in news for n in m["join"]}) & self.absent
        members = [s for s in self._sites if (s not in self.absent and s not in lost) or s in join]
        reach = {self.site.name}
        grew = True
        while grew:
            grew = False
            for a, b in self.pilot.links:
                if a in members and b in members and (a in reach) != (b in reach):
                    reach |= {a, b}
                    grew = True
        if set(members) - reach:
            raise SiteLost(f"site(s) {', '.join(sorted(lost | self.absent))} were lost and the remaining sites are no "
                           f"longer connected ({', '.join(sorted(set(members) - reach))} cannot be reached)")
        if self._rejoin is None:
            got = self.transport.allgather(tag, [s for s in members if s not in join],
                                           {"lost": sorted(lost), "join": sorted(join), "t": t,
                                            "why": {n: w for n, w in self._why.items() if n in lost}})
            agreed_lost = {n for m, _ in got.values() for n in m["lost"]}
            agreed_join = {n for m, _ in got.values() for n in m["join"]}
            if agreed_lost != lost or agreed_join != join:
                raise SiteLost("the sites disagree on who was lost or rejoins "
                               f"({', '.join(sorted((agreed_lost ^ lost) | (agreed_join ^ join)))})")
        for m, _ in got.values():  # why a site was lost: its neighbours know (it told them it stopped)
            for n, w in m["why"].items():
                self._why.setdefault(n, w)
        return lost, join, max(int(m["t"]) for m, _ in got.values()), members

    def _switch(self, spec: RunSpec, state: Any, oracle: Any, lost: set[str], join: set[str], T: int,
                members: list[str]) -> Any:
        """At iteration T: the new membership's graph, its epoch, and the algorithm re-initialized at the
        current iterates (a rejoining site's come from its checkpoint)."""
        comm, mixer = self.comm, self.mixer
        assert comm is not None and mixer is not None
        tag = f"regroup:{comm.epoch + 1}:rounds"
        if join:  # a rejoining site takes up the others' round count (messages name their round)
            staying = [s for s in members if s not in join]
            got = self.transport.gathered(tag, staying) if self.site.name in join else \
                self.transport.allgather(tag, staying, {"rounds": comm.counter.rounds})
            counts = {int(m["rounds"]) for m, _ in got.values()}
            if len(counts) != 1:
                raise SiteLost(f"the sites reached iteration {T} after different numbers of gossip rounds "
                               f"({sorted(counts)})")
            if self.site.name in join:
                comm.counter.skip_rounds(counts.pop() - comm.counter.rounds)
        self.absent = (self.absent | lost) - join
        comm.regroup(set(members), self.pilot.node_edges(), comm.epoch + 1)
        comm.lost |= join & self._aborted  # stopped after it asked to join: lost again at the next iteration
        gone = [{"site": name, "iteration": T, "nodes": list(self.pilot.site(name).node_ids),
                 "reason": self._why.pop(name, f"silent for more than {self.site_timeout_s:g} s")}
                for name in sorted(lost)]
        self.lost_sites += gone
        self.rejoined_sites += [{"site": name, "iteration": T} for name in sorted(join)]
        for entry in gone:  # the operator sees it as it happens
            warnings.warn(f"site {self.site.name}: site {entry['site']} was lost ({entry['reason']}); from iteration "
                          f"{T} the run goes on with {', '.join(members)}", stacklevel=2)
        for name in sorted(join):
            who = "this site" if name == self.site.name else f"site {name}"
            warnings.warn(f"site {self.site.name}: {who} rejoined at iteration {T}; the run goes on with "
                          f"{', '.join(members)}", stacklevel=2)
        self._joining -= join | lost
        self._greeted -= join | lost
        self._aborted -= join | lost
        for name in [n for n in self._pending if n in self.absent]:  # restarted while still in the graph
            self._on_hello(name, self._pending.pop(name), [])
        return spec.algorithm.init(state.x, oracle, mixer)._replace(t=T)

    def _goodbye(self) -> None:
        """Tell the neighbours this site is done and wait for theirs: a site that is still running may need this
        site's last messages, which leave before its sockets close."""
        done = self._done
        done |= self.absent
        for peer in self.transport.peers:
            self.transport.send(peer, {"kind": "bye"})
        start = time.monotonic()
        while set(self.transport.peers) - done:
            for p in set(self.transport.peers) - done:
                if self.transport.silent_since(p, start) > self.site_timeout_s:
                    done.add(p)  # gone: it cannot need anything more
            self.transport.pump(0.05)


class _Regroup(Exception):
    """Raised after an iteration when the membership changes: the sites regroup (:meth:`SiteExecutor.train`)."""

    def __init__(self, state: Any):
        super().__init__("the membership changes")
        self.state = state


def _finished_first(peer: str, site: str) -> SiteLost:
    return SiteLost(f"site {peer} finished its run before site {site} could rejoin")


def settings_mismatch(peer: str, settings: dict[str, Any], theirs: dict[str, Any]) -> str:
    """One line naming the settings in which site ``peer``'s differ from this site's."""
    differ = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
    detail = ", ".join(f"{k} ({settings.get(k)!r} here, {theirs.get(k)!r} there)" for k in differ[:4])
    return (f"site {peer}'s settings differ from this site's: {detail}{' and more' if len(differ) > 4 else ''}; "
            "start every site with the same pilot file and proxgt version")


def hello(transport: SiteTransport, settings: dict[str, Any], timeout_s: float) -> str:
    """Exchange settings with every neighbour; a mismatch is one line naming the differing settings. Returns
    the agreed hash."""
    digest, _ = _hello(transport, settings, timeout_s, rejoin=False)
    return digest


def rejoin_hello(transport: SiteTransport, settings: dict[str, Any], timeout_s: float) -> dict[str, dict[str, Any]]:
    """HELLO of a site that rejoins: its neighbours that are training answer with their settings and the
    membership (the ones out of the run are named in the answers and not waited for). A settings mismatch is one
    line, as in :func:`hello`; neighbours that do not answer within ``timeout_s`` (they finished, or cannot
    reach this site) or that finish meanwhile end it with :class:`SiteLost`. Returns the answers."""
    _, got = _hello(transport, settings, timeout_s, rejoin=True)
    views = {(int(h["epoch"]), tuple(h["absent"])) for h in got.values()}
    if len(views) != 1 or transport.name not in next(iter(views))[1]:
        raise SiteLost(f"the neighbours of site {transport.name} are changing their membership right now; try "
                       "--rejoin again")
    return got


def _hello(transport: SiteTransport, settings: dict[str, Any], timeout_s: float, *, rejoin: bool
           ) -> tuple[str, dict[str, dict[str, Any]]]:
    digest = settings_fingerprint(settings)
    got: dict[str, dict[str, Any]] = {}
    # from now on only messages of this run are read: a neighbour that agreed may send before this site has
    # read its HELLO
    transport.run_tag = digest[:16]

    def on_hello(sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        got.setdefault(sender, header)

    def on_bye(sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        raise _finished_first(sender, transport.name)

    transport.handlers["hello"] = on_hello
    if rejoin:
        transport.handlers["bye"] = on_bye
    for peer in transport.peers:
        transport.send(peer, {"kind": "hello", "hash": digest, "settings": settings, **({"rejoin": True} if rejoin
                                                                                         else {})})
    start = time.monotonic()
    while True:
        # a rejoining site waits for the neighbours in the run only (the others' answers name those out of it)
        out = {n for h in got.values() for n in h.get("absent", [])} if rejoin else set()
        waiting = set(transport.peers) - set(got) - out
        if not waiting and (got or not rejoin):
            break
        if time.monotonic() - start > timeout_s:
            raise SiteLost(f"neighbouring site(s) {', '.join(sorted(waiting))} did not answer within {timeout_s:g} s "
                           + ("(--start-timeout): a site rejoins a run that is still going on; have the others "
                              "finished, or do --peer-address/the pilot's addresses not reach them?" if rejoin else
                              "(--start-timeout): are they started, and do --peer-address/the pilot's addresses "
                              "reach them?"))
        transport.pump(0.05)
    for peer in sorted(got):
        header = got[peer]
        if header.get("hash") != digest:
            raise ProxGTValueError(settings_mismatch(peer, settings, header.get("settings") or {}))
        if rejoin and not header.get("training"):
            raise SiteLost(f"site {peer} is starting a run, not training one: start this site without --rejoin")
        if not rejoin and header.get("training"):
            raise SiteLost(f"site {peer} is training already and this site is out of its run: restart this site with "
                           "--rejoin and the run folder that holds its checkpoint")
        if not rejoin and header.get("rejoin"):
            raise SiteLost(f"site {peer} asks to rejoin a run in progress, but this site is starting one: start every "
                           "site afresh, without --rejoin")
    return digest, got


def run_site(pilot_path: str | Path, site: str, key_file: str | Path, data: str, *, out: str | None = None,
             site_timeout_s: float | None = None, bind: str | None = None,
             peer_addresses: dict[str, str] | None = None, send_delay_s: float = 0.0,
             asynchronous: bool = False, overwrite: bool = False, progress: bool = False,
             fault_hook: FaultHook | None = None, start_timeout_s: float = 600.0, rejoin: bool = False) -> History:
    """Run one site of the pilot (``proxgt site``); returns its history. One-line ProxGTValueError on bad input
    or a settings mismatch; :class:`SiteLost` when the sites cannot go on (no neighbour answers at the start, the
    surviving sites are disconnected). ``fault_hook(0, t)`` runs after every iteration (tests stop a site with it).

    ``rejoin``: the site was lost and the others go on; it comes back from its checkpoint in ``out``
    (``proxgt site --rejoin``): one line and no network when there is none, then HELLO, its set-up replayed from
    the checkpoint, and it joins the others at the next iteration they agree on (module docstring)."""
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
    own_key = load_site_key(key_file)
    if me.public_key is not None and me.public_key != own_key.public_key:
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
    if pilot.share_metrics and dp_requested(cfg):
        raise ProxGTValueError(f"pilot file {pilot.path}: [pilot] share_metrics sends every site's metrics, computed "
                               "on its raw data, to the other sites: not with differential privacy (drop it)")
    if not cfg.checkpoint_every:  # a site always keeps a checkpoint to rejoin from (small: its own rows)
        cfg = cfg.replace(checkpoint_every=cfg.log_every)
    settings = site_settings(pilot, cfg)
    checkpoint = _rejoin_checkpoint(cfg, out, site) if rejoin else None
    transport = SiteTransport(site, neighbours, own_key, bind or me.address, site_timeout_s=timeout)
    executor: SiteExecutor | None = None
    try:
        # sites are started by hand at different places: the neighbours get longer to come than to answer later
        if checkpoint is None:
            hello(transport, settings, max(timeout, start_timeout_s))
            executor = SiteExecutor(pilot, site, transport, out=out, site_timeout_s=timeout,
                                    send_delay_s=send_delay_s, settings=settings)
            return drive(executor, cfg, out=out, overwrite=overwrite, progress=progress, fault_hook=fault_hook)
        answers = rejoin_hello(transport, settings, max(timeout, start_timeout_s))
        t, mine = checkpoint
        if mine.get("settings_hash") != settings_fingerprint(settings):
            raise ProxGTValueError(f"the checkpoint in {out} (iteration {t}) was written with other settings than the "
                                   "pilot file's: rejoin with the pilot file and proxgt version of its run")
        executor = SiteExecutor(pilot, site, transport, out=out, site_timeout_s=timeout, send_delay_s=send_delay_s,
                                settings=settings, rejoin=Rejoin(setup=list(mine["setup"]), answers=answers))
        return drive(executor, None, resume=ResumePlan(run_dir=Path(out), cfg=cfg, world=1, t=t), progress=progress,
                     fault_hook=fault_hook)
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
        # nobody waits for what a site sends to the sites gone, nor for a rejoin that failed
        gone = sorted(executor.absent) if executor is not None else list(transport.peers) if rejoin else []
        transport.close(gone=gone)


def _rejoin_checkpoint(cfg: RunConfig, out: str, site: str) -> tuple[int, dict[str, Any]]:
    """(iteration, the site's part) of the checkpoint a rejoining site starts from; one-line errors."""
    if dp_requested(cfg):
        raise ProxGTValueError("--rejoin is not available under differential privacy yet: the rejoined site would "
                               "need fresh secret noise and the privacy spent by its lost run after its checkpoint, "
                               "which nobody recorded")
    if (Path(out) / "summary.json").exists():
        raise ProxGTValueError(f"{out} holds a finished run of site {site}: --rejoin brings back a site that was lost "
                               "from a run still going on")
    try:
        found = find_checkpoint(out)
    except ProxGTValueError as exc:
        raise ProxGTValueError(f"--rejoin needs site {site}'s checkpoint in its run folder --out {out}: {exc}") \
            from None
    record = read_checkpoint_file(found.path / "rank0.pt", t=found.t, world=found.world, rank=0)
    mine = record["executor"].get("site")
    if found.world != 1 or not isinstance(mine, dict):
        raise ProxGTValueError(f"the checkpoint in {out} (iteration {found.t}) is not a site's: --rejoin needs the "
                               "run folder of this site's lost run")
    return found.t, mine


def main_line(hist: History) -> str:
    """One line for the terminal: the site's iterations, traffic and late messages."""
    s = hist.summary.get("site", {})
    return (f"site {s.get('site')}: {s.get('iterations')} iterations, {s.get('bytes_sent')} bytes sent, "
            f"{s.get('seconds_waiting', 0.0):.2f} s waiting, {s.get('messages_late')} late and "
            f"{s.get('messages_lost')} lost messages, {s.get('refused_connections')} refused connection attempts")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use 'proxgt site'")
