"""DEEPSTORM (v2): decentralized proximal STORM-type recursive momentum with gradient tracking.

Update (spec section 6; Mancino-Ball, Miao, Xu, Chen, "Proximal stochastic recursive momentum methods for
nonconvex composite decentralized optimization", AAAI 2023)::

    X_t+1 = prox_{a_t h}( M(X_t) - a_t Y_t )
    D_t+1 = grad F(X_t+1; xi) + (1 - beta_t) (D_t - grad F(X_t; xi))       (same b samples at both points)
    Y_t+1 = M(Y_t + D_t+1 - D_t)

with D_0 = minibatch gradient on B samples at X_0 and Y_0 = D_0 (counted once). A STORM step costs 2b
component gradients per node. ``--rounds 1 --mixing plain`` is the published one-W-per-step method; auto
rounds give the multi-round variant.

Schedules (``[extra.deepstorm] schedule``):
* ``constant`` (registered name ``deepstorm``): a_t = a (the run's step), beta_t = beta.
* ``diminishing`` (registered name ``deepstorm-diminishing``): a_t = a (1 + t/t0)^(-1/3) and
  beta_t = min(1, beta (a_t / a)^2), the paper's a_t ~ t^(-1/3), beta_t ~ a_t^2 coupling, with the
  constant fixed so that beta_0 = beta.
Settings: ``step`` (a), ``batch`` (b, default as ProxGT-SR-O: max(1, ceil(sqrt(B)) // 2)), ``big_batch``
(B, default min(m, 256)), ``[extra.deepstorm] beta`` (0.1), ``schedule``, ``t0`` (100).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from proxgt._validation import ProxGTValueError, check_positive_int
from proxgt.algorithms._parts import Mix, prox_step, track
from proxgt.algorithms.baselines._common import Schedule, params, sarah_sizes
from proxgt.problems.oracle import GradientOracle

__all__ = ["DeepStorm", "DeepStormState"]


class DeepStormState(NamedTuple):
    x: torch.Tensor
    d: torch.Tensor
    y: torch.Tensor
    t: int


@dataclass(frozen=True)
class DeepStorm:
    regularizer: object
    schedule: Schedule = field(default_factory=Schedule)
    beta: float = 0.1
    batch: int = 8
    init_batch: int = 256
    name: str = "deepstorm"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "DeepStorm")
        check_positive_int(self.init_batch, "init_batch", "DeepStorm")
        if not 0.0 < self.beta <= 1.0:
            raise ProxGTValueError(f"The 'beta' parameter of DeepStorm must be in (0, 1]. Got {self.beta!r} instead.")

    @property
    def step(self) -> float:
        return self.schedule.a0

    def beta_at(self, t: int) -> float:
        if self.schedule.kind == "constant":
            return self.beta
        return min(1.0, self.beta * (self.schedule(t) / self.schedule.a0) ** 2)

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> DeepStormState:
        X = x0.clone()
        D = oracle.grad(X, oracle.sample(self.init_batch))
        return DeepStormState(x=X, d=D, y=D.clone(), t=0)

    def update(self, state: DeepStormState, oracle: GradientOracle, mix: Mix) -> DeepStormState:
        a, beta = self.schedule(state.t), self.beta_at(state.t)
        X_new = prox_step(self.regularizer, mix(state.x), state.y, a)
        g_new, g_old = oracle.grad_pair(X_new, state.x, oracle.sample(self.batch))
        D_new = g_new + (1.0 - beta) * (state.d - g_old)
        Y_new = track(state.y, D_new, state.d, mix)
        return DeepStormState(x=X_new, d=D_new, y=Y_new, t=state.t + 1)



def _builder(default_schedule: str, name: str):
    def build(ctx) -> DeepStorm:
        p = params(ctx, "deepstorm", {"beta": 0.1, "schedule": default_schedule, "t0": 100.0})
        b, B = sarah_sizes(ctx)
        sched = Schedule(p["schedule"], ctx.step, power=1.0 / 3.0, t0=p["t0"])
        return DeepStorm(ctx.regularizer, sched, beta=p["beta"], batch=b, init_batch=B, name=name)

    return build


build_constant = _builder("constant", "deepstorm")
build_diminishing = _builder("diminishing", "deepstorm-diminishing")
