"""Walking an algorithm's state: a NamedTuple whose fields are tensors, numbers, or NamedTuples of the same
(an estimator's state inside an algorithm's), so executors copy, move and mask it without knowing its type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["map_state"]


def map_state(fn: Callable[..., torch.Tensor], state: Any, *others: Any) -> Any:
    """``state`` with every tensor leaf replaced by ``fn(leaf, *the same leaf of others)``, recursing into
    (named) tuples; every other leaf (ints, floats) is kept from ``state``.

    >>> from typing import NamedTuple
    >>> class S(NamedTuple):
    ...     x: torch.Tensor
    ...     t: int
    >>> map_state(lambda a, b: a + b, S(torch.ones(2), 3), S(torch.ones(2), 5))
    S(x=tensor([2., 2.]), t=3)
    """
    if isinstance(state, torch.Tensor):
        return fn(state, *others)
    if isinstance(state, tuple):
        parts = [map_state(fn, s, *(o[i] for o in others)) for i, s in enumerate(state)]
        return tuple(parts) if type(state) is tuple else type(state)(*parts)
    return state
