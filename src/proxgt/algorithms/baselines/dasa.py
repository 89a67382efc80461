"""Prox-DASA and Prox-DASA-GT: decentralized proximal averaged stochastic approximation, without and with
gradient tracking.

Xiao, Chen, Balasubramanian, Ghadimi, "A one-sample decentralized proximal algorithm for non-convex stochastic
composite optimization" (UAI 2023, arXiv:2302.09766); spec section 6. Node-stacked rows, M = the run's mixing
(M = W^m with ``--mixing plain --rounds m``), tau = the run's ``step``, a_t the averaging weight::

    Y_t    = prox_{tau h}(X_t - tau Z_t)                      (local; Z_0 = 0, so step 0 is pure shrinkage)
    V_t+1  = (1/b) sum_r grad F_i(x_i,t; xi_r)                (fresh samples, at the *old* point X_t)
    X_t+1  = M( (1 - a_t) X_t + a_t Y_t )

    Prox-DASA:     Z_t+1 = M( (1 - a_t) Z_t + a_t V_t+1 )     (X and Z share the rounds: 2 d-vectors each)

    Prox-DASA-GT:  U_t+1 = M( U_t + V_t+1 - V_t )              (tracking; mixed together with X)
                   Z_t+1 = M( (1 - a_t) Z_t + a_t U_t+1 )     (the tracked gradient feeds z; then mixed)

with U_0 = V_0 = (1/b) sum_r grad F_i(x_i,0; xi_r) for GT (Prox-DASA needs no initial gradient). The mean of U
equals the mean of V after every iteration. The weights are a_t = min(alpha sqrt(n / (t + 1)), 1)
("diminishing", n = number of nodes) or a_t = alpha ("constant", alpha <= 1). Gradients are unscaled local
gradients and the prox threshold is tau * lambda.

Settings: ``step`` (tau), ``batch`` (default 32; the paper's one-sample version is ``batch = 1``), under
``[extra.prox-dasa]`` and ``[extra.prox-dasa-gt]``: ``alpha`` (1.0), ``schedule`` ("diminishing" or
"constant"). The published runs use ``--mixing plain --rounds 1``.

Cost per node and iteration: b component gradients. Prox-DASA: K rounds (K = the run's rounds), each carrying 2
d-vectors (x, z). Prox-DASA-GT: 2K rounds, the first K carrying 2 d-vectors (x, u), the last K one (z); 3
d-vectors per neighbour per K rounds. Initialisation: none (Prox-DASA); b gradients (Prox-DASA-GT).

Where the authors' code (github.com/xuxingc/ProxDASA, ``methods/proxdasa.py``, ``methods/proxdasagt.py``)
differs from the above:

* Its gradients are those of (1/N) times the batch-mean loss while the threshold stays tau * lambda, so its
  effective step is tau / N and it targets F + N lambda ||x||_1; ``step = tau / N`` with threshold
  ``tau * lambda`` reproduces it, which this class does not do.
* In ``proxdasagt.py`` the tracker U is updated and communicated but never used: Z is averaged with the raw
  gradient, so the published Prox-DASA-GT curves are Prox-DASA's plus one dead communicated vector. Here U feeds
  Z, so those curves are not reproduced. The form above, with the mixed U_t+1 feeding Z, is the paper's algorithm
  as recalled in the spec **[paper, from memory]**, not checked against the paper's algorithm box.
* Its GT weights are alpha * min(sqrt(N / (t + 1)), 1), which exceed 1 whenever alpha > 1 (its MNIST runs
  use alpha = 3); here both methods use the capped weight min(alpha sqrt(n / (t + 1)), 1) of its Prox-DASA, so a
  step is always a convex combination.
* Its constant schedule is a = alpha * sqrt(N / T); here "constant" is a = alpha (set alpha to that value).
* Both scripts also compute an initial gradient that Prox-DASA never uses (b gradients spent); here Prox-DASA
  computes none. Both seed their own RNG and take the gossip over m = ``--comm_round`` plain rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from proxgt._validation import ProxGTValueError, check_choice, check_positive_int
from proxgt.algorithms._parts import Mix, estimator_capabilities, mix_owned, prox_step
from proxgt.algorithms.base import Capabilities
from proxgt.algorithms.baselines._common import SCHEDULES, params, sa_batch
from proxgt.estimators import Minibatch, NoState
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer

__all__ = ["ProxDASA", "ProxDASAState", "ProxDASAGT", "ProxDASAGTState"]


class ProxDASAState(NamedTuple):
    x: torch.Tensor
    z: torch.Tensor  # averaged gradient
    t: int
    est: NoState  # the (minibatch) estimator's state


class ProxDASAGTState(NamedTuple):
    x: torch.Tensor
    z: torch.Tensor  # averaged tracked gradient
    v: torch.Tensor  # the last minibatch gradient (at the previous x)
    u: torch.Tensor  # tracker of mean(v)
    t: int
    est: NoState  # the (minibatch) estimator's state


def _mix_together(mix: Mix, *parts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mix several node-stacked (k, d) variables in the same rounds (one message of len(parts) d-vectors per
    neighbour and round, as the authors' code sends them)."""
    d = parts[0].shape[1]
    mixed = mix_owned(mix, torch.cat(parts, dim=1))
    return tuple(mixed[:, i * d:(i + 1) * d].contiguous() for i in range(len(parts)))


