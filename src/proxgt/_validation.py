"""Input validation in one place, with one message template (after scikit-learn's parameter checks).

Every user-facing check raises :class:`ProxGTValueError` (a ``ValueError``) with a one-line message; the CLI
turns it into ``proxgt: error: <message>`` and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from proxgt.errors import DivergenceError, ProxGTValueError

__all__ = [
    "ProxGTValueError",
    "DivergenceError",
    "check_positive_int",
    "check_positive_float",
    "check_nonneg_float",
    "check_choice",
    "param_error",
]



def param_error(owner: str, name: str, expected: str, got: Any, hint: str = "") -> ProxGTValueError:
    """The library's one message template for a Python argument:
    ``The 'n' parameter of ring_graph must be an int >= 1. Got 0 instead.`` (run settings use the same template
    with "setting", see :mod:`proxgt.settings.constraints`)."""
    where = f" of {owner}" if owner else ""
    extra = f" {hint}" if hint else ""
    return ProxGTValueError(f"The '{name}' parameter{where} must be {expected}. Got {got!r} instead.{extra}")


def check_positive_int(value: Any, name: str, owner: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise param_error(owner, name, "an int >= 1", value)
    return int(value)


def check_positive_float(value: Any, name: str, owner: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise param_error(owner, name, "a finite float > 0", value)
    return float(value)


def check_nonneg_float(value: Any, name: str, owner: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise param_error(owner, name, "a finite float >= 0", value)
    return float(value)


_C = TypeVar("_C")


def check_choice(value: Any, name: str, choices: Sequence[_C], owner: str = "") -> _C:
    if value not in choices:
        raise param_error(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value  # one of ``choices``
