"""LIBSVM / svmlight text reader (own parser, so every error names the offending line)."""

from __future__ import annotations

import math
import os
from itertools import repeat
from pathlib import Path

import numpy as np

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, make_dataset, read_file_bytes

__all__ = ["load_libsvm"]


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
    except ValueError:
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


def load_libsvm(path: str | os.PathLike[str], n_features: int | None = None) -> Dataset:
    """Read a LIBSVM / svmlight text file into a dense :class:`Dataset`.

    Each data line is ``label idx:val idx:val ...`` with 1-based feature indices; text after ``#`` is a
    comment, blank lines are skipped and ``qid:..`` tokens are ignored. Omitted features are zero.

    Labels follow the package rule: integer labels with at most 1000 distinct values are classes, mapped to
    ``0..C-1`` in sorted order (``-1/+1`` -> ``0/1``); anything else is a float32 regression target.

    Args:
        path: the text file.
        n_features: width ``p`` of ``X``; default the largest index in the file. Give it when a test file
            may not use the last features of its training file.

    Returns:
        ``Dataset`` with ``X`` float32 of shape ``(N, p)``, named after the file stem.

    Raises:
        ProxGTValueError: missing or empty file, a malformed line
            (``"data.txt line 17: cannot parse 'x:y'"``), an index < 1 or > ``n_features``, a non-finite
            label or value.

    Example:
        >>> ds = load_libsvm("a9a.txt")          # doctest: +SKIP
        >>> ds.X.shape, ds.n_classes             # doctest: +SKIP
        (torch.Size([32561, 123]), 2)
    """
    if n_features is not None and (
        isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1
    ):
        raise ProxGTValueError(
            f"The 'n_features' parameter of load_libsvm must be an int >= 1 or None. "
            f"Got {n_features!r} instead."
        )
    where = str(path)
    text = _read_text(path)

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
    X = np.zeros((labels.size, p), dtype=np.float32)
    X[r_arr, c_arr - 1] = v_arr
    return make_dataset(X, labels, Path(path).stem, where)
