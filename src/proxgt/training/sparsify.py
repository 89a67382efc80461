"""The sparse-training path: a penalty with a strength warm-up, a magnitude threshold the network agrees on, then
training on the surviving support. Every step is a proximal or projection operation each node applies to its own
row, so the path composes with gradient tracking and gossip, in the simulator and the distributed executor alike.

Phases (settings ``reg_warmup``, ``sparsify_density``, ``sparsify_at``, ``sparsify_steps``; docs/neural-networks.md):

1. iterations 1 .. T_s: the run's penalty (``reg``, ``reg_strength``) at strength ``reg_strength * min(1, t / T_w)``,
   T_w = ``reg_warmup * iters`` (no warm-up: T_w = 0);
2. at iteration T_s = ``round(sparsify_at * iters)``: the nodes agree on one magnitude threshold for the target
   density (:func:`agree_threshold`) and on one support (:func:`agree_support`), and project their rows on it;
3. iterations T_s + 1 .. T: h = the indicator of that support (:class:`~proxgt.prox.Support`, the prox keeps the
   support and zeroes the rest), which trains the surviving weights without the penalty's shrinkage.

With ``sparsify_steps = N > 1`` the network prunes gradually (gradual magnitude pruning, Zhu and Gupta 2017): at
iterations T_k = round(k T_s / N), k = 1 .. N, to the density ``d + (1 - d)(1 - k/N)^3`` (d = ``sparsify_density``),
each support inside the previous one (pruned weights are zero, and zeros are never kept); h is the indicator of the
current support from the first prune on.

**Agreement without a server.** Each node bins the magnitudes of its weights on the same log-spaced bins
(:data:`BINS` bins over ``[10**LOG10_LOW, 10**LOG10_HIGH)``, smaller magnitudes and zeros in bin 0); plain gossip
averages the histograms; each node then picks the lowest bin edge at which the averaged histogram keeps at most the
target share. Finite gossip leaves the averages slightly different, so two nodes may pick neighbouring bins: the
network then floods the candidates (a node's set of candidate bins becomes the union of its neighbours' after each
round, exact after ``diameter`` rounds since mixing weights are non-negative) and every node takes the highest,
so all nodes hold the same threshold bit for bit. Likewise the support is the set of coordinates that *every* node
keeps (flooded "drop" indicators), so all rows share it and the density is at most the target plus the weight in
one bin. Bins are compared by index, never by recomputed edges, so rounding cannot split the nodes.

The agreement sends ``ceil(log(1e-3) / log(lambda))`` rounds of (BINS + 1)-entry histograms and 2 x diameter
rounds of small or (d,)-entry indicators, once; the communication counters include them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path

from proxgt.algorithms.base import Algorithm
from proxgt.errors import ProxGTValueError
from proxgt.mixing.communicator import Gossip
from proxgt.prox import Regularizer, Support

__all__ = ["BINS", "LOG10_LOW", "LOG10_HIGH", "Agreement", "SparsePath", "RegSchedule", "agree_support",
           "agree_threshold", "magnitude_bins", "flood_rounds", "check_sparse_path"]

#: log-spaced magnitude bins over [10**LOG10_LOW, 10**LOG10_HIGH): 12 decades in 4096 bins, each 0.68% wide
BINS = 4096
LOG10_LOW = -9.0
LOG10_HIGH = 3.0
#: plain gossip rounds of the histograms shrink their disagreement to this share (lambda**rounds), at most MAX_AVG
AVG_ACCURACY = 1e-3
MAX_AVG_ROUNDS = 500


def magnitude_bins(X: torch.Tensor) -> torch.Tensor:
    """The bin index (0 .. BINS) of every entry's magnitude: 0 below 10**LOG10_LOW (zeros included), then
    BINS log-spaced bins (the last one also holds everything above 10**LOG10_HIGH). A pure function of the value,
    so every node bins alike."""
    a = X.abs().double()
    pos = a >= 10.0 ** LOG10_LOW
    scaled = (torch.log10(torch.where(pos, a, torch.ones_like(a))) - LOG10_LOW) * (BINS / (LOG10_HIGH - LOG10_LOW))
    idx = torch.floor(scaled).clamp_(0, BINS - 1).to(torch.int64) + 1
    return torch.where(pos, idx, torch.zeros_like(idx))


def bin_edge(j: int) -> float:
    """The lower magnitude edge of bin ``j`` (1 .. BINS); keeping bins >= j keeps the magnitudes >= this."""
    return float(10.0 ** (LOG10_LOW + (j - 1) * (LOG10_HIGH - LOG10_LOW) / BINS)) if j > 0 else 0.0


def _flood(comm: Gossip, Z: torch.Tensor, rounds: int) -> torch.Tensor:
    """Each row becomes the OR of the rows within ``rounds`` hops (W >= 0, W_ij > 0 on the edges): exact, since a
    sum of non-negative numbers is positive when one of them is."""
    Z = Z.to(torch.float64)
    for _ in range(rounds):
        Z = (Z + comm.gossip(Z) > 0).to(torch.float64)
    return Z > 0


class Agreement(NamedTuple):
    """What the network agreed on at the switch: the threshold's bin, its magnitude edge and the share of the
    weights in the support."""

    bin: int
    threshold: float
    density: float


def agree_threshold(X: torch.Tensor, comm: Gossip, density: float, *, weights: torch.Tensor | None,
                    avg_rounds: int, flood: int) -> int:
    """The bin j such that keeping magnitudes in bins >= j keeps at most ``density`` of the weights by the
    gossiped histogram; the same int on every node (module docstring). ``X``: this process's rows; ``weights``:
    bool (d,) of the coordinates that count (None: all)."""
    W = X if weights is None else X[:, weights.to(X.device)]
    m = W.shape[1]
    idx = magnitude_bins(W)
    k = idx.shape[0]
    offsets = torch.arange(k, device=idx.device).unsqueeze(1) * (BINS + 1)
    H = torch.bincount((idx + offsets).reshape(-1), minlength=k * (BINS + 1)).reshape(k, BINS + 1)
    H = H.to(torch.float64) / max(1, m)
    for _ in range(avg_rounds):
        H = comm.gossip(H)
    # kept(j) = share of the weights in bins >= j; the smallest j with kept(j) <= density (j = BINS + 1: none)
    kept = torch.flip(torch.cumsum(torch.flip(H, [1]), 1), [1])
    ok = kept <= density * (1 + 1e-12)
    first = torch.where(ok.any(1), ok.to(torch.int64).argmax(1), torch.full((k,), BINS, device=H.device))
    first = first.clamp_(min=1)  # bin 0 holds zeros and magnitudes below the range: never kept
    candidates = torch.zeros(k, BINS + 1, dtype=torch.float64, device=H.device)
    candidates[torch.arange(k), first] = 1.0
    agreed = _flood(comm, candidates, flood)
    top = (BINS - torch.flip(agreed, [1]).to(torch.int64).argmax(1)).tolist()  # the highest candidate, per row
    if len(set(top)) != 1:  # cannot happen on a connected graph with W >= 0 (checked when the run is built)
        raise ProxGTValueError(f"the nodes did not agree on a sparsity threshold (bins {sorted(set(top))})")
    return int(top[0])


def agree_support(X: torch.Tensor, comm: Gossip, j: int, *, weights: torch.Tensor | None,
                  flood: int) -> torch.Tensor:
    """bool (d,): the coordinates every node keeps at threshold bin ``j`` (the other coordinates than
    ``weights`` are always kept); the same on every node."""
    drop = magnitude_bins(X) < j
    if weights is not None:
        drop &= weights.to(X.device).unsqueeze(0)
    dropped = _flood(comm, drop, flood)
    if not bool((dropped == dropped[:1]).all()):
        raise ProxGTValueError("the nodes did not agree on a sparsity support")
    return ~dropped[0]


def flood_rounds(W_csr: sp.csr_matrix) -> int:
    """The diameter of the graph of W's off-diagonal non-zeros (hop count): enough rounds to flood it."""
    n = W_csr.shape[0]
    if n == 1:
        return 0
    adj = sp.csr_matrix(W_csr, copy=True)
    adj.setdiag(0)
    adj.eliminate_zeros()
    # exact below a few hundred nodes; above, twice one node's eccentricity (an upper bound) saves the all-pairs BFS
    rows = None if n <= 512 else [0]
    dist = shortest_path(adj, unweighted=True, directed=False, indices=rows)
    ecc = float(np.max(dist))
    return int(ecc if rows is None else 2 * ecc)


