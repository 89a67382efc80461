"""The ``--compress`` spec strings, parsed without importing torch (the settings table validates with this).

A spec is an operator name, optionally followed by ``:`` and its one parameter::

    none | topk:RATIO | randk:RATIO | qsgd:LEVELS | sign | fp16 | bf16

RATIO is a number in (0, 1] (the share of coordinates kept), LEVELS an integer in [1, 32767] (QSGD's s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from proxgt._validation import setting_error
from proxgt.errors import ProxGTValueError

__all__ = ["OPERATORS", "CompressSpec", "parse_compress", "MAX_LEVELS"]

#: QSGD levels are sent as codes of at most 16 bits (sign and level together: 2s + 1 values)
MAX_LEVELS = 32767

#: operator -> (its parameter: "ratio", "levels" or None, a one-line summary)
OPERATORS: dict[str, tuple[str | None, str]] = {
    "none": (None, "the identity: the full vector in the run's dtype"),
    "topk": ("ratio", "the RATIO*d largest-magnitude entries, values plus indices (contractive, delta = k/d)"),
    "randk": ("ratio", "RATIO*d random entries scaled by d/k, values plus indices (unbiased, omega = d/k - 1)"),
    "qsgd": ("levels", "stochastic rounding to LEVELS levels of |x_j|/||x||, plus the norm (unbiased)"),
    "sign": (None, "signs, one bit each, times ||x||_1/d (contractive, delta >= 1/d)"),
    "fp16": (None, "IEEE half precision cast (2 bytes per entry)"),
    "bf16": (None, "bfloat16 cast (2 bytes per entry)"),
}

_FORMS = " | ".join(f"{name}:{param.upper()}" if param else name for name, (param, _) in OPERATORS.items())


def parse_compress(spec: Any) -> tuple[str, float | int | None]:
    """``"topk:0.1"`` -> ``("topk", 0.1)``; ``"sign"`` -> ``("sign", None)``. Bad specs: one-line ProxGTValueError.

    >>> parse_compress("qsgd:16")
    ('qsgd', 16)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ProxGTValueError(f"compress must be a string such as 'topk:0.1' ({_FORMS}); got {spec!r}")
    name, sep, arg = spec.strip().lower().partition(":")
    name = name.strip()
    if name not in OPERATORS:
        raise ProxGTValueError(f"unknown compression operator {name!r} in compress = {spec!r}; choose one of: {_FORMS}")
    param = OPERATORS[name][0]
    if param is None:
        if sep:
            raise ProxGTValueError(f"compression operator {name!r} takes no parameter; got compress = {spec!r}")
        return name, None
    if not sep or not arg.strip():
        raise ProxGTValueError(f"compression operator {name!r} needs its {param}: write {name}:{param.upper()}, "
                               f"e.g. {'topk:0.1' if param == 'ratio' else 'qsgd:16'}")
    arg = arg.strip()
    if param == "ratio":
        try:
            ratio = float(arg)
        except ValueError:
            raise ProxGTValueError(f"the ratio of {name} must be a number in (0, 1]; got {arg!r}") from None
        if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
            raise ProxGTValueError(f"the ratio of {name} must be in (0, 1]; got {arg}")
        return name, ratio
    try:
        levels = int(arg)
    except ValueError:
        raise ProxGTValueError(f"the levels of {name} must be an integer >= 1; got {arg!r}") from None
    if not 1 <= levels <= MAX_LEVELS:
        raise ProxGTValueError(f"the levels of {name} must be an integer in [1, {MAX_LEVELS}]; got {arg}")
    return name, levels


def canonical_spec(spec: Any) -> str:
    """The normalized spec string (``" TopK:0.10"`` -> ``"topk:0.1"``)."""
    name, arg = parse_compress(spec)
    return name if arg is None else f"{name}:{arg:g}" if isinstance(arg, float) else f"{name}:{arg}"


@dataclass(frozen=True)
class CompressSpec:
    """Settings constraint for ``compress`` (the interface of :class:`proxgt.settings.constraints.Constraint`,
    not a subclass: the settings table imports this module, so it must not import the settings package)."""

    def describe(self) -> str:
        return _FORMS

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise setting_error(name, f"a compression spec ({_FORMS})", value)
        return canonical_spec(value)

    def parse(self, text: str) -> str:
        return text

    def choices(self) -> list[str] | None:
        return None
