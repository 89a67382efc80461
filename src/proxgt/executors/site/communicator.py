"""A site's gossip rounds over its TLS links: synchronous rounds with a deadline, running sums for trackers.

The semantics are those of the simulator's :class:`~proxgt.mixing.running_sums.RunningSumMixer`, message by
message, so that a recorded link trace replays exactly (``proxgt run --link-trace``):

* In global gossip round r (the communicator's round counter, equal on every site) node i sends, for each
  neighbour j on another site, either the running sum ``S_ij`` of ``w_ji z_i`` over every round so far
  (trackers, ``Capabilities.tracked_keys``; float64 on the wire, so that the differences stay exact) or ``z_i``
  itself (every other key). Messages to one neighbouring site travel as one ZeroMQ message per round.
* The receiver waits for round r's messages at most ``round_deadline_s``. A message on time is used as the
  simulator uses a delivered one. A message that misses its round is *late* if it has arrived by the end of the
  next round of the same key on that link (its running sum, or its value as the newest copy, is then used in that
  round, as the simulator's ``late`` messages are), and *lost* otherwise (a later running sum makes its mass good;
  a message that arrives after that is dropped). A node that has received no value on a link yet uses its own
  value of the key's first round in its place.
* Each site records its incoming links' late and lost messages: ``link_trace.csv`` (``round,src,dst,status``,
  global node ids); the union over the sites is the run's trace.

Metrics stay on the site: :meth:`SiteCommunicator.sum_over_nodes` sums over this site's own nodes only (the
site's metrics are those of its nodes, at their average), so no value computed from raw data leaves the site
through the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from proxgt.errors import ProxGTValueError
from proxgt.executors.site.transport import SiteTransport
from proxgt.mixing.communicator import CommCounter, fused_round

__all__ = ["SiteCommunicator", "SiteMixer", "TRACE_COLUMNS", "metropolis_on"]

#: columns of link_trace.csv
TRACE_COLUMNS = ("round", "src", "dst", "status")

_Link = tuple[int, int]  # (sender node, receiver node), global ids


def metropolis_on(n: int, edges: list[tuple[int, int]], nodes: set[int]) -> tuple[torch.Tensor, np.ndarray]:
    """(W, degrees) of the sub-graph of ``edges`` on ``nodes`` with Metropolis weights, as an (n, n) float64
    matrix whose rows and columns of the other nodes are zero (and their degrees 0)."""
    from proxgt.topology._weights import metropolis_weight

    alive = [(i, j) for i, j in edges if i in nodes and j in nodes]
    deg = np.zeros(n, dtype=np.int64)
    for i, j in alive:
        deg[i] += 1
        deg[j] += 1
    W = torch.zeros((n, n), dtype=torch.float64)
    for i, j in alive:
        W[i, j] = W[j, i] = float(metropolis_weight(int(deg[i]), int(deg[j])))
    for i in nodes:
        W[i, i] = 1.0 - float(W[i].sum())
    return W, deg


class SiteCommunicator:
    """The :class:`~proxgt.mixing.communicator.Gossip` of one site's nodes (module docstring).

    Args:
        transport: the site's sockets.
        W: the whole network's mixing matrix (dense (n, n)).
        degrees: every node's degree.
        node_ids: this site's nodes.
        owner: the site of every node.
        round_deadline_s: how long a round waits for its messages.
        site_timeout_s: a neighbour silent this long is lost (:class:`SiteLost`).
        send_delay_s: delay injection: every round's messages leave this long after the round starts (rehearsals
            and tests of slow links).
    """

    def __init__(self, transport: SiteTransport, W: torch.Tensor, degrees: Any, node_ids: tuple[int, ...],
                 owner: list[str], *, round_deadline_s: float, site_timeout_s: float, send_delay_s: float = 0.0):
        self.transport = transport
        self.n_nodes = int(W.shape[0])
        self.node_ids = tuple(int(i) for i in node_ids)
        self.counter = CommCounter(np.asarray(degrees))
        self.active_nodes = len(self.node_ids)  # metrics: this site's nodes (module docstring)
        self.active_mask: np.ndarray | None = np.zeros(self.n_nodes, dtype=bool)
        self.active_mask[list(self.node_ids)] = True
        self.round_deadline_s = float(round_deadline_s)
        self.site_timeout_s = float(site_timeout_s)
        self.send_delay_s = float(send_delay_s)
        self._pos = {g: a for a, g in enumerate(self.node_ids)}
        self.owner = list(owner)
        self.site = owner[self.node_ids[0]]
        self.epoch = 0  # membership epoch: 1 more at each regroup (lost or rejoined sites; executor's docstring)
        self.lost: set[str] = set()  # neighbours silent past the site timeout (this epoch's graph still has them)
        self._future: list[tuple[str, dict[str, Any], list[Any]]] = []  # messages of a later epoch
        self._plan(W.to(torch.float64))
        self.trace: list[tuple[int, int, int, str]] = []
        self.seconds_waiting = 0.0
        # the largest ||z_j - z_i|| / ||z_i|| over this site's in-links, in the first round of the newest mixing of
        # an iterate (an untracked key): how far the site is from its neighbours, from what they sent it
        self.neighbour_gap: float | None = None
        self.messages_late = 0  # made good in the next round of their key
        self.messages_lost = 0  # never used (a later running sum or value superseded them)
        self._start = time.monotonic()
        # whether the sites are about to regroup (the executor's): rounds then stop waiting for their messages
        self.regroup_pending: Callable[[], bool] = lambda: False
        transport.handlers["round"] = self._on_round

    def _plan(self, W64: torch.Tensor) -> None:
        """The links of this site's nodes in the graph of ``W64`` (n, n), their weights, and fresh link state."""
        local = list(self.node_ids)
        self._W_local = W64[local][:, local]  # (k, k): the site's own nodes, self-weights included
        self.out_links: dict[str, list[_Link]] = {}  # peer site -> links (i here, j there)
        self.in_links: list[tuple[_Link, str]] = []  # (j there, i here), peer site
        self._w: dict[_Link, float] = {}
        for i in self.node_ids:
            for j in torch.nonzero(W64[i]).flatten().tolist():
                if self.owner[j] == self.site:
                    continue
                self.out_links.setdefault(self.owner[j], []).append((i, j))
                self.in_links.append(((j, i), self.owner[j]))
                self._w[(i, j)] = float(W64[j, i])  # what i sends j: w_ji z_i
                self._w[(j, i)] = float(W64[i, j])
        self._expect = {peer: sorted((j, i) for (j, i), p in self.in_links if p == peer) for peer in self.out_links}
        # running sums (trackers): what each out-link has sent, and what each in-link last delivered
        self._sent: dict[str, dict[_Link, torch.Tensor]] = {}
        self._recv: dict[str, dict[_Link, torch.Tensor]] = {}
        self._copies: dict[str, dict[_Link, torch.Tensor]] = {}  # newest values (other keys)
        self._missed: dict[str, dict[_Link, int]] = {}  # key -> in-link -> round whose message missed it
        self._inbox: dict[tuple[str, str], dict[int, torch.Tensor]] = {}  # (peer, key) -> round -> rows

    def regroup(self, present: set[str], edges: list[tuple[int, int]], epoch: int) -> None:
        """Go on with the sites ``present`` (every one of them does this at the same iteration, after sites were
        lost or rejoined): W is recomputed on their part of the node graph ``edges`` with Metropolis weights (as a
        distributed run's survivors do), and link state starts afresh in membership epoch ``epoch`` (mass in flight
        on the old graph is dropped on both ends; the algorithm is re-initialized on the new graph)."""
        nodes = {i for i, o in enumerate(self.owner) if o in present}
        W, deg = metropolis_on(self.n_nodes, edges, nodes)
        self._plan(W)
        self.counter.change_degrees(deg)  # keep what every node sent so far; count the new degrees from now on
        self.lost &= present
        self.epoch = int(epoch)
        early, self._future = self._future, []
        for sender, header, frames in early:
            self._on_round(sender, header, frames)

    # ------------------------------------------------------------------ receiving
    def _on_round(self, sender: str, header: dict[str, Any], frames: list[Any]) -> None:
        epoch = int(header.get("epoch", 0))
        if epoch != self.epoch:
            if epoch > self.epoch:  # a neighbour already on the surviving graph: kept until this site is too
                self._future.append((sender, header, [bytes(f) for f in frames]))
            return
        links = sorted((int(j), int(i)) for j, i in header["links"])
        if links != self._expect.get(sender) or len(frames) != 1:
            self.transport.stats.dropped_messages += 1  # not what this peer's links carry
            return
        dtype = np.dtype(header["dtype"])
        order = [(int(j), int(i)) for j, i in header["links"]]
        rows = np.frombuffer(frames[0], dtype=dtype).reshape(header["shape"])
        # the transport reads each frame into a buffer of its own: used in place (a read-only one is copied)
        t = torch.from_numpy(rows if rows.flags.writeable else rows.copy())
        box = self._inbox.setdefault((sender, str(header["key"])), {})
        box[int(header["round"])] = t if order == links else t[[order.index(lk) for lk in links]]

    def _wait(self, key: str, r: int) -> None:
        """Read messages until every neighbour's round-``r`` message of ``key`` is in, or the deadline."""
        t0 = time.monotonic()
        end = t0 + self.round_deadline_s
        while True:
            missing = [p for p in self.out_links if p not in self.lost and r not in self._inbox.get((p, key), {})]
            if not missing:
                break
            now = time.monotonic()
            for p in missing:
                if self.transport.silent_since(p, self._start) > self.site_timeout_s:
                    self.lost.add(p)  # its messages miss their rounds until the survivors regroup
            if now >= end or self.regroup_pending():
                break
            self.transport.pump(min(end - now, 0.05))
        self.seconds_waiting += time.monotonic() - t0

    # ------------------------------------------------------------------ one round
    def mix_round(self, Z: torch.Tensor, key: str, tracked: bool, measure: bool = False) -> torch.Tensor:
        """One counted gossip round of ``Z`` (this site's rows) under ``key``'s rule (module docstring).
        ``measure``: record :attr:`neighbour_gap` from this round's values (an untracked key)."""
        r = self.counter.rounds
        k = Z.shape[0]
        flat = (Z.reshape(k, -1) if Z.ndim > 1 else Z.reshape(k, 1)).contiguous()
        if self.send_delay_s:
            time.sleep(self.send_delay_s)
        sent = self._sent.setdefault(key, {})
        for peer, links in self.out_links.items():
            if peer in self.lost:
                continue
            rows = []
            for i, j in links:
                if tracked:
                    m = (flat[self._pos[i]] * self._w[(i, j)]).to(torch.float64)
                    acc = sent.get((i, j))
                    sent[(i, j)] = m if acc is None else acc + m
                    rows.append(sent[(i, j)])
                else:
                    rows.append(flat[self._pos[i]])
            payload = torch.stack(rows).detach().cpu().contiguous()
            arr = payload.numpy()
            self.transport.send(peer, {"kind": "round", "epoch": self.epoch, "key": key, "round": r,
                                       "links": [list(lk) for lk in links],
                                       "dtype": arr.dtype.str, "shape": list(arr.shape)}, [arr])  # sent without a copy
        out = self._W_local.to(dtype=flat.dtype, device=flat.device) @ flat
        self._wait(key, r)
        missed = self._missed.setdefault(key, {})
        recv = self._recv.setdefault(key, {})
        if not tracked and key not in self._copies:  # before a link's first value: the receiver's own, now
            self._copies[key] = {lk: flat[self._pos[lk[1]]].clone() for lk, _ in self.in_links}
        copies = self._copies.get(key, {})
        gaps: list[float] = []
        for lk, peer in self.in_links:
            j, i = lk
            box = self._inbox.get((peer, key), {})
            row = self._expect[peer].index(lk)
            prev = missed.pop(lk, None)
            if prev is not None:  # the fate of last round's missed message on this link is known now
                status = "late" if prev in box else "lost"
                self.trace.append((prev, j, i, status))
                if status == "late":
                    self.messages_late += 1
                else:
                    self.messages_lost += 1
            got = box.get(r)
            value = got[row] if got is not None else box[prev][row] if prev is not None and prev in box else None
            a = self._pos[i]
            if tracked:
                if value is not None:
                    before = recv.get(lk)
                    delta = value if before is None else value - before
                    out[a] += delta.to(dtype=flat.dtype, device=flat.device)
                    recv[lk] = value
            else:
                if value is not None:
                    copies[lk] = value.to(dtype=flat.dtype, device=flat.device)
                out[a] += self._w[lk] * copies[lk]
                if measure and got is not None:  # both rows of round r: what each end sent
                    own = flat[a].to(torch.float64)
                    gaps.append(float((got[row].to(torch.float64) - own).norm() / own.norm().clamp_min(1e-12)))
            if got is None:
                missed[lk] = r
            for old in [q for q in box if q <= r]:
                del box[old]
        if gaps:
            self.neighbour_gap = max(gaps)
        self.counter.record_round(flat.shape[1], Z.element_size())
        return out.reshape(Z.shape)

    def finish_trace(self) -> None:
        """Messages that missed the last round of their key: nothing used them (``lost``)."""
        for missed in self._missed.values():
            for (j, i), r in sorted(missed.items(), key=lambda kv: kv[1]):
                self.trace.append((r, j, i, "lost"))
                self.messages_lost += 1
            missed.clear()

    def running_sums(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum over this site's out-links of what they sent, sum over its in-links of what they delivered) of the
        tracked ``key`` (float64): summed over every site, the first minus the second is the mass in flight, and
        ``sum_i y_i + in flight`` is what the trackers' sum would be with every message delivered."""
        sent = list(self._sent.get(key, {}).values())
        got = list(self._recv.get(key, {}).values())
        zero = torch.zeros(())
        return (torch.stack(sent).sum(dim=0) if sent else zero, torch.stack(got).sum(dim=0) if got else zero)

    # ------------------------------------------------------------------ the Gossip protocol
    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round with the newest-value rule (keyless gossip; the site's mixer passes keys)."""
        return self.mix_round(Z, "", tracked=False)

    def gossip_into(self, Z: torch.Tensor, out: torch.Tensor, alpha: float = 1.0, beta: float = 0.0,
                    prev: torch.Tensor | None = None) -> torch.Tensor:
        return fused_round(self.gossip(Z), out, alpha, beta, prev)

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        """Sum over this site's own nodes (metrics stay on the site: module docstring)."""
        return T.sum(dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"counter": self.counter.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counter.load_state_dict(state["counter"])

    def trace_csv(self) -> str:
        """This site's incoming links' late and lost messages, in round order (link_trace.csv)."""
        rows = sorted(self.trace)
        return ",".join(TRACE_COLUMNS) + "\n" + "".join(f"{r},{s},{d},{st}\n" for r, s, d, st in rows)


class SiteMixer:
    """The site's mixing operator: ``rounds`` plain rounds of ``mix(Z, key)``, trackers by running sums."""

    def __init__(self, comm: SiteCommunicator, rounds: int, tracked: tuple[str, ...]):
        self.comm, self.rounds, self.tracked = comm, int(rounds), tuple(tracked)

    def __call__(self, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
        if key is None:
            raise ProxGTValueError("the site runtime needs to know which quantity it mixes (mix(Z, key=...)): "
                                   "trackers go by running sums, iterates by the newest values")
        tracked = key in self.tracked
        for r in range(self.rounds):
            Z = self.comm.mix_round(Z, key, tracked, measure=r == 0 and not tracked)
        return Z

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
