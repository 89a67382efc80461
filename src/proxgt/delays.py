"""Delay distributions in their command-line form: ``none``, ``const:S``, ``exp:MEAN``, ``lognormal:MU,SIGMA``.

One parser serves the cost model's stragglers (:mod:`proxgt.costmodel.network`, ``--straggler``) and the
simulator's virtual clock (:mod:`proxgt.mixing.clock`: ``--node-speed``, ``--link-latency``,
``--link-bandwidth``). A leaf module (numpy is imported where a distribution is sampled), so the settings table
can check a specification without importing the numerical stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxgt._validation import ProxGTValueError, param_error, setting_error

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Delay", "DELAY_KINDS", "DELAY_SPECS", "parse_delay_or_file"]

#: kind -> number of parameters
DELAY_KINDS = {"none": 0, "const": 1, "exp": 1, "lognormal": 2}
DELAY_SPECS = "none, const:S, exp:MEAN or lognormal:MU,SIGMA (S, MEAN, SIGMA >= 0; seconds)"


@dataclass(frozen=True)
class Delay:
    """A non-negative random quantity (seconds, or bytes per second for a bandwidth), drawn independently for
    each event it describes.

    ``kind`` is ``none`` (always 0), ``const`` (``params = (S,)``: always S), ``exp`` (``(MEAN,)``:
    exponential with that mean) or ``lognormal`` (``(MU, SIGMA)``: exp of a normal N(MU, SIGMA^2)).
    :meth:`parse` reads the command-line form, e.g. ``"exp:0.02"``.

    >>> round(Delay.parse("lognormal:-4,0.5").mean, 6)  # exp(MU + SIGMA^2 / 2)
    0.020754
    """

    kind: str = "none"
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        arity = DELAY_KINDS
        if self.kind not in arity:
            raise param_error("Delay", "kind", "one of none, const, exp, lognormal", self.kind)
        params = tuple(float(v) for v in self.params)
        if len(params) != arity[self.kind] or not all(math.isfinite(v) for v in params):
            raise param_error("Delay", "params", f"{arity[self.kind]} finite numbers for {self.kind}", self.params)
        nonneg = params if self.kind in ("const", "exp") else params[1:]
        if any(v < 0 for v in nonneg):
            raise ProxGTValueError(f"The delay model {self.spec!r} needs S, MEAN and SIGMA >= 0 (seconds).")
        object.__setattr__(self, "params", params)

    @classmethod
    def parse(cls, spec: str | Delay, name: str = "straggler", expected: str = DELAY_SPECS) -> Delay:
        """``none``, ``const:S``, ``exp:MEAN`` or ``lognormal:MU,SIGMA``; anything else is a one-line error that
        names the ``name`` parameter and what it ``expected``."""
        if isinstance(spec, Delay):
            return spec
        bad = param_error("", name, expected, spec)
        kind, _, rest = str(spec).strip().partition(":")
        kind = kind.strip().lower()
        try:
            params = tuple(float(v) for v in rest.split(",")) if rest.strip() else ()
        except ValueError:
            raise bad from None
        if len(params) != DELAY_KINDS.get(kind, -1):
            raise bad
        try:
            return cls(kind, params)
        except ProxGTValueError:
            raise bad from None

    @property
    def spec(self) -> str:
        """The command-line form, e.g. ``exp:0.02``."""
        return self.kind if not self.params else f"{self.kind}:{','.join(f'{v:g}' for v in self.params)}"

    @property
    def mean(self) -> float:
        """Expected value of one draw."""
        if self.kind == "none":
            return 0.0
        if self.kind == "lognormal":
            mu, sigma = self.params
            return math.exp(mu + sigma * sigma / 2)
        return self.params[0]

    @property
    def random(self) -> bool:
        """Whether draws vary (exp, lognormal)."""
        return self.kind in ("exp", "lognormal")

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Draws of the given shape (float64) from ``rng``."""
        import numpy as np

        if self.kind == "none":
            return np.zeros(shape)
        if self.kind == "const":
            return np.full(shape, self.params[0])
        if self.kind == "exp":
            return rng.exponential(self.params[0], shape)
        return rng.lognormal(self.params[0], self.params[1], shape)


def parse_delay_or_file(value: object, name: str, expected: str, *, positive: bool = False) -> Delay | str:
    """A clock setting's value: a :class:`Delay` (a bare number means ``const:NUMBER``) or the path of an existing
    file (returned as given; its rows are read when the run knows its graph, see :mod:`proxgt.mixing.clock`).
    ``positive``: every draw must be > 0 (a bandwidth). Anything else is a one-line error naming ``name``."""
    from pathlib import Path

    bad = setting_error(name, expected, value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad
    text = str(value).strip()
    if isinstance(value, str) and text and Path(text).expanduser().is_file():
        return text
    if text.lower().endswith(".csv"):
        raise ProxGTValueError(f"The '{name}' setting names a file that does not exist: {text}")
    try:
        number = float(text)
    except ValueError:
        number = None
    try:
        delay = Delay("const", (number,)) if number is not None else Delay.parse(text, name, expected)
    except ProxGTValueError:
        raise bad from None
    if positive and (delay.kind == "none" or (delay.kind != "lognormal" and delay.params[0] <= 0)):
        raise bad
    return delay