@dataclass(frozen=True)
class _DASABase:
    estimator: Minibatch
    regularizer: Regularizer
    step: float
    n_nodes: int
    alpha: float = 1.0
    schedule: str = "diminishing"

    @property
    def capabilities(self) -> Capabilities:
        return estimator_capabilities(self.estimator)

    def __post_init__(self) -> None:
        cls = type(self).__name__
        check_positive_int(self.n_nodes, "n_nodes", cls)
        check_choice(self.schedule, "schedule", SCHEDULES, cls)
        if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha) and self.alpha > 0.0):
            raise ProxGTValueError(f"The 'alpha' parameter of {cls} must be positive. Got {self.alpha!r}.")
        if self.schedule == "constant" and self.alpha > 1.0:
            raise ProxGTValueError(
                f"The 'alpha' parameter of {cls} must be in (0, 1] with a constant schedule. Got {self.alpha!r}."
            )

    def weight(self, t: int) -> float:
        """a_t: alpha (constant) or min(alpha sqrt(n / (t + 1)), 1) (diminishing)."""
        if self.schedule == "constant":
            return float(self.alpha)
        return min(self.alpha * math.sqrt(self.n_nodes / (t + 1)), 1.0)

    def _primal(self, X: torch.Tensor, Z: torch.Tensor, a: float) -> torch.Tensor:
        """(1 - a) X + a prox_{tau h}(X - tau Z), before mixing."""
        return torch.lerp(X, prox_step(self.regularizer, X, Z, self.step), a)


@dataclass(frozen=True)
class ProxDASA(_DASABase):
    """Prox-DASA (no tracking): see the module docstring."""

    name: str = "prox-dasa"

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDASAState:
        X = x0.clone()
        return ProxDASAState(x=X, z=torch.zeros_like(X), t=0, est=NoState())

    def update(self, state: ProxDASAState, oracle: GradientOracle, mix: Mix) -> ProxDASAState:
        a = self.weight(state.t)
        # a fresh minibatch gradient at the old point (Prox-DASA keeps no previous one: V_old is not used)
        V, est = self.estimator.update(state.est, oracle, state.x, state.x, state.z, state.t + 1)
        X_new, Z_new = _mix_together(mix, self._primal(state.x, state.z, a), torch.lerp(state.z, V, a))
        return ProxDASAState(x=X_new, z=Z_new, t=state.t + 1, est=est)


@dataclass(frozen=True)
class ProxDASAGT(_DASABase):
    """Prox-DASA-GT, the paper form (the tracked gradient feeds z): see the module docstring."""

    name: str = "prox-dasa-gt"

    def init(self, x0: torch.Tensor, oracle: GradientOracle, mix: Mix) -> ProxDASAGTState:
        X = x0.clone()
        V, est = self.estimator.init(oracle, X)
        return ProxDASAGTState(x=X, z=torch.zeros_like(X), v=V, u=V.clone(), t=0, est=est)

    def update(self, state: ProxDASAGTState, oracle: GradientOracle, mix: Mix) -> ProxDASAGTState:
        a = self.weight(state.t)
        V_new, est = self.estimator.update(state.est, oracle, state.x, state.x, state.v, state.t + 1)  # at the old x
        X_new, U_new = _mix_together(mix, self._primal(state.x, state.z, a), state.u + V_new - state.v)
        Z_new = mix_owned(mix, torch.lerp(state.z, U_new, a))
        return ProxDASAGTState(x=X_new, z=Z_new, v=V_new, u=U_new, t=state.t + 1, est=est)


_DEFAULTS = {"alpha": 1.0, "schedule": "diminishing"}


def build_dasa(ctx: Any) -> ProxDASA:
    p = params(ctx, "prox-dasa", _DEFAULTS)
    return ProxDASA(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, ctx.n_nodes, p["alpha"], p["schedule"])


def build(ctx: Any) -> ProxDASAGT:
    p = params(ctx, "prox-dasa-gt", _DEFAULTS)
    return ProxDASAGT(Minibatch(sa_batch(ctx)), ctx.regularizer, ctx.step, ctx.n_nodes, p["alpha"], p["schedule"])
