"""Centralized references on the pooled data: prox-SGD and ProxSARAH / ProxSpiderBoost.

They run on ONE node holding all the training data (``nodes = 1``; the builder refuses anything else), so the
"network average" is exact and no communication happens (``mix`` is never called). To compare with n nodes of
minibatch b, give the pooled run ``batch = n * b``: one pooled iteration then draws the same number of samples
as one decentralized iteration of all n nodes. ``proxgt compare`` does this automatically for a grid cell with
a ``central-*`` algorithm and ``nodes = n``: it runs ``nodes = 1``, multiplies the batch sizes by n and records
``extra.pooled_nodes = n`` so reports show the per-node share (total component gradients / n), the linear-
speedup yardstick.

* ``central-prox-sgd``:  x_t+1 = prox_{a h}(x_t - a g_t), g_t a minibatch gradient (batch default 32).
* ``central-proxsarah``: ProxSARAH (Pham, Nguyen, Phan, Tran-Dinh, JMLR 2020)::

      xhat_t = prox_{a h}(x_t - a v_t);   x_t+1 = (1 - gamma) x_t + gamma xhat_t;   v_t+1 = SARAH(x_t+1, x_t, v_t)

  ``gamma = 1`` (the default) is ProxSpiderBoost. The SARAH estimator is SR-E (periodic full gradients) by
  default or SR-O with ``[extra.central-proxsarah] estimator = "sr-o"``, with ProxGT's defaults for n = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from proxgt._validation import ProxGTValueError
from proxgt.algorithms._parts import Mix, estimator_capabilities, prox_step
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import params, sa_batch
from proxgt.estimators import Estimator, EstimatorState, Minibatch, make_estimator
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["CentralProxSGD", "CentralProxSARAH", "CentralState", "CENTRAL_NAMES"]

CENTRAL_NAMES = ("central-prox-sgd", "central-proxsarah")


class CentralState(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor
    t: int
    est: EstimatorState  # the estimator's state


def _central_init(estimator: Estimator, x0: torch.Tensor, oracle: GradientOracle) -> CentralState:
    X = x0.clone()
    V, est = estimator.init(oracle, X)
    return CentralState(x=X, v=V, t=0, est=est)


def _central_step(estimator: Estimator, state: CentralState, X_new: torch.Tensor,
                  oracle: GradientOracle) -> CentralState:
    V, est = estimator.update(state.est, oracle, X_new, state.x, state.v, state.t + 1)
    return CentralState(x=X_new, v=V, t=state.t + 1, est=est)


@dataclass(frozen=True)
class CentralProxSGD:
    estimator: Minibatch
    regularizer: Regularizer
    step: float
    name: str = "central-prox-sgd"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator)

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> CentralState:
        return _central_init(self.estimator, x0, oracle)

    def update(self, state: CentralState, oracle: GradientOracle, mix: Mix) -> CentralState:
        return _central_step(self.estimator, state, prox_step(self.regularizer, state.x, state.v, self.step), oracle)



@dataclass(frozen=True)
class CentralProxSARAH:
    estimator: Estimator
    regularizer: Regularizer
    step: float
    gamma: float = 1.0
    name: str = "central-proxsarah"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator)

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ProxGTValueError(f"The 'gamma' parameter of ProxSARAH must be in (0, 1]. Got {self.gamma!r}.")

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> CentralState:
        return _central_init(self.estimator, x0, oracle)

    def update(self, state: CentralState, oracle: GradientOracle, mix: Mix) -> CentralState:
        xhat = prox_step(self.regularizer, state.x, state.v, self.step)
        return _central_step(self.estimator, state, torch.lerp(state.x, xhat, self.gamma), oracle)



def _check_pooled(ctx: Any, name: str) -> None:
    if ctx.n_nodes != 1:
        raise ProxGTValueError(
            f"{name} runs on the pooled data: set nodes = 1 (got {ctx.n_nodes}) and batch = n * b to match n nodes "
            "of batch b ('proxgt compare' does both for a grid cell)"
        )


def build_sgd(ctx: Any) -> CentralProxSGD:
    params(ctx, "central-prox-sgd", {})  # no settings of its own: any [extra.central-prox-sgd] key is an error
    _check_pooled(ctx, "central-prox-sgd")
    # standing in for n nodes (extra.pooled_nodes): the pooled batch of n nodes of SA's default batch
    pooled = int(ctx.cfg.extra.get("pooled_nodes", 1))
    batch = sa_batch(ctx) if ctx.cfg.batch is not None else pooled * sa_batch(ctx)
    return CentralProxSGD(Minibatch(batch), ctx.regularizer, ctx.step)


def build_sarah(ctx: Any) -> CentralProxSARAH:
    _check_pooled(ctx, "central-proxsarah")
    p = params(ctx, "central-proxsarah", {"estimator": "sr-e", "gamma": 1.0})
    if p["estimator"] not in ("sr-e", "sr-o"):
        raise ProxGTValueError(
            f"extra.central-proxsarah.estimator must be 'sr-e' or 'sr-o'. Got {p['estimator']!r} instead."
        )
    cfg = ctx.cfg
    est = make_estimator(
        p["estimator"], n_nodes=1, local_size=ctx.local_size, batch=cfg.batch, big_batch=cfg.big_batch,
        period=cfg.period,
    )
    return CentralProxSARAH(est, ctx.regularizer, ctx.step, gamma=p["gamma"])
