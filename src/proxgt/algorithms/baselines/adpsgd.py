"""Prox-AD-PSGD: asynchronous decentralized proximal SGD with randomized pairwise averaging, no tracking.

AD-PSGD (Lian, Zhang, Zhang, Liu, ICML 2018) runs every worker in a loop without a barrier: it reads its model
x_hat_i, computes a stochastic gradient g_i there, averages its model with one neighbour j chosen uniformly at
random (atomically: both take (x_i + x_j) / 2), and then steps with the gradient it computed before the average.
In matrix form, one update of the network is::

    X_k+1 = W_k X_k - a G(X_hat_k),   W_k = I - (e_i - e_j)(e_i - e_j)^T / 2

where X_hat_k may be older than X_k (another worker may have averaged into x_i since it was read). The paper's
method is smooth (no h); the proximal form used here applies the regularizer's prox after the step, as
Prox-DSGD does for D-PSGD::

    x_i <- prox_{a h}( (x_i + x_j) / 2 - a g_i ),   g_i = (1/b) sum_r grad F_i(x_hat_i; xi_r)

and, with the step's prox, the partner keeps the plain average (its own step comes in its own iteration).
Without tracking, heterogeneous data leaves a consensus bias of order a * ||grad f_i - grad f||, as in Prox-DSGD.

It runs only asynchronously (``--async``, on the virtual clock): the pairwise averaging is the asynchronous
network's (:mod:`proxgt.mixing.pairwise`: the partner's *current* model, a round trip on the link, the partner of
node i in its k-th iteration a pure function of (seed, i, k)); ``--max-staleness`` does not apply. With zero
delays every node is active in every tick and the nodes average in node order, each with its partner's current
model: the reference test writes that out.

Settings: ``batch`` (default 32), ``step`` (a0), ``[extra.prox-adpsgd] schedule = "constant" |
"diminishing"``, ``power`` (0.5), ``t0`` (100), as Prox-DSGD. Per iteration: b gradients, one averaging (one
model sent each way on one link).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from proxgt.algorithms._parts import Mix, estimator_capabilities
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines.dsgd import ProxDSGD, ProxDSGDState
from proxgt.algorithms.baselines.dsgd import build as build_dsgd
from proxgt.problems.oracle import GradientOracle

__all__ = ["ProxADPSGD"]


@dataclass(frozen=True)
class ProxADPSGD(ProxDSGD):
    """Prox-AD-PSGD: Prox-DSGD's state, step schedule and gradient at the model read before the averaging, with
    the averaging declared pairwise (one random neighbour, on the asynchronous network)."""

    name: str = "prox-adpsgd"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator, gossip_keys=("x",), pairwise_keys=("x",), asynchronous=True)

    def update(self, state: ProxDSGDState, oracle: GradientOracle, mix: Mix) -> ProxDSGDState:
        a = self.schedule(state.t)
        X_new = self.regularizer.prox(torch.add(mix(state.x, key="x"), state.g, alpha=-a), a)
        G_new, est = self.estimator.update(state.est, oracle, X_new, state.x, state.g, state.t + 1)
        return ProxDSGDState(x=X_new, g=G_new, t=state.t + 1, est=est)


def build(ctx: Any) -> ProxDSGD:
    return build_dsgd(ctx, ProxADPSGD, "prox-adpsgd")