def averaging_rounds(lam: float) -> int:
    """Plain gossip rounds after which the histograms disagree by AVG_ACCURACY of their start (at most MAX)."""
    if lam <= 1e-9:
        return 1
    return int(min(MAX_AVG_ROUNDS, max(1, math.ceil(math.log(AVG_ACCURACY) / math.log(lam)))))


@dataclass(frozen=True)
class RegSchedule:
    """The settings of the path, resolved when the run is built (:func:`proxgt.training.build_run`).

    Attributes:
        strength: the penalty's full strength (``reg_strength``).
        warmup_iters: T_w, the strength ramps linearly to full over iterations 1 .. T_w (0: full at once).
        switch_iter: T_s, the iteration of the (last) prune (None: no sparsify phase).
        density: the target share of non-zero weights (None: no sparsify phase).
        steps: N, the number of prunes (gradual pruning when > 1).
        weights: bool (d,) of the coordinates pruned and counted (a network's weights; None: all).
        avg_rounds / flood: gossip rounds of the histogram average and of the flooded agreements.
        regularizer_for: strength -> the run's penalty at that strength.
        algorithm_for: regularizer -> the run's algorithm with that h (built by its registered builder).
    """

    strength: float
    warmup_iters: int
    switch_iter: int | None
    density: float | None
    weights: torch.Tensor | None
    avg_rounds: int
    flood: int
    regularizer_for: Callable[[float], Regularizer]
    algorithm_for: Callable[[Regularizer], Algorithm[Any]]
    steps: int = 1

    def prunes(self) -> list[tuple[int, float]]:
        """(iteration, target density) of every prune, in order (empty without a sparsify phase)."""
        if self.switch_iter is None or self.density is None:
            return []
        d, n = self.density, self.steps
        return [(int(round(k * self.switch_iter / n)), d + (1 - d) * (1 - k / n) ** 3) for k in range(1, n + 1)]

    def start(self) -> SparsePath:
        """The path's run-time state, before the switch."""
        return SparsePath(self)


