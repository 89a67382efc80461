"""Unreliable and time-varying communication: a seeded per-round network schedule and its communicator.

A :class:`NetworkSchedule` says, for every iteration t and every gossip round of it, which nodes take part and
which links are up, and gives that round's mixing matrix: Metropolis weights of the graph that is up,

    w_ij = 1 / (1 + max(d_i, d_j))   on an up link (d = the up-degrees of this round),
    w_ii = 1 - sum_j w_ij,

(halved off the diagonal for ``weights = lazy_metropolis``). Each node computes its row from its own and its
neighbours' up-degrees, so the same rule serves the distributed executor. Every round matrix is symmetric and
doubly stochastic; a node that sits the iteration out has no link, so its row is e_i.

Every random decision is a pure function of ``(seed, what, t, round)`` through
``numpy.random.SeedSequence``: both executors and a resumed run see the same pattern and there is no random
state to checkpoint. The round index ``k`` counts the gossip rounds inside iteration t (reset by
:meth:`DynamicCommunicator.begin_iteration`); one-peer-exponential cycles its hop over the run's global round
count instead, so that every hop length is used whatever the rounds per iteration.

Iteration 0 is the algorithm's ``init``: every node is active there (there is no earlier state to keep).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from proxgt._state import map_state
from proxgt.errors import ProxGTValueError
from proxgt.mixing.clock import canonical_edges
from proxgt.mixing.communicator import SimulatedCommunicator
from proxgt.topology import metropolis_weight

__all__ = [
    "TIME_VARYING",
    "DynamicCommunicator",
    "NetworkSchedule",
    "RoundWeights",
    "auto_rounds",
    "check_network_settings",
    "warn_time_varying_mixing",
    "keep_inactive_rows",
    "network_schedule",
]

#: time-varying families (canonical topology names) and what each round's candidate links are
TIME_VARYING = ("one-peer-exponential", "random-matching")

_TAG_LINK, _TAG_DROP, _TAG_MATCH = 0x11F, 0xD20, 0x3A7


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


@dataclass(frozen=True)
class RoundWeights:
    """One round's mixing matrix in edge form: ``W = diag(diag) + sum_e w_e (e_i e_j^T + e_j e_i^T)``.

    Attributes:
        edges: (E, 2) int64 up links ``(i, j)``, i < j.
        w: (E,) float64 weight of each up link.
        diag: (n,) float64 self weights.
        degrees: (n,) int64 up-degree of each node (the messages it sends this round).
    """

    edges: np.ndarray
    w: np.ndarray
    diag: np.ndarray
    degrees: np.ndarray

    def dense(self) -> np.ndarray:
        """The n x n matrix (tests and small n only)."""
        W = np.diag(self.diag)
        i, j = self.edges[:, 0], self.edges[:, 1]
        W[i, j] += self.w
        W[j, i] += self.w
        return W

    def sparse(self) -> Any:
        """The matrix as ``scipy.sparse.csr_matrix`` (no dense n x n)."""
        from scipy.sparse import coo_matrix

        n = self.diag.size
        i, j = self.edges[:, 0], self.edges[:, 1]
        rows = np.concatenate([np.arange(n), i, j])
        cols = np.concatenate([np.arange(n), j, i])
        vals = np.concatenate([self.diag, self.w, self.w])
        return coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()


class NetworkSchedule:
    """Which nodes and links are up in each gossip round of a run, and the round's weights.

    Args:
        n: number of nodes.
        edges: (E, 2) links of the static graph (ignored by a time-varying ``family``, whose links come from
            the round).
        link_failure: probability that a link is down in a round (independently per link and round).
        node_dropout: probability that a node sits out an iteration (independently per node and iteration
            t >= 1).
        family: None (static graph), ``"one-peer-exponential"`` or ``"random-matching"``.
        seed: the run seed.
        lazy: halve the off-diagonal weights (``weights = lazy_metropolis``).
    """

    def __init__(
        self,
        n: int,
        edges: np.ndarray | Sequence[tuple[int, int]],
        *,
        link_failure: float = 0.0,
        node_dropout: float = 0.0,
        family: str | None = None,
        seed: int = 0,
        lazy: bool = False,
    ):
        self.n = int(n)
        self.edges = canonical_edges(edges)  # canonical order: the same list on every process
        for name, p in (("link_failure", link_failure), ("node_dropout", node_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ProxGTValueError(f"{name} = {p!r} must be a probability in [0, 1)")
        self.link_failure = float(link_failure)
        self.node_dropout = float(node_dropout)
        if family is not None and family not in TIME_VARYING:
            raise ProxGTValueError(f"unknown time-varying family {family!r}; one of {', '.join(TIME_VARYING)}")
        if family == "one-peer-exponential" and self.n & (self.n - 1):
            raise ProxGTValueError(f"one-peer-exponential needs nodes a power of 2; got {self.n}")
        self.family = family
        self.seed = int(seed)
        self.lazy = bool(lazy)
        self._dims = max(1, self.n.bit_length() - 1)
        self._active_cache: tuple[int, np.ndarray] | None = None

    def links_only(self) -> NetworkSchedule | None:
        """The same schedule with every node taking part, or None when that leaves a static, reliable graph.
        Rounds are chosen for it: a node that sits an iteration out cannot be reached by any number of rounds,
        so the disagreement it leaves is not something more rounds could mix away."""
        if self.family is None and self.link_failure == 0.0:
            return None
        return NetworkSchedule(self.n, self.edges, link_failure=self.link_failure, family=self.family, seed=self.seed,
                               lazy=self.lazy)

    @property
    def dynamic_nodes(self) -> bool:
        """Whether any node may sit out an iteration."""
        return self.node_dropout > 0.0

    def active(self, t: int) -> np.ndarray:
        """Bool (n,): the nodes that take part in iteration ``t`` (all of them at t = 0, the init)."""
        if self._active_cache is not None and self._active_cache[0] == t:
            return self._active_cache[1]
        if t <= 0 or self.node_dropout == 0.0:
            act = np.ones(self.n, dtype=bool)
        else:
            act = _rng(self.seed, _TAG_DROP, t).random(self.n) >= self.node_dropout
        act.setflags(write=False)
        self._active_cache = (t, act)
        return act

    def candidate_edges(self, t: int, k: int, r: int) -> np.ndarray:
        """(E, 2) links that would be used in round ``k`` of iteration ``t`` (global round ``r``) if none failed,
        restricted to the active nodes."""
        act = self.active(t)
        if self.family == "one-peer-exponential":
            if self.n < 2:
                return np.zeros((0, 2), dtype=np.int64)
            hop = 1 << (r % self._dims)
            i = np.arange(self.n, dtype=np.int64)
            i = i[(i & hop) == 0]
            e = np.stack([i, i | hop], axis=1)
        elif self.family == "random-matching":
            nodes = np.flatnonzero(act)
            perm = _rng(self.seed, _TAG_MATCH, t, k).permutation(nodes)
            m = perm.size // 2 * 2
            e = np.sort(perm[:m].reshape(-1, 2), axis=1)
            return e[np.lexsort((e[:, 1], e[:, 0]))]
        else:
            e = self.edges
        if not act.all():
            e = e[act[e[:, 0]] & act[e[:, 1]]]
        return e

    def edges_up(self, t: int, k: int, r: int = 0) -> np.ndarray:
        """(E, 2) links up in round ``k`` of iteration ``t`` (global round ``r``, used by one-peer-exponential)."""
        e = self.candidate_edges(t, k, r)
        if self.link_failure > 0.0 and e.size:
            # one draw per link of the static list (or of the round's candidates) keeps the draw per link fixed
            # whoever else is active
            if self.family is None:
                up_all = _rng(self.seed, _TAG_LINK, t, k).random(len(self.edges)) >= self.link_failure
                if e.shape[0] != self.edges.shape[0]:
                    idx = np.searchsorted(self.edges[:, 0] * self.n + self.edges[:, 1], e[:, 0] * self.n + e[:, 1])
                    up: np.ndarray = e[up_all[idx]]
                    return up
                up = e[up_all]
                return up
            e = e[_rng(self.seed, _TAG_LINK, t, k).random(e.shape[0]) >= self.link_failure]
        return e

    def round_weights(self, t: int, k: int, r: int = 0) -> RoundWeights:
        """The Metropolis weights of the links up in round ``k`` of iteration ``t``."""
        e = self.edges_up(t, k, r)
        deg = np.bincount(e.ravel(), minlength=self.n).astype(np.int64)
        w = metropolis_weight(deg[e[:, 0]], deg[e[:, 1]]) if e.size else np.zeros(0)
        if self.lazy:
            w = 0.5 * w
        # e.ravel() is (i0, j0, i1, j1, ...): each link's weight counts once at each end
        off = np.bincount(e.ravel(), weights=np.repeat(w, 2), minlength=self.n) if e.size else np.zeros(self.n)
        return RoundWeights(edges=e, w=w, diag=1.0 - off, degrees=deg)

    def round_matrix(self, t: int, k: int, r: int = 0) -> Any:
        """Round ``k`` of iteration ``t`` as a ``scipy.sparse.csr_matrix``."""
        return self.round_weights(t, k, r).sparse()


def network_schedule(cfg: Any, topology: Any, weights: str) -> NetworkSchedule | None:
    """The round-by-round network of a run (built once, by the run builder), or None when it is static and
    reliable (the fast path). ``weights``: the run's resolved weight rule."""
    p_link = float(cfg.link_failure or 0.0)
    p_drop = float(cfg.node_dropout or 0.0)
    family = topology.name if topology.time_varying else None
    if family is None and p_link == 0.0 and p_drop == 0.0:
        return None
    edges = topology.edges  # (E, 2), each undirected link once
    return NetworkSchedule(topology.n, edges if family is None else np.zeros((0, 2), dtype=np.int64),
                           link_failure=p_link, node_dropout=p_drop, family=family, seed=cfg.seed,
                           lazy=weights == "lazy_metropolis")


