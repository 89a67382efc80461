"""LIBSVM's a9a, built from the UCI Adult files shipped in ``proxgt/data/adult`` (see its ``NOTICE.md``)."""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, read_file_bytes

__all__ = ["load_a9a", "ADULT_ATTRIBUTES", "N_QUANTILE_BINS"]

#: The 14 attributes of an Adult row, in file order, with how each becomes binary features: ``"category"``
#: (one-hot over the training categories), ``"quantile"`` (:data:`N_QUANTILE_BINS` training-quantile bins) or
#: ``"nonzero"`` (two features: zero, non-zero). The features follow this order, so the block sizes are
#: 5, 8, 5, 16, 5, 7, 14, 6, 5, 2, 2, 2, 5, 41 (123 in all) on the shipped files.
ADULT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("age", "quantile"),
    ("workclass", "category"),
    ("fnlwgt", "quantile"),
    ("education", "category"),
    ("education-num", "quantile"),
    ("marital-status", "category"),
    ("occupation", "category"),
    ("relationship", "category"),
    ("race", "category"),
    ("sex", "category"),
    ("capital-gain", "nonzero"),
    ("capital-loss", "nonzero"),
    ("hours-per-week", "quantile"),
    ("native-country", "category"),
)

#: Number of equal-frequency bins for each continuous attribute.
N_QUANTILE_BINS = 5

_FILES = ("adult.data", "adult.test")
_N_FIELDS = len(ADULT_ATTRIBUTES) + 1  # the attributes, then the label
_POSITIVE, _NEGATIVE = ">50K", "<=50K"

# process-wide cache of the built arrays, keyed by where they were read from (building takes about 1 s)
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_CACHE: dict[tuple, _Arrays] = {}


def _shipped_bytes(name: str) -> bytes:
    res = resources.files("proxgt.data").joinpath("adult", f"{name}.gz")
    try:
        return gzip.decompress(res.read_bytes())
    except (OSError, EOFError) as exc:
        raise ProxGTValueError(
            f"the UCI Adult file {name}.gz shipped with proxgt cannot be read ({exc}); reinstall proxgt, or pass "
            f"data_dir naming a folder that holds adult.data and adult.test"
        ) from None


def _user_files(data_dir: str | os.PathLike[str] | None) -> dict[str, Path] | None:
    """``{"adult.data": path, "adult.test": path}`` found in ``data_dir`` (plain or ``.gz``), or None for the
    shipped copies when ``data_dir`` is None or holds neither file."""
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser()
    found: dict[str, Path] = {}
    for name in _FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    if not found:
        return None
    if len(found) == 1:
        (have,) = found
        missing = next(n for n in _FILES if n != have)
        raise ProxGTValueError(
            f"data_dir '{data_dir}' holds {have} but not {missing} (nor {missing}.gz); a9a needs both UCI Adult "
            f"files, or neither (then the copies shipped with proxgt are used)"
        )
    return found


def _read_user_file(path: Path) -> bytes:
    raw = read_file_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ProxGTValueError(f"{path}: cannot decompress this gzip file ({exc})") from None
    return raw


def _parse(raw: bytes, where: str) -> tuple[list[tuple[str, ...]], list[int]]:
    """The rows of an Adult file as columns of stripped strings, and the line number of each row.

    Blank lines and lines starting with ``|`` (the comment that opens ``adult.test``) are skipped.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProxGTValueError(f"{where}: not a UCI Adult text file (cannot decode it as UTF-8 text)") from None
    kept: list[str] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if line and not line.startswith("|"):
            kept.append(line)
            lines.append(lineno)
    if not kept:
        raise ProxGTValueError(f"{where}: no data rows")
    for line, lineno in zip(kept, lines, strict=True):
        if line.count(",") != _N_FIELDS - 1:
            raise ProxGTValueError(
                f"{where} line {lineno}: expected {_N_FIELDS} comma-separated fields (14 attributes and the "
                f"label), got {line.count(',') + 1}"
            )
    fields = list(map(str.strip, ",".join(kept).split(",")))
    return [tuple(fields[j::_N_FIELDS]) for j in range(_N_FIELDS)], lines


def _numbers(col: tuple[str, ...], attribute: str, lines: list[int], where: str) -> np.ndarray:
    try:
        return np.array(list(map(float, col)), dtype=np.float64)
    except ValueError:
        for value, lineno in zip(col, lines, strict=True):
            try:
                float(value)
            except ValueError:
                raise ProxGTValueError(
                    f"{where} line {lineno}: attribute {attribute!r} must be a number, got {value!r}"
                ) from None
        raise


def _labels(col: tuple[str, ...], lines: list[int], where: str) -> np.ndarray:
    y = np.empty(len(col), dtype=np.int64)
    for i, value in enumerate(col):
        label = value[:-1] if value.endswith(".") else value  # adult.test writes ">50K." and "<=50K."
        if label == _POSITIVE:
            y[i] = 1
        elif label == _NEGATIVE:
            y[i] = 0
        else:
            raise ProxGTValueError(
                f"{where} line {lines[i]}: the label must be {_POSITIVE!r} or {_NEGATIVE!r} (optionally with a "
                f"final period), got {value!r}"
            )
    return y


def _binarize(
    train: list[tuple[str, ...]],
    test: list[tuple[str, ...]],
    where: tuple[str, str],
    lines: tuple[list[int], list[int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Both parts' features: every rule is fitted on ``train`` and applied to both."""
    codes: list[tuple[np.ndarray, np.ndarray, int]] = []  # per attribute: train codes, test codes, width
    for j, (attribute, kind) in enumerate(ADULT_ATTRIBUTES):
        if kind == "category":
            index = {c: k for k, c in enumerate(sorted(set(train[j]) - {"?"}))}
            codes.append(
                (
                    np.array([index.get(v, -1) for v in train[j]], dtype=np.int64),
                    np.array([index.get(v, -1) for v in test[j]], dtype=np.int64),
                    len(index),
                )
            )
            continue
        a = _numbers(train[j], attribute, lines[0], where[0])
        b = _numbers(test[j], attribute, lines[1], where[1])
        if kind == "quantile":
            edges = np.quantile(a, np.arange(1, N_QUANTILE_BINS) / N_QUANTILE_BINS)
            codes.append(
                (np.searchsorted(edges, a, side="right"), np.searchsorted(edges, b, side="right"), N_QUANTILE_BINS)
            )
        else:  # nonzero
            codes.append(((a != 0).astype(np.int64), (b != 0).astype(np.int64), 2))
    width = sum(w for _, _, w in codes)
    out = []
    for part in (0, 1):
        n = len(codes[0][0] if part == 0 else codes[0][1])
        X = np.zeros((n, width), dtype=np.float32)
        offset = 0
        for train_codes, test_codes, w in codes:
            c = train_codes if part == 0 else test_codes
            rows = np.flatnonzero(c >= 0)
            X[rows, offset + c[rows]] = 1.0
            offset += w
        out.append(X)
    return out[0], out[1]


