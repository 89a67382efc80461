"""DProxSGT: decentralized proximal stochastic gradient tracking, in its own update order.

Yan, Chen, Chen, Cui, Lu, Xu, "Compressed decentralized proximal stochastic gradient method for nonconvex
composite problems with heterogeneous data" (ICML 2023, arXiv:2302.14252); spec section 3. Node-stacked rows,
M = the run's mixing (M = W with ``--mixing plain --rounds 1``), eta = the run's ``step``::

    V_t      = (1/b) sum_r grad F_i(x_i,t; xi_r)             (fresh samples, at the current point)
    Y_t      = M( Y_t-1 + V_t - V_t-1 )                      (tracking, mixed before it is used)
    X_t+1/2  = prox_{eta h}(X_t - eta Y_t)                   (local)
    X_t+1    = M( X_t+1/2 )

with Y_-1 = 0 and V_-1 = 0, so no gradient is computed before the first iteration and Y_0 = M(V_0). The mean
of Y equals the mean of V after every iteration. Gradients are unscaled local gradients (no 1/N), the prox
threshold is eta * lambda and the step is constant. Compared with ProxGT-SA, the gradient is evaluated at the
start of the iteration and the tracker is updated *before* the prox step uses it (ProxGT updates it after).

Settings: ``step`` (eta), ``batch`` (default 32); no ``[extra.dproxsgt]`` settings.

Cost per node and iteration: b component gradients; 2K rounds of one d-vector each (y, then x; K = the run's
rounds). Initialisation: none.

Where the authors' code (github.com/yonggui-yan/DProxSGT, ``RegL1_*/core.py``, ``train_DProxSGT``) differs:

* It steps with the *un-mixed* tracker Y_t-1 + V_t - V_t-1 (its mixed copy is only kept for the next
  iteration); the paper, and the copy in ``Compress_*/core_compress.py`` (no prox), step with the mixed Y_t as
  above. The paper form here is the spec's recollection of the algorithm box **[paper, from memory]**.
* It clips every minibatch gradient to global norm <= 10 (not in the paper; not done here).
* It samples epoch-wise (reshuffled each epoch, ``drop_last``) instead of drawing fresh samples, runs N = 5
  nodes on a hard-coded ring with weights 1/3, and starts from different x_i^0 per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from proxgt._validation import check_positive_float
from proxgt.algorithms._parts import Mix, estimator_capabilities, mix_owned, prox_step, track
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import params, sa_batch
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["DProxSGT", "DProxSGTState"]


class DProxSGTState(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor  # the minibatch gradient at the previous iterate (0 before the first iteration)
    y: torch.Tensor  # the mixed tracker Y_t-1 (0 before the first iteration)
    t: int
    est: NoState  # the (minibatch) estimator's state


@dataclass(frozen=True)
class DProxSGT:
    """DProxSGT with a minibatch estimator and a constant step: see the module docstring."""

    estimator: Minibatch
    regularizer: Regularizer
    step: float
    name: str = "dproxsgt"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator, gossip_keys=("x", "y"), tracked_keys=("y",))

    def __post_init__(self) -> None:
        check_positive_float(self.step, "step", "DProxSGT")

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> DProxSGTState:
        X = x0.clone()
        return DProxSGTState(x=X, v=torch.zeros_like(X), y=torch.zeros_like(X), t=0, est=NoState())

    def update(self, state: DProxSGTState, oracle: GradientOracle, mix: Mix) -> DProxSGTState:
        # a fresh minibatch gradient at the current point (no gradient is paid for before the first iteration)
        V_new, est = self.estimator.update(state.est, oracle, state.x, state.x, state.v, state.t + 1)
        Y_new = track(state.y, V_new, state.v, mix)
        X_new = mix_owned(mix, prox_step(self.regularizer, state.x, Y_new, self.step), key="x")
        return DProxSGTState(x=X_new, v=V_new, y=Y_new, t=state.t + 1, est=est)


def build(ctx: Any) -> DProxSGT:
    params(ctx, "dproxsgt", {})  # no settings of its own: any [extra.dproxsgt] key is an error
    return DProxSGT(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step)
