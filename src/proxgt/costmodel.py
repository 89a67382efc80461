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
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from proxgt._validation import ProxGTValueError, check_nonneg_float, check_positive_float

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

    @property
    def reached(self) -> bool:
        return math.isfinite(self.modeled_s)


def candidate_from_runs(
    mixing: str,
    rounds: int,
    contraction_: float,
    runs: list[list[dict[str, float]]],
    *,
    target: float,
    metric: str,
    cost: CostModel,
) -> Candidate:
    """Summarize pilot runs (rows of each seed) of one option: costs where the seed mean gets to ``target`` and
    stays at or below it (``inf`` if it ends above it), plus the first-dip costs and the tail-median final value.

    >>> rows = [{"iter": t, "ifo_per_node": 10 * t, "comm_rounds": t, "bytes_per_node": 0.0,
    ...          "grad_mapping_sq": v} for t, v in enumerate([1.0, 0.01, 0.5, 0.01, 0.01])]
    >>> c = candidate_from_runs("plain", 1, 0.5, [rows], target=0.1, metric="grad_mapping_sq",
    ...                         cost=CostModel(latency_s=0.0, sample_s=1.0))
    >>> c.samples_per_node, c.first_dip_samples, c.modeled_s  # dips at t = 1, stays from t = 3
    (30.0, 10.0, 30.0)
    """
    from proxgt.reporting import final_median, first_dip_cost, mean_curve, sustained_cost

    c = mean_curve([cost.with_modeled(r) for r in runs], metric,
                   axes=("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "modeled_s"))
    return Candidate(
        mixing, int(rounds), float(contraction_),
        *(sustained_cost(c, target, a) for a in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node",
                                                  "modeled_s")),
        first_dip_samples=first_dip_cost(c, target, "ifo_per_node"),
        first_dip_rounds=first_dip_cost(c, target, "comm_rounds"),
        final_median=final_median(c),
    )


def recommend(candidates: list[Candidate]) -> Candidate | None:
    """The reached option with the least modeled time (ties: fewer rounds, then plain before Chebyshev);
    None when no option reached the target."""
    reached = [c for c in candidates if c.reached]
    if not reached:
        return None
    return min(reached, key=lambda c: (c.modeled_s, c.comm_rounds, c.rounds, c.mixing != "plain", c.mixing))


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
) -> tuple[list[Candidate], Candidate | None]:
    """Pilot runs of ``cfg`` for each (mixing, K), then :func:`recommend`.

    How samples-to-target per K are estimated: by running the user's own problem (same data, split, graph,
    algorithm and iterations as ``cfg``) with ``seeds`` seeds for every candidate, and reading the samples,
    rounds and bytes per node at the first logged point from which the seed-mean metric stays at or below
    ``target`` to the end of the pilot (a pilot that only dips below it has not reached it). Pilot runs are as
    long as ``cfg.iters``; on a large problem, run the plan on a subsample or a shorter horizon.
    """
    from proxgt.executors.simulation import run_simulation
    from proxgt.mixing import contraction
    from proxgt.training import build_run

    cfg = cfg.replace(out=None)
    topo_eigs = build_run(cfg).topology.eigenvalues
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
                                         metric=metric, cost=cost))
    if bar is not None:
        bar.close()
    return cands, recommend(cands)
