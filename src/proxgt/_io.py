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

__all__ = ["atomic_write_bytes", "atomic_write_with", "atomic_write_text", "append_text", "metrics_csv_text",
           "json_safe", "read_complete_lines", "read_metrics_csv", "INTEGER_COLUMNS"]

#: Columns of metrics.csv and per_node.csv that hold integers (read back as int); every other column is a float.
INTEGER_COLUMNS = ("iter", "comm_rounds", "active_nodes", "node", "local_worst_node")


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    atomic_write_with(path, lambda fh: fh.write(data), private=private)


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], Any], *, private: bool = False) -> None:
    """Atomically write ``path`` with ``write(fh)`` on a binary file handle: a large result (``np.savez``,
    ``torch.save`` of node states) goes straight to the file, without a second copy of it in memory.
    ``private``: mode 0600 (a secret of this process: never readable by others, not even while written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give the file the mode an ordinary open() would (0644 under umask 022)
        if not private:
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


def append_text(path: str | Path, text: str) -> None:
    """Append ``\\n``-terminated lines to ``path`` with one write (an append-only log: metrics.csv).

    A run killed during the write leaves at most an unterminated last line, which
    :func:`read_complete_lines` drops, so readers still see only whole rows."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


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


def metrics_csv_text(columns: list[str], rows: list[dict[str, Any]], *, header: bool = True) -> str:
    """metrics.csv as text: a header (unless ``header=False``: rows to append) and one line per row (floats
    written so that they read back exactly)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in columns])
    return buf.getvalue()


def read_complete_lines(path: str | Path) -> str:
    """The text of ``path`` up to its last ``\\n``: an append-only file (:func:`append_text`) read while it is
    written, or left by a killed run, may end in a partial line, which is not part of the data."""
    text = Path(path).read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1]


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, float]]]:
    """Read a metrics.csv (or per_node.csv) back as (columns, rows of floats; the :data:`INTEGER_COLUMNS` as
    int), whole lines only (:func:`read_complete_lines`)."""
    reader = csv.reader(io.StringIO(read_complete_lines(path), newline=""))
    header = next(reader, [])
    ints = [c in INTEGER_COLUMNS for c in header]
    rows = [{c: _number(v, is_int) for c, v, is_int in zip(header, line, ints, strict=True)} for line in reader]
    return header, rows


def _number(text: str, integer: bool) -> float | int:
    if text == "":
        return math.nan
    v = float(text)
    return int(v) if integer and v.is_integer() else v
