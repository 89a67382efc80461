"""Local gradient estimators v_i of ProxGT (spec section 5), written once for node-stacked tensors.

Each estimator is a small immutable object with two pure functions over the oracle of the local nodes:

    V0    = init(oracle, X0)
    V_t+1 = update(oracle, X_t+1, X_t, V_t, t+1)

* :class:`Minibatch` (ProxGT-SA): ``v_i = (1/b) sum_r grad F_i(x_i; xi_r)`` on fresh samples.
* :class:`SarahOnline` (ProxGT-SR-O): every ``period`` iterations a fresh big batch of size B, otherwise the
  SARAH recursion ``v_i = v_i' + (1/b) sum_r [grad F_i(x_i; xi_r) - grad F_i(x_i'; xi_r)]`` (same samples).
* :class:`SarahFinite` (ProxGT-SR-E): every ``period`` iterations the full local gradient, otherwise the
  same SARAH recursion.

The oracle counts component-gradient evaluations: b per minibatch, 2b per SARAH difference, B or m per
refresh. Defaults follow spec section 5b and are computed from the number of nodes n and local size m.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import torch

from proxgt._validation import check_choice, check_positive_int
from proxgt.problems.oracle import GradientOracle

__all__ = [
    "Estimator",
    "Minibatch",
    "SarahOnline",
    "SarahFinite",
    "ESTIMATOR_NAMES",
    "make_estimator",
]

ESTIMATOR_NAMES = ("sa", "sr-o", "sr-e")


@runtime_checkable
class Estimator(Protocol):
    name: str

    def init(self, oracle: GradientOracle, X0: torch.Tensor) -> torch.Tensor: ...

    def update(
        self, oracle: GradientOracle, X_new: torch.Tensor, X_old: torch.Tensor, V_old: torch.Tensor, t: int
    ) -> torch.Tensor: ...

    def describe(self) -> dict: ...


def _sarah_step(oracle: GradientOracle, X_new, X_old, V_old, batch: int) -> torch.Tensor:
    g_new, g_old = oracle.grad_pair(X_new, X_old, oracle.sample(batch))
    return V_old + g_new - g_old


@dataclass(frozen=True)
class Minibatch:
    """Plain minibatch estimator (ProxGT-SA). ``batch``: samples per node per iteration."""

    batch: int = 32
    name: str = "sa"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "Minibatch")

    def init(self, oracle, X0):
        return oracle.grad(X0, oracle.sample(self.batch))

    def update(self, oracle, X_new, X_old, V_old, t):
        return oracle.grad(X_new, oracle.sample(self.batch))

    def describe(self) -> dict:
        return asdict(self)


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

    def init(self, oracle, X0):
        return oracle.grad(X0, oracle.sample(self.big_batch))

    def update(self, oracle, X_new, X_old, V_old, t):
        if t % self.period == 0:
            return oracle.grad(X_new, oracle.sample(self.big_batch))
        return _sarah_step(oracle, X_new, X_old, V_old, self.batch)

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SarahFinite:
    """SARAH estimator with periodic full local gradients (ProxGT-SR-E, finite sums)."""

    batch: int
    period: int
    name: str = "sr-e"

    def __post_init__(self) -> None:
        check_positive_int(self.batch, "batch", "SarahFinite")
        check_positive_int(self.period, "period", "SarahFinite")

    def init(self, oracle, X0):
        return oracle.full_grad(X0)

    def update(self, oracle, X_new, X_old, V_old, t):
        if t % self.period == 0:
            return oracle.full_grad(X_new)
        return _sarah_step(oracle, X_new, X_old, V_old, self.batch)

    def describe(self) -> dict:
        return asdict(self)


def make_estimator(
    name: str,
    *,
    n_nodes: int,
    local_size: int,
    batch: int | None = None,
    big_batch: int | None = None,
    period: int | None = None,
) -> Estimator:
    """Build an estimator with the practical defaults of spec section 5b for anything left as None.

    ``local_size`` is m, the (mean) number of samples per node.

    * SA:   b = 32.
    * SR-O: B = min(m, 256), b = max(1, ceil(sqrt(B)) // 2), q = ceil(B / b).
    * SR-E: b = max(ceil(sqrt(m / n)), 1), q = ceil(m / b).
    """
    check_choice(name, "estimator", ESTIMATOR_NAMES)
    m = max(1, int(local_size))
    if name == "sa":
        return Minibatch(batch=32 if batch is None else batch)
    if name == "sr-o":
        B = min(m, 256) if big_batch is None else big_batch
        b = max(1, math.ceil(math.sqrt(B)) // 2) if batch is None else batch
        q = math.ceil(B / b) if period is None else period
        return SarahOnline(batch=b, big_batch=B, period=q)
    b = max(math.ceil(math.sqrt(m / max(1, n_nodes))), 1) if batch is None else batch
    q = math.ceil(m / b) if period is None else period
    return SarahFinite(batch=b, period=q)
