"""Penalty regularizers (finite everywhere): none, l1, squared l2, elastic net, group lasso."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from proxgt._validation import ProxGTValueError, is_real, param_error

from ._base import (
    RegularizerBase,
    check_length,
    check_mask,
    check_step,
    check_strength,
    check_X,
    mask_summary,
)

__all__ = ["NoReg", "L1", "L2Squared", "ElasticNet", "GroupLasso"]


#: The most runs of equal mask values for which :meth:`L1.prox` clamps run by run with scalar bounds.
_MAX_MASK_RUNS = 64


def _mask_runs(mask: Tensor) -> list[tuple[int, int, bool]]:
    """(start, stop, value) of each maximal run of equal values of a 1-D bool CPU ``mask``, in order."""
    if mask.numel() == 0:
        return []
    m = mask
    cuts = [0, *(torch.nonzero(m[1:] != m[:-1]).flatten() + 1).tolist(), int(m.numel())]
    return [(a, b, bool(m[a])) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _soft(X: Tensor, thr: float) -> Tensor:
    """Soft-thresholding ``sign(x) max(|x| - thr, 0)``, as ``x - clip(x, -thr, thr)`` (no ``-0.0``)."""
    return X - X.clamp(-thr, thr)


@dataclass(frozen=True, eq=False)
class NoReg(RegularizerBase):
    """h = 0; the prox is the identity (a copy of the input).

    ``prox_{t h}(x) = argmin_u ||u - x||^2 / (2 t) = x``.

    Example:
        >>> import torch
        >>> NoReg().prox(torch.tensor([[1.0, -2.0]]), step=0.5).tolist()
        [[1.0, -2.0]]
    """

    name: ClassVar[str] = "none"
    PARAMS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> NoReg:
        """``NoReg()``; ``strength`` is ignored."""
        return cls()

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "NoReg", "value")
        return X.new_zeros(X.shape[0])

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "NoReg", "prox")
        check_step(step, "NoReg")
        return X.clone()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True, eq=False)
class L1(RegularizerBase):
    """h(x) = lam * sum_{j in mask} |x_j|  (lasso penalty); the prox is soft-thresholding.

    ``prox_{t h}(x)_j = argmin_u lam |u| + (u - x_j)^2 / (2 t) = sign(x_j) max(|x_j| - t lam, 0)`` for masked
    coordinates, ``x_j`` for the others.

    Args:
        lam: strength, >= 0.
        mask: optional bool tensor of shape (d,); True marks a regularized coordinate. Unmasked coordinates
            (e.g. neural-network biases) pass through the prox unchanged and do not count in ``value``.

    Example:
        >>> import torch
        >>> L1(0.5).prox(torch.tensor([[2.0, -0.25, -1.0]]), step=1.0).tolist()
        [[1.5, 0.0, -0.5]]
        >>> L1(0.5, mask=torch.tensor([True, False, True])).value(torch.tensor([[2.0, -3.0, -1.0]])).tolist()
        [1.5]
    """

    lam: float
    mask: Tensor | None = None
    name: ClassVar[str] = "l1"
    PARAMS: ClassVar[tuple[str, ...]] = ("mask",)
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> L1:
        return cls(strength, mask=params.get("mask"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_strength(self.lam, "L1"))
        object.__setattr__(self, "mask", check_mask(self.mask, "L1"))

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "L1", "value")
        A = X.abs()
        m = self._mask_on(self.mask, X)
        if m is not None:
            A = torch.where(m, A, A.new_zeros(()))
        return self.lam * A.sum(dim=1)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "L1", "prox")
        t = check_step(step, "L1")
        m = self._mask_on(self.mask, X)
        if m is None:
            return _soft(X, t * self.lam)
        mask = self.mask
        assert mask is not None  # m is its copy on X's device; the runs are read off the CPU original
        runs = self._cached(("runs",), lambda: _mask_runs(mask))
        if len(runs) > _MAX_MASK_RUNS:
            # a per-coordinate threshold (0 on unmasked coordinates) keeps it at two passes over X instead of
            # soft-thresholding everything and then selecting with torch.where
            thr = m.to(X.dtype) * (t * self.lam)
            return X - torch.clamp(X, min=-thr, max=thr)
        # a mask made of a few runs (a network's weight matrices between its biases): the clamp with a scalar
        # bound per run is ~2x faster than with a (d,) bound tensor, and the difference is written over the
        # clamped values (one (k, d) tensor, not two); the same numbers as the per-coordinate threshold
        clamped = torch.empty_like(X)
        for a, b, masked in runs:
            if masked:
                torch.clamp(X[:, a:b], min=-t * self.lam, max=t * self.lam, out=clamped[:, a:b])
            else:
                clamped[:, a:b].zero_()
        return torch.sub(X, clamped, out=clamped)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.lam, **mask_summary(self.mask)}


@dataclass(frozen=True, eq=False)
class L2Squared(RegularizerBase):
    """h(x) = (lam / 2) * sum_{j in mask} x_j^2  (ridge / weight decay); the prox is a shrinkage.

    ``prox_{t h}(x)_j = argmin_u (lam/2) u^2 + (u - x_j)^2 / (2 t) = x_j / (1 + t lam)`` for masked
    coordinates, ``x_j`` for the others.

    Args:
        lam: strength, >= 0.
        mask: optional bool tensor of shape (d,); True marks a regularized coordinate.

    Example:
        >>> import torch
        >>> L2Squared(1.0).prox(torch.tensor([[2.0, -4.0]]), step=1.0).tolist()
        [[1.0, -2.0]]
    """

    lam: float
    mask: Tensor | None = None
    name: ClassVar[str] = "l2sq"
    PARAMS: ClassVar[tuple[str, ...]] = ("mask",)
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> L2Squared:
        return cls(strength, mask=params.get("mask"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_strength(self.lam, "L2Squared"))
        object.__setattr__(self, "mask", check_mask(self.mask, "L2Squared"))

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "L2Squared", "value")
        S = X * X
        m = self._mask_on(self.mask, X)
        if m is not None:
            S = torch.where(m, S, S.new_zeros(()))
        return (0.5 * self.lam) * S.sum(dim=1)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "L2Squared", "prox")
        t = check_step(step, "L2Squared")
        out = X / (1.0 + t * self.lam)
        m = self._mask_on(self.mask, X)
        return out if m is None else torch.where(m, out, X)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.lam, **mask_summary(self.mask)}


@dataclass(frozen=True, eq=False)
class ElasticNet(RegularizerBase):
    """h(x) = lam * sum_{j in mask} (l1_ratio |x_j| + (1 - l1_ratio)/2 x_j^2)  (scikit-learn's form).

    With a = lam l1_ratio and b = lam (1 - l1_ratio), for masked coordinates
    ``prox_{t h}(x)_j = argmin_u a |u| + (b/2) u^2 + (u - x_j)^2 / (2 t)
    = sign(x_j) max(|x_j| - t a, 0) / (1 + t b)``; unmasked coordinates pass through.

    Args:
        lam: strength, >= 0.
        l1_ratio: share of the l1 part, in [0, 1] (1 gives :class:`L1`, 0 gives :class:`L2Squared`).
        mask: optional bool tensor of shape (d,); True marks a regularized coordinate.

    Example:
        >>> import torch
        >>> ElasticNet(1.0, l1_ratio=0.5).prox(torch.tensor([[3.5, 0.25]]), step=1.0).tolist()
        [[2.0, 0.0]]
    """

    lam: float
    l1_ratio: float = 0.5
    mask: Tensor | None = None
    name: ClassVar[str] = "elastic_net"
    PARAMS: ClassVar[tuple[str, ...]] = ("l1_ratio", "mask")
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> ElasticNet:
        return cls(strength, l1_ratio=params.get("l1_ratio", 0.5), mask=params.get("mask"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_strength(self.lam, "ElasticNet"))
        r = self.l1_ratio
        if not is_real(r) or not 0.0 <= float(r) <= 1.0:
            raise param_error("ElasticNet", "l1_ratio", "a float in [0, 1]", r)
        object.__setattr__(self, "l1_ratio", float(r))
        object.__setattr__(self, "mask", check_mask(self.mask, "ElasticNet"))

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "ElasticNet", "value")
        a, b = self.lam * self.l1_ratio, self.lam * (1.0 - self.l1_ratio)
        H = a * X.abs() + (0.5 * b) * (X * X)
        m = self._mask_on(self.mask, X)
        if m is not None:
            H = torch.where(m, H, H.new_zeros(()))
        return H.sum(dim=1)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "ElasticNet", "prox")
        t = check_step(step, "ElasticNet")
        a, b = self.lam * self.l1_ratio, self.lam * (1.0 - self.l1_ratio)
        out = _soft(X, t * a) / (1.0 + t * b)
        m = self._mask_on(self.mask, X)
        return out if m is None else torch.where(m, out, X)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.lam, "l1_ratio": self.l1_ratio, **mask_summary(self.mask)}


# --------------------------------------------------------------------------------------------------
# Group lasso
# --------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _parse_groups(groups: Any) -> tuple[Tensor, bool]:
    """Normalise ``groups`` to an int64 id vector with ids 0..G-1 (and -1); say if it came as index lists."""
    bad = param_error(
        "GroupLasso",
        "groups",
        "an int sequence of group ids (-1 = unregularized) or a list of disjoint index lists",
        groups if isinstance(groups, list | tuple) and len(groups) <= 8 else type(groups).__name__,
    )
    if isinstance(groups, Tensor | np.ndarray):
        t = torch.as_tensor(groups).detach().cpu()
        if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.numel() == 0:
            raise bad
        as_lists = False
    elif isinstance(groups, Sequence) and not isinstance(groups, str) and len(groups) > 0:
        if all(_is_int(g) for g in groups):
            t = torch.tensor([int(g) for g in groups], dtype=torch.int64)
            as_lists = False
        elif all(
            isinstance(g, Sequence | np.ndarray | Tensor) and not isinstance(g, str) and len(g) > 0
            for g in groups
        ):
            members = []
            for g in groups:
                gl = g.tolist() if isinstance(g, np.ndarray | Tensor) else list(g)
                if not all(_is_int(i) and i >= 0 for i in gl):
                    raise bad
                members.append(torch.tensor([int(i) for i in gl], dtype=torch.int64))
            flat = torch.cat(members)
            if torch.unique(flat).numel() != flat.numel():
                raise ProxGTValueError(
                    "The 'groups' parameter of GroupLasso must list disjoint groups. "
                    "Got a coordinate in more than one group instead."
                )
            t = torch.full((int(flat.max()) + 1,), -1, dtype=torch.int64)
            for g, idx in enumerate(members):
                t[idx] = g
            return t, True
        else:
            raise bad
    else:
        raise bad
    t = t.to(torch.int64)
    if bool((t < -1).any()):
        raise param_error("GroupLasso", "groups", "ids >= -1 (-1 = unregularized)", int(t.min()))
    reg = t >= 0
    if not bool(reg.any()):
        raise param_error("GroupLasso", "groups", "ids with at least one regularized coordinate", "only -1")
    _, inverse = torch.unique(t[reg], sorted=True, return_inverse=True)
    out = torch.full_like(t, -1)
    out[reg] = inverse
    return out, as_lists


@dataclass(frozen=True, eq=False)
class GroupLasso(RegularizerBase):
    """h(x) = lam * sum_g w_g ||x_g||_2, with w_g = sqrt(|g|) by default; the prox is block soft-thresholding.

    ``prox_{t h}(x)_g = argmin_u lam w_g ||u||_2 + ||u - x_g||^2 / (2 t)
    = max(1 - t lam w_g / ||x_g||, 0) x_g`` for each group g; coordinates outside every group pass through
    unchanged.

    Give exactly one of ``groups`` and ``group_size``:

    * ``groups`` as a length-d int sequence/tensor of group ids (-1 = unregularized coordinate). Ids need not
      be contiguous; groups are numbered in increasing id order (that order indexes ``weights``).
    * ``groups`` as a list of disjoint index lists; coordinates in no list are unregularized, and ``X`` may
      have more columns than the largest listed index. ``weights`` follow the list order.
    * ``group_size=s``: consecutive groups of s coordinates (the last one shorter when s does not divide d),
      resolved when ``X`` is seen; ``weights`` must then be left at None.

    Args:
        lam: strength, >= 0.
        groups: see above.
        weights: optional per-group weights >= 0 (shape (G,)); None means sqrt(group size), the usual choice
            (Yuan & Lin 2006) that keeps large groups from being favoured.
        group_size: see above.

    Example:
        >>> import torch
        >>> reg = GroupLasso(1.0, groups=[0, 0, 1], weights=[1.0, 1.0])
        >>> reg.prox(torch.tensor([[3.0, 4.0, 0.5]]), step=1.0).tolist()
        [[2.4000000953674316, 3.200000047683716, 0.0]]
    """

    lam: float
    groups: Any = None
    weights: Any = None
    group_size: int | None = None
    name: ClassVar[str] = "group_lasso"
    PARAMS: ClassVar[tuple[str, ...]] = ("groups", "group_size", "weights")
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, strength: float, **params: Any) -> GroupLasso:
        return cls(
            strength,
            groups=params.get("groups"),
            weights=params.get("weights"),
            group_size=params.get("group_size"),
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_strength(self.lam, "GroupLasso"))
        if (self.groups is None) == (self.group_size is None):
            raise ProxGTValueError(
                "GroupLasso needs exactly one of 'groups' and 'group_size'. "
                f"Got groups={'None' if self.groups is None else '...'}, "
                f"group_size={self.group_size!r} instead."
            )
        if self.group_size is not None:
            s = self.group_size
            if not (_is_int(s) or (is_real(s) and float(s).is_integer())) or s < 1:
                raise param_error("GroupLasso", "group_size", "an int >= 1", s)
            object.__setattr__(self, "group_size", int(s))
            if self.weights is not None:
                raise param_error("GroupLasso", "weights", "None when 'group_size' is used", "a weight vector")
            object.__setattr__(self, "_from_lists", False)
            return
        ids, as_lists = _parse_groups(self.groups)
        object.__setattr__(self, "groups", ids)
        object.__setattr__(self, "_from_lists", as_lists)
        if self.weights is not None:
            n_groups = int(ids.max()) + 1
            try:
                w = torch.as_tensor(self.weights, dtype=torch.float64).detach().cpu().clone()
            except (TypeError, ValueError, RuntimeError):
                got = type(self.weights).__name__
                raise param_error("GroupLasso", "weights", f"None or {n_groups} finite floats >= 0", got) from None
            ok = w.dim() == 1 and w.numel() == n_groups
            ok = ok and bool(torch.isfinite(w).all()) and bool((w >= 0).all())
            if not ok:
                seen = w.tolist() if w.numel() <= 8 else f"shape {tuple(w.shape)}"
                raise param_error("GroupLasso", "weights", f"None or {n_groups} finite floats >= 0", seen)
            object.__setattr__(self, "weights", w)

    # -- layout ------------------------------------------------------------------------------------

    def _layout(self, X: Tensor) -> tuple[Any, ...]:
        """Cached per (d, device, dtype): ("blocks", s, w) for equal consecutive blocks covering all d
        coordinates, else ("scatter", idx or None, gid, w, G)."""
        d = X.shape[1]

        def make() -> tuple[Any, ...]:
            if self.group_size is not None:
                s = self.group_size
                ids = torch.arange(d, dtype=torch.int64) // s
            else:
                ids = self.groups
                if self._from_lists:  # type: ignore[attr-defined]
                    if ids.numel() > d:
                        raise ProxGTValueError(
                            f"The 'groups' parameter of GroupLasso lists coordinate {ids.numel() - 1} "
                            f"but X has d={d} columns."
                        )
                    ids = torch.cat([ids, ids.new_full((d - ids.numel(),), -1)])
                else:
                    check_length(ids, d, "GroupLasso", "groups")
            n_groups = int(ids.max()) + 1
            reg = ids >= 0
            idx = None if bool(reg.all()) else torch.nonzero(reg).squeeze(1)
            gid = ids if idx is None else ids[idx]
            sizes = torch.bincount(gid, minlength=n_groups)
            w = self.weights if self.weights is not None else sizes.to(torch.float64).sqrt()
            w = w.to(device=X.device, dtype=X.dtype)
            s0 = int(sizes[0])
            if idx is None and bool((sizes == s0).all()) and bool((gid == torch.arange(d) // s0).all()):
                return ("blocks", s0, w)
            return (
                "scatter",
                None if idx is None else idx.to(X.device),
                gid.to(X.device),
                w,
                n_groups,
            )

        return self._cached(("layout", d, X.device, X.dtype), make)

    def _norms(self, X: Tensor) -> tuple[Tensor, tuple[Any, ...]]:
        """Per-row group norms, shape (k, G)."""
        lay = self._layout(X)
        if lay[0] == "blocks":
            s = lay[1]
            norms = torch.linalg.vector_norm(X.reshape(X.shape[0], X.shape[1] // s, s), dim=2)
        else:
            _, idx, gid, _, n_groups = lay
            Xr = X if idx is None else X.index_select(1, idx)
            sq = X.new_zeros(X.shape[0], n_groups).index_add_(1, gid, Xr * Xr)
            norms = sq.sqrt()
        return norms, lay

    def value(self, X: Tensor) -> Tensor:
        X = check_X(X, "GroupLasso", "value")
        norms, lay = self._norms(X)
        w: Tensor = lay[2] if lay[0] == "blocks" else lay[3]
        return self.lam * (norms * w).sum(dim=1)

    def prox(self, X: Tensor, step: float) -> Tensor:
        X = check_X(X, "GroupLasso", "prox")
        t = check_step(step, "GroupLasso")
        norms, lay = self._norms(X)
        w: Tensor = lay[2] if lay[0] == "blocks" else lay[3]
        thr = (t * self.lam) * w
        scale = (norms - thr).clamp_min(0) / torch.where(norms > 0, norms, torch.ones_like(norms))
        if lay[0] == "blocks":
            k, s = X.shape[0], int(lay[1])
            return (X.reshape(k, X.shape[1] // s, s) * scale.unsqueeze(2)).reshape(X.shape)
        _, idx, gid, _, _ = lay
        if idx is None:
            return X * scale.index_select(1, gid)
        out_r = X.index_select(1, idx) * scale.index_select(1, gid)
        return X.index_copy(1, idx, out_r)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "strength": self.lam}
        if self.group_size is not None:
            out["group_size"] = self.group_size
        elif self._from_lists:  # type: ignore[attr-defined]
            ids = self.groups
            n_groups = int(ids.max()) + 1
            out["groups"] = [torch.nonzero(ids == g).squeeze(1).tolist() for g in range(n_groups)]
        else:
            out["groups"] = self.groups.tolist()
        if self.weights is not None:
            out["weights"] = self.weights.tolist()
        return out
