"""A cost model for a pilot: turn a run's counted work into modeled wall time and bytes.

Every logged row already counts, per node, the component gradients computed (``ifo_per_node``), the gossip
rounds (``comm_rounds``) and the bytes sent (``bytes_per_node``). With three numbers describing the deployment,

* ``latency_s``: time a gossip round costs before any byte moves (one network round trip between sites),
* ``bandwidth_Bps``: bytes per second a node can send (its uplink, shared by its messages to all neighbours),
* ``sample_s``: seconds for one component gradient at a node (given, or :func:`measure_sample_time`),

the modeled time of a (synchronous) run is::

    modeled_s = ifo_per_node * sample_s + comm_rounds * latency_s + bytes_per_node / bandwidth_Bps

Simplifications, stated: nodes compute at the same speed; computation and communication do not overlap; the
byte term uses the mean degree (on irregular graphs the highest-degree node sends more and is slower).

Example::

    >>> CostModel(latency_s=0.01, bandwidth_Bps=1e6, sample_s=1e-5).time(1000, 10, 2e6)
    2.11

Unreliable networks (:class:`NetworkModel`, used by ``proxgt plan --link-failure P --straggler SPEC``)
------------------------------------------------------------------------------------------------------------
The counted work above is that of a reliable, evenly fast network. Two effects are modeled on top of it, on the
run's own graph, by seeded Monte Carlo (:meth:`NetworkModel.on_graph` gives a :class:`NetworkEffect`):

**Link failures.** Each edge is down independently with probability ``p`` in each gossip round. A round mixes
with W_t, the Metropolis matrix of the edges that are up (W_ij = 1 / (1 + max(d_i, d_j)) with the degrees
counted in the surviving subgraph, computed locally; with lazy Metropolis weights, (I + W_t) / 2): symmetric and
doubly stochastic, so W_t keeps the mean and maps the disagreement space {x : 1^T x = 0} into itself. For such
x, E||W_t x||^2 = x^T E[W_t^2] x <= lambda_p^2 ||x||^2 with::

    lambda_p = sqrt(largest eigenvalue of E[W_t^2] - J),   J = 11^T / n

(E[W_t^2] has eigenvector 1 with eigenvalue 1; subtracting J keeps its other eigenvalues). The rounds are
independent, so by the tower property K rounds shrink the mean-square disagreement by at least lambda_p^(2K):
lambda_p is a per-round root-mean-square contraction factor. E[W_t^2] is estimated from ``samples`` sampled
rounds (:func:`failure_contraction`); at p = 0 it is W^2 exactly and lambda_p = lambda = ||W - J||_2.

Rounds to reach a mixing accuracy ``eps`` are R(lam) = max(1, ln eps / ln lam) (one round when lam <= eps,
lam = 0 included), so keeping every iteration's mixing as good as on the reliable graph takes::

    round_factor = R(lambda_p) / R(lambda)   (= ln lambda / ln lambda_p when both exceed eps)

times the rounds (eps = :data:`MIX_TARGET` = 0.05, the accuracy ``proxgt plan`` calls well mixed; the
factor does not depend on eps when both lambdas exceed it). Iterations and samples to the target are assumed
unchanged (every iteration gets the extra rounds), and a failed link sends nothing, so bytes per round scale by
(1 - p): ``byte_factor = round_factor * (1 - p)``.

**Stragglers.** Each node is late by an independent delay D_i(t) in each round, drawn from a
:class:`Straggler` distribution (``none``, ``const:S``, ``exp:MEAN``, ``lognormal:MU,SIGMA``). A synchronous
round at node i ends when the messages of all its (surviving) neighbours and its own have arrived; node j sends
round t when it finished round t-1, plus its delay. So the finish times follow a max-plus recursion::

    F_i(t) = latency + max_{j in N_t[i]} (F_j(t-1) + D_j(t)),   N_t[i] = {i} and i's neighbours up in round t

and delays propagate over the graph round after round. :func:`straggler_wait` reports three waits per round:

* ``neighbour_s``: one round from a common start, E[max_{j in N[i]} D_j] averaged over nodes (the slowest
  neighbour wait; on a k-regular graph with exponential delays, MEAN * H_{k+1}): a lower bound;
* ``round_s``: the sustained growth rate of F beyond the latency, (F(T) - F(T/4)) / (3T/4) averaged over
  nodes (waits propagate: over many rounds each node waits for slow nodes several hops away): **the model's
  per-round wait**;
* ``barrier_s``: E[max over all nodes of D] (what a global barrier each round would cost): an upper bound.

The expected time of a run that counted ``ifo`` samples, ``rounds`` rounds and ``bytes`` bytes per node is::

    expected_s = ifo * sample_s + R' * (latency_s + round_s) + B' / bandwidth_Bps,
    R' = rounds * round_factor,  B' = bytes * byte_factor

and the straggler-and-failure overhead is expected_s / modeled_s. With p = 0 and no stragglers, R' = rounds,
B' = bytes, round_s = 0, and expected_s equals modeled_s exactly.

Ignored, stated: asynchrony (no node runs ahead of a round; a late node delays its neighbours); correlated
failures (edges fail independently, rounds are independent; a site that goes away is not a link failure);
detecting a failure (a link known to be down costs no timeout); the effect of failures on Chebyshev/fastmix
acceleration (their rounds are scaled by the plain-gossip factor above); delays are per round and node, not
proportional to the bytes sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from proxgt._validation import (
    ProxGTValueError,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    param_error,
)

if TYPE_CHECKING:  # numpy is imported where used: `proxgt --help` imports this module and stays light
    import numpy as np

__all__ = [
    "CostModel",
    "Candidate",
    "measure_sample_time",
    "candidate_from_runs",
    "candidate_rounds",
    "recommend",
    "plan_rounds",
    "DEFAULT_LATENCY_S",
    "DEFAULT_BANDWIDTH_BPS",
    "MIX_TARGET",
    "Straggler",
    "NetworkModel",
    "NetworkEffect",
    "StragglerWait",
    "failure_contraction",
    "round_factor",
    "straggler_wait",
]

#: Defaults describe a pilot across a few sites over the internet: 10 ms per round, 100 Mbit/s uplinks.
DEFAULT_LATENCY_S = 0.01
DEFAULT_BANDWIDTH_BPS = 12.5e6
DEFAULT_SAMPLE_S = 1e-6


@dataclass(frozen=True)
class CostModel:
    """Latency per gossip round (s), uplink bandwidth (bytes/s) and time per component gradient (s)."""

    latency_s: float = DEFAULT_LATENCY_S
    bandwidth_Bps: float = DEFAULT_BANDWIDTH_BPS
    sample_s: float = DEFAULT_SAMPLE_S

    def __post_init__(self) -> None:
        check_nonneg_float(self.latency_s, "latency_s", "CostModel")
        check_positive_float(self.bandwidth_Bps, "bandwidth_Bps", "CostModel")
        check_nonneg_float(self.sample_s, "sample_s", "CostModel")

    def time(self, ifo_per_node: float, comm_rounds: float, bytes_per_node: float) -> float:
        """Modeled seconds for the given per-node work and traffic."""
        return ifo_per_node * self.sample_s + comm_rounds * self.latency_s + bytes_per_node / self.bandwidth_Bps

    def row_time(self, row: dict[str, float]) -> float:
        return self.time(row.get("ifo_per_node", 0.0), row.get("comm_rounds", 0.0), row.get("bytes_per_node", 0.0))

    def with_modeled(self, rows: Iterable[dict[str, float]]) -> list[dict[str, float]]:
        """Copies of ``rows`` with a ``modeled_s`` column."""
        return [{**r, "modeled_s": self.row_time(r)} for r in rows]

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "cost") -> CostModel:
        known = {"latency_s", "bandwidth_Bps", "sample_s"}
        for k in d:
            if k not in known:
                raise ProxGTValueError(f"unknown setting '{k}' in {source}; known: {', '.join(sorted(known))}")
        vals = {}
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ProxGTValueError(f"{source}.{k} must be a number. Got {v!r} instead.")
            vals[k] = float(v)
        return cls(**vals)


def measure_sample_time(cfg: Any, *, batch: int = 256, repeats: int = 20) -> float:
    """Seconds per component gradient of ``cfg``'s problem on this machine, one node, one thread.

    Builds the run (data, problem), then times ``repeats`` minibatch gradients of ``batch`` samples at x0 on
    node 0 (after a warm-up call) and returns the median time divided by ``batch``.
    """
    from proxgt.problems.oracle import GradientOracle
    from proxgt.training import build_run

    spec = build_run(cfg)
    # minibatches even for a batch = full run: this measures the cost of one component gradient
    oracle = GradientOracle(spec.problem, spec.node_data.shard([0]), spec.settings.seed,
                            chunk_size=spec.problem.chunk_size, dtype=spec.dtype)
    X = spec.initial_rows([0])
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        idx = oracle.sample(batch)
        oracle.grad(X, idx)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            oracle.grad(X, idx)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    times.sort()
    return times[len(times) // 2] / batch


# ------------------------------------------------------------------------------------ unreliable networks
#: Mixing accuracy ||.|| <= MIX_TARGET counts as well mixed (the same 0.05 as :func:`candidate_rounds`' ladder).
MIX_TARGET = 0.05

_STRAGGLER_ARITY = {"none": 0, "const": 1, "exp": 1, "lognormal": 2}
STRAGGLER_SPECS = "none, const:S, exp:MEAN or lognormal:MU,SIGMA (S, MEAN, SIGMA >= 0; seconds)"


@dataclass(frozen=True)
class Straggler:
    """How late a node is in one gossip round (seconds), independently per node and round.

    ``kind`` is ``none`` (never late), ``const`` (``params = (S,)``: always S), ``exp`` (``(MEAN,)``:
    exponential with that mean) or ``lognormal`` (``(MU, SIGMA)``: exp of a normal N(MU, SIGMA^2)).
    :meth:`parse` reads the command-line form, e.g. ``"exp:0.02"``.

    >>> round(Straggler.parse("lognormal:-4,0.5").mean, 6)  # exp(MU + SIGMA^2 / 2)
    0.020754
    """

    kind: str = "none"
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        arity = _STRAGGLER_ARITY
        if self.kind not in arity:
            raise param_error("Straggler", "kind", "one of none, const, exp, lognormal", self.kind)
        params = tuple(float(v) for v in self.params)
        if len(params) != arity[self.kind] or not all(math.isfinite(v) for v in params):
            raise param_error("Straggler", "params", f"{arity[self.kind]} finite numbers for {self.kind}",
                              self.params)
        nonneg = params if self.kind in ("const", "exp") else params[1:]
        if any(v < 0 for v in nonneg):
            raise ProxGTValueError(f"The straggler model {self.spec!r} needs S, MEAN and SIGMA >= 0 (seconds).")
        object.__setattr__(self, "params", params)

    @classmethod
    def parse(cls, spec: str | Straggler) -> Straggler:
        """``none``, ``const:S``, ``exp:MEAN`` or ``lognormal:MU,SIGMA``; anything else is a one-line error."""
        if isinstance(spec, Straggler):
            return spec
        bad = ProxGTValueError(f"The 'straggler' parameter must be {STRAGGLER_SPECS}. Got {spec!r} instead.")
        kind, _, rest = str(spec).strip().partition(":")
        kind = kind.strip().lower()
        try:
            params = tuple(float(v) for v in rest.split(",")) if rest.strip() else ()
        except ValueError:
            raise bad from None
        if len(params) != _STRAGGLER_ARITY.get(kind, -1):
            raise bad
        return cls(kind, params)

    @property
    def spec(self) -> str:
        """The command-line form, e.g. ``exp:0.02``."""
        return self.kind if not self.params else f"{self.kind}:{','.join(f'{v:g}' for v in self.params)}"

    @property
    def mean(self) -> float:
        """Expected delay of one node in one round (seconds)."""
        if self.kind == "none":
            return 0.0
        if self.kind == "lognormal":
            mu, sigma = self.params
            return math.exp(mu + sigma * sigma / 2)
        return self.params[0]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Delays of the given shape (float64 seconds) drawn from ``rng``."""
        import numpy as np

        if self.kind == "none":
            return np.zeros(shape)
        if self.kind == "const":
            return np.full(shape, self.params[0])
        if self.kind == "exp":
            return rng.exponential(self.params[0], shape)
        return rng.lognormal(self.params[0], self.params[1], shape)


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

    e = edges[up]
    deg = np.bincount(e.ravel(), minlength=n)
    w = 1.0 / (1.0 + np.maximum(deg[e[:, 0]], deg[e[:, 1]]))
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
    acc = None  # sum of W_t^2
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