def _build(data_dir: str | os.PathLike[str] | None) -> _Arrays:
    files = _user_files(data_dir)
    if files is None:
        key: tuple = ("shipped",)
    else:
        key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in files.values())
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    parts = []
    wheres = []
    for name in _FILES:
        if files is None:
            raw, where = _shipped_bytes(name), f"{name} (shipped with proxgt)"
        else:
            raw, where = _read_user_file(files[name]), str(files[name])
        parts.append(_parse(raw, where))
        wheres.append(where)
    (train_cols, train_lines), (test_cols, test_lines) = parts
    X_train, X_test = _binarize(train_cols, test_cols, (wheres[0], wheres[1]), (train_lines, test_lines))
    y_train = _labels(train_cols[-1], train_lines, wheres[0])
    y_test = _labels(test_cols[-1], test_lines, wheres[1])
    for arr in (X_train, X_test, y_train, y_test):
        arr.flags.writeable = False
    _CACHE[key] = (X_train, y_train, X_test, y_test)
    return _CACHE[key]


def load_a9a(*, seed: int, data_dir: str | None = None) -> tuple[Dataset, Dataset]:
    """LIBSVM's a9a built from the UCI Adult data: 32561 x 123 train, 16281 x 123 test, 2 classes.

    a9a (Platt, 1999) is the Adult census data (Kohavi and Becker, 1996) with every attribute turned into
    0/1 indicator features. This loader rebuilds it from the original files (``adult.data`` for training,
    ``adult.test`` for testing), which ship with proxgt (gzip-compressed, CC BY 4.0; attribution in
    ``proxgt/data/adult/NOTICE.md``). Every rule is fitted on the training file alone and applied unchanged
    to the test file. Going through the 14 attributes in file order (:data:`ADULT_ATTRIBUTES`):

    - the 8 categorical attributes (workclass, education, marital-status, occupation, relationship, race, sex,
      native-country) get one feature per category that occurs in the training file, in sorted order
      (8 + 16 + 7 + 14 + 6 + 5 + 2 + 41 = 99 features). A missing value (``?``), or a category the training
      file lacks, sets none of its attribute's features;
    - the 4 continuous attributes age, fnlwgt, education-num and hours-per-week fall into 5 bins cut at the
      20/40/60/80% quantiles of the training values (``numpy.quantile``, linear interpolation); a value equal
      to a cut goes to the upper bin, so when cuts coincide (education-num at 9, hours-per-week at 40) a bin
      stays empty. 20 features;
    - capital-gain and capital-loss become two features each: zero, non-zero (4 features).

    That makes 123 features, 13.869 ones per training row on average (14 less the missing values). The label
    is 1 for ``>50K`` and 0 for ``<=50K`` (the test file's labels end with a period, which is dropped), the
    class-id convention of the other binary sets (LIBSVM's +1/-1 become 1/0); 24.08% of training rows are 1.
    Features are float32, labels int64. The cut points reproduce a9a's statistics; they need not match the
    LIBSVM file bit for bit, so results are "a9a (built from UCI Adult)". A plain L2-regularized logistic
    regression (scikit-learn's defaults) reaches about 85.0% test accuracy, as reported for a9a.

    ``seed`` is unused (the data are fixed). ``data_dir``, if it holds ``adult.data`` and ``adult.test``
    (plain or ``.gz``), is read instead of the shipped copies; holding neither, it is ignored. Built arrays
    are cached per process, so loading again costs only a copy.

    Example:
        >>> train, test = load_a9a(seed=0)
        >>> train.X.shape, test.X.shape, train.n_classes
        (torch.Size([32561, 123]), torch.Size([16281, 123]), 2)
    """
    X_train, y_train, X_test, y_test = _build(data_dir)
    return (
        Dataset(torch.tensor(X_train), torch.tensor(y_train), 2, "a9a"),
        Dataset(torch.tensor(X_test), torch.tensor(y_test), 2, "a9a"),
    )
