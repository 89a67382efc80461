"""Input validation in one place, with one message template (after scikit-learn's parameter checks).

Every user-facing check raises :class:`ProxGTValueError` (a ``ValueError``) with a one-line message; the CLI
turns it into ``proxgt: error: <message>`` and exit code 2.
"""

from __future__ import annotations

import math
from typing import Any

from proxgt.errors import DivergenceError, ProxGTValueError

__all__ = [
    "ProxGTValueError",
    "DivergenceError",
    "check_positive_int",
    "check_positive_float",
    "check_nonneg_float",
    "check_choice",
]



def _fmt(owner: str, name: str, expected: str, got: Any) -> str:
    where = f" of {owner}" if owner else ""
    return f"The '{name}' parameter{where} must be {expected}. Got {got!r} instead."


def check_positive_int(value: Any, name: str, owner: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ProxGTValueError(_fmt(owner, name, "an int >= 1", value))
    return int(value)


def check_positive_float(value: Any, name: str, owner: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ProxGTValueError(_fmt(owner, name, "a finite float > 0", value))
    return float(value)


def check_nonneg_float(value: Any, name: str, owner: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ProxGTValueError(_fmt(owner, name, "a finite float >= 0", value))
    return float(value)


def check_choice(value: Any, name: str, choices: list[str] | tuple[str, ...], owner: str = "") -> str:
    if value not in choices:
        raise ProxGTValueError(_fmt(owner, name, "one of " + ", ".join(repr(c) for c in choices), value))
    return value
