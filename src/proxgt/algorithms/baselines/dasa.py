"""Prox-DASA-GT: decentralized proximal stochastic averaging with gradient tracking.

Our reading of Xiao, Chen, Balasubramanian, Ghadimi, "A one-sample decentralized proximal algorithm for
non-convex stochastic composite optimization" (UAI 2023), in the form of spec section 6::

    Z_t    = prox_{g h}(X_t - g U_t)                          (local, g = the run's step)
    X_t+1  = M( (1 - a_t) X_t + a_t Z_t )                     (averaged primal move, mixed)
    V_t+1  = (1/b) sum_r grad F_i(x_i,t+1; xi_r)              (fresh samples)
    R_t+1  = (1 - a_t) R_t + a_t V_t+1                        (local running average of gradients)
    U_t+1  = M( U_t + R_t+1 - R_t )                           (tracking of the running average)

with R_0 = U_0 = V_0, and a_t = alpha * min(sqrt(n / (t + 1)), 1). Two mixings per iteration (x and u), so
2K rounds with K-round mixing; ``--rounds 1 --mixing plain`` is the one-W-per-step published form. The mean of
U equals the mean of R at every t.

Settings: ``step`` (g), ``batch`` (default 32; the paper's one-sample version is ``batch = 1``),
``[extra.prox-dasa-gt] alpha`` (1.0), ``schedule`` ("diminishing": the min(sqrt(n/t), 1) rule above;
"constant": a_t = alpha).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int
from proxgt.algorithms._parts import Mix, prox_step, track
from proxgt.algorithms.baselines._common import SCHEDULES, params, sa_batch
from proxgt.estimators import Minibatch
from proxgt.problems.oracle import GradientOracle

__all__ = ["ProxDASAGT", "ProxDASAGTState"]


class ProxDASAGTState(NamedTuple):
    x: torch.Tensor
    r: torch.Tensor
    u: torch.Tensor
    t: int


@dataclass(frozen=True)
class ProxDASAGT:
    estimator: Minibatch
    regularizer: object
    step: float
    n_nodes: int
    alpha: float = 1.0
    schedule: str = "diminishing"
    name: str = "prox-dasa-gt"

    def __post_init__(self) -> None:
        check_positive_int(self.n_nodes, "n_nodes", "ProxDASAGT")
        check_choice(self.schedule, "schedule", SCHEDULES, "ProxDASAGT")
        if not 0.0 < self.alpha <= 1.0:
            raise ProxGTValueError(f"The 'alpha' parameter of ProxDASAGT must be in (0, 1]. Got {self.alpha!r}.")

    def weight(self, t: int) -> float:
        if self.schedule == "constant":
            return self.alpha
        return self.alpha * min(math.sqrt(self.n_nodes / (t + 1)), 1.0)

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDASAGTState:
        X = x0.clone()
        V = self.estimator.init(oracle, X)
        return ProxDASAGTState(x=X, r=V, u=V.clone(), t=0)

    def update(self, state: ProxDASAGTState, oracle: GradientOracle, mix: Mix) -> ProxDASAGTState:
        a = self.weight(state.t)
        Z = prox_step(self.regularizer, state.x, state.u, self.step)
        X_new = mix(torch.lerp(state.x, Z, a))
        V_new = self.estimator.update(oracle, X_new, state.x, state.r, state.t + 1)
        R_new = torch.lerp(state.r, V_new, a)
        U_new = track(state.u, R_new, state.r, mix)
        return ProxDASAGTState(x=X_new, r=R_new, u=U_new, t=state.t + 1)



def build(ctx) -> ProxDASAGT:
    p = params(ctx, "prox-dasa-gt", {"alpha": 1.0, "schedule": "diminishing"})
    return ProxDASAGT(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, ctx.n_nodes, p["alpha"], p["schedule"])
