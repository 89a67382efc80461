"""Pieces shared by the algorithms: a step of an algorithm is a short composition of these."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from proxgt.algorithms.base import Capabilities
from proxgt.mixing.mixer import Mixer
from proxgt.prox._base import RegularizerBase

if TYPE_CHECKING:
    from proxgt.estimators import Estimator
    from proxgt.prox import Regularizer

#: ``mix(Z, key=None)``: the executor's mixing; ``key`` names the quantity ("x", "y") for mixers that keep
#: per-quantity state (compressed gossip, :mod:`proxgt.mixing.compressed`)
Mix = Callable[..., torch.Tensor]

__all__ = ["Mix", "mix_owned", "track", "prox_step", "prox_mix", "estimator_capabilities"]


def mix_owned(mix: Mix, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
    """``mix(Z, key=key)`` for a ``Z`` the caller built for this call and drops after it: a mixer that declares
    ``can_consume`` may then overwrite ``Z`` during its rounds instead of allocating one more (k, d) buffer
    (for a wide model, 16 nodes x 10^6 parameters, that buffer is as large as a node state)."""
    if getattr(mix, "can_consume", False):
        return mix(Z, key=key, consume=True)
    return mix(Z, key=key)


def track(Y: torch.Tensor, V_new: torch.Tensor, V_old: torch.Tensor, mix: Mix) -> torch.Tensor:
    """Gradient tracking: ``Y <- M(Y + V_new - V_old)``. Mixing preserves the node average, so
    mean(Y) = mean(V) holds after every call if it held before. Mixed under the key ``"y"``; by a
    :class:`~proxgt.mixing.Mixer` block by block of columns (:meth:`~proxgt.mixing.Mixer.mix_columns`)."""
    if isinstance(mix, Mixer):
        return mix.mix_columns(lambda c: torch.sub(V_new[:, c], V_old[:, c]).add_(Y[:, c]), like=Y, key="y")
    return mix_owned(mix, torch.sub(V_new, V_old).add_(Y), key="y")


def prox_step(regularizer: Regularizer, X: torch.Tensor, direction: torch.Tensor, step: float) -> torch.Tensor:
    """Row-wise ``prox_{step h}(X - step * direction)``."""
    return regularizer.prox(torch.add(X, direction, alpha=-step), step)


def prox_mix(regularizer: Regularizer, X: torch.Tensor, direction: torch.Tensor, step: float, mix: Mix,
             key: str | None = None) -> torch.Tensor:
    """``mix(prox_{step h}(X - step * direction), key=key)``; by a :class:`~proxgt.mixing.Mixer` block by block
    of columns (:meth:`~proxgt.mixing.Mixer.mix_columns`) when h is ``separable`` over coordinates (each block
    then goes through the step, the prox and the mixing while it is in cache: the same numbers, one pass over
    memory instead of four for the Fashion-MNIST MLP's l1 step)."""
    if isinstance(mix, Mixer) and isinstance(regularizer, RegularizerBase) and regularizer.separable:
        return mix.mix_columns(
            lambda c: regularizer.columns(slice(*c.indices(X.shape[1])[:2])).prox(
                torch.add(X[:, c], direction[:, c], alpha=-step), step), like=X, key=key)
    return mix_owned(mix, prox_step(regularizer, X, direction, step), key=key)


def estimator_capabilities(estimator: Estimator, *, extra_calls: frozenset[str] = frozenset(),
                           **declared: Any) -> Capabilities:
    """The :class:`Capabilities` of an algorithm whose local gradients all come from ``estimator`` (plus the
    oracle calls ``extra_calls`` it makes itself): its oracle calls, batch, sizes and recursion ratio are the
    estimator's."""
    return Capabilities(oracle_calls=frozenset(estimator.oracle_calls) | extra_calls,
                        batch_per_iter=estimator.batch_per_iter, sizes=dict(estimator.sizes),
                        recursion_ratio=float(estimator.recursion_ratio), **declared)
