"""The library's exception types (a leaf module: it imports nothing, so every module can use it).

The CLI maps them to exit codes: :class:`ProxGTValueError` -> 2 (bad input), :class:`DivergenceError` -> 3.
"""

from __future__ import annotations

__all__ = ["ProxGTValueError", "DivergenceError", "UnknownNameError", "RegistrationError", "MissingDependencyError"]


class ProxGTValueError(ValueError):
    """Bad user input: the message is one line and says what was expected and what was given."""


class DivergenceError(RuntimeError):
    """Iterates became NaN or Inf; the message names the node, the iteration and a likely fix."""


class UnknownNameError(ProxGTValueError):
    """A name that no registry knows (an algorithm, a problem, a topology, ...)."""


class RegistrationError(ProxGTValueError):
    """A registered name whose implementation cannot be imported (e.g. a user package's entry point)."""


class MissingDependencyError(ProxGTValueError):
    """A feature asked for an optional package that is not installed; the message names the extra to install."""
