"""``make_regularizer``: build a regularizer from a name, a strength and keyword parameters (CLI / config)."""

from __future__ import annotations

from typing import Any

from proxgt._validation import ProxGTValueError

from ._base import Regularizer
from ._constraints import Box, L1Ball, L2Ball, NonNegative
from ._penalties import L1, ElasticNet, GroupLasso, L2Squared, NoReg

__all__ = ["REGULARIZER_NAMES", "REGULARIZER_ALIASES", "make_regularizer"]

REGULARIZER_NAMES: tuple[str, ...] = (
    "none",
    "l1",
    "l2sq",
    "elastic_net",
    "group_lasso",
    "nonneg",
    "box",
    "l2_ball",
    "l1_ball",
)

REGULARIZER_ALIASES: dict[str, str] = {"l2": "l2sq", "elasticnet": "elastic_net", "nonnegative": "nonneg"}

# name -> (allowed keyword parameters, required keyword parameters)
_PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "l1": (("mask",), ()),
    "l2sq": (("mask",), ()),
    "elastic_net": (("l1_ratio", "mask"), ()),
    "group_lasso": (("groups", "group_size", "weights"), ()),
    "nonneg": ((), ()),
    "box": (("lower", "upper"), ("lower", "upper")),
    "l2_ball": (("radius",), ("radius",)),
    "l1_ball": (("radius",), ("radius",)),
}


def make_regularizer(name: str, strength: float = 0.0, **params: Any) -> Regularizer:
    """Build a regularizer by name.

    Args:
        name: one of ``REGULARIZER_NAMES`` ("none", "l1", "l2sq", "elastic_net", "group_lasso", "nonneg",
            "box", "l2_ball", "l1_ball") or an alias ("l2", "elasticnet", "nonnegative"); case-insensitive,
            "-" read as "_".
        strength: lam of a penalty (>= 0). Ignored by "none" and by the constraints (nonneg, box, balls).
        **params: ``mask`` (l1, l2sq, elastic_net), ``l1_ratio`` (elastic_net), ``groups`` / ``group_size`` /
            ``weights`` (group_lasso), ``lower`` and ``upper`` (box), ``radius`` (balls).

    ``make_regularizer(**reg.describe())`` rebuilds ``reg`` (masks excepted: describe only summarises them).

    Example:
        >>> make_regularizer("l1", 1e-4)
        L1(lam=0.0001, mask=None)
        >>> make_regularizer("group_lasso", 0.1, group_size=4).describe()
        {'name': 'group_lasso', 'strength': 0.1, 'group_size': 4}
    """
    if not isinstance(name, str):
        raise ProxGTValueError(
            f"The 'name' parameter of make_regularizer must be one of {', '.join(REGULARIZER_NAMES)}. "
            f"Got {name!r} instead."
        )
    key = name.strip().lower().replace("-", "_")
    key = REGULARIZER_ALIASES.get(key, key)
    if key not in _PARAMS:
        raise ProxGTValueError(
            f"The 'name' parameter of make_regularizer must be one of {', '.join(REGULARIZER_NAMES)} "
            f"(aliases: {', '.join(REGULARIZER_ALIASES)}). Got {name!r} instead."
        )
    allowed, required = _PARAMS[key]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ProxGTValueError(
            f"Unknown parameter(s) {', '.join(repr(u) for u in unknown)} for regularizer {key!r}; "
            f"accepted: {', '.join(allowed) if allowed else 'none'}."
        )
    missing = [p for p in required if params.get(p) is None]
    if missing:
        raise ProxGTValueError(
            f"Regularizer {key!r} needs the parameter(s) {', '.join(repr(m) for m in missing)}."
        )
    if key == "none":
        return NoReg()
    if key == "l1":
        return L1(strength, mask=params.get("mask"))
    if key == "l2sq":
        return L2Squared(strength, mask=params.get("mask"))
    if key == "elastic_net":
        return ElasticNet(strength, l1_ratio=params.get("l1_ratio", 0.5), mask=params.get("mask"))
    if key == "group_lasso":
        return GroupLasso(
            strength,
            groups=params.get("groups"),
            weights=params.get("weights"),
            group_size=params.get("group_size"),
        )
    if key == "nonneg":
        return NonNegative()
    if key == "box":
        return Box(params["lower"], params["upper"])
    if key == "l2_ball":
        return L2Ball(params["radius"])
    return L1Ball(params["radius"])
