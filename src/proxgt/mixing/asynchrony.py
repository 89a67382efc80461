"""Asynchronous gossip on the virtual clock: nodes compute and send on their own clocks and mix with the newest
message they hold from each neighbour, never more than ``max_staleness`` iterations old.

Every node i has a clock c_i and a count k_i of the iterations it finished. The run advances in *ticks*: a node
is ready at ``c_i``, or later if the staleness bound makes it wait (below); the nodes ready earliest run one
iteration of the algorithm together (the others keep their state), through :meth:`AsyncNetwork.__call__` in
place of the synchronous mixer. In each mixing of that iteration an active node i

1. is charged the compute since its last mixing (component gradients x its seconds per gradient, as in
   :mod:`proxgt.mixing.clock`);
2. sends its row to every neighbour j: the message leaves at c_i and arrives at ``c_i + latency + bytes /
   bandwidth``; iterates send their value, trackers their shares ``w_ji m_i`` of mass and ``w_ji phi_i`` of
   push-sum weight as running sums (:mod:`proxgt.mixing.running_sums`): a later message makes good every earlier
   one it overtakes;
3. takes from each neighbour the newest message that has arrived by c_i (for a tracker, all the mass sent up to
   it) and mixes: ``x_i <- w_ii z_i + sum_j w_ij (newest value from j)``, ``m_i <- w_ii m_i + sum_j (mass
   received from j)`` and the same for phi_i; the tracker the algorithm sees is ``y_i = m_i / phi_i``. Before a
   neighbour's first message arrives, i uses its own value in its place.

**Trackers: push-sum, one share in flight per link.** A node that mixes more often pushes more mass away, so the
masses alone settle on a biased split (slow nodes hold more of the gradient sum, and each node's proximal step
uses a scaled gradient: the deterministic run of the tests stalled at a gradient mapping of 1.1e-3). The weights
phi follow the same flows, so the ratio is unbiased. Dividing by a weight that a fast node drains would amplify
the gradient noise (measured: stochastic runs with lognormal compute times blew up), so a node sends a tracker
share to j only once j has answered its previous one, and keeps the share otherwise: the weights stay near 1. A
*reply* counts from its arrival: a message that j sent after taking every share i had sent it (each tracker
share carries how many shares of the opposite direction its sender had taken) that has arrived by i's mixing is
taken in it and lets i send at once (one share per reply). Deciding before taking it, as if it had not arrived,
made a link carry a share only every other mixing when its two ends alternate: with exact gradients on a ring
of 6 (breast_cancer, node 2 ten times slower, exponential times, S = 4) the distance to the solution after 120
iterations was 5.9e-4, and 9.5e-6 with the reply counted on arrival (the synchronous run: 2e-9). Any other
message from j (one that crossed i's last share on the way) lets i send at its next mixing, not at once.
Counting such crossing messages as replies too kept a share in flight on every link at every tick when the two
ends mix at the same times: the tracker became a push-sum delayed by one iteration, with about 40% of the
weight always in flight, and asynchronous ProxGT-SA on a random geometric graph of 16 homogeneous nodes (a9a)
diverged (gradient mapping 3.6 after 40 iterations; 2.4e-3 with replies only).

**Staleness.** A message's age, for its receiver, counts the receiver's own iterations begun since it was
sent. Before its iteration k_i + 1 a node needs, from every neighbour, a message sent no earlier than the start of
its own iteration ``k_i + 1 - max_staleness``; if it has none yet it waits for its arrival (its clock moves to that
time). A fast node therefore never waits for a slow neighbour that sends at least once every ``max_staleness`` of
the fast node's iterations: one slow node does not set the pace of all, as it would under a bound on the
difference of iteration counts (fast nodes at most S iterations ahead of each neighbour, which a first version
used: with one node 10x slower on a random geometric graph of 16, most nodes neighbour the slow one and ran at its
pace after a head start of S, and the asynchronous run took 0.58x the synchronous virtual time to the a9a target
instead of at most 0.5x). Nothing deadlocks: along a chain of waiting nodes each waits for a message sent before
the previous one last sent, so the times strictly decrease and the chain ends at a node that can go on.

**Zero delays.** When every node is ready at the same time and every message arrives when it is sent, every
node is active in every tick and every message is the one just sent: each mixing is exactly ``W Z`` (the same
product as the synchronous run), so the iterates are the synchronous algorithm's, bit for bit.

Ticks process the ready nodes in time order; a message that would have reached an active node between two of
its mixings is taken at its next mixing (delivery is never earlier than arrival). Tracker mass is conserved:
``sum_i m_i + (mass in flight) = sum_i v_i`` at every tick (:meth:`AsyncNetwork.held_mass`), and likewise
``sum_i phi_i + (weight in flight) = n``.

**Sum-push keys** (``Capabilities.sum_push_keys``, ASY-SONATA): a tracker the algorithm uses as its mass itself.
A mixing keeps ``w_ii`` of the node's mass (its held mass plus the algorithm's correction), sends the share
``w_ji m_i`` to every neighbour at every mixing (running sums, as above) and adds all it received; no weight
divides it, so after asynchronous mixings the nodes hold unequal shares of the sum (the method's own design).
The invariant is the same: held mass plus mass in flight equals the sum of the local estimates.

**Pairwise keys** (``Capabilities.pairwise_keys``, AD-PSGD): a key mixed by randomized pairwise averaging
(:mod:`proxgt.mixing.pairwise`) reads the partner's current model instead of waiting for messages; the
staleness bound does not apply to an algorithm that declares one (it sends no tagged messages to wait for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from proxgt.errors import ProxGTValueError
from proxgt.mixing.clock import ClockProfile, CountsGradients, canonical_edges
from proxgt.mixing.communicator import SimulatedCommunicator
from proxgt.mixing.pairwise import PairwiseGossip
from proxgt.mixing.running_sums import edge_weights

__all__ = ["AsyncNetwork", "async_network", "check_async"]


@dataclass
class _Message:
    sent: float
    arrives: float
    payload: torch.Tensor  # a value (iterates) or a mass (trackers), one row
    phi: float = 0.0  # a tracker's push-sum weight share
    acked: int = 0  # a tracker share: how many shares of the opposite direction its sender had taken when it sent


class AsyncNetwork:
    """The mixer and scheduler of an asynchronous run (module docstring).

    Args:
        comm: the simulated communicator (its ``gossip`` counts every mixing as one round and computes ``W Z``).
        edges: (E, 2) links ``(i, j)``, i < j; ``weights``: their w_ij.
        tracked: keys mixed as tracker mass (running sums); the others by the newest value.
        profile: compute and link times (:class:`~proxgt.mixing.clock.ClockProfile`), or None: no delays.
        max_staleness: S >= 1.
        pairwise: keys averaged with one random neighbour (:mod:`proxgt.mixing.pairwise`); ``seed`` picks the
            partners.
        sum_push: tracked keys mixed by sum-push (the mass itself, no push-sum weight; module docstring).
    """

    def __init__(self, comm: SimulatedCommunicator, edges: np.ndarray, weights: np.ndarray, tracked: tuple[str, ...],
                 profile: ClockProfile | None, max_staleness: int, pairwise: tuple[str, ...] = (), seed: int = 0,
                 sum_push: tuple[str, ...] = ()):
        self.comm = comm
        self.n = int(comm.n_nodes)
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self.E = len(e)
        self.src = np.concatenate([e[:, 0], e[:, 1]])  # directed message d goes src[d] -> dst[d]
        self.dst = np.concatenate([e[:, 1], e[:, 0]])
        self._w = np.concatenate([weights, weights]).astype(np.float64)
        # w_ii = 1 - sum_j w_ij: what a node keeps of its own mass
        self._self_w = 1.0 - np.bincount(self.dst, weights=self._w, minlength=self.n)
        self.tracked = tuple(tracked)
        self.sum_push = tuple(sum_push)
        self.profile = profile
        if profile is not None and not np.array_equal(profile.edges, e):
            raise ProxGTValueError("the clock profile and the asynchronous network disagree on the links")
        self.max_staleness = int(max_staleness)
        self.time = np.zeros(self.n)
        self.iters = np.zeros(self.n, dtype=np.int64)
        self.active = np.ones(self.n, dtype=bool)
        self.pending: dict[str, list[list[_Message]]] = {}
        self.copies: dict[str, list[torch.Tensor | None]] = {}
        # trackers: per link and direction, whether the sender may send a share (its last one was answered); the
        # mass each node holds, its push-sum weight, the tracker it last showed, which nodes mixed the key yet,
        # and whether any mixing so far was not synchronous (before that: weight 1, mass = what was shown)
        self.may_send: dict[str, np.ndarray] = {}
        self.shares_sent: dict[str, np.ndarray] = {}  # trackers: shares sent / taken per link and direction
        self.shares_taken: dict[str, np.ndarray] = {}
        self.mass: dict[str, torch.Tensor] = {}
        self.phi: dict[str, np.ndarray] = {}
        self.shown: dict[str, torch.Tensor] = {}
        self.touched: dict[str, np.ndarray] = {}
        self.skewed: dict[str, bool] = {}
        # staleness: per link, (sent, arrives) of the messages not yet too old for their receiver; per node, when
        # its last max_staleness iterations began
        self.recent: list[list[tuple[float, float]]] = [[] for _ in range(2 * self.E)]
        self.starts: list[list[float]] = [[] for _ in range(self.n)]
        self._charged = np.zeros(self.n, dtype=np.int64)
        self._work: CountsGradients | None = None
        self._calls = 0
        self._device: torch.device | None = None
        self.pairwise = tuple(pairwise)
        self.pairs = PairwiseGossip(self.n, self.src, self.dst, seed)

    # ------------------------------------------------------------------ clocks
    def follow(self, work: CountsGradients) -> None:
        """Charge compute from ``work``'s gradient counts (every node's, in node order)."""
        self._work = work

    def _charge(self) -> None:
        if self._work is None or self.profile is None:
            return
        ifo = np.asarray(self._work.ifo, dtype=np.int64)
        delta = np.where(self.active, ifo - self._charged, 0)
        if delta.any():
            self.time = self.profile.computed(self.time, delta * self.profile.speeds(self._calls))
            self._charged = np.where(self.active, ifo, self._charged)

    def _arrival(self, d: int, sent: float, links: np.ndarray) -> float:
        """When the message that link ``d``'s sender was ready to send at ``sent`` reaches its receiver (the
        traces' waits included, :mod:`proxgt.mixing.traces`)."""
        if self.profile is None:
            return sent + float(links[d])
        return self.profile.arrival(int(self.src[d]), int(self.dst[d]), d % self.E, sent, float(links[d]))

    def _link_times(self, nbytes: int) -> np.ndarray:
        if self.profile is None:
            return np.zeros(2 * self.E)
        return self.profile.link_times(self._calls, nbytes).reshape(-1)  # row 0 then row 1: i->j, then j->i

    def now(self) -> float:
        """Virtual seconds at which the current state exists: the latest node's clock, compute charged."""
        self._charge()
        return float(self.time.max())

    # ------------------------------------------------------------------ scheduling
    def next_active(self) -> np.ndarray:
        """Choose the nodes of the next tick (bool (n,)): the earliest ready, waiting for stale neighbours."""
        ready = self.time.copy()
        blocked = np.zeros(self.n, dtype=bool)
        S = self.max_staleness
        for d in range(2 * self.E):
            i = self.dst[d]
            if len(self.starts[i]) < S or self.pairwise:
                continue
            since = self.starts[i][-S]  # the start of i's iteration k_i + 1 - S
            fresh = [m for m in self.recent[d] if m[0] >= since]
            self.recent[d] = fresh  # since never decreases: older messages never count again
            if not fresh:
                blocked[i] = True
            else:
                ready[i] = max(ready[i], min(arrives for _, arrives in fresh))
        traces = self.profile.traces if self.profile is not None else None
        if traces is not None and traces.any_nodes:  # a node that is off starts when it is back
            ready = np.array([traces.node_on(i, t) for i, t in enumerate(ready.tolist())])
        free = ~blocked
        first = ready[free].min()
        self.active = free & (ready == first)
        self.time = np.where(self.active, ready, self.time)
        for i in np.flatnonzero(self.active):
            self.starts[i] = [*self.starts[i], float(first)][-self.max_staleness:]
        return self.active

    def end_tick(self) -> None:
        """The active nodes finished an iteration."""
        self._charge()
        self.iters += self.active

    # ------------------------------------------------------------------ mixing
    def __call__(self, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """One asynchronous mixing of ``Z`` (left unmodified) under ``key``: rows of inactive nodes are computed
        as if they mixed, and discarded by the caller."""
        if key is None:
            raise ProxGTValueError("asynchronous gossip needs to know which quantity it mixes (mix(Z, key=...))")
        self._on(Z.device)
        self._charge()
        nbytes = (Z[0].numel() if Z.ndim > 1 else 1) * Z.element_size()
        links = self._link_times(nbytes)
        self._calls += 1
        if key in self.sum_push:
            return self._mix_sum(Z, key, links)
        if key in self.tracked:
            return self._mix_mass(Z, key, links)
        if key in self.pairwise:
            return self._mix_pairs(Z, key, links)
        # W Z: what every node would get if every message were the one just sent; the active nodes sent theirs
        sending = self.active[self.src]
        out = self.comm.gossip_from(Z, np.bincount(self.src[sending], minlength=self.n))
        pending = self.pending.setdefault(key, [[] for _ in range(2 * self.E)])
        copies = self.copies.setdefault(key, [None] * (2 * self.E))
        for d, j, taken, fresh in self._exchange(pending, lambda i, w: (Z[i].clone(), 0.0), links, sending):
            if len(taken) == 1 and taken[0] is fresh:
                copies[d] = fresh.payload
                continue  # exactly the synchronous message: W Z already holds it
            if taken:
                copies[d] = max(taken, key=lambda m: m.sent).payload
            i = int(self.src[d])
            copy = copies[d]
            held = copy if copy is not None else Z[j]
            out[j] += float(self._w[d]) * (held - Z[i])
        return out

    def _mix_pairs(self, Z: torch.Tensor, key: str, links: np.ndarray) -> torch.Tensor:
        """Randomized pairwise averaging (:mod:`proxgt.mixing.pairwise`): each averaging is a round trip on the
        link, charged to the node that asked."""
        out, used, sent = self.pairs.mix(Z, key, self.active, self.iters)
        traced = self.profile is not None and self.profile.traces is not None
        for d in used:
            i, back = int(self.src[d]), (d + self.E) % (2 * self.E)
            if traced:  # there and back, each waiting for an off node or a link that is down
                self.time[i] = self._arrival(back, self._arrival(d, float(self.time[i]), links), links)
            else:
                self.time[i] += links[d] + links[back]
        self.comm.counter.record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size(), sent=sent)
        return out

    def _exchange(self, pending: list[list[_Message]], payload: Any, links: np.ndarray, sending: np.ndarray,
                  stamps: np.ndarray | None = None) -> list[tuple[int, int, list[_Message], _Message | None]]:
        """Send the messages of the links ``sending`` (bool (2E,); ``payload(i, w)`` -> (row, weight share)) and
        take, for each link into an active node, every message up to the newest one that has arrived:
        [(link, receiver, taken, fresh)]. ``stamps``: each link's :attr:`_Message.acked` for a tracker share."""
        out = []
        for d in range(2 * self.E):
            i, j = int(self.src[d]), int(self.dst[d])
            fresh = None
            if sending[d]:
                row, share = payload(i, float(self._w[d]))
                fresh = _Message(float(self.time[i]), self._arrival(d, float(self.time[i]), links), row, share,
                                 0 if stamps is None else int(stamps[d]))
                pending[d].append(fresh)
                self.recent[d].append((fresh.sent, fresh.arrives))  # staleness (next_active)
            if not self.active[j]:
                continue
            arrived = [m for m in pending[d] if m.arrives <= self.time[j]]
            newest = max((m.sent for m in arrived), default=None)
            taken = [] if newest is None else [m for m in pending[d] if m.sent <= newest]
            pending[d] = [m for m in pending[d] if newest is None or m.sent > newest]
            out.append((d, j, taken, fresh))
        return out

    def _mix_mass(self, Z: torch.Tensor, key: str, links: np.ndarray) -> torch.Tensor:
        """A tracker: push-sum on running sums, one share in flight per link and direction (module docstring).
        Each node holds a mass m_i and a weight phi_i (1 at the start) and shows the tracker m_i / phi_i. A
        mixing keeps w_ii of both, sends the shares w_ji m_i, w_ji phi_i to each neighbour j that has answered
        its last share (or to which it never sent), keeps the shares of the others, and adds all it received.
        While every mixing so far was synchronous, phi = 1 and the mass is what was shown: the round is W Z."""
        shape = (-1, *([1] * (Z.ndim - 1)))
        act = torch.as_tensor(self.active, device=Z.device).view(shape)
        touched_np = self.touched.setdefault(key, np.zeros(self.n, dtype=bool))
        touched = torch.as_tensor(touched_np, device=Z.device).view(shape)
        prev, shown = self.mass.get(key, Z), self.shown.get(key, Z)
        # a node that never mixed this key holds what it shows (weight 1): its input is its mass. Otherwise the
        # algorithm's correction (what it added to the shown tracker) joins the mass, unless every mixing so far
        # was synchronous (then mass = shown, and the input is the mass exactly). A node that never mixed and is
        # not active now takes no part: its row only keeps the product finite.
        own = torch.where(touched, prev + (Z - shown), Z) if self.skewed.get(key, False) else Z
        mass = torch.where(act, own, torch.where(touched, prev, Z))
        phi = self.phi.setdefault(key, np.ones(self.n))
        may = self.may_send.setdefault(key, np.ones(2 * self.E, dtype=bool))
        pending = self.pending.setdefault(key, [[] for _ in range(2 * self.E)])
        sent_n = self.shares_sent.setdefault(key, np.zeros(2 * self.E, dtype=np.int64))
        taken_n = self.shares_taken.setdefault(key, np.zeros(2 * self.E, dtype=np.int64))
        back = (np.arange(2 * self.E) + self.E) % (2 * self.E)
        # a reply (sent by j after taking every share i sent it) that has arrived by now is taken in this mixing:
        # it lets i send at once, and is used up. A message that crossed i's last share is no reply to it.
        will_take, replied = self._replies(pending)
        now = self.active[self.src] & (replied == sent_n)
        sending = self.active[self.src] & (may | now)
        out = self.comm.gossip_from(mass, np.bincount(self.src[sending], minlength=self.n))  # W m
        skewed = not self.active.all()
        new_phi = phi.copy()
        new_phi[self.active] = 0.0
        answered = np.zeros(2 * self.E, dtype=bool)
        stamps = taken_n[back] + will_take[back]  # what a share sent now acknowledges
        for d, j, taken, fresh in self._exchange(pending, lambda i, w: (mass[i] * w, w * phi[i]), links, sending,
                                                 stamps):
            answered[back[d]] |= bool(taken)  # j may send to i again
            taken_n[d] += len(taken)
            new_phi[j] += sum(m.phi for m in taken)
            if len(taken) == 1 and taken[0] is fresh:
                continue  # exactly the synchronous share: W m already holds it
            skewed = True
            i = int(self.src[d])
            got = sum((m.payload for m in taken), torch.zeros_like(mass[i]))
            out[j] += got - float(self._w[d]) * mass[i]
        kept_w = self._self_w.copy()
        for kept in np.flatnonzero(self.active[self.src] & ~sending):  # shares for a neighbour that has not answered
            i = int(self.src[kept])
            out[i] += float(self._w[kept]) * mass[i]
            kept_w[i] += self._w[kept]
            skewed = True
        new_phi[self.active] += kept_w[self.active] * phi[self.active]
        sent_n[sending] += 1
        may[sending] = False
        may[answered & ~now] = True  # an answer not used to send in this mixing: the next one may
        touched_np |= self.active
        self.skewed[key] = skewed = skewed or self.skewed.get(key, False)
        new_mass = torch.where(act, out, mass)
        self.mass[key] = new_mass
        if not skewed:
            self.shown[key] = new_mass
            return new_mass
        self.phi[key] = new_phi
        ratio = new_mass / torch.as_tensor(new_phi, dtype=Z.dtype, device=Z.device).view(shape)
        before = self.shown.get(key)
        result = ratio if before is None else torch.where(act, ratio, before)
        self.shown[key] = result
        return result

    def _mix_sum(self, Z: torch.Tensor, key: str, links: np.ndarray) -> torch.Tensor:
        """A sum-push tracker (module docstring): an active node's mass is ``Z``'s row (the mass it showed plus
        the algorithm's correction); it keeps w_ii of it, sends w_ji of it to every neighbour, and adds every
        share that has arrived. Inactive nodes keep their mass. With every message the one just sent: W Z."""
        act = torch.as_tensor(self.active, device=Z.device).view(-1, *([1] * (Z.ndim - 1)))
        touched_np = self.touched.setdefault(key, np.zeros(self.n, dtype=bool))
        touched = torch.as_tensor(touched_np, device=Z.device).view_as(act)
        # a node that never mixed and is not active takes no part: its row only keeps the product finite
        mass = torch.where(act, Z, torch.where(touched, self.mass.get(key, Z), Z))
        sending = self.active[self.src]
        out = self.comm.gossip_from(mass, np.bincount(self.src[sending], minlength=self.n))  # W m
        pending = self.pending.setdefault(key, [[] for _ in range(2 * self.E)])
        for d, j, taken, fresh in self._exchange(pending, lambda i, w: (mass[i] * w, 0.0), links, sending):
            if len(taken) == 1 and taken[0] is fresh:
                continue  # exactly the synchronous share: W m already holds it
            i = int(self.src[d])
            got = sum((m.payload for m in taken), torch.zeros_like(mass[i]))
            out[j] += got - float(self._w[d]) * mass[i]
        touched_np |= self.active
        new_mass = torch.where(act, out, mass)
        self.mass[key] = new_mass
        return new_mass

    def _replies(self, pending: list[list[_Message]]) -> tuple[np.ndarray, np.ndarray]:
        """For each link d = i -> j (int arrays (2E,)): how many messages of d its receiver takes in this mixing
        (if active), and how many of i's shares on d the newest message j -> i that has arrived by i's clock
        acknowledges (-1 if none has arrived)."""
        will = np.zeros(2 * self.E, dtype=np.int64)
        replied = np.full(2 * self.E, -1, dtype=np.int64)
        for d in range(2 * self.E):
            i, j, back = int(self.src[d]), int(self.dst[d]), (d + self.E) % (2 * self.E)
            newest = max((m.sent for m in pending[d] if m.arrives <= self.time[j]), default=None)
            if newest is not None:
                will[d] = sum(m.sent <= newest for m in pending[d])
            arrived = [m for m in pending[back] if m.arrives <= self.time[i]]
            if arrived:
                replied[d] = max(arrived, key=lambda m: m.sent).acked
        return will, replied

    def held_mass(self, key: str, shown: torch.Tensor) -> torch.Tensor:
        """Sum over nodes of the tracker mass of ``key`` they hold; ``shown``: the trackers of the algorithm's
        state (what a node that never mixed ``key`` holds). With :meth:`in_flight_sum`, the network sum of the
        local estimates."""
        m = self.mass.get(key)
        if m is None:
            return shown.sum(0)
        t = torch.as_tensor(self.touched[key], device=m.device).view(-1, *([1] * (m.ndim - 1)))
        return torch.where(t, m, shown).sum(0)

    def state_dict(self) -> dict[str, Any]:
        """Clocks, iteration counts, messages in flight and what each node holds of its neighbours (plain values
        and CPU tensors), for checkpoints: a resumed run goes on exactly as it would have."""
        def cpu(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to("cpu")

        return {
            "time": self.time.tolist(), "iters": self.iters.tolist(), "active": self.active.tolist(),
            "calls": self._calls, "charged": self._charged.tolist(),
            "pending": {k: [[[float(m.sent), float(m.arrives), cpu(m.payload), float(m.phi), int(m.acked)]
                              for m in link]
                             for link in links] for k, links in self.pending.items()},
            "copies": {k: [cpu(c) for c in v] for k, v in self.copies.items()},
            "recent": [[[float(a), float(b)] for a, b in d] for d in self.recent],
            "starts": [list(map(float, st)) for st in self.starts],
            "may_send": {k: v.tolist() for k, v in self.may_send.items()},
            "shares_sent": {k: v.tolist() for k, v in self.shares_sent.items()},
            "shares_taken": {k: v.tolist() for k, v in self.shares_taken.items()},
            "mass": {k: cpu(v) for k, v in self.mass.items()}, "phi": {k: v.tolist() for k, v in self.phi.items()},
            "shown": {k: cpu(v) for k, v in self.shown.items()},
            "touched": {k: v.tolist() for k, v in self.touched.items()},
            "skewed": {k: bool(v) for k, v in self.skewed.items()},
            "pairwise_writes": self.pairs.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state_dict` back, before the first mixing (tensors move to the run's device on use)."""
        self.time = np.asarray(state["time"], dtype=np.float64)
        self.iters = np.asarray(state["iters"], dtype=np.int64)
        self.active = np.asarray(state["active"], dtype=bool)
        self._calls = int(state["calls"])
        self._charged = np.asarray(state["charged"], dtype=np.int64)
        self.pending = {k: [[_Message(float(a), float(b), p, float(f), int(c)) for a, b, p, f, c in link]
                             for link in links] for k, links in state["pending"].items()}
        self.copies = {k: list(v) for k, v in state["copies"].items()}
        if "recent" not in state:
            raise ProxGTValueError("this checkpoint of an asynchronous run was written by an older proxgt, whose "
                                   "staleness rule differs; run it again from the start")
        self.recent = [[(float(a), float(b)) for a, b in d] for d in state["recent"]]
        self.starts = [[float(t) for t in st] for st in state["starts"]]
        self.may_send = {k: np.asarray(v, dtype=bool) for k, v in state["may_send"].items()}
        self.shares_sent = {k: np.asarray(v, dtype=np.int64) for k, v in state["shares_sent"].items()}
        self.shares_taken = {k: np.asarray(v, dtype=np.int64) for k, v in state["shares_taken"].items()}
        self.mass = dict(state["mass"])
        self.phi = {k: np.asarray(v, dtype=np.float64) for k, v in state["phi"].items()}
        self.shown = dict(state["shown"])
        self.touched = {k: np.asarray(v, dtype=bool) for k, v in state["touched"].items()}
        self.skewed = {k: bool(v) for k, v in state["skewed"].items()}
        self.pairs.load_state_dict(state.get("pairwise_writes", {}))
        self._device = None

    def _on(self, device: torch.device) -> None:
        """Move the held tensors to ``device`` (after a checkpoint was loaded on the CPU)."""
        if self._device == device:
            return

        def to(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        for links in self.pending.values():
            for link in links:
                for m in link:
                    m.payload = m.payload.to(device)
        self.copies = {k: [to(c) for c in v] for k, v in self.copies.items()}
        self.mass = {k: v.to(device) for k, v in self.mass.items()}
        self.shown = {k: v.to(device) for k, v in self.shown.items()}
        self.pairs.to(device)
        self._device = device

    def in_flight_sum(self, key: str) -> torch.Tensor | None:
        """Sum of the tracker mass of ``key`` sent and not yet received (the invariant's term), or None."""
        msgs = [m.payload for link in self.pending.get(key, []) for m in link]
        return torch.stack(msgs).sum(0) if msgs else None


def check_async(cfg: Any, algorithm: Any, time_varying: bool) -> None:
    """Refuse what ``asynchronous`` cannot honour (one line each)."""
    if not cfg.asynchronous:
        if algorithm.capabilities.pairwise_keys:
            raise ProxGTValueError(
                f"algorithm {cfg.algorithm!r} averages with one random neighbour at a time on nodes' own clocks "
                "(an asynchronous method): run it with --async")
        return
    if not algorithm.capabilities.asynchronous:
        raise ProxGTValueError(
            f"algorithm {cfg.algorithm!r} cannot run asynchronously (--async): it does not declare it "
            "(Capabilities.asynchronous; ProxGT with any estimator does)")
    if cfg.max_staleness == 0:
        raise ProxGTValueError("max_staleness = 0 with --async is the synchronous run: every node would wait for "
                               "every neighbour's newest message; use max_staleness >= 1 or leave --async off")
    if cfg.mixing not in ("plain", "auto") or cfg.rounds not in (1, "auto"):  # auto: plain, 1 round
        raise ProxGTValueError("--async exchanges one message per neighbour and mixing: use --mixing plain "
                               f"--rounds 1 (got mixing = {cfg.mixing!r}, rounds = {cfg.rounds!r})")
    if (float(cfg.message_loss or 0.0) > 0.0 or cfg.round_deadline is not None or cfg.link_trace is not None
            or float(cfg.link_failure or 0.0) > 0.0 or float(cfg.node_dropout or 0.0) > 0.0 or time_varying
            or cfg.compress != "none"):
        raise ProxGTValueError("--async does not combine with message_loss, round_deadline, link_trace, link_failure, "
                               "node_dropout, a time-varying topology or compressed gossip yet")


def async_network(comm: SimulatedCommunicator, spec: Any) -> AsyncNetwork:
    """The :class:`AsyncNetwork` of an asynchronous run: the topology's links and weights, the algorithm's tracked
    keys, the run's clock profile and staleness bound."""
    edges = canonical_edges(spec.topology.edges)
    caps = spec.algorithm.capabilities
    return AsyncNetwork(comm, edges, edge_weights(spec.topology.W, edges), caps.tracked_keys,
                        spec.clock, int(spec.settings.max_staleness), caps.pairwise_keys, int(spec.settings.seed),
                        caps.sum_push_keys)
