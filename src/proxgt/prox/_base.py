"""Shared pieces of the regularizers: the protocol, input checks and a small immutable base class.

Everything here is private; the public names are re-exported from :mod:`proxgt.prox`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import Field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from proxgt._validation import ProxGTValueError, check_real, is_real, param_error

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class Regularizer(Protocol):
    """A convex function h with an exact prox, applied row-wise to a (k, d) tensor of node states.

    Members:
        name: short identifier used by :func:`proxgt.prox.make_regularizer` and in config files.
        value(X): tensor of shape (k,) with h(x_i) for each row x_i (``+inf`` outside a constraint set).
        prox(X, step): row-wise ``argmin_u h(u) + ||u - x_i||^2 / (2 step)``; never modifies ``X``.
        describe(): plain-Python dict of parameters; ``make_regularizer(**reg.describe())`` rebuilds ``reg``
            (except for ``mask`` tensors, which are summarised rather than stored).

    A class registered in :data:`proxgt.registry.REGULARIZERS` (so that ``make_regularizer`` and the ``reg``
    run setting can build it by name) also declares the class attributes ``PARAMS`` (the keyword parameters
    it accepts) and ``REQUIRED`` (those that must be given), and the classmethod
    ``from_settings(strength, **params)`` that builds it (constraints ignore ``strength``).
    """

    @property
    def name(self) -> str: ...

    def value(self, X: Tensor) -> Tensor: ...

    def prox(self, X: Tensor, step: float) -> Tensor: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------------------------------
# Validation helpers (message template of proxgt._validation)
# --------------------------------------------------------------------------------------------------


def check_strength(value: Any, owner: str, name: str = "strength") -> float:
    """A finite float >= 0 (the strength ``lam`` of a penalty)."""
    return check_real(value, name, owner)


def check_radius(value: Any, owner: str, name: str = "radius") -> float:
    """A finite float > 0 (the radius of a ball)."""
    return check_real(value, name, owner, strict=True)


def check_step(step: Any, owner: str) -> float:
    """The prox step: a finite float > 0 (a python or numpy number, not a tensor)."""
    if not is_real(step) or not math.isfinite(float(step)) or float(step) <= 0:
        raise param_error(f"{owner}.prox", "step", "a finite float > 0", step)
    return float(step)


def check_X(X: Any, owner: str, method: str) -> Tensor:
    """``X`` must be a floating (k, d) tensor."""
    if not isinstance(X, Tensor) or X.dim() != 2 or not X.is_floating_point():
        got = f"shape {tuple(X.shape)} dtype {X.dtype}" if isinstance(X, Tensor) else type(X).__name__
        raise ProxGTValueError(
            f"The 'X' parameter of {owner}.{method} must be a floating tensor of shape (k, d). "
            f"Got {got} instead."
        )
    return X


def check_mask(mask: Any, owner: str) -> Tensor | None:
    """``None`` or a 1-D bool tensor (lists and numpy arrays of bools are converted); returns a CPU copy."""
    if mask is None:
        return None
    try:
        t = torch.as_tensor(mask)
    except (TypeError, ValueError, RuntimeError):
        got = type(mask).__name__
        raise param_error(owner, "mask", "None or a 1-D bool tensor", got) from None
    if t.dtype != torch.bool or t.dim() != 1:
        raise param_error(owner, "mask", "None or a 1-D bool tensor", f"dtype {t.dtype}, shape {tuple(t.shape)}")
    return t.detach().to("cpu").clone()


def check_length(t: Tensor, d: int, owner: str, name: str) -> None:
    if t.shape[0] != d:
        raise ProxGTValueError(
            f"The '{name}' parameter of {owner} has {t.shape[0]} entries but X has d={d} columns."
        )


def work_rtol(dtype: torch.dtype, d: int) -> float:
    """Relative tolerance used by indicator ``value`` checks.

    1e-6, widened for low-precision dtypes to a few ulps times log2(d) (summation error of a reduction),
    so that the output of a projection always evaluates finite.
    """
    eps = torch.finfo(dtype).eps
    return max(1e-6, 8.0 * eps * max(1.0, math.ceil(math.log2(d + 1))))


# --------------------------------------------------------------------------------------------------
# Base class: equality / hashing that understands tensor fields, per-device cache
# --------------------------------------------------------------------------------------------------


class RegularizerBase:
    """Mixin for the frozen dataclasses below.

    * ``==`` compares the type and every compared field, tensors with :func:`torch.equal`;
    * ``hash`` uses the type and the non-tensor fields;
    * ``_cached(key, make)`` memoises device/dtype copies of tensor parameters (the only mutable state, a
      private dict that is not part of equality, hashing or pickling).
    """

    name: ClassVar[str] = ""
    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        for f in fields(self):
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, Tensor) or isinstance(b, Tensor):
                if not (
                    isinstance(a, Tensor)
                    and isinstance(b, Tensor)
                    and a.shape == b.shape
                    and a.dtype == b.dtype
                    and torch.equal(a, b)
                ):
                    return False
            elif a != b:
                return False
        return True

    def __hash__(self) -> int:
        items = tuple(
            getattr(self, f.name)
            for f in fields(self)
            if f.compare and not isinstance(getattr(self, f.name), Tensor)
        )
        return hash((type(self).__name__, items))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, val in state.items():
            object.__setattr__(self, key, val)
        object.__setattr__(self, "_cache", {})

    def _cached(self, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        cache: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_cache", {})
        hit: _T | None = cache.get(key)
        if hit is None:
            hit = make()
            cache[key] = hit
        return hit

    def _mask_on(self, mask: Tensor | None, X: Tensor) -> Tensor | None:
        """``mask`` moved to X's device (cached), after checking its length against d."""
        if mask is None:
            return None
        check_length(mask, X.shape[1], type(self).__name__, "mask")
        return self._cached(("mask", X.device), lambda: mask.to(X.device))


def mask_summary(mask: Tensor | None) -> dict[str, Any]:
    """How ``describe`` reports a mask: its size and how many coordinates it regularizes (not the mask)."""
    if mask is None:
        return {}
    return {"mask": {"d": int(mask.numel()), "regularized": int(mask.sum().item())}}
