"""SPPDM: stochastic proximal primal-dual method with momentum.

Z. Wang, J. Zhang, T.-H. Chang, J. Li, Z.-Q. Luo, "Distributed stochastic consensus optimization with momentum
for nonconvex nonsmooth problems", IEEE TSP 69:4486-4501 (2021), arXiv:2011.05082. The structure below is the
one of the DEEPSTORM authors' implementation (spec ``baselines.md`` section 5); that it matches the paper's
algorithm box is marked "[paper, from memory]" in the spec and was not re-verified.

Graph form. The consensus constraint is written with the run's mixing operator M (M_K: symmetric, doubly
stochastic, spectrum in [-1, 1]) read as a weighted graph with self-loops, whose every degree is 1:
Laplacian L = I - M and signless Laplacian Q = I + M (both positive semi-definite, L + Q = 2I). One mixing
``MX = M(X)`` per iteration gives both ``L X = X - MX`` and ``Q X = X + MX``.

Update, node-stacked rows, run step a = 1/phi (phi = gamma + 2c + kappa, the same at every node), t = 0, 1, ...::

    t = 0 (the initial step, no dual update, no new sample; G_0 = exact local gradient at X_0):
        X_1 = prox_{a h}( a [ (gamma + kappa) X_0 + c Q X_0 - G_0 ] )           (Lam = 0, S = Z = X_0; Z not moved)
    t >= 1:
        MX      = M(X_t)                                          (the only communication)
        theta'  = (1 + sqrt(1 + 4 theta^2)) / 2,  eta_t = (theta - 1) / theta',  theta <- theta'   (theta_1 = 1)
        Lam     = Lam + alpha (X_t - MX)                          (dual ascent, *before* the primal step)
        S       = X_t + eta_t (X_t - X_t-1)                       (Nesterov extrapolation)
        G       = (1/b) sum_r grad F_i(s_i; xi_r)                 (gradient at the extrapolated point S)
        X_t+1   = prox_{a h}( a [ gamma S + c (X_t + MX) + kappa Z - G - Lam ] )
        Z       = Z + beta (X_t+1 - Z)                            (the smoothing anchor)

i.e. x_t+1 minimizes <g + Lam, x> + (c/2) x'Lx + (c/2)||x - x_t||_Q^2 + (gamma/2)||x - s||^2
+ (kappa/2)||x - z||^2 + h(x) (the augmented-Lagrangian term linearized at x_t; the Laplacian terms use x_t,
the gamma-term pulls toward s). eta_t = 0, 0.282, 0.434, 0.531, ... -> 1 for t = 1, 2, 3, ... (never
restarted). At a fixed point X = MX (consensus), S = Z = X and 0 in g_i + Lam_i + subdiff h(x); Lam starts at
0 and moves in the range of L, so sum_i Lam_i = 0 and x is stationary for (1/n) sum_i f_i + h.

Finite precision. That sum_i Lam_i stays 0 is what makes the fixed point stationary: with it off by e, x settles
where 0 in mean_i g_i + e/n + subdiff h. Lam integrates alpha (X - MX), and the node mean of X - MX is 0 only up
to the round-off of the mixing, about eps |x| per node, which has no restoring force: once X is at rest the
same round-off is added every iteration, so e grows linearly in t and the iterates walk away from the
stationary point. With M X computed in float32 (the run's default dtype) on the 4-node breast-cancer
elastic-net problem of the tests with rho = 0.01 (full batch), the relative error to the centralized solution
was 5.9e-4, 2.4e-3, 9.4e-3 after 1k, 4k, 16k iterations. The paper states the constraint edge-wise (A x = 0
with the graph's incidence matrix A, one multiplier per edge entering its two ends with opposite signs, so
the node sum is 0 by construction) [from memory, like the spec's paper cross-check]; the node form used by
the authors' code and here is the same in exact arithmetic and is the one that works with any M_K. This
module therefore mixes X in float64 and keeps Lam in float64 whatever the run's dtype (the rest of the step
stays in it): the round-off of e drops to about 1e-16 |x| per iteration, and the same run stays at 1.7e-6
(float32's own limit) from 1k to 16k iterations. The cost: in a float32 run the mixed d-vectors are float64,
so SPPDM's gossip bytes are twice those of a float32 method with the same rounds; float64 runs are unchanged.

Settings under ``[extra.sppdm]`` (dimensionless: the paper's constants times the step a, so the defaults hold at
any step; gamma takes what is left, a gamma = 1 - 2 penalty - smoothing, which must be >= 0):

* ``penalty`` = a c (0.3), the augmented-Lagrangian weight;
* ``smoothing`` = a kappa (0.01; must be > 0), the weight of the z-anchor;
* ``dual`` = a alpha (0.3), the dual step;
* ``omega`` = the paper's beta (0.9), z <- z + omega (x - z);
* ``momentum`` = "nesterov" (default) | "none" (eta = 0) | "constant" (eta = ``eta``, default 0.8).

``batch`` defaults to 32. The defaults are the authors' a9a/MNIST constants (c = 1, kappa = 0.1, gamma = 3,
beta = 0.9) expressed as fractions of phi (c d_i / phi = 0.28-0.33, kappa / phi ~ 0.01, gamma / phi = 0.33-0.42
on their ladder, phi_i = 7.1-9.1), except the dual step, raised from their alpha d_i / phi ~ 0.003 (a9a,
alpha = 0.01; ten times that on MNIST) so that the dual (hence consensus) converges in a few hundred
iterations. Larger penalty/dual shares with a larger gamma share can be unstable under the Nesterov weights
(eta -> 1): e.g. penalty = dual = 0.2 (a gamma = 0.59) diverges on the test problem.
``--rounds 1 --mixing plain`` gives the one-W-per-iteration published communication.

Cost per node (spec section 8): b component gradients per iteration (t >= 1; at S) and 1 mixing of X (one
d-vector per neighbour per round; K rounds with M = M_K); initialisation: m_i gradients (the exact local
gradient), which the initial step (t = 0) uses with 1 mixing and no new gradient.

Where the authors' code (DEEPSTORM repo ``methods/sppdm.py``) differs, so its published curves differ from
runs of this module:

* Gradients are of (1/N) x (batch-mean loss) while the threshold keeps lambda, so it targets F + N lambda r;
  here gradients are unscaled and the threshold is a lambda (the same footing as ProxGT). Its absolute
  constants (c, kappa, gamma, alpha) are therefore 1/N of the equivalent ones for unscaled gradients; the
  dimensionless shares used here are the same either way.
* Its graph terms use the unweighted adjacency of W (neighbour sums, degrees d_i, phi_i = gamma + 2 c d_i +
  kappa, per-node thresholds lambda/phi_i); the weights of W are not used. Here the graph is M with its
  weights and self-loops (degree 1), so phi and the threshold are the same at every node.
* Its initial gradient is the *sum* over one pass of ceil(m/b) minibatch means, about (m/b) times the local
  gradient (x8 on a9a at b = 512, x59 on MNIST at b = 128, x1018 on a9a at b = 4); here it is the exact
  local gradient (also m gradients).
* Its initial step thresholds with lambda/alpha (apparently a typo for lambda/phi_i); here a lambda.
* Its initial points differ across nodes (PyTorch default inits, not averaged); here x0 is shared unless
  the user gives per-node points.
* It draws each minibatch as b distinct local samples; the oracle here draws with replacement.
* Its iteration counter starts after the initial step (its metric at t = 0 is at X_0 and its loop's first
  recorded point is X_2); here the initial step is update 0, so update t produces X_t+1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_float
from proxgt.algorithms._parts import Mix, estimator_capabilities
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import params, sa_batch
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import FULL, GradientOracle
from proxgt.prox import Regularizer

__all__ = ["SPPDM", "SPPDMState", "MOMENTUM"]

MOMENTUM = ("nesterov", "none", "constant")

#: precision of the mixing of X and of the dual, whatever the run's dtype (module docstring, "Finite precision")
_DUAL_DTYPE = torch.float64


class SPPDMState(NamedTuple):
    x: torch.Tensor
    x_prev: torch.Tensor  # X_t-1 (for the extrapolation)
    lam: torch.Tensor  # the dual variable mapped to nodes (accumulates alpha L X), float64 in every run
    z: torch.Tensor  # the smoothing anchor
    g: torch.Tensor  # the last gradient paid for (at t = 0: the exact local gradient at X_0)
    theta: float  # Nesterov's theta_old
    t: int


@dataclass(frozen=True)
class SPPDM:
    """SPPDM with step a = 1/phi and dimensionless constants (see the module docstring)."""

    estimator: Minibatch
    regularizer: Regularizer
    step: float
    penalty: float = 0.3
    smoothing: float = 0.01
    dual: float = 0.3
    omega: float = 0.9
    momentum: str = "nesterov"
    eta: float = 0.8
    name: str = "sppdm"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator, extra_calls=frozenset({FULL}))

    def __post_init__(self) -> None:
        check_positive_float(self.step, "step", "SPPDM")
        check_choice(self.momentum, "momentum", MOMENTUM, "SPPDM")
        for key in ("penalty", "smoothing", "dual"):
            if not getattr(self, key) > 0:
                raise ProxGTValueError(f"The '{key}' parameter of SPPDM must be > 0. Got {getattr(self, key)!r}.")
        if self.gamma_share < 0:
            raise ProxGTValueError(
                "SPPDM needs 2 * penalty + smoothing <= 1 (a * gamma = 1 - 2 penalty - smoothing). "
                f"Got penalty = {self.penalty!r}, smoothing = {self.smoothing!r}."
            )
        for key in ("omega",):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ProxGTValueError(f"The '{key}' parameter of SPPDM must be in (0, 1]. Got {getattr(self, key)!r}.")
        if not 0.0 <= self.eta < 1.0:
            raise ProxGTValueError(f"The 'eta' parameter of SPPDM must be in [0, 1). Got {self.eta!r}.")

    @property
    def gamma_share(self) -> float:
        """a * gamma, the weight of the extrapolated point in the primal step."""
        return 1.0 - 2.0 * self.penalty - self.smoothing

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> SPPDMState:
        X = x0.clone()
        G0 = oracle.full_grad(X)  # exact local gradient: m_i component gradients
        lam = torch.zeros_like(X, dtype=_DUAL_DTYPE)
        return SPPDMState(x=X, x_prev=X.clone(), lam=lam, z=X.clone(), g=G0, theta=1.0, t=0)

    def update(self, state: SPPDMState, oracle: GradientOracle, mix: Mix) -> SPPDMState:
        a, X = self.step, state.x
        X_wide = X.to(_DUAL_DTYPE)
        MX_wide = mix(X_wide)  # float64 arithmetic, so that the dual's node sum stays 0 (module docstring)
        MX = MX_wide.to(X.dtype)
        if state.t == 0:  # the initial step: Lam = 0, S = Z = X_0, the exact gradient of init
            theta, lam, S, G = state.theta, state.lam, X, state.g
        else:
            theta = (1.0 + math.sqrt(1.0 + 4.0 * state.theta**2)) / 2.0
            if self.momentum == "nesterov":
                eta = (state.theta - 1.0) / theta
            else:
                eta = self.eta if self.momentum == "constant" else 0.0
            lam = state.lam + (self.dual / a) * (X_wide - MX_wide)
            S = X + eta * (X - state.x_prev)
            G, _ = self.estimator.update(NoState(), oracle, S, X, state.g, state.t)  # a Minibatch: no state
        V = (self.gamma_share * S + self.penalty * (X + MX) + self.smoothing * state.z) - a * (G + lam.to(X.dtype))
        X_new = self.regularizer.prox(V, a)
        z = state.z if state.t == 0 else torch.lerp(state.z, X_new, self.omega)
        return SPPDMState(x=X_new, x_prev=X, lam=lam, z=z, g=G, theta=theta, t=state.t + 1)


def build(ctx: Any) -> SPPDM:
    p = params(ctx, "sppdm", {"penalty": 0.3, "smoothing": 0.01, "dual": 0.3, "omega": 0.9,
                              "momentum": "nesterov", "eta": 0.8})
    return SPPDM(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, **p)
