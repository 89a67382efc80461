"""ProxGT: stochastic proximal gradient tracking (spec section 3).

Update, for node-stacked X, V, Y (n x d) and K-round mixing M_K::

    Z      = prox_{a h}(X_t - a Y_t)              (row-wise, local)
    X_t+1  = M_K(Z)                               (K rounds)
    V_t+1  = EST(X_t+1, X_t, V_t, t+1)            (local)
    Y_t+1  = M_K(Y_t + V_t+1 - V_t)               (K rounds)

with X_0 = x0 on every node, V_0 = EST_init(X_0) and Y_0 = V_0 (so the first gradient is counted once).
``order="mix-prox"`` gives the variant X_t+1 = prox_{a h}(M_K(X_t - a Y_t)), whose iterates are exactly sparse
under l1. Reference: Xin, Khan, Kar, "A fast randomized incremental gradient method for decentralized
nonconvex optimization" line of work; ProxGT as in Xin, Das, Khan, Kar, "Stochastic proximal gradient
tracking for decentralized nonconvex composite optimization" (the algorithm this library is named after).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from proxgt._validation import check_choice, check_positive_float
from proxgt.algorithms._parts import Mix, estimator_capabilities, mix_owned, prox_step, track
from proxgt.algorithms.base import Capabilities
from proxgt.estimators import Estimator, EstimatorState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["ProxGT", "ProxGTState", "ORDERS", "build"]

ORDERS = ("prox-mix", "mix-prox")


class ProxGTState(NamedTuple):
    """Everything ProxGT carries between iterations (checkpointable, comparable between executors)."""

    x: torch.Tensor
    v: torch.Tensor
    y: torch.Tensor
    t: int
    est: EstimatorState  # the estimator's own state (e.g. :class:`~proxgt.estimators.SarahState`)


@dataclass(frozen=True)
class ProxGT:
    """Stochastic proximal gradient tracking with a pluggable local estimator.

    Args:
        estimator: SA (:class:`~proxgt.estimators.Minibatch`), SR-O or SR-E.
        regularizer: the non-smooth h (anything with ``prox(X, step)``).
        step: the step a > 0.
        order: ``"prox-mix"`` (default, spec) or ``"mix-prox"``.

    Example::

        alg = ProxGT(Minibatch(32), L1(1e-4), step=1.0)
        state = alg.init(x0_rows, oracle, mixer)
        state = alg.step(state, oracle, mixer)
    """

    estimator: Estimator
    regularizer: Regularizer
    step: float
    order: str = "prox-mix"
    name: str = "proxgt"

    @property
    def capabilities(self) -> Capabilities:
        # asynchronous: every shipped estimator keeps what it needs per row (a SARAH refresh period counts each
        # node's own iterations, proxgt.estimators.sarah), and y is tracked by push-sum running sums
        return estimator_capabilities(self.estimator, gossip_keys=("x", "y"), tracked_keys=("y",),
                                      asynchronous=True)

    def __post_init__(self) -> None:
        check_positive_float(self.step, "step", "ProxGT")
        check_choice(self.order, "order", ORDERS, "ProxGT")

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxGTState:
        X = x0.clone()
        V, est = self.estimator.init(oracle, X)
        return ProxGTState(x=X, v=V, y=V.clone(), t=0, est=est)

    def update(self, state: ProxGTState, oracle: GradientOracle, mix: Mix) -> ProxGTState:
        a = self.step
        if self.order == "prox-mix":
            X_new = mix_owned(mix, prox_step(self.regularizer, state.x, state.y, a), key="x")
        else:
            X_new = self.regularizer.prox(mix_owned(mix, torch.add(state.x, state.y, alpha=-a), key="x"), a)
        V_new, est = self.estimator.update(state.est, oracle, X_new, state.x, state.v, state.t + 1)
        Y_new = track(state.y, V_new, state.v, mix)
        return ProxGTState(x=X_new, v=V_new, y=Y_new, t=state.t + 1, est=est)



def build(ctx: Any, *, estimator: str) -> ProxGT:
    """ProxGT with the registered ``estimator`` (``"sa"``, ``"sr-o"``, ``"sr-e"``, ...), its sizes from the run
    settings or the spec's defaults (what :data:`proxgt.registry.ALGORITHMS` binds to ``proxgt-<estimator>``)."""
    from proxgt.algorithms.baselines._common import params
    from proxgt.estimators import make_estimator

    name = f"proxgt-{estimator}"
    params(ctx, name, {})  # no settings of its own: any [extra.proxgt-*] key is an error, not silently ignored
    cfg = ctx.cfg
    est = make_estimator(estimator, n_nodes=ctx.n_nodes, local_size=ctx.local_size, batch=cfg.batch,
                         big_batch=cfg.big_batch, period=cfg.period, ratio=ctx.recursion_ratio)
    return ProxGT(est, ctx.regularizer, step=ctx.step, order=cfg.order, name=name)
