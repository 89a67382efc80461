"""Pieces shared by the algorithms: a step of an algorithm is a short composition of these."""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``mix(Z, key=None)``: the executor's mixing; ``key`` names the quantity ("x", "y") for mixers that keep
#: per-quantity state (compressed gossip, :mod:`proxgt.mixing.compressed`)
Mix = Callable[..., torch.Tensor]

__all__ = ["Mix", "track", "prox_step"]


def track(Y: torch.Tensor, V_new: torch.Tensor, V_old: torch.Tensor, mix: Mix) -> torch.Tensor:
    """Gradient tracking: ``Y <- M(Y + V_new - V_old)``. Mixing preserves the node average, so
    mean(Y) = mean(V) holds after every call if it held before. Mixed under the key ``"y"``."""
    return mix(Y + V_new - V_old, key="y")


def prox_step(regularizer, X: torch.Tensor, direction: torch.Tensor, step: float) -> torch.Tensor:
    """Row-wise ``prox_{step h}(X - step * direction)``."""
    return regularizer.prox(torch.add(X, direction, alpha=-step), step)