# ---------------------------------------------------------------------------------------------- planning
@dataclass
class Candidate:
    """One (mixing kind, K) option of a plan, with what its pilot runs needed to reach the target.

    Costs are per node and read at the first logged point from which the seed-mean metric stays at or below the
    target to the end of the pilot (:func:`proxgt.reporting.sustained_cost`; ``inf`` if it ends above it).
    ``first_dip_samples`` and ``first_dip_rounds`` (secondary) are read where the seed mean is first at or below
    the target, ``final_median`` is the median of the seed mean over the last 20% of the logged points."""

    mixing: str
    rounds: int
    contraction: float
    iters: float
    samples_per_node: float
    comm_rounds: float
    bytes_per_node: float
    modeled_s: float
    first_dip_samples: float = math.nan
    first_dip_rounds: float = math.nan
    final_median: float = math.nan
    expected_rounds: float = math.nan
    expected_bytes: float = math.nan
    expected_s: float = math.nan

    @property
    def reached(self) -> bool:
        return math.isfinite(self.modeled_s)

    @property
    def time_s(self) -> float:
        """The time a plan ranks by: ``expected_s`` under a network model, else ``modeled_s``."""
        return self.modeled_s if math.isnan(self.expected_s) else self.expected_s

    @property
    def overhead(self) -> float:
        """expected_s / modeled_s: what failures and stragglers cost (``nan`` without a network model)."""
        if math.isnan(self.expected_s) or not self.reached:
            return math.nan
        return self.expected_s / self.modeled_s if self.modeled_s > 0 else (1.0 if self.expected_s == 0 else math.inf)


