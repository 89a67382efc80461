"""Prox-DSGD (DSPG): decentralized stochastic proximal gradient, no gradient tracking.

Update (node-stacked rows, minibatch gradient G_t at each node's own iterate)::

    X_t+1 = prox_{a_t h}( M(X_t) - a_t G_t ),     G_t = (1/b) sum_r grad F_i(x_i,t; xi_r)

The published method mixes once per iteration with W: ``--rounds 1 --mixing plain`` reproduces it; the run's
default ``rounds = auto`` gives the multi-round variant (M = M_K). Without tracking, heterogeneous data leaves a
consensus bias of order a * ||grad f_i - grad f||, which multiple rounds shrink but do not remove.

Settings: ``batch`` (default 32), ``step`` (a0), ``[extra.prox-dsgd] schedule = "constant" | "diminishing"``,
``power`` (0.5), ``t0`` (100): a_t = a0 (1 + t/t0)^-power when diminishing.
Reference: Zeng & Yin, "On nonconvergence of decentralized gradient descent" / Yuan et al. DSPG line of work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from proxgt.algorithms._parts import Mix, estimator_capabilities
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import Schedule, params, sa_batch
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["ProxDSGD", "ProxDSGDState"]


class ProxDSGDState(NamedTuple):
    x: torch.Tensor
    g: torch.Tensor  # minibatch gradient at x (already paid for)
    t: int
    est: NoState  # the (minibatch) estimator's state


@dataclass(frozen=True)
class ProxDSGD:
    """Prox-DSGD with a minibatch estimator and a (constant or diminishing) step schedule."""

    estimator: Minibatch
    regularizer: Regularizer
    schedule: Schedule = field(default_factory=Schedule)
    name: str = "prox-dsgd"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator)

    @property
    def step(self) -> float:
        return self.schedule.a0

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDSGDState:
        X = x0.clone()
        G, est = self.estimator.init(oracle, X)
        return ProxDSGDState(x=X, g=G, t=0, est=est)

    def update(self, state: ProxDSGDState, oracle: GradientOracle, mix: Mix) -> ProxDSGDState:
        a = self.schedule(state.t)
        X_new = self.regularizer.prox(torch.add(mix(state.x), state.g, alpha=-a), a)
        G_new, est = self.estimator.update(state.est, oracle, X_new, state.x, state.g, state.t + 1)
        return ProxDSGDState(x=X_new, g=G_new, t=state.t + 1, est=est)



def build(ctx: Any, cls: type[ProxDSGD] = ProxDSGD, name: str = "prox-dsgd") -> ProxDSGD:
    """``cls`` with its step schedule from ``[extra.<name>]`` (Prox-AD-PSGD shares this builder)."""
    p = params(ctx, name, {"schedule": "constant", "power": 0.5, "t0": 100.0})
    sched = Schedule(p["schedule"], ctx.step, power=p["power"], t0=p["t0"])
    return cls(Minibatch(sa_batch(ctx)), ctx.regularizer, sched)
