"""Run-folder outputs, all written atomically (write to a temporary file, then rename).

A reader, or a run killed at any moment, never sees a half-written file: each file is either its previous
complete version or its new complete version.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

__all__ = ["atomic_write_bytes", "atomic_write_text", "RunFolder", "read_metrics_csv"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return repr(v)  # nan, inf, -inf: csv and float() read them back
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    return str(v)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class RunFolder:
    """The output folder of one run: config.toml, metrics.csv, final.npz, summary.json."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            from proxgt._validation import ProxGTValueError

            raise ProxGTValueError(f"output path exists and is not a folder: {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []

    def write_config(self, resolved: dict[str, Any]) -> None:
        clean = {k: v for k, v in resolved.items() if v is not None}
        atomic_write_text(self.path / "config.toml", tomli_w.dumps(_json_safe(clean)))

    def start_metrics(self, columns: list[str], rows: list[dict[str, Any]] | None = None) -> None:
        self._columns = list(columns)
        self._rows = list(rows or [])

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a metrics row and rewrite metrics.csv atomically (rows are few: one per log step)."""
        self._rows.append(row)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self._columns)
        for r in self._rows:
            w.writerow([_fmt(r.get(c, "")) for c in self._columns])
        atomic_write_text(self.path / "metrics.csv", buf.getvalue())

    def write_final(self, x: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, x=x, x_bar=x.mean(axis=0))
        atomic_write_bytes(self.path / "final.npz", buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(_json_safe(summary), indent=2) + "\n")


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, float]]]:
    """Read a metrics.csv back as (columns, rows of floats)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [{c: float(v) if v != "" else math.nan for c, v in zip(header, line, strict=True)} for line in reader]
    return header, rows