def candidate_from_runs(
    mixing: str,
    rounds: int,
    contraction_: float,
    runs: list[list[dict[str, float]]],
    *,
    target: float,
    metric: str,
    cost: CostModel,
    network: NetworkEffect | None = None,
) -> Candidate:
    """Summarize pilot runs (rows of each seed) of one option: costs where the seed mean gets to ``target`` and
    stays at or below it (``inf`` if it ends above it), plus the first-dip costs and the tail-median final value.

    >>> rows = [{"iter": t, "ifo_per_node": 10 * t, "comm_rounds": t, "bytes_per_node": 0.0,
    ...          "grad_mapping_sq": v} for t, v in enumerate([1.0, 0.01, 0.5, 0.01, 0.01])]
    >>> c = candidate_from_runs("plain", 1, 0.5, [rows], target=0.1, metric="grad_mapping_sq",
    ...                         cost=CostModel(latency_s=0.0, sample_s=1.0))
    >>> c.samples_per_node, c.first_dip_samples, c.modeled_s  # dips at t = 1, stays from t = 3
    (30.0, 10.0, 30.0)

    With ``network`` (the :class:`NetworkEffect` on the pilots' graph), the costs at the target are also turned
    into expected rounds, bytes and time under link failures and stragglers (:meth:`NetworkEffect.expected`).
    """
    from proxgt.reporting import final_median, first_dip_cost, mean_curve, sustained_cost

    c = mean_curve([cost.with_modeled(r) for r in runs], metric,
                   axes=("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "modeled_s"))
    cand = Candidate(
        mixing, int(rounds), float(contraction_),
        *(sustained_cost(c, target, a) for a in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node",
                                                  "modeled_s")),
        first_dip_samples=first_dip_cost(c, target, "ifo_per_node"),
        first_dip_rounds=first_dip_cost(c, target, "comm_rounds"),
        final_median=final_median(c),
    )
    if network is not None:
        cand.expected_rounds, cand.expected_bytes, cand.expected_s = network.expected(
            cost, cand.samples_per_node, cand.comm_rounds, cand.bytes_per_node)
    return cand


def recommend(candidates: list[Candidate]) -> Candidate | None:
    """The reached option with the least time (:attr:`Candidate.time_s`: expected time under a network model,
    else modeled time; ties: fewer rounds, then plain before Chebyshev); None when no option reached the target
    (or, under a network model, none has a finite expected time)."""
    reached = [c for c in candidates if c.reached and math.isfinite(c.time_s)]
    if not reached:
        return None
    return min(reached, key=lambda c: (c.time_s, c.comm_rounds, c.rounds, c.mixing != "plain", c.mixing))


_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def candidate_rounds(eigenvalues: Any, kind: str, *, tight: float = 0.05) -> list[int]:
    """Default K to try for ``kind``: 1, then a ladder up to the smallest K with ||M_K - J|| <= ``tight``
    (that K included)."""
    from proxgt.mixing import rounds_for_target

    k_max = rounds_for_target(eigenvalues, kind, tight)
    return sorted({k for k in _LADDER if k <= k_max} | {1, k_max})


def plan_rounds(
    cfg: Any,
    cost: CostModel,
    *,
    target: float,
    metric: str = "grad_mapping_sq",
    mixings: tuple[str, ...] = ("plain", "chebyshev"),
    ks: list[int] | None = None,
    seeds: int = 1,
    progress: bool = False,
    network: NetworkEffect | None = None,
) -> tuple[list[Candidate], Candidate | None]:
    """Pilot runs of ``cfg`` for each (mixing, K), then :func:`recommend`.

    How samples-to-target per K are estimated: by running the user's own problem (same data, split, graph,
    algorithm and iterations as ``cfg``) with ``seeds`` seeds for every candidate, and reading the samples,
    rounds and bytes per node at the first logged point from which the seed-mean metric stays at or below
    ``target`` to the end of the pilot (a pilot that only dips below it has not reached it). Pilot runs are as
    long as ``cfg.iters``; on a large problem, run the plan on a subsample or a shorter horizon.

    ``network`` (e.g. ``NetworkModel(0.1, "exp:0.02").on_topology(build_run(cfg).topology, seed=cfg.seed)``)
    adds expected rounds, bytes and time under link failures and stragglers to every candidate and recommends by
    expected time; the pilots themselves run as ``cfg`` says (give them a reliable network: the model adds the
    failures).
    """
    from proxgt.executors.simulation import run_simulation
    from proxgt.mixing import contraction
    from proxgt.training import build_run

    cfg = cfg.replace(out=None)
    topo_eigs = build_run(cfg).topology.spectrum  # all eigenvalues when small, the spectrum's ends when large
    options = [(kind, k) for kind in mixings for k in (ks or candidate_rounds(topo_eigs, kind))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(options) * seeds, desc="pilot runs", unit="run")
    cands = []
    for kind, k in options:
        runs = []
        for s in range(seeds):
            c = cfg.merged({"mixing": kind, "rounds": int(k), "seed": cfg.seed + s})
            runs.append(run_simulation(c).rows)
            if bar is not None:
                bar.update(1)
        cands.append(candidate_from_runs(kind, k, contraction(topo_eigs, kind, int(k)), runs, target=target,
                                         metric=metric, cost=cost, network=network))
    if bar is not None:
        bar.close()
    return cands, recommend(cands)
