"""Rows of metrics as a pandas DataFrame (pandas is optional: imported here only when a frame is asked for)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from proxgt._io import INTEGER_COLUMNS
from proxgt._optional import optional_import

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["pandas", "rows_frame"]


def pandas() -> ModuleType:
    """The pandas module, or a one-line MissingDependencyError naming the ``pandas`` extra."""
    return optional_import("pandas", extra="pandas", purpose="loading results as DataFrames")


def rows_frame(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One DataFrame row per metrics row, with ``columns`` in order: the :data:`~proxgt._io.INTEGER_COLUMNS`
    (iteration, rounds, node) as int64, every other column as float64 (a missing value is NaN)."""
    pd = pandas()
    data = {c: [r.get(c, math.nan) for r in rows] for c in columns}
    return pd.DataFrame({c: pd.Series(v, dtype="int64" if c in INTEGER_COLUMNS else "float64")
                         for c, v in data.items()}, columns=list(columns))