class SparsePath:
    """The path during a run: which h (and so which algorithm) iteration t uses, the switch, and the agreed
    support, its only state (``state_dict`` for checkpoints: a resumed run switches, or not, as the uninterrupted
    one did)."""

    def __init__(self, schedule: RegSchedule):
        self.schedule = schedule
        self.agreement: Agreement | None = None
        self.support: torch.Tensor | None = None
        self.done = 0  # prunes done
        self._prunes = schedule.prunes()
        self._last: tuple[Regularizer, Algorithm[Any]] | None = None
        # h depends only on (prunes done, strength): kept, so an iteration neither re-reads the settings nor
        # rebuilds (or re-reads a groups/support file for) an unchanged regularizer
        self._reg: tuple[tuple[int, float], Regularizer] | None = None

    def regularizer(self, t: int) -> Regularizer:
        """h of the update that produces iterate ``t``."""
        s = self.schedule
        if self.support is not None:
            key = (self.done, 0.0)
        else:
            ramp = 1.0 if s.warmup_iters <= 0 else min(1.0, t / s.warmup_iters)
            key = (-1, s.strength * ramp)
        if self._reg is None or self._reg[0] != key:
            self._reg = (key, Support(self.support) if self.support is not None else s.regularizer_for(key[1]))
        return self._reg[1]

    def algorithm(self, t: int) -> Algorithm[Any]:
        """The algorithm of the update that produces iterate ``t`` (rebuilt only when its h changes)."""
        reg = self.regularizer(t)
        if self._last is None or self._last[0] != reg:
            self._last = (reg, self.schedule.algorithm_for(reg))
        return self._last[1]

    def due(self, t: int) -> bool:
        """Whether the network sparsifies before the update from iterate ``t``."""
        return self.done < len(self._prunes) and t >= self._prunes[self.done][0]

    def sparsify(self, state: Any, comm: Gossip) -> Any:
        """Agree on the threshold and the support, and project every row of ``state.x`` on it (the tracker and the
        estimator state are left alone: tracking's invariant mean(y) = mean(v) is untouched)."""
        s = self.schedule
        X = state.x
        density = self._prunes[self.done][1]
        j = agree_threshold(X, comm, density, weights=s.weights, avg_rounds=s.avg_rounds, flood=s.flood)
        support = agree_support(X, comm, j, weights=s.weights, flood=s.flood).cpu()
        counted = support if s.weights is None else support[s.weights]
        self.support = support
        self.done += 1
        self.agreement = Agreement(bin=j, threshold=bin_edge(j),
                                   density=float(counted.sum()) / max(1, counted.numel()))
        return state._replace(x=Support(support).prox(X, 1.0))

    def summary(self) -> dict[str, Any]:
        """What the run's summary.json records of the path."""
        s = self.schedule
        out: dict[str, Any] = {"warmup_iters": s.warmup_iters}
        if s.switch_iter is not None:
            out["switch_iter"] = s.switch_iter
            out["target_density"] = s.density
            if s.steps > 1:
                out["prune_iters"] = [t for t, _ in self._prunes]
        if self.agreement is not None:
            out.update(threshold=self.agreement.threshold, threshold_bin=self.agreement.bin,
                       support_density=self.agreement.density)
        return out

    def state_dict(self) -> dict[str, Any]:
        if self.support is None or self.agreement is None:
            return {}
        a = self.agreement
        return {"support": self.support.clone(), "bin": a.bin, "threshold": a.threshold, "density": a.density,
                "done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reg = None
        if not state:
            self.support, self.agreement, self.done = None, None, 0
            return
        self.support = state["support"].to(torch.bool).cpu()
        self.agreement = Agreement(bin=int(state["bin"]), threshold=float(state["threshold"]),
                                   density=float(state["density"]))
        self.done = int(state["done"])
        self._last = None


def check_sparse_path(cfg: Any, *, iters: int, dynamic_network: bool) -> int | None:
    """One-line errors for settings the path cannot run with; returns T_s (None without a sparsify phase). (The
    flooding needs W >= 0, which every mixing matrix is: proxgt.topology refuses negative weights.)"""
    if cfg.sparsify_density is None:
        for name in ("sparsify_at", "sparsify_steps"):
            if getattr(cfg, name) is not None:
                raise ProxGTValueError(f"{name} (--{name.replace('_', '-')}) says when the network sparsifies: it "
                                       "needs sparsify_density (--sparsify-density)")
        return None
    why = ("asynchronous nodes (--async)" if cfg.asynchronous else
           "a changing network (link failures, node dropout, message loss or a time-varying graph)"
           if dynamic_network else
           "on_failure = 'continue' (the graph may change)" if cfg.on_failure == "continue" else None)
    if why is not None:
        raise ProxGTValueError(f"sparsify_density (--sparsify-density): the nodes agree on the threshold over a "
                               f"fixed graph, which {why} does not give")
    at = 0.5 if cfg.sparsify_at is None else float(cfg.sparsify_at)
    t_s = int(round(at * iters))
    if not 1 <= t_s < iters:
        raise ProxGTValueError(f"sparsify_at = {at:g} puts the switch at iteration {t_s} of {iters}; it must fall "
                               f"in 1 .. {iters - 1} (raise iters or move sparsify_at)")
    steps = 1 if cfg.sparsify_steps is None else int(cfg.sparsify_steps)
    if steps > t_s:
        raise ProxGTValueError(f"sparsify_steps = {steps} prunes need at least as many iterations before the last "
                               f"one (iteration {t_s}); lower sparsify_steps or move sparsify_at")
    return t_s
