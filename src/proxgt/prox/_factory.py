"""``make_regularizer``: build a regularizer from a name, a strength and keyword parameters (CLI / config).

The names live in :data:`proxgt.registry.REGULARIZERS`; each registered class says which keyword parameters
it accepts (``PARAMS``) and needs (``REQUIRED``) and builds itself with ``from_settings(strength, **params)``.
"""

from __future__ import annotations

from typing import Any

from proxgt.errors import ProxGTValueError, UnknownNameError
from proxgt.registry import REGULARIZERS

from ._base import Regularizer

__all__ = ["REGULARIZER_NAMES", "REGULARIZER_ALIASES", "make_regularizer"]

#: The built-in regularizer names, in registration order (``proxgt.registry.REGULARIZERS.names()`` is the live
#: list, with names registered later).
REGULARIZER_NAMES: tuple[str, ...] = tuple(REGULARIZERS.names())

#: alias -> registered name of the built-in aliases (``l2`` -> ``l2sq``, ...).
REGULARIZER_ALIASES: dict[str, str] = dict(REGULARIZERS.aliases())


def _unknown(name: object) -> UnknownNameError:
    aliases = ", ".join(REGULARIZERS.aliases())
    return UnknownNameError(
        f"unknown regularizer {name!r}; choose one of: {', '.join(REGULARIZERS.names())}"
        + (f" (aliases: {aliases})" if aliases else "")
    )


def make_regularizer(name: str, strength: float = 0.0, **params: Any) -> Regularizer:
    """Build a regularizer by name.

    Args:
        name: one of ``REGULARIZER_NAMES`` ("none", "l1", "l2sq", "elastic_net", "group_lasso", "nonneg",
            "box", "l2_ball", "l1_ball"), an alias ("l2", "elasticnet", "nonnegative") or a name registered
            in :data:`proxgt.registry.REGULARIZERS`; case-insensitive, "-" read as "_".
        strength: lam of a penalty (>= 0). Ignored by "none" and by the constraints (nonneg, box, balls).
        **params: ``mask`` (l1, l2sq, elastic_net), ``l1_ratio`` (elastic_net), ``groups`` / ``group_size`` /
            ``weights`` (group_lasso), ``lower`` and ``upper`` (box), ``radius`` (balls): the class's
            ``PARAMS``, of which ``REQUIRED`` must be given (not None).

    ``make_regularizer(**reg.describe())`` rebuilds ``reg`` (masks excepted: describe only summarises them).

    Example:
        >>> make_regularizer("l1", 1e-4)
        L1(lam=0.0001, mask=None)
        >>> make_regularizer("group_lasso", 0.1, group_size=4).describe()
        {'name': 'group_lasso', 'strength': 0.1, 'group_size': 4}
    """
    try:
        key = REGULARIZERS.canonical(name)  # case-insensitive, "-" and "_" alike
    except UnknownNameError:
        raise _unknown(name) from None
    cls = REGULARIZERS.get(key)
    allowed = tuple(getattr(cls, "PARAMS", ()))
    required = tuple(getattr(cls, "REQUIRED", ()))
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
    reg: Regularizer = cls.from_settings(strength, **params)
    return reg
