"""Pieces shared by the algorithms: a step of an algorithm is a short composition of these."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from proxgt.algorithms.base import Capabilities

if TYPE_CHECKING:
    from proxgt.estimators import Estimator
    from proxgt.prox import Regularizer

#: ``mix(Z, key=None)``: the executor's mixing; ``key`` names the quantity ("x", "y") for mixers that keep
#: per-quantity state (compressed gossip, :mod:`proxgt.mixing.compressed`)
Mix = Callable[..., torch.Tensor]

__all__ = ["Mix", "mix_owned", "track", "prox_step", "estimator_capabilities"]


def mix_owned(mix: Mix, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
    """``mix(Z, key=key)`` for a ``Z`` the caller built for this call and drops after it: a mixer that declares
    ``can_consume`` may then overwrite ``Z`` during its rounds instead of allocating one more (k, d) buffer
    (for a wide model, 16 nodes x 10^6 parameters, that buffer is as large as a node state)."""
    if getattr(mix, "can_consume", False):
        return mix(Z, key=key, consume=True)
    return mix(Z, key=key)


def track(Y: torch.Tensor, V_new: torch.Tensor, V_old: torch.Tensor, mix: Mix) -> torch.Tensor:
    """Gradient tracking: ``Y <- M(Y + V_new - V_old)``. Mixing preserves the node average, so
    mean(Y) = mean(V) holds after every call if it held before. Mixed under the key ``"y"``."""
    return mix_owned(mix, torch.sub(V_new, V_old).add_(Y), key="y")


def prox_step(regularizer: Regularizer, X: torch.Tensor, direction: torch.Tensor, step: float) -> torch.Tensor:
    """Row-wise ``prox_{step h}(X - step * direction)``."""
    return regularizer.prox(torch.add(X, direction, alpha=-step), step)


def estimator_capabilities(estimator: Estimator, *, extra_calls: frozenset[str] = frozenset(),
                           **declared: Any) -> Capabilities:
    """The :class:`Capabilities` of an algorithm whose local gradients all come from ``estimator`` (plus the
    oracle calls ``extra_calls`` it makes itself): its oracle calls, batch, sizes and recursion ratio are the
    estimator's."""
    return Capabilities(oracle_calls=frozenset(estimator.oracle_calls) | extra_calls,
                        batch_per_iter=estimator.batch_per_iter, sizes=dict(estimator.sizes),
                        recursion_ratio=float(estimator.recursion_ratio), **declared)
