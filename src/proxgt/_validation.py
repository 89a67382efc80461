"""Input validation in one place, with one message template (after scikit-learn's parameter checks).

Every user-facing check raises :class:`ProxGTValueError` (a ``ValueError``) with a one-line message; the CLI
turns it into ``proxgt: error: <message>`` and exit code 2. The checks of Python arguments, the setting
constraints (:mod:`proxgt.settings.constraints`), the regularizers' arguments (:mod:`proxgt.prox`), the graph
generators and the data loaders all take their predicates and templates from here.
"""

from __future__ import annotations

import math
import numbers
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
    "check_int",
    "check_real",
    "is_number",
    "is_real",
    "param_error",
    "setting_error",
]


def is_number(value: Any) -> bool:
    """A Python int or float, bools excluded: what a run setting accepts."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Any real number (numpy scalars too), bools excluded: what a numeric Python argument accepts."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def param_error(owner: str, name: str, expected: str, got: Any, hint: str = "") -> ProxGTValueError:
    """The library's one message template for a Python argument:
    ``The 'n' parameter of ring_graph must be an int >= 1. Got 0 instead.`` (run settings use the same template
    with "setting", see :mod:`proxgt.settings.constraints`)."""
    where = f" of {owner}" if owner else ""
    extra = f" {hint}" if hint else ""
    return ProxGTValueError(f"The '{name}' parameter{where} must be {expected}. Got {got!r} instead.{extra}")


def setting_error(name: str, expected: str, got: Any) -> ProxGTValueError:
    """The same template for a run setting: ``The 'nodes' setting must be an int >= 1. Got 0 instead.``"""
    return ProxGTValueError(f"The '{name}' setting must be {expected}. Got {got!r} instead.")


def check_positive_int(value: Any, name: str, owner: str = "") -> int:
    if not is_number(value) or value != int(value) or value < 1:
        raise param_error(owner, name, "an int >= 1", value)
    return int(value)


def check_positive_float(value: Any, name: str, owner: str = "") -> float:
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise param_error(owner, name, "a finite float > 0", value)
    return float(value)


def check_nonneg_float(value: Any, name: str, owner: str = "") -> float:
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise param_error(owner, name, "a finite float >= 0", value)
    return float(value)


_C = TypeVar("_C")


def check_choice(value: Any, name: str, choices: Sequence[_C], owner: str = "") -> _C:
    if value not in choices:
        raise param_error(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value  # one of ``choices``


def check_int(value: Any, name: str, owner: str = "", *, low: int = 1) -> int:
    """An integer >= ``low`` (numpy integers too; bools, and floats even when whole, are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise param_error(owner, name, f"an int >= {low}", value)
    return int(value)


def check_real(value: Any, name: str, owner: str = "", *, low: float = 0.0, strict: bool = False) -> float:
    """A finite real >= ``low`` (> ``low`` with ``strict``); the message asks for a finite value only when the
    value is infinite on the allowed side."""
    bound = f"{'>' if strict else '>='} {low:g}"
    if not is_real(value) or math.isnan(float(value)) or (float(value) <= low if strict else float(value) < low):
        raise param_error(owner, name, f"a float {bound}", value)
    if math.isinf(float(value)):
        raise param_error(owner, name, f"a finite float {bound}", value)
    return float(value)
