"""Network effects on the cost model: link failures (slower contraction), stragglers (waiting per round)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxgt._validation import (
    check_positive_int,
    param_error,
)
from proxgt.delays import DELAY_SPECS, Delay

if TYPE_CHECKING:  # numpy is imported where used: `proxgt --help` imports this module and stays light
    import numpy as np
from proxgt.costmodel.model import CostModel

__all__ = ["Straggler", "NetworkModel", "NetworkEffect", "StragglerWait", "failure_contraction", "round_factor",
           "straggler_wait", "MIX_TARGET", "STRAGGLER_SPECS"]

MIX_TARGET = 0.05

#: the straggler distribution of the cost model is the library's delay distribution (one parser, see
#: :mod:`proxgt.delays`): ``Straggler.parse("exp:0.02")``
Straggler = Delay
STRAGGLER_SPECS = DELAY_SPECS


def _graph_edges(graph: Any) -> tuple[int, np.ndarray]:
    """(n, edges as an (m, 2) int array without self-loops) of a networkx graph on nodes 0..n-1."""
    import numpy as np

    n = graph.number_of_nodes()
    edges = np.asarray([(u, v) for u, v in graph.edges if u != v], dtype=np.int64).reshape(-1, 2)
    return n, edges


def _check_failure_rate(p: Any, owner: str) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not (0.0 <= p < 1.0):
        raise param_error(owner, "link_failure", "a number in [0, 1)", p)
    return float(p)


def _surviving_metropolis(n: int, edges: np.ndarray, up: np.ndarray, lazy: bool) -> Any:
    """Metropolis matrix of the edges with ``up`` True, degrees counted among them (lazy: (I + W) / 2): a
    numpy array up to :data:`_DENSE_NODES` nodes, a scipy CSR matrix above."""
    import numpy as np
    from scipy import sparse

    from proxgt.topology import metropolis_weight

    e = edges[up]
    deg = np.bincount(e.ravel(), minlength=n)
    w = metropolis_weight(deg[e[:, 0]], deg[e[:, 1]])
    diag = 1.0 - np.bincount(e.ravel(), weights=np.repeat(w, 2), minlength=n)
    if lazy:
        w, diag = w / 2, (1.0 + diag) / 2
    idx = np.arange(n)
    if n <= _DENSE_NODES:
        W = np.diag(diag)
        W[e[:, 0], e[:, 1]] = w
        W[e[:, 1], e[:, 0]] = w
        return W
    rows = np.concatenate([e[:, 0], e[:, 1], idx])
    cols = np.concatenate([e[:, 1], e[:, 0], idx])
    return sparse.csr_matrix((np.concatenate([w, w, diag]), (rows, cols)), shape=(n, n))


_DENSE_NODES = 64  # dense products are faster up to here; sparse ones (n * degree^2 work) beyond


def failure_contraction(graph: Any, link_failure: float, *, samples: int = 400, seed: int = 0,
                        lazy: bool = False) -> float:
    """lambda_p = sqrt(largest eigenvalue of E[W_t^2] - J): the per-round root-mean-square contraction of
    disagreement when each edge of ``graph`` (networkx, nodes 0..n-1) is down with probability ``link_failure``
    and W_t is the Metropolis matrix of the surviving edges (``lazy``: lazy Metropolis). E[W_t^2] is the mean
    over ``samples`` seeded rounds (exact, one sample, at p = 0, where lambda_p = ||W - J||_2).

    >>> import networkx as nx
    >>> round(failure_contraction(nx.cycle_graph(8), 0.0), 6)  # Metropolis ring: 1/3 + 2/3 cos(2 pi / 8)
    0.804738
    """
    import numpy as np

    p = _check_failure_rate(link_failure, "failure_contraction")
    samples = check_positive_int(samples, "samples", "failure_contraction")
    n, edges = _graph_edges(graph)
    if n <= 1:
        return 0.0
    rng = np.random.default_rng([int(seed), 0])
    draws = 1 if p == 0.0 else samples
    acc: Any = None  # sum of W_t^2 (a numpy array, or a scipy sparse matrix)
    for _ in range(draws):
        up = rng.random(len(edges)) >= p if p > 0.0 else np.ones(len(edges), dtype=bool)
        W = _surviving_metropolis(n, edges, up, lazy)
        acc = W @ W if acc is None else acc + W @ W
    M = (acc if isinstance(acc, np.ndarray) else acc.toarray()) / draws - 1.0 / n
    top = float(np.linalg.eigvalsh((M + M.T) / 2)[-1])
    return math.sqrt(max(top, 0.0))


def round_factor(lam: float, lam_p: float, eps: float = MIX_TARGET) -> float:
    """R(lam_p) / R(lam) with R(x) = max(1, ln eps / ln x) the rounds to mix to ``eps`` (1 for x <= eps);
    ``inf`` when lam_p >= 1 (the failures stop mixing).

    >>> round_factor(0.9, 0.9), round(round_factor(0.5, 0.25), 6), round_factor(0.0, 0.01)
    (1.0, 0.5, 1.0)
    """

    def rounds(x: float) -> float:
        if x >= 1.0:
            return math.inf
        return 1.0 if x <= eps else max(1.0, math.log(eps) / math.log(x))

    return rounds(lam_p) / rounds(lam)


@dataclass(frozen=True)
class StragglerWait:
    """Seconds a gossip round waits for late nodes, beyond the latency (see the module docstring):
    ``neighbour_s`` one round's slowest-neighbour wait (lower bound), ``round_s`` the sustained per-round wait
    of the max-plus recursion (the model's), ``barrier_s`` the slowest node of the graph (upper bound)."""

    neighbour_s: float = 0.0
    round_s: float = 0.0
    barrier_s: float = 0.0


def straggler_wait(graph: Any, straggler: Straggler | str, *, link_failure: float = 0.0, rounds: int = 2000,
                   seed: int = 0) -> StragglerWait:
    """Monte Carlo (``rounds`` seeded rounds) of the waits of synchronous gossip on ``graph`` (networkx, nodes
    0..n-1) when every node is late by an independent draw of ``straggler`` in each round and each edge is down
    with probability ``link_failure`` (a node does not wait for a neighbour whose link is down).

    >>> import networkx as nx
    >>> straggler_wait(nx.cycle_graph(6), "const:0.5")
    StragglerWait(neighbour_s=0.5, round_s=0.5, barrier_s=0.5)
    """
    import numpy as np

    s = Straggler.parse(straggler)
    p = _check_failure_rate(link_failure, "straggler_wait")
    rounds = check_positive_int(rounds, "rounds", "straggler_wait")
    n, edges = _graph_edges(graph)
    if s.kind == "none" or n == 0:
        return StragglerWait()
    # neighbour table: row i lists i's neighbours (padded with i itself) and the ids of the edges to them
    deg = np.bincount(edges.ravel(), minlength=n)
    width = max(int(deg.max(initial=0)), 1)
    nbr = np.tile(np.arange(n)[:, None], (1, width))
    eid = np.full((n, width), -1)
    fill = np.zeros(n, dtype=np.int64)
    for k, (u, v) in enumerate(edges):
        nbr[u, fill[u]], eid[u, fill[u]] = v, k
        nbr[v, fill[v]], eid[v, fill[v]] = u, k
        fill[u] += 1
        fill[v] += 1
    rng = np.random.default_rng([int(seed), 1])
    D = s.sample(rng, (rounds, n))
    self_idx = np.arange(n)[:, None]
    F = np.zeros(n)
    burn = rounds // 4
    F_burn = F
    one_round = 0.0
    for t in range(rounds):
        if p > 0.0 and len(edges):
            up = np.append(rng.random(len(edges)) >= p, True)  # index -1 (padding) is always "up"
            idx = np.where(up[eid], nbr, self_idx)
        else:
            idx = nbr
        d = D[t]
        one_round += float(np.maximum(d, d[idx].max(axis=1)).mean())
        F = np.maximum(F + d, (F[idx] + d[idx]).max(axis=1))
        if t + 1 == burn:
            F_burn = F
    sustained = float((F - F_burn).mean()) / (rounds - burn)
    return StragglerWait(neighbour_s=one_round / rounds, round_s=sustained, barrier_s=float(D.max(axis=1).mean()))


@dataclass(frozen=True)
class NetworkEffect:
    """What a :class:`NetworkModel` does to a run on one graph: ``lam`` (reliable graph, same weight rule) and
    ``lam_p`` (with failures) contractions, ``round_factor`` and ``byte_factor`` scaling the counted rounds and
    bytes, and the straggler ``wait`` per round. :meth:`expected` turns counted work into expected cost."""

    link_failure: float = 0.0
    straggler: str = "none"
    lam: float = math.nan
    lam_p: float = math.nan
    round_factor: float = 1.0
    byte_factor: float = 1.0
    wait: StragglerWait = field(default_factory=StragglerWait)

    @property
    def trivial(self) -> bool:
        """True for a reliable, evenly fast network (the expected cost is the modeled cost)."""
        return self.link_failure == 0.0 and self.straggler == "none"

    def expected(self, cost: CostModel, ifo_per_node: float, comm_rounds: float,
                 bytes_per_node: float) -> tuple[float, float, float]:
        """(expected rounds, expected bytes, expected seconds) for work counted on a reliable network; ``inf``
        for all three when the work is not finite (a target not reached)."""
        if not all(math.isfinite(v) for v in (ifo_per_node, comm_rounds, bytes_per_node)):
            return math.inf, math.inf, math.inf
        rounds = comm_rounds * self.round_factor if comm_rounds else 0.0
        nbytes = bytes_per_node * self.byte_factor if bytes_per_node else 0.0
        return rounds, nbytes, cost.time(ifo_per_node, rounds, nbytes) + rounds * self.wait.round_s

    def describe(self) -> str:
        """One line for a plan's header."""
        return (f"network: link failure {self.link_failure:g} (lambda {self.lam:.4g} -> {self.lam_p:.4g}, rounds "
                f"x{self.round_factor:.3g}, bytes x{self.byte_factor:.3g}); straggler {self.straggler} (wait per "
                f"round: one round {self.wait.neighbour_s:.3g} s, sustained {self.wait.round_s:.3g} s [used], "
                f"global barrier {self.wait.barrier_s:.3g} s)")


@dataclass(frozen=True)
class NetworkModel:
    """A link-failure rate ``link_failure`` in [0, 1) (each edge down independently in each round) and a
    ``straggler`` delay distribution (a :class:`Straggler` or its spec, e.g. ``"exp:0.02"``); ``samples``
    rounds estimate lambda_p and ``wait_rounds`` rounds the straggler waits. The default is a reliable,
    evenly fast network.

    >>> import networkx as nx
    >>> e = NetworkModel(0.0, "const:0.1").on_graph(nx.cycle_graph(8))
    >>> rounds, nbytes, seconds = e.expected(CostModel(latency_s=0.01, bandwidth_Bps=1e6, sample_s=1e-5),
    ...                                      1000, 10, 2e6)
    >>> e.round_factor, rounds, nbytes, round(seconds, 9)  # 2.11 s (see above) + 10 rounds * 0.1 s waiting
    (1.0, 10.0, 2000000.0, 3.11)
    """

    link_failure: float = 0.0
    straggler: Straggler | str = "none"
    samples: int = 400
    wait_rounds: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "link_failure", _check_failure_rate(self.link_failure, "NetworkModel"))
        object.__setattr__(self, "straggler", Straggler.parse(self.straggler))
        check_positive_int(self.samples, "samples", "NetworkModel")
        check_positive_int(self.wait_rounds, "wait_rounds", "NetworkModel")

    def on_graph(self, graph: Any, *, seed: int = 0, lazy: bool = False) -> NetworkEffect:
        """The :class:`NetworkEffect` on ``graph`` (networkx, nodes 0..n-1), seeded by ``seed``; ``lazy`` for
        lazy Metropolis weights. At p = 0 the factors are exactly 1 (no sampling)."""
        p = self.link_failure
        strag = Straggler.parse(self.straggler)
        lam = failure_contraction(graph, 0.0, lazy=lazy)
        if p == 0.0:
            lam_p, rf = lam, 1.0
        else:
            lam_p = failure_contraction(graph, p, samples=self.samples, seed=seed, lazy=lazy)
            rf = round_factor(lam, lam_p)
        wait = straggler_wait(graph, strag, link_failure=p, rounds=self.wait_rounds, seed=seed)
        return NetworkEffect(p, strag.spec, lam, lam_p, rf, rf * (1.0 - p), wait)

    def on_topology(self, topology: Any, *, seed: int = 0) -> NetworkEffect:
        """:meth:`on_graph` on a :class:`proxgt.topology.Topology` (lazy when its weights are lazy Metropolis;
        any other weight rule is modeled with Metropolis weights, the rule used on a changing graph)."""
        return self.on_graph(topology.graph, seed=seed, lazy=topology.weights == "lazy_metropolis")