def check_network_settings(cfg: Any, topology_name: str, time_varying: bool) -> None:
    """Refuse settings an unreliable or time-varying network cannot honour (one line each)."""
    p_link = float(cfg.link_failure or 0.0)
    p_drop = float(cfg.node_dropout or 0.0)
    if cfg.on_failure == "continue" and (p_link > 0.0 or p_drop > 0.0 or time_varying):
        raise ProxGTValueError(
            "on_failure = 'continue' (--on-failure) does not yet combine with link_failure, node_dropout or a "
            "time-varying topology: the round schedule does not know which ranks were lost; use on_failure = 'abort'"
        )
    if time_varying:
        if cfg.weights_file is not None or cfg.weights != "metropolis":
            given = f"weights_file = {cfg.weights_file!r} (--weights-file)" if cfg.weights_file is not None \
                else f"weights = {cfg.weights!r} (--weights)"
            raise ProxGTValueError(
                f"topology = '{topology_name}' sets its own weights (1/2 on each round's matched pair); "
                f"{given} cannot be honoured"
            )
    elif p_link > 0.0 or p_drop > 0.0:
        if cfg.weights_file is not None or cfg.weights not in ("metropolis", "lazy_metropolis"):
            rule = "user (--weights-file)" if cfg.weights_file is not None else repr(cfg.weights)
            raise ProxGTValueError(
                f"link_failure / node_dropout recompute the weights of each round from the links that are up "
                f"(metropolis or lazy_metropolis); weights = {rule} cannot be honoured"
            )


