"""Prox-DSGT: the proximal decentralized stochastic gradient tracking baseline of the DEEPSTORM repository.

The method is the ``methods/dsgt.py`` baseline of G. Mancino-Ball, S. Miao, Y. Xu, J. Chen, "Proximal
stochastic recursive momentum methods for nonconvex composite decentralized optimization", AAAI 2023
(spec ``baselines.md`` section 2). It is *not* DProxSGT (Yan, Chen, Chen, Cui, Lu, Xu, ICML 2023), which
mixes the tracker after adding the gradient difference and mixes X once per iteration (registered separately
as ``dproxsgt``).

Update, node-stacked rows, mixing operator M (the published runs: one W, ``--rounds 1 --mixing plain``)::

    G_0 = (1/b) sum_r grad F_i(x_i,0; xi_r),   Y_0 = M(G_0)
    P_t    = prox_{a_t h}( M(X_t) - a_t Y_t )         (first X mixing, then the prox)
    X_t+1  = M(P_t)                                   (second X mixing)
    G_t+1  = (1/b) sum_r grad F_i(x_i,t+1; xi_r)      (fresh samples, at the twice-mixed point)
    Y_t+1  = M(Y_t) + G_t+1 - G_t                     (mix first, then add the difference)

M preserves node averages, so mean(Y_t) = mean(G_t) at every t. Between two prox steps X is multiplied by M^2.
At a fixed point Y is consensual with mean(G), X is consensual (M contracts disagreement and the prox is
non-expansive) and x = prox_{a h}(x - a mean_i grad f_i(x)): x is stationary for (1/n) sum_i f_i + h.

Settings: ``step`` (lr), ``batch`` (default 32), ``[extra.prox-dsgt] schedule = "constant"`` (default, a_t = a)
or ``"diminishing"`` (a_t = a / sqrt(t + 1), the DEEPSTORM paper's choice: a9a lr = 1.0, MNIST lr = 10, b = 64,
ladder graph).

Cost per node: b component gradients per iteration, 3 mixings (X, X, Y; one d-vector per neighbour per round
each); initialisation: b gradients and 1 mixing.

Where the authors' code differs (so its published curves differ from runs of this module):

* Its gradients are of (1/N) x (batch-mean loss) while the threshold keeps a lambda, so it targets
  F + N lambda r; here gradients are unscaled. To mimic it, use step lr/N with threshold lr lambda.
* Its initial points differ across nodes (PyTorch default inits, not averaged); here x0 is shared unless the
  user gives per-node points.
* It reads its density statistic on P_t (the prox output) and its other metrics on X_t+1; here the run's
  metrics are all on X_t+1.
* Its communication-time record overwrites the time of one of the two X rounds; here all 3 rounds count.
* It draws each minibatch as b distinct local samples; the oracle here draws with replacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from proxgt.algorithms._parts import Mix, estimator_capabilities, mix_owned
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import Schedule, params, sa_batch
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["ProxDSGT", "ProxDSGTState"]


class ProxDSGTState(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor  # G_t, the minibatch gradient at X_t
    y: torch.Tensor
    t: int
    est: NoState  # the (minibatch) estimator's state


@dataclass(frozen=True)
class ProxDSGT:
    """DSGT of the DEEPSTORM repository with a minibatch estimator and a constant or 1/sqrt(t+1) step."""

    estimator: Minibatch
    regularizer: Regularizer
    schedule: Schedule = field(default_factory=Schedule)
    name: str = "prox-dsgt"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator)

    @property
    def step(self) -> float:
        return self.schedule.a0

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDSGTState:
        X = x0.clone()
        V, est = self.estimator.init(oracle, X)
        return ProxDSGTState(x=X, v=V, y=mix(V), t=0, est=est)

    def update(self, state: ProxDSGTState, oracle: GradientOracle, mix: Mix) -> ProxDSGTState:
        a = self.schedule(state.t)
        P = self.regularizer.prox(torch.add(mix(state.x), state.y, alpha=-a), a)
        X_new = mix_owned(mix, P)
        V_new, est = self.estimator.update(state.est, oracle, X_new, state.x, state.v, state.t + 1)
        Y_new = mix(state.y) + V_new - state.v
        return ProxDSGTState(x=X_new, v=V_new, y=Y_new, t=state.t + 1, est=est)


def build(ctx: Any) -> ProxDSGT:
    p = params(ctx, "prox-dsgt", {"schedule": "constant"})
    # a_t = a (1 + t)^(-1/2) = a / sqrt(t + 1) when diminishing
    return ProxDSGT(Minibatch(sa_batch(ctx)), ctx.regularizer, Schedule(p["schedule"], ctx.step, power=0.5, t0=1.0))
