"""Prox-DSGT / DProxSGT: proximal stochastic gradient tracking with the tracker mixed *before* the correction.

Update (spec section 6)::

    X_t+1 = M( prox_{a h}(X_t - a Y_t) )
    V_t+1 = (1/b) sum_r grad F_i(x_i,t+1; xi_r)
    Y_t+1 = M(Y_t) + V_t+1 - V_t                 ("combine then adapt" tracking)

with Y_0 = V_0. The mean of Y equals the mean of V at every t (M preserves averages). ProxGT-SA differs only in
the tracker, ``Y_t+1 = M(Y_t + V_t+1 - V_t)`` ("adapt then combine", which also mixes the new gradient
difference); DProxSGT as published by Xiao et al. (2023) uses that form and a single W, i.e. it is
``proxgt-sa --rounds 1 --mixing plain`` with a small batch. This baseline keeps the other form so both are
available. The published methods use one W per step: ``--rounds 1 --mixing plain``; auto rounds give the
multi-round variant. Settings: ``step``, ``batch`` (default 32; the method's theory allows O(1)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from proxgt.algorithms._parts import Mix, prox_step
from proxgt.algorithms.baselines._common import sa_batch
from proxgt.estimators import Minibatch
from proxgt.problems.oracle import GradientOracle

__all__ = ["ProxDSGT", "ProxDSGTState"]


class ProxDSGTState(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor
    y: torch.Tensor
    t: int


@dataclass(frozen=True)
class ProxDSGT:
    estimator: Minibatch
    regularizer: object
    step: float
    name: str = "prox-dsgt"

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDSGTState:
        X = x0.clone()
        V = self.estimator.init(oracle, X)
        return ProxDSGTState(x=X, v=V, y=V.clone(), t=0)

    def update(self, state: ProxDSGTState, oracle: GradientOracle, mix: Mix) -> ProxDSGTState:
        X_new = mix(prox_step(self.regularizer, state.x, state.y, self.step))
        V_new = self.estimator.update(oracle, X_new, state.x, state.v, state.t + 1)
        Y_new = mix(state.y) + V_new - state.v
        return ProxDSGTState(x=X_new, v=V_new, y=Y_new, t=state.t + 1)



def build(ctx) -> ProxDSGT:
    return ProxDSGT(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step)