def warn_time_varying_mixing(cfg: Any, topology: Any) -> None:
    """Chebyshev / fastmix on a time-varying family: allowed (average-preserving), but say what it means."""
    topology_name = topology.name
    if topology.time_varying and cfg.mixing not in ("plain", "auto"):
        warnings.warn(
            f"mixing = '{cfg.mixing}' with topology = '{topology_name}': the coefficients come from the expected "
            "round matrix, but the matrix changes every round, so there is no acceleration guarantee; "
            "mixing = 'plain' averages a one-peer-exponential graph exactly in log2(nodes) rounds",
            stacklevel=3,
        )


def auto_rounds(topology_name: str, n: int) -> int | None:
    """``rounds = auto`` for a time-varying family, or None to use the spectrum of the topology's W.

    One-peer-exponential: log2(n) rounds, one per hop length, after which plain gossip (with no failure)
    has averaged exactly; fewer rounds leave some disagreement untouched (||M_K - J|| = 1)."""
    if topology_name == "one-peer-exponential":
        return max(1, n.bit_length() - 1)
    return None


def keep_inactive_rows(old: Any, new: Any, inactive: np.ndarray) -> Any:
    """``new`` with the rows ``inactive`` (bool over the local rows) of every node-stacked tensor field taken
    from ``old``: a node that sat the iteration out keeps all of its state."""
    mask = torch.as_tensor(inactive)
    k = mask.numel()

    def keep(value: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        if value.ndim >= 1 and value.shape[0] == k and before.shape == value.shape:
            return torch.where(mask.to(value.device).view(k, *([1] * (value.ndim - 1))), before, value)
        return value

    return map_state(keep, new, old)


class DynamicCommunicator(SimulatedCommunicator):
    """The simulation's communicator under a :class:`NetworkSchedule`: round k of iteration t multiplies by
    that round's matrix, applied in edge form (O(E d) per round, never an n x n matrix), and counts the
    messages each node really sent (its up-degree)."""

    def __init__(self, W: torch.Tensor, degrees: Sequence[int] | np.ndarray, schedule: NetworkSchedule):
        super().__init__(W, degrees)
        self.schedule = schedule
        self._t = 0
        self._k = 0

    def begin_iteration(self, t: int) -> None:
        """Iteration ``t`` starts (0: the init): its rounds are numbered from 0 again."""
        self._t = int(t)
        self._k = 0

    def attach_schedule(self, schedule: NetworkSchedule) -> None:
        self.schedule = schedule

    def round_weights(self) -> RoundWeights:
        """The weights of the next round (advances the round counter)."""
        rw = self.schedule.round_weights(self._t, self._k, self.counter.rounds)
        self._k += 1
        return rw

    def next_round(self, width: int, itemsize: int) -> RoundWeights:
        """Start the next round and count it: every node sends one message of ``width * itemsize`` bytes on
        each of its up links (compressed gossip sends its own payloads and does the arithmetic itself)."""
        rw = self.schedule.round_weights(self._t, self._k, self.counter.rounds)
        self._record_round(width, itemsize, sent=rw.degrees, edges=rw.edges)
        self._k += 1
        return rw

    def rounds_into(self, Z: torch.Tensor, out: torch.Tensor,
                    schedule: Sequence[tuple[float, float]]) -> torch.Tensor | None:
        """None: the matrix changes from round to round, so the rounds run one by one."""
        return None

    def gossip_into(
        self,
        Z: torch.Tensor,
        out: torch.Tensor,
        alpha: float = 1.0,
        beta: float = 0.0,
        prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``out = alpha W_{t,k} Z + beta prev`` for this round's matrix W_{t,k}."""
        rw = self.next_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size())
        n = Z.shape[0]
        Z2, out2 = Z.reshape(n, -1), out.view(n, -1)
        diag = torch.as_tensor(rw.diag * alpha, dtype=Z.dtype, device=Z.device).unsqueeze(1)
        torch.mul(Z2, diag, out=out2)
        if rw.edges.size:
            e = torch.as_tensor(rw.edges, device=Z.device)
            w = torch.as_tensor(rw.w * alpha, dtype=Z.dtype, device=Z.device).unsqueeze(1)
            i, j = e[:, 0], e[:, 1]
            out2.index_add_(0, i, Z2.index_select(0, j) * w)
            out2.index_add_(0, j, Z2.index_select(0, i) * w)
        if beta != 0.0 and prev is not None:
            out2.add_(prev.reshape(n, -1), alpha=beta)
        return out
