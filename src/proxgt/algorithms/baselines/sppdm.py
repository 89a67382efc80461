"""SPPDM: stochastic proximal primal-dual method with momentum (Wang, Zhang, Chang, Li, Luo, "Distributed
stochastic consensus optimization with momentum for nonconvex nonsmooth problems", IEEE TSP 2021).

The paper applies a linearized, smoothed proximal augmented Lagrangian to the consensus constraint
(I - M) X = 0, with a momentum-averaged stochastic gradient. The published pseudo-code is written per edge;
our reading, in node variables (Lam = the dual variable mapped to nodes, which stays in the range of I - M, so
its node sum stays 0), with M = the run's mixing operator::

    X_t+1   = prox_{a h}( X_t - a [ G_t + Lam_t + c (X_t - M X_t) + kappa (X_t - Z_t) ] )
    MX_t+1  = M(X_t+1)                                  (the only communication: one mixing per iteration)
    Lam_t+1 = Lam_t + rho (X_t+1 - MX_t+1)              (dual ascent on the consensus residual)
    Z_t+1   = Z_t + omega (X_t+1 - Z_t)                 (smoothing anchor, the "proximal" term)
    G_t+1   = (1 - beta) G_t + beta g(X_t+1)            (momentum average of minibatch gradients g)

with G_0 = g(X_0), Lam_0 = 0, Z_0 = X_0 and MX_0 = M(X_0). At a fixed point X is consensual and
-(1/n) sum_i grad f_i(x) lies in the subdifferential of h (the duals sum to zero), i.e. x is stationary.

Dimensionless settings under ``[extra.sppdm]`` (scaled by the step a so that defaults work at any step):
``penalty`` = a c (1.0: then X - a c (X - MX) = MX, a DSGD-like primal step), ``dual`` = a rho (0.5, the
EXTRA-like stable choice), ``smoothing`` = a kappa (0.0: off), ``omega`` (0.5), ``beta`` (0.5).
``batch`` defaults to 32. ``--rounds 1 --mixing plain`` gives the published one-W-per-step method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from proxgt._validation import ProxGTValueError
from proxgt.algorithms._parts import Mix
from proxgt.algorithms.baselines._common import params, sa_batch
from proxgt.estimators import Minibatch
from proxgt.problems.oracle import GradientOracle

__all__ = ["SPPDM", "SPPDMState"]


class SPPDMState(NamedTuple):
    x: torch.Tensor
    mx: torch.Tensor
    lam: torch.Tensor
    z: torch.Tensor
    g: torch.Tensor
    t: int


@dataclass(frozen=True)
class SPPDM:
    estimator: Minibatch
    regularizer: object
    step: float
    penalty: float = 1.0
    dual: float = 0.5
    smoothing: float = 0.0
    omega: float = 0.5
    beta: float = 0.5
    name: str = "sppdm"

    def __post_init__(self) -> None:
        for key in ("penalty", "dual", "smoothing"):
            if getattr(self, key) < 0:
                raise ProxGTValueError(f"The '{key}' parameter of SPPDM must be >= 0. Got {getattr(self, key)!r}.")
        for key in ("omega", "beta"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ProxGTValueError(f"The '{key}' parameter of SPPDM must be in (0, 1]. Got {getattr(self, key)!r}.")

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> SPPDMState:
        X = x0.clone()
        return SPPDMState(
            x=X, mx=mix(X), lam=torch.zeros_like(X), z=X.clone(), g=self.estimator.init(oracle, X), t=0
        )

    def update(self, state: SPPDMState, oracle: GradientOracle, mix: Mix) -> SPPDMState:
        a = self.step
        X = state.x
        # a * direction = a G + a Lam + penalty (X - MX) + smoothing (X - Z)
        scaled = a * (state.g + state.lam) + self.penalty * (X - state.mx) + self.smoothing * (X - state.z)
        X_new = self.regularizer.prox(X - scaled, a)
        MX_new = mix(X_new)
        lam_new = state.lam + (self.dual / a) * (X_new - MX_new)
        z_new = torch.lerp(state.z, X_new, self.omega)
        g = self.estimator.update(oracle, X_new, X, state.g, state.t + 1)
        G_new = torch.lerp(state.g, g, self.beta)
        return SPPDMState(x=X_new, mx=MX_new, lam=lam_new, z=z_new, g=G_new, t=state.t + 1)



def build(ctx) -> SPPDM:
    p = params(ctx, "sppdm", {"penalty": 1.0, "dual": 0.5, "smoothing": 0.0, "omega": 0.5, "beta": 0.5})
    return SPPDM(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, **p)
