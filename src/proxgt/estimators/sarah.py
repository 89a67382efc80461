"""SARAH/SPIDER estimators of ProxGT-SR-O (streaming data) and ProxGT-SR-E (finite sums).

Every ``period`` iterations a fresh estimate (a big batch of B samples, or the full local gradient), otherwise
the SARAH recursion ``v_i = v_i' + (1/b) sum_r [grad F_i(x_i; xi_r) - grad F_i(x_i'; xi_r)]`` on the same
samples at both points (2b IFO calls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from proxgt._validation import check_positive_int
from proxgt.problems.oracle import FULL, MINIBATCH, PAIR, GradientOracle

__all__ = ["SarahOnline", "SarahFinite"]


def _sarah_step(oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor,
                batch: int) -> torch.Tensor:
    g_new, g_old = oracle.grad_pair(X_new, X_old, oracle.sample(batch))
    # one fresh (k, d) result, no temporary beside it: for a wide model each is as large as a node state
    return torch.sub(g_new, g_old).add_(V_old)


@dataclass(frozen=True)
class SarahOnline:
    """SARAH/SPIDER estimator with periodic fresh big batches (ProxGT-SR-O, streaming data)."""

    batch: int
    big_batch: int
    period: int
    name: str = "sr-o"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "SarahOnline")
        check_positive_int(self.big_batch, "big_batch", "SarahOnline")
        check_positive_int(self.period, "period", "SarahOnline")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({MINIBATCH, PAIR})

    @property
    def batch_per_iter(self) -> int:
        return self.batch

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch, "big_batch": self.big_batch, "period": self.period}

    @classmethod
    def from_settings(
        cls,
        *,
        n_nodes: int,
        local_size: int,
        batch: int | None = None,
        big_batch: int | None = None,
        period: int | None = None,
    ) -> SarahOnline:
        """Spec section 5b, for what is left as None: B = min(m, 256), b = max(1, ceil(sqrt(B)) // 2),
        q = ceil(B / b), with m = ``local_size`` (the mean number of samples per node)."""
        m = max(1, int(local_size))
        B = min(m, 256) if big_batch is None else big_batch
        b = max(1, math.ceil(math.sqrt(B)) // 2) if batch is None else batch
        q = math.ceil(B / b) if period is None else period
        return cls(batch=b, big_batch=B, period=q)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> torch.Tensor:
        return oracle.grad(X0, oracle.sample(self.big_batch))

    def update(
        self, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor, t: int
    ) -> torch.Tensor:
        if t % self.period == 0:
            return oracle.grad(X_new, oracle.sample(self.big_batch))
        return _sarah_step(oracle, X_new, X_old, V_old, self.batch)


@dataclass(frozen=True)
class SarahFinite:
    """SARAH estimator with periodic full local gradients (ProxGT-SR-E, finite sums)."""

    batch: int
    period: int
    name: str = "sr-e"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "SarahFinite")
        check_positive_int(self.period, "period", "SarahFinite")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({FULL, PAIR})

    @property
    def batch_per_iter(self) -> int:
        return self.batch

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch, "period": self.period}

    @classmethod
    def from_settings(
        cls,
        *,
        n_nodes: int,
        local_size: int,
        batch: int | None = None,
        big_batch: int | None = None,
        period: int | None = None,
    ) -> SarahFinite:
        """Spec section 5b, for what is left as None: b = max(ceil(sqrt(m / n)), 1), q = ceil(m / b), with
        m = ``local_size`` and n = ``n_nodes`` (``big_batch`` is not used: a refresh is the full local
        gradient)."""
        m = max(1, int(local_size))
        b = max(math.ceil(math.sqrt(m / max(1, n_nodes))), 1) if batch is None else batch
        q = math.ceil(m / b) if period is None else period
        return cls(batch=b, period=q)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> torch.Tensor:
        return oracle.full_grad(X0)

    def update(
        self, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor, t: int
    ) -> torch.Tensor:
        if t % self.period == 0:
            return oracle.full_grad(X_new)
        return _sarah_step(oracle, X_new, X_old, V_old, self.batch)
