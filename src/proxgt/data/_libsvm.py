"""LIBSVM / svmlight text reader (own parser, so every error names the offending line)."""

from __future__ import annotations

import math
import os
from itertools import repeat
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from proxgt._validation import ProxGTValueError, check_choice, param_error

from ._dataset import Dataset, available_memory, make_dataset, read_file_bytes

__all__ = ["load_libsvm", "parse_libsvm", "libsvm_csr", "MAX_DENSE_BYTES", "AUTO_DENSE_BYTES", "LAYOUTS"]

#: ``layout="dense"`` refuses a file whose ``N x p`` float32 matrix would take more than this many bytes (or more
#: than the memory available right now), before allocating anything.
MAX_DENSE_BYTES = 8 * 2**30

#: ``layout="auto"`` keeps a file dense up to this many bytes of dense float32 matrix, sparse above.
AUTO_DENSE_BYTES = 64 * 2**20

#: The feature layouts :func:`load_libsvm` can produce.
LAYOUTS: tuple[str, ...] = ("auto", "sparse", "dense")

# indices beyond this cannot be held in int64 arithmetic (N * p); any such index is refused outright
_INDEX_LIMIT = 2**62


def _size(n_bytes: int) -> str:
    """``373 GiB``, ``8 GiB``, ``1.5 MiB``, ``1000 bytes``."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    unit, scale = next(u for u in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)) if n_bytes >= u[1])
    v = n_bytes / scale
    return f"{v:,.0f} {unit}" if v >= 10 or v == int(v) else f"{v:.1f} {unit}"


def _dense_limit() -> tuple[int, str]:
    """(largest dense matrix in bytes the loader makes, how to say it)."""
    avail = available_memory()
    if avail is not None and avail < MAX_DENSE_BYTES:
        return avail, f"more than the {_size(avail)} of memory available"
    return MAX_DENSE_BYTES, f"more than {_size(MAX_DENSE_BYTES)}"


def _too_wide(
    what: str, n_rows: int, p: int,
    advice: str = "check the index, renumber the features 1..p, or use layout='sparse'"
) -> str | None:
    """The end of the message refusing an ``n_rows x p`` dense matrix, or None if it fits."""
    need = 4 * n_rows * p
    limit, limit_text = _dense_limit()
    if need <= limit:
        return None
    return (
        f"{what} would make a dense {n_rows} x {p} matrix ({_size(need)}); layout='dense' keeps features dense "
        f"(float32) and refuses {limit_text}; {advice}"
    )


def _count_rows(text: str) -> int:
    return sum(1 for raw in text.split("\n") if (raw[: raw.find("#")] if "#" in raw else raw).split())


def _read_text(path: str | os.PathLike[str]) -> str:
    raw = read_file_bytes(path)
    if not raw.strip():
        raise ProxGTValueError(f"{path}: empty file (expected LIBSVM lines 'label idx:val idx:val ...')")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProxGTValueError(f"{path}: not a LIBSVM text file (cannot decode it as UTF-8 text)") from None


_Parsed = tuple[np.ndarray, list[int], np.ndarray, np.ndarray, np.ndarray]


def _parse_fast(text: str) -> _Parsed | None:
    """Vectorized parse of well-formed text; ``None`` if anything looks off (the checked parser then runs)."""
    labels: list[str] = []
    line_of_row: list[int] = []
    counts: list[int] = []
    tokens: list[str] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        cut = raw.find("#")
        parts = (raw[:cut] if cut >= 0 else raw).split()
        if parts:
            labels.append(parts[0])
            line_of_row.append(lineno)
            counts.append(len(parts) - 1)
            tokens.extend(parts[1:])
    if tokens and set(map(str.count, tokens, repeat(":"))) != {1}:
        return None
    pieces = " ".join(tokens).replace(":", " ").split()
    if len(pieces) != 2 * len(tokens):
        return None
    try:
        y = np.array(list(map(float, labels)), dtype=np.float64)
        cols = np.array(list(map(int, pieces[0::2])), dtype=np.int64)
        vals = np.array(list(map(float, pieces[1::2])), dtype=np.float64)
    except (ValueError, OverflowError):  # OverflowError: an index beyond int64
        return None
    rows = np.repeat(np.arange(len(labels), dtype=np.int64), np.asarray(counts, dtype=np.int64))
    return y, line_of_row, rows, cols, vals


def _parse_checked(text: str, where: str) -> _Parsed:
    """Token-by-token parse that names the first bad line; also skips svmlight ``qid:`` tokens."""
    labels: list[float] = []
    line_of_row: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        cut = raw.find("#")
        parts = (raw[:cut] if cut >= 0 else raw).split()
        if not parts:
            continue
        try:
            label = float(parts[0])
        except ValueError:
            raise ProxGTValueError(f"{where} line {lineno}: cannot parse label {parts[0]!r}") from None
        if not math.isfinite(label):
            raise ProxGTValueError(f"{where} line {lineno}: label {parts[0]!r} is not finite")
        r = len(labels)
        labels.append(label)
        line_of_row.append(lineno)
        for tok in parts[1:]:
            i, sep, v = tok.partition(":")
            try:
                if not sep:
                    raise ValueError
                idx = int(i)
                val = float(v)
            except ValueError:
                if i == "qid" and sep:
                    continue
                raise ProxGTValueError(f"{where} line {lineno}: cannot parse {tok!r}") from None
            if idx < 1:
                raise ProxGTValueError(
                    f"{where} line {lineno}: feature index {idx} < 1 (LIBSVM indices are 1-based)"
                )
            if idx > _INDEX_LIMIT:
                msg = _too_wide(f"feature index {idx}", _count_rows(text), idx)
                raise ProxGTValueError(f"{where} line {lineno}: {msg}")
            rows.append(r)
            cols.append(idx)
            vals.append(val)
    return (
        np.asarray(labels, dtype=np.float64),
        line_of_row,
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        np.asarray(vals, dtype=np.float64),
    )


def load_libsvm(
    path: str | os.PathLike[str], n_features: int | None = None, *, layout: str = "auto"
) -> Dataset:
    """Read a LIBSVM / svmlight text file into a :class:`Dataset`, sparse or dense.

    Each data line is ``label idx:val idx:val ...`` with 1-based feature indices; text after ``#`` is a
    comment, blank lines are skipped and ``qid:..`` tokens are ignored. Omitted features are zero.

    Labels follow the package rule: integer labels with at most 1000 distinct values are classes, mapped to
    ``0..C-1`` in sorted order (``-1/+1`` -> ``0/1``); anything else is a float32 regression target.

    Args:
        path: the text file.
        n_features: width ``p`` of ``X``; default the largest index in the file. Give it when a test file
            may not use the last features of its training file.
        layout: ``"sparse"``: X is a torch sparse CSR float32 matrix, memory proportional to the non-zeros
            (a file with a feature index of 10^9 costs no more than its entries); ``"dense"``: a dense float32
            matrix; ``"auto"`` (default): dense when that takes at most :data:`AUTO_DENSE_BYTES` (64 MiB, where
            dense products are as cheap as sparse ones: a9a, the scikit-learn sets), else sparse.

    Returns:
        ``Dataset`` with ``X`` of shape ``(N, p)``, named after the file stem.

    Raises:
        ProxGTValueError: missing or empty file, a malformed line
            (``"data.txt line 17: cannot parse 'x:y'"``), an index < 1 or > ``n_features``, an index given
            twice on one line, a non-finite label or value, or with ``layout="dense"`` a width that would make
            the dense float32 matrix larger than :data:`MAX_DENSE_BYTES` (8 GiB) or than the memory available
            (checked before allocating).

    Example:
        >>> ds = load_libsvm("a9a.txt")          # doctest: +SKIP
        >>> ds.X.shape, ds.n_classes             # doctest: +SKIP
        (torch.Size([32561, 123]), 2)
    """
    check_choice(layout, "layout", LAYOUTS, "load_libsvm")
    where = str(path)
    labels, line_of_row, r_arr, c_arr, v_arr, p = parse_libsvm(_read_text(path), where, n_features)
    n_rows = int(labels.size)
    if layout == "auto":
        layout = "dense" if 4 * n_rows * p <= AUTO_DENSE_BYTES else "sparse"
    if layout == "sparse":
        return make_dataset(libsvm_csr(r_arr, c_arr, v_arr, n_rows, p), labels, Path(path).stem, where)
    if n_features is None:
        msg = _too_wide(f"feature index {p}", n_rows, p)
        if msg is not None:
            k = int(np.argmax(c_arr))
            raise ProxGTValueError(f"{where} line {line_of_row[r_arr[k]]}: {msg}")
    else:
        msg = _too_wide(f"n_features={p}", n_rows, p, "pass a smaller n_features, or layout='sparse'")
        if msg is not None:
            raise ProxGTValueError(f"{where}: {msg}")
    X = np.zeros((n_rows, p), dtype=np.float32)
    X[r_arr, c_arr - 1] = v_arr
    return make_dataset(X, labels, Path(path).stem, where)


def libsvm_csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, p: int) -> sp.csr_matrix:
    """The scipy CSR float32 matrix (n_rows, p) of parsed entries (``cols`` 1-based, as in the file)."""
    return sp.csr_matrix((vals.astype(np.float32), (rows, cols - 1)), shape=(n_rows, p), dtype=np.float32)


def parse_libsvm(
    text: str, where: str, n_features: int | None = None
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray, np.ndarray, int]:
    """Parse and check LIBSVM text: ``(labels float64 (N,), file line of each row, rows, cols (1-based),
    values float64, width p)``, the entries in file order. Every check of :func:`load_libsvm` but the dense
    size; ``where`` prefixes the messages (the path). Reusable by loaders that read a subset of rows."""
    if n_features is not None and (
        isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1
    ):
        raise param_error("load_libsvm", "n_features", "an int >= 1 or None", n_features)
    parsed = _parse_fast(text)
    if parsed is None:
        parsed = _parse_checked(text, where)
    labels, line_of_row, r_arr, c_arr, v_arr = parsed
    if labels.size == 0:
        raise ProxGTValueError(f"{where}: no data lines (only comments or blank lines)")
    if c_arr.size and int(c_arr.min()) < 1:
        k = int(np.argmax(c_arr < 1))
        raise ProxGTValueError(
            f"{where} line {line_of_row[r_arr[k]]}: feature index {c_arr[k]} < 1 (LIBSVM indices are 1-based)"
        )
    bad = ~np.isfinite(labels)
    if bad.any():
        raise ProxGTValueError(f"{where} line {line_of_row[int(np.argmax(bad))]}: label is not finite")
    bad = ~np.isfinite(v_arr)
    if bad.any():
        k = int(np.argmax(bad))
        raise ProxGTValueError(
            f"{where} line {line_of_row[r_arr[k]]}: value of feature {c_arr[k]} is not finite"
        )
    p_file = int(c_arr.max()) if c_arr.size else 0
    if n_features is None:
        p = max(p_file, 1)
    else:
        p = n_features
        if p_file > p:
            k = int(np.argmax(c_arr > p))
            raise ProxGTValueError(
                f"{where} line {line_of_row[r_arr[k]]}: feature index {c_arr[k]} exceeds n_features={p}"
            )
    if c_arr.size > 1:
        order = np.lexsort((c_arr, r_arr))
        rs, cs = r_arr[order], c_arr[order]
        same = (rs[1:] == rs[:-1]) & (cs[1:] == cs[:-1])
        if same.any():
            k = int(np.argmax(same))
            row, col = int(rs[k]), int(cs[k])
            times = int(np.count_nonzero((r_arr == row) & (c_arr == col)))
            raise ProxGTValueError(
                f"{where} line {line_of_row[row]}: feature index {col} appears "
                f"{'twice' if times == 2 else f'{times} times'}; each index may appear once per line"
            )
    return labels, line_of_row, r_arr, c_arr, v_arr, p
