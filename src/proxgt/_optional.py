"""Optional dependencies (pandas, tensorboard): imported only by the feature that asks for them, and a one-line
error naming the extra to install when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from proxgt.errors import MissingDependencyError

__all__ = ["optional_import"]


def optional_import(module: str, *, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a one-line :class:`~proxgt.errors.MissingDependencyError` saying that ``purpose``
    needs the package ``extra`` (the extra of the same name installs it: ``pip install 'proxgt[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs the {extra} package, which is not installed: pip install 'proxgt[{extra}]'"
        ) from None
