"""Predicted virtual time to a target: a plan's counted work replayed on the clock's specifications.

``proxgt plan`` with a clock setting (``--node-speed``, ``--link-latency``, ``--link-bandwidth``: the same
specifications a run's virtual clock reads, :mod:`proxgt.mixing.clock`) predicts the time a synchronous run
takes to reach the target from what its pilot counted there: iterations T, component gradients per node G,
gossip rounds R and bytes per node B (and the gradients G_0 counted before the first iteration). The prediction
replays that work, in per-node averages, through the clock's max-plus recursion::

    g = (G - G_0) / T gradients per node and iteration,  K = R / T rounds per iteration,
    message bytes = B / (R * mean degree)

every node computes G_0, then T times g gradients followed by K rounds (round k of the run falls in iteration
floor(k / K)), with its own speed distribution and each link's latency and bandwidth distributions, drawn
independently of the run (another seed). The predicted time is when the last node holds the state.

What it does not know, stated: which node computed how much (every node is charged the mean, so uneven shards
with ``--batch full`` are averaged out), which draws the run made (a random profile is predicted by one
independent sample path, so the prediction of a short run with heavy-tailed times varies by that path's
noise), and asynchrony (``--async`` runs are not waited for by their neighbours; they are not predicted).
The comparison with simulated runs is in docs/virtual-clock.md ("Planning against the clock").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from proxgt.mixing.clock import ClockProfile, VirtualClock

__all__ = ["ClockPrediction", "PREDICTION_SEED_OFFSET"]

#: the prediction's draws use the run's seed plus this, so they are independent of the run it predicts
PREDICTION_SEED_OFFSET = 0x9E3779B1


class _Counts:
    """The replayed gradient counts the clock charges compute from (every node the same)."""

    def __init__(self, n: int):
        self.ifo = np.zeros(n, dtype=np.int64)


@dataclass(frozen=True)
class ClockPrediction:
    """Predicted virtual seconds of a synchronous run on ``profile`` (the run's clock specifications).

    Example: two nodes at 1 ms per gradient, one 10 ms link; 100 gradients, then 10 iterations of 10 gradients
    and one round each: 0.1 + 10 * (0.01 + 0.01) s::

        >>> from proxgt.delays import Delay
        >>> from proxgt.mixing.clock import DelayTable
        >>> p = ClockProfile(2, np.array([[0, 1]]), DelayTable.of([Delay("const", (1e-3,))] * 2),
        ...                  DelayTable.of([Delay("const", (0.01,))]), DelayTable.of([Delay("const", (1e9,))]))
        >>> round(ClockPrediction(p).time(iters=10, ifo_per_node=200, comm_rounds=10, bytes_per_node=0,
        ...                               ifo_start=100), 9)
        0.3
    """

    profile: ClockProfile

    @property
    def mean_degree(self) -> float:
        return 2.0 * len(self.profile.edges) / max(1, self.profile.n)

    def time(self, *, iters: float, ifo_per_node: float, comm_rounds: float, bytes_per_node: float,
             ifo_start: float = 0.0) -> float:
        """Predicted seconds to the point where the run has done ``iters`` iterations, ``ifo_per_node``
        gradients per node (``ifo_start`` of them before the first iteration), ``comm_rounds`` rounds and
        ``bytes_per_node`` bytes per node; ``inf`` when the work is not finite (a target not reached)."""
        work = (iters, ifo_per_node, comm_rounds, bytes_per_node, ifo_start)
        if not all(math.isfinite(v) for v in work):
            return math.inf
        p = self.profile
        clock = VirtualClock(replace(p, seed=(int(p.seed) + PREDICTION_SEED_OFFSET) % 2**63))
        counts = _Counts(p.n)
        clock.follow(counts)
        T = max(int(round(iters)), 0)
        R = max(int(round(comm_rounds)), 0)
        nbytes = int(round(bytes_per_node / (R * self.mean_degree))) if R and self.mean_degree else 0
        g = (ifo_per_node - ifo_start) / T if T else 0.0
        done = 0  # rounds replayed
        for t in range(1, T + 1):
            counts.ifo[:] = int(round(ifo_start + t * g))
            upto = R * t // T  # rounds of the first t iterations
            for _ in range(upto - done):
                clock.exchange(nbytes)
            done = upto
        if not T:
            counts.ifo[:] = int(round(ifo_per_node))
        return clock.now()
