"""The plain minibatch estimator of ProxGT-SA: ``v_i = (1/b) sum_r grad F_i(x_i; xi_r)`` on fresh samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from proxgt._validation import check_positive_int
from proxgt.estimators.base import NoState
from proxgt.problems.oracle import MINIBATCH, GradientOracle

__all__ = ["Minibatch", "SA_BATCH"]

#: ProxGT-SA's default minibatch (spec section 5b).
SA_BATCH = 32


@dataclass(frozen=True)
class Minibatch:
    """Plain minibatch estimator (ProxGT-SA). ``batch``: samples per node per iteration (b IFO calls)."""

    batch: int = SA_BATCH
    name: str = "sa"
    recursion_ratio: ClassVar[float] = 0.0

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "Minibatch")

    @property
    def oracle_calls(self) -> frozenset[str]:
        return frozenset({MINIBATCH})

    @property
    def batch_per_iter(self) -> int:
        return self.batch

    @property
    def sizes(self) -> dict[str, int]:
        return {"batch": self.batch}

    @classmethod
    def from_settings(
        cls,
        *,
        n_nodes: int,
        local_size: int,
        batch: int | None = None,
        big_batch: int | None = None,
        period: int | None = None,
        ratio: float | None = None,
    ) -> Minibatch:
        """Spec section 5b: b = 32 unless ``batch`` is given (the other settings are not used)."""
        return cls(batch=SA_BATCH if batch is None else batch)

    def samples_per_iter(self, local_size: float) -> float:
        return float(self.batch)

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> tuple[torch.Tensor, NoState]:
        return oracle.grad(X0, oracle.sample(self.batch)), NoState()

    def update(self, state: NoState, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor,
               V_old: torch.Tensor, t: int) -> tuple[torch.Tensor, NoState]:
        return oracle.grad(X_new, oracle.sample(self.batch)), state
