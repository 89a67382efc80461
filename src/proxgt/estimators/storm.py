"""The STORM recursive-momentum estimator of DEEPSTORM (v2) and its hybrid form (v1).

Reference: G. Mancino-Ball, S. Miao, Y. Xu, J. Chen, "Proximal stochastic recursive momentum methods for
nonconvex composite decentralized optimization", AAAI 2023 (arXiv:2211.11954). With g(X; B) the minibatch
gradients on fresh samples B (b per node) and B' an independent batch::

    init:    D_0 = full local gradient at X_0                             (m_i per node)
    STORM:   D_t = g(X_t; B) + (1 - beta) (D_t-1 - g(X_t-1; B))            (2b per node)
    hybrid:  D_t = beta g(X_t; B') + (1 - beta) (D_t-1 + g(X_t; B) - g(X_t-1; B))   (3b per node)

with beta = beta_(t-1) = min(1, 1 - a_t / a_(t-1) + beta0 a_t^2) from the step schedule a_t of the method that
uses it (a constant step gives beta0 a^2). Unlike SARAH, the recursion is damped by (1 - beta): its error
does not accumulate without bound, so it declares no recursion ratio.

Not registered in :data:`proxgt.registry.ESTIMATORS`: its weight follows the step schedule of the algorithm
that owns it, which the registry's ``from_settings`` does not receive; DEEPSTORM builds it
(:mod:`proxgt.algorithms.baselines.deepstorm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from proxgt._validation import check_positive_float, check_positive_int
from proxgt.estimators.base import NoState
from proxgt.problems.oracle import FULL, MINIBATCH, PAIR, GradientOracle

__all__ = ["Storm"]


@dataclass(frozen=True)
class Storm:
    """STORM (``hybrid=False``, DEEPSTORM v2) or hybrid (``hybrid=True``, v1) estimator.

    Args:
        batch: b, the size of each fresh batch.
        schedule: the step schedule ``a_t`` of the owning method (any ``int -> float``; e.g.
            :class:`proxgt.algorithms.baselines.Schedule`).
        beta: beta0 of the weight formula (module docstring).
        hybrid: the v1 form (one more independent batch per iteration).
    """

    batch: int
    schedule: Callable[[int], float]
    beta: float = 1.0
    hybrid: bool = False
    name: str = "storm"
    recursion_ratio: ClassVar[float] = 0.0  # damped by (1 - beta): no undamped recursion

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "Storm")
        check_positive_float(self.beta, "beta", "Storm")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({FULL, PAIR, MINIBATCH} if self.hybrid else {FULL, PAIR})

    @property
    def batch_per_iter(self) -> int:
        # one batch B (used at two points), the hybrid form also a second, independent batch B'
        return self.batch * (2 if self.hybrid else 1)

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch}

    def samples_per_iter(self, local_size: float) -> float:
        return float((3 if self.hybrid else 2) * self.batch)

    def beta_at(self, t: int) -> float:
        """beta_t = min(1, 1 - a_t+1 / a_t + beta0 a_t+1^2) (for a constant schedule: beta0 a^2)."""
        a_t, a_next = self.schedule(t), self.schedule(t + 1)
        return min(1.0, 1.0 - a_next / a_t + self.beta * a_next**2)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, NoState]:
        return oracle.full_grad(X0), NoState()

    def update(self, state: NoState, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor,
               V_old: torch.Tensor, t: int) -> tuple[torch.Tensor, NoState]:
        beta = self.beta_at(t - 1)
        g_new, g_old = oracle.grad_pair(X_new, X_old, oracle.sample(self.batch))
        if not self.hybrid:
            return g_new + (1.0 - beta) * (V_old - g_old), state
        g_fresh = oracle.grad(X_new, oracle.sample(self.batch))
        return beta * g_fresh + (1.0 - beta) * (V_old + g_new - g_old), state
