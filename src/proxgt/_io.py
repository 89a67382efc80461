"""Files written atomically (write to a temporary file, then rename).

A reader, or a run killed at any moment, never sees a half-written file: each file is either its previous
complete version or its new complete version.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write_bytes", "atomic_write_with", "atomic_write_text", "metrics_csv_text", "json_safe",
           "read_metrics_csv"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Atomically write ``path`` with ``write(fh)`` on a binary file handle: a large result (``np.savez``,
    ``torch.save`` of node states) goes straight to the file, without a second copy of it in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give the file the mode an ordinary open() would (0644 under umask 022)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # a numpy scalar (numpy not imported here)
        return obj.item()
    return obj


def metrics_csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """metrics.csv as text: a header and one line per row (floats written so that they read back exactly)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in columns])
    return buf.getvalue()


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, float]]]:
    """Read a metrics.csv back as (columns, rows of floats)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [{c: float(v) if v != "" else math.nan for c, v in zip(header, line, strict=True)} for line in reader]
    return header, rows
