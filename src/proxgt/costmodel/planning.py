"""Planning: candidates from pilot runs, the recommended one, and the rounds per mixing to try."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxgt.costmodel.model import CostModel
from proxgt.costmodel.network import NetworkEffect

if TYPE_CHECKING:  # numpy and the clock are imported where a plan runs: `proxgt --help` stays light
    from proxgt.costmodel.clock import ClockPrediction

__all__ = ["Candidate", "candidate_from_runs", "candidate_rounds", "recommend", "plan_rounds"]


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
    clock_s: float = math.nan
    simulated_s: float = math.nan

    @property
    def reached(self) -> bool:
        return math.isfinite(self.modeled_s)

    @property
    def time_s(self) -> float:
        """The time a plan ranks by: ``clock_s`` (predicted on the clock's specifications) when the run sets a clock,
        else ``expected_s`` under a network model, else ``modeled_s``."""
        if not math.isnan(self.clock_s):
            return self.clock_s
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
    clock: ClockPrediction | None = None,
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
    With ``clock`` (the run's clock specifications), ``clock_s`` is the predicted virtual time at the target
    (:meth:`ClockPrediction.time`) and ``simulated_s`` the pilots' own ``sim_time_s`` there.
    """
    from proxgt.reporting import final_median, first_dip_cost, mean_curve, sustained_cost

    c = mean_curve([cost.with_modeled(r) for r in runs], metric,
                   axes=("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "modeled_s", "sim_time_s"))
    cand = Candidate(
        mixing, int(rounds), float(contraction_),
        iters=sustained_cost(c, target, "iter"),
        samples_per_node=sustained_cost(c, target, "ifo_per_node"),
        comm_rounds=sustained_cost(c, target, "comm_rounds"),
        bytes_per_node=sustained_cost(c, target, "bytes_per_node"),
        modeled_s=sustained_cost(c, target, "modeled_s"),
        first_dip_samples=first_dip_cost(c, target, "ifo_per_node"),
        first_dip_rounds=first_dip_cost(c, target, "comm_rounds"),
        final_median=final_median(c),
    )
    if network is not None:
        cand.expected_rounds, cand.expected_bytes, cand.expected_s = network.expected(
            cost, cand.samples_per_node, cand.comm_rounds, cand.bytes_per_node)
    if clock is not None:
        start = float(c.x["ifo_per_node"][0]) if float(c.x["iter"][0]) == 0 else 0.0
        cand.clock_s = clock.time(iters=cand.iters, ifo_per_node=cand.samples_per_node, comm_rounds=cand.comm_rounds,
                                  bytes_per_node=cand.bytes_per_node, ifo_start=start)
        if "sim_time_s" in c.x:
            cand.simulated_s = sustained_cost(c, target, "sim_time_s")
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

    When ``cfg`` sets the virtual clock (``node_speed``, ``link_latency``, ``link_bandwidth``), every candidate
    also gets the predicted virtual time to the target from those specifications (``clock_s``, the time it is
    ranked by) and its pilots' simulated ``sim_time_s`` there (``simulated_s``), to compare.
    """
    from proxgt.costmodel.clock import ClockPrediction
    from proxgt.executors.simulation import run_simulation
    from proxgt.mixing import contraction
    from proxgt.training import build_run

    cfg = cfg.replace(out=None)
    spec = build_run(cfg)
    topo_eigs = spec.topology.spectrum  # all eigenvalues when small, the spectrum's ends when large
    clock = ClockPrediction(spec.clock) if spec.clock is not None else None
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
                                         metric=metric, cost=cost, network=network, clock=clock))
    if bar is not None:
        bar.close()
    return cands, recommend(cands)
