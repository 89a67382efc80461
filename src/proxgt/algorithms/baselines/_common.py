"""Helpers the baselines share: step schedules, per-algorithm hyper-parameters from ``cfg.extra``, batch
and batch defaults.

Hyper-parameters beyond the run's common settings (step, batch, big_batch, period) live in a sub-table of
``extra`` named after the algorithm, e.g. in TOML::

    [extra.deepstorm]
    beta = 0.1
    schedule = "diminishing"

Unknown keys are an error naming the algorithm and the keys it knows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from proxgt._validation import ProxGTValueError, check_choice, check_positive_float, param_error

__all__ = ["Schedule", "params", "sa_batch", "sarah_sizes", "SCHEDULES"]

SCHEDULES = ("constant", "diminishing")


@dataclass(frozen=True)
class Schedule:
    """A step (or weight) schedule ``a_t = a0 * (1 + t / t0) ** (-power)``; ``constant`` ignores t.

    ``Schedule("diminishing", 1.0, power=1/3, t0=10)(t)`` is the t^(-1/3) decay of DEEPSTORM, shifted by t0
    so that the first steps are not tiny. Example::

        >>> Schedule("diminishing", 1.0, power=0.5, t0=1.0)(3)
        0.5
    """

    kind: str = "constant"
    a0: float = 1.0
    power: float = 1.0 / 3.0
    t0: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.kind, "schedule", SCHEDULES, "Schedule")
        check_positive_float(self.a0, "a0", "Schedule")
        check_positive_float(self.t0, "t0", "Schedule")
        if not (isinstance(self.power, int | float) and 0.0 <= self.power <= 1.0):
            raise param_error("Schedule", "power", "in [0, 1]", self.power)

    def __call__(self, t: int) -> float:
        if self.kind == "constant":
            return self.a0
        decay: float = (1.0 + max(0, t) / self.t0) ** (-self.power)
        return self.a0 * decay


def params(ctx: Any, algorithm: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``cfg.extra[algorithm]``; unknown keys and type mismatches are one-line errors."""
    given = ctx.cfg.extra.get(algorithm, {}) or {}
    if not isinstance(given, dict):
        raise ProxGTValueError(f"extra.{algorithm} must be a table of {algorithm} settings. Got {given!r} instead.")
    out = dict(defaults)
    for key, val in given.items():
        k = key.replace("-", "_")
        if k not in defaults:
            raise ProxGTValueError(
                f"unknown setting extra.{algorithm}.{key}; {algorithm} knows: {', '.join(sorted(defaults))}"
                if defaults else f"unknown setting extra.{algorithm}.{key}; {algorithm} has no [extra] settings"
            )
        dv = defaults[k]
        if isinstance(dv, str):
            ok = isinstance(val, str)
        else:
            ok = isinstance(val, int | float) and not isinstance(val, bool) and math.isfinite(val)
        if not ok:
            raise ProxGTValueError(f"extra.{algorithm}.{key} must be a {type(dv).__name__}. Got {val!r} instead.")
        out[k] = float(val) if isinstance(dv, float) else val
    return out


def sa_batch(ctx: Any) -> int:
    """Minibatch of the SA-type baselines: ``cfg.batch`` or 32 (ProxGT-SA's default, for a like-for-like
    comparison)."""
    return 32 if ctx.cfg.batch is None else int(ctx.cfg.batch)


def sarah_sizes(ctx: Any) -> tuple[int, int]:
    """(b, B) of the recursive-momentum baselines: ``cfg.batch``/``cfg.big_batch`` or ProxGT-SR-O's defaults
    B = min(m, 256), b = max(1, ceil(sqrt(B)) // 2)."""
    B = min(max(1, ctx.local_size), 256) if ctx.cfg.big_batch is None else int(ctx.cfg.big_batch)
    b = max(1, math.ceil(math.sqrt(B)) // 2) if ctx.cfg.batch is None else int(ctx.cfg.batch)
    return b, B
