"""Constraints on setting values, after scikit-learn's parameter constraints: each one checks a value,
returns it normalized (``3.0`` -> ``3`` for an int setting), parses it from a command-line string, and
describes itself for ``--help`` and the settings reference (docs/settings.md).

Every failure is a one-line :class:`~proxgt.errors.ProxGTValueError` in one template:
``The 'nodes' setting must be an int >= 1. Got 0 instead.``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxgt._validation import is_number, setting_error
from proxgt.errors import ProxGTValueError

if TYPE_CHECKING:  # the settings table is a leaf: the registry is imported where it is read
    from proxgt.registry import Registry

__all__ = ["Constraint", "Int", "Float", "Choice", "Registered", "Bool", "Str", "PathValue", "Either", "Word"]


class Constraint:
    """Base class: ``check`` validates and normalizes, ``parse`` reads a CLI string, ``describe`` explains."""

    def check(self, value: Any, name: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        return text

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def choices(self) -> list[str] | None:
        return None


@dataclass(frozen=True)
class Int(Constraint):
    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an int in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"an int >= {self.low}"
        return "an int"

    def check(self, value: Any, name: str) -> int:
        ok = is_number(value) and math.isfinite(value) and value == int(value)
        ok = ok and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if not ok:
            raise setting_error(name, self.describe(), value)
        return int(value)

    def parse(self, text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None


@dataclass(frozen=True)
class Float(Constraint):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = True

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            lb, rb = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"a number in {lb}{self.low:g}, {self.high:g}{rb}"
        if self.low is not None:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        return "a finite number"

    def check(self, value: Any, name: str) -> float:
        ok = is_number(value) and math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        if not ok:
            raise setting_error(name, self.describe(), value)
        return float(value)

    def parse(self, text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None


@dataclass(frozen=True)
class Choice(Constraint):
    values: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)

    def check(self, value: Any, name: str) -> str:
        if value not in self.values:
            raise setting_error(name, self.describe(), value)
        chosen: str = value  # one of the values
        return chosen

    def choices(self) -> list[str]:
        return list(self.values)


@dataclass(frozen=True)
class Registered(Constraint):
    """A name registered in one of :mod:`proxgt.registry`'s tables (aliases accepted, canonical name kept)."""

    table: str  # attribute name in proxgt.registry, e.g. "ALGORITHMS"
    or_path: bool = False  # data: a registered name or a file

    def _registry(self) -> Registry[Any]:
        import proxgt.registry as registry

        table: Registry[Any] = getattr(registry, self.table)
        return table

    def describe(self) -> str:
        return " | ".join(self._registry().names()) + (" | PATH" if self.or_path else "")

    def check(self, value: Any, name: str) -> str:
        reg = self._registry()
        if self.or_path:
            if not isinstance(value, str) or not value:
                raise setting_error(name, "a data set name or a file path", value)
            return reg.canonical(value) if value in reg else value
        return reg.canonical(value)

    def choices(self) -> list[str]:
        return self._registry().names()


@dataclass(frozen=True)
class Bool(Constraint):
    def describe(self) -> str:
        return "true or false"

    def check(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise setting_error(name, "true or false", value)
        return value

    def parse(self, text: str) -> bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")


@dataclass(frozen=True)
class Str(Constraint):
    def describe(self) -> str:
        return "a string"

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise setting_error(name, "a non-empty string", value)
        return value


@dataclass(frozen=True)
class PathValue(Constraint):
    """A file (or folder) path; ``must_exist`` files are checked when the run is validated."""

    must_exist: bool = True
    folder: bool | None = False  # None: a file or a folder

    def describe(self) -> str:
        return "a file or folder" if self.folder is None else "a folder" if self.folder else "a file path"

    def check(self, value: Any, name: str) -> str:
        import os
        from pathlib import Path

        if not isinstance(value, str | os.PathLike) or not str(value):
            raise setting_error(name, self.describe(), value)
        p = Path(value).expanduser()
        if self.must_exist:
            if self.folder is None and not p.exists():
                raise ProxGTValueError(f"The '{name}' setting names a path that does not exist: {value}")
            if self.folder and not p.is_dir():
                raise ProxGTValueError(f"The '{name}' setting names a folder that does not exist: {value}")
            if self.folder is False and not p.is_file():
                raise ProxGTValueError(f"The '{name}' setting names a file that does not exist: {value}")
        return str(value)


@dataclass(frozen=True)
class Word(Constraint):
    """One literal keyword, such as ``auto`` or ``full``."""

    word: str

    def describe(self) -> str:
        return repr(self.word)

    def check(self, value: Any, name: str) -> str:
        if value != self.word:
            raise setting_error(name, repr(self.word), value)
        word: str = value  # equal to self.word
        return word

    def parse(self, text: str) -> str:
        if text != self.word:
            raise ValueError(f"expected {self.word!r}")
        return text


@dataclass(frozen=True)
class Either(Constraint):
    """A keyword or another constraint, e.g. ``Either("auto", Int(1))`` for ``--rounds``."""

    word: str
    other: Constraint

    def describe(self) -> str:
        return f"{self.other.describe()} or {self.word!r}"

    def check(self, value: Any, name: str) -> Any:
        if value == self.word:
            return value
        try:
            return self.other.check(value, name)
        except ProxGTValueError:
            raise setting_error(name, self.describe(), value) from None

    def parse(self, text: str) -> Any:
        if text == self.word:
            return text
        try:
            return self.other.parse(text)
        except ValueError:
            what = "an integer" if isinstance(self.other, Int) else "a number"
            raise ValueError(f"expected {what} or {self.word!r}") from None
