"""Indicator regularizers (h = 0 on a closed convex set C, +inf outside); their prox is the projection onto C.

``value`` accepts points within a small relative tolerance of C (see ``_base.work_rtol``: 1e-6, more for
low-precision dtypes) so that the output of ``prox`` always evaluates to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from proxgt._validation import ProxGTValueError, is_real, param_error

from ._base import RegularizerBase, check_length, check_radius, check_step, check_X, work_rtol

__all__ = ["NonNegative", "Box", "L2Ball", "L1Ball", "Support"]


def _indicator(ok: Tensor, X: Tensor) -> Tensor:
    return torch.where(ok, X.new_zeros(()), X.new_full((), math.inf))


@dataclass(frozen=True, eq=False)
class NonNegative(RegularizerBase):
    """h = indicator of the nonnegative orthant {x : x >= 0}; the prox is ``max(x, 0)``.

    ``prox_{t h}(x) = argmin_{u >= 0} ||u - x||^2 / (2 t) = max(x, 0)`` (for every step t).

    Example:
        >>> import torch
        >>> NonNegative().prox(torch.tensor([[1.5, -2.0]]), step=1.0).tolist()
        [[1.5, 0.0]]
        >>> NonNegative().value(torch.tensor([[1.0, 0.0], [1.0, -1.0]])).tolist()
        [0.0, inf]
    """

    name: ClassVar[str] = "nonneg"
    PARAMS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> NonNegative:
        """``NonNegative()``; a constraint has no strength, so ``strength`` is ignored."""
        return cls()

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "NonNegative", "value")
        if X.shape[1] == 0:
            return X.new_zeros(X.shape[0])
        slack = work_rtol(X.dtype, X.shape[1]) * X.abs().amax(dim=1).clamp_min(1.0)
        return _indicator(X.amin(dim=1) >= -slack, X)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "NonNegative", "prox")
        check_step(step, "NonNegative")
        return X.clamp_min(0.0)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def _check_bound(v: Any, name: str) -> float | Tensor:
    if is_real(v):
        if math.isnan(float(v)):
            raise param_error("Box", name, "a float or a 1-D float tensor without NaN", v)
        return float(v)
    try:
        t = torch.as_tensor(v, dtype=torch.float64).detach().cpu().clone()
    except (TypeError, ValueError, RuntimeError):
        raise param_error("Box", name, "a float or a 1-D float tensor", type(v).__name__) from None
    if t.dim() == 0:
        return _check_bound(float(t), name)
    if t.dim() != 1 or bool(torch.isnan(t).any()):
        raise param_error("Box", name, "a float or a 1-D float tensor without NaN", f"shape {tuple(t.shape)}")
    return t


@dataclass(frozen=True, eq=False)
class Box(RegularizerBase):
    """h = indicator of the box {x : lower <= x <= upper}; the prox is clipping.

    ``prox_{t h}(x) = argmin_{lower <= u <= upper} ||u - x||^2 / (2 t) = min(max(x, lower), upper)``.

    Args:
        lower: a float or a (d,) tensor/sequence (entries may be -inf).
        upper: a float or a (d,) tensor/sequence (entries may be +inf); ``lower <= upper`` entrywise.

    Example:
        >>> import torch
        >>> Box(-1.0, 1.0).prox(torch.tensor([[-3.0, 0.5, 2.0]]), step=1.0).tolist()
        [[-1.0, 0.5, 1.0]]
    """

    lower: float | Tensor
    upper: float | Tensor
    name: ClassVar[str] = "box"
    PARAMS: ClassVar[tuple[str, ...]] = ("lower", "upper")
    REQUIRED: ClassVar[tuple[str, ...]] = ("lower", "upper")

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> Box:
        """``Box(lower, upper)``; ``strength`` is ignored."""
        return cls(params["lower"], params["upper"])

    def __post_init__(self) -> None:
        lo, up = _check_bound(self.lower, "lower"), _check_bound(self.upper, "upper")
        if isinstance(lo, Tensor) and isinstance(up, Tensor) and lo.numel() != up.numel():
            raise ProxGTValueError(
                f"The 'lower' and 'upper' parameters of Box must have the same length. "
                f"Got {lo.numel()} and {up.numel()} instead."
            )
        lo_t, up_t = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(up, dtype=torch.float64)
        if bool((lo_t > up_t).any()) or bool((lo_t == math.inf).any()) or bool((up_t == -math.inf).any()):

            def show(v: float | Tensor) -> Any:
                return v if isinstance(v, float) else (v.tolist() if v.numel() <= 8 else "a tensor")

            raise ProxGTValueError(
                "The 'lower' parameter of Box must be <= 'upper' entrywise (and the box non-empty). "
                f"Got lower={show(lo)!r}, upper={show(up)!r} instead."
            )
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", up)

    def _bounds(self, X: Tensor) -> tuple[Any, Any]:
        d = X.shape[1]
        for b, nm in ((self.lower, "lower"), (self.upper, "upper")):
            if isinstance(b, Tensor):
                check_length(b, d, "Box", nm)
        if not isinstance(self.lower, Tensor) and not isinstance(self.upper, Tensor):
            return self.lower, self.upper

        def make() -> tuple[Tensor, Tensor]:
            lo = torch.as_tensor(self.lower, dtype=torch.float64).expand(d)
            up = torch.as_tensor(self.upper, dtype=torch.float64).expand(d)
            return lo.to(X.device, X.dtype).contiguous(), up.to(X.device, X.dtype).contiguous()

        return self._cached(("bounds", d, X.device, X.dtype), make)

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "Box", "value")
        lo, up = self._bounds(X)
        rtol = work_rtol(X.dtype, X.shape[1])
        if isinstance(lo, Tensor):
            lo_s = lo - rtol * lo.abs().clamp_min(1.0)
            up_s = up + rtol * up.abs().clamp_min(1.0)
        else:
            lo_s = lo - rtol * max(1.0, abs(lo))
            up_s = up + rtol * max(1.0, abs(up))
        return _indicator(((X >= lo_s) & (X <= up_s)).all(dim=1), X)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "Box", "prox")
        check_step(step, "Box")
        lo, up = self._bounds(X)
        return torch.clamp(X, min=lo, max=up)

    def describe(self) -> dict[str, Any]:
        def plain(v: float | Tensor) -> Any:
            return v.tolist() if isinstance(v, Tensor) else v

        return {"name": self.name, "lower": plain(self.lower), "upper": plain(self.upper)}


@dataclass(frozen=True, eq=False)
class L2Ball(RegularizerBase):
    """h = indicator of the Euclidean ball {x : ||x||_2 <= radius}; the prox is radial scaling.

    ``prox_{t h}(x) = argmin_{||u||_2 <= r} ||u - x||^2 / (2 t) = x * min(1, r / ||x||_2)``.

    Example:
        >>> import torch
        >>> L2Ball(1.0).prox(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), step=1.0).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.30000001192092896, 0.4000000059604645]]
    """

    radius: float
    name: ClassVar[str] = "l2_ball"
    PARAMS: ClassVar[tuple[str, ...]] = ("radius",)
    REQUIRED: ClassVar[tuple[str, ...]] = ("radius",)

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> L2Ball:
        """``L2Ball(radius)``; ``strength`` is ignored."""
        return cls(params["radius"])

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", check_radius(self.radius, "L2Ball"))

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "L2Ball", "value")
        bound = self.radius * (1.0 + work_rtol(X.dtype, X.shape[1]))
        return _indicator(torch.linalg.vector_norm(X, dim=1) <= bound, X)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "L2Ball", "prox")
        check_step(step, "L2Ball")
        norm = torch.linalg.vector_norm(X, dim=1, keepdim=True)
        out: Tensor = X * (self.radius / norm.clamp_min(self.radius))  # float / Tensor is untyped in torch
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "radius": self.radius}


@dataclass(frozen=True, eq=False)
class L1Ball(RegularizerBase):
    """h = indicator of the l1 ball {x : ||x||_1 <= radius}; the prox is the exact Euclidean projection.

    ``prox_{t h}(x) = argmin_{||u||_1 <= r} ||u - x||^2 / (2 t)``. Rows inside the ball are returned as they
    are; for a row outside, the projection is the soft-thresholding ``sign(x) max(|x| - theta, 0)`` whose
    theta > 0 makes its l1 norm equal r. theta is found for all rows at once by sorting |x| in decreasing
    order (u_1 >= u_2 >= ...): with rho = max{j : u_j > (sum_{i<=j} u_i - r) / j},
    theta = (sum_{i<=rho} u_i - r) / rho
    (Duchi, Shalev-Shwartz, Singer & Chandra, ICML 2008). Cost O(k d log d). The cumulative sums and the
    thresholding run in float64 (except on MPS) so that float32 inputs land on the ball accurately.

    Example:
        >>> import torch
        >>> L1Ball(1.0).prox(torch.tensor([[2.0, 0.5, -0.25], [0.25, 0.5, 0.0]]), step=1.0).tolist()
        [[1.0, 0.0, 0.0], [0.25, 0.5, 0.0]]
    """

    radius: float
    name: ClassVar[str] = "l1_ball"
    PARAMS: ClassVar[tuple[str, ...]] = ("radius",)
    REQUIRED: ClassVar[tuple[str, ...]] = ("radius",)

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> L1Ball:
        """``L1Ball(radius)``; ``strength`` is ignored."""
        return cls(params["radius"])

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", check_radius(self.radius, "L1Ball"))

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "L1Ball", "value")
        bound = self.radius * (1.0 + work_rtol(X.dtype, X.shape[1]))
        return _indicator(X.abs().sum(dim=1) <= bound, X)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "L1Ball", "prox")
        check_step(step, "L1Ball")
        k, d = X.shape
        if k == 0 or d == 0:
            return X.clone()
        r = self.radius
        A = X.abs()
        inside = A.sum(dim=1, keepdim=True) <= r
        # common case: nothing to project, skip the sort (on the CPU only: on a GPU, reading the answer back
        # would wait for all queued work, every iteration)
        if X.device.type == "cpu" and bool(inside.all()):
            return X.clone()
        wd = X.dtype if X.device.type == "mps" else torch.float64
        Xw = X.to(wd)
        U = torch.sort(A, dim=1, descending=True).values.to(wd)
        css = U.cumsum(dim=1)
        j = torch.arange(1, d + 1, dtype=wd, device=X.device)
        rho = torch.where(U * j > css - r, j, torch.zeros((), dtype=wd, device=X.device)).amax(dim=1)
        rho = rho.clamp_min(1.0)  # j = 1 always qualifies since r > 0; guard against NaN rows
        css_rho = css.gather(1, (rho.long() - 1).unsqueeze(1))
        theta = ((css_rho - r) / rho.unsqueeze(1)).clamp_min(0.0)
        out = Xw - torch.clamp(Xw, min=-theta, max=theta)
        return torch.where(inside, Xw, out).to(X.dtype)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "radius": self.radius}


@dataclass(frozen=True, eq=False)
class Support(RegularizerBase):
    """h = indicator of the vectors that vanish outside a fixed support ``{x : x_i = 0 where support_i is False}``;
    the prox keeps the support and zeroes the rest.

    This is the second phase of "train sparse, then fine-tune": l1 (with ``order = "mix-prox"``) finds a sparse
    pattern but shrinks every weight it keeps; training on afterwards with h = indicator of that pattern recovers
    the shrinkage without giving up one zero. From the settings, the support is the non-zero pattern of an .npz
    file's ``x`` (``support_file``, else ``init``; the union over rows for one row per node).

    Example:
        >>> import torch
        >>> Support(torch.tensor([True, False])).prox(torch.tensor([[1.5, -2.0]]), step=1.0).tolist()
        [[1.5, 0.0]]
    """

    support: Tensor
    name: ClassVar[str] = "support"
    PARAMS: ClassVar[tuple[str, ...]] = ("support",)
    REQUIRED: ClassVar[tuple[str, ...]] = ("support",)

    def __post_init__(self) -> None:
        sup = torch.as_tensor(self.support)
        if sup.ndim != 1 or sup.dtype != torch.bool:
            raise param_error("Support", "support", "a 1-D bool tensor", self.support)
        if not bool(sup.any()):  # every coordinate pinned at zero: nothing would be trained
            raise param_error("Support", "support", "a support with at least one coordinate (a non-zero of x)",
                              "an empty support")
        object.__setattr__(self, "support", sup)

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> Support:
        """``Support(support)``; a constraint has no strength, so ``strength`` is ignored."""
        return cls(params["support"])

    def _mask(self, X: Tensor) -> Tensor:
        check_length(self.support, X.shape[1], "Support", "support")
        return self.support.to(X.device)

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "Support", "value")
        outside = torch.where(self._mask(X), X.new_zeros(()), X).abs()
        return _indicator(outside.amax(dim=1) == 0 if X.shape[1] else X.new_ones(X.shape[0], dtype=torch.bool), X)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "Support", "prox")
        check_step(step, "Support")
        return torch.where(self._mask(X), X, X.new_zeros(()))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "support_size": int(self.support.sum()), "dim": int(self.support.shape[0])}
