"""``.npz`` reader: arrays ``X`` (N first, any shape) and ``y`` (N,)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, make_dataset

__all__ = ["load_npz"]


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Read a numpy ``.npz`` archive holding arrays ``X`` (N, ...) and ``y`` (N,) into a :class:`Dataset`.

    ``X`` may have any shape with the sample axis first (e.g. ``(N, 1, 28, 28)`` images) and is cast to
    float32; a 1-D ``X`` is read as one feature. ``y`` follows the package label rule (integer labels with at
    most 1000 distinct values are classes mapped to ``0..C-1`` in sorted order, otherwise float32 regression).
    Object arrays are refused (the file is opened with ``allow_pickle=False``).

    Sparse X: an archive without ``X`` but with the arrays of a scipy sparse matrix is read as a sparse
    (N, p) feature matrix, kept sparse: either what ``scipy.sparse.save_npz(path, X)`` writes (csr, csc or coo)
    with ``y`` added (``np.savez(path, y=y, **dict(np.load(path)))``), or the keys ``data``, ``indices``,
    ``indptr``, ``shape`` of a CSR matrix beside ``y``
    (``np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, y=y)``).

    Example:
        >>> np.savez("toy.npz", X=np.eye(3), y=np.array([-1, 1, 1]))   # doctest: +SKIP
        >>> load_npz("toy.npz").y.tolist()                                     # doctest: +SKIP
        [0, 1, 1]
    """
    where = str(path)
    p = Path(path)
    if not p.exists():
        raise ProxGTValueError(f"{where}: file does not exist")
    if not p.is_file():
        raise ProxGTValueError(f"{where}: not a regular file")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProxGTValueError(f"{where}: cannot read as .npz ({msg})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ProxGTValueError(f"{where}: expected an .npz archive with arrays X and y, found a single array")
    with archive:
        keys = sorted(archive.files)
        sparse_X = _sparse_X(archive, keys, where)
        if sparse_X is not None:
            if "y" not in keys:
                raise ProxGTValueError(
                    f"{where}: a sparse X needs labels: missing array 'y' (found: {', '.join(keys)})"
                )
            return make_dataset(sparse_X, _read(archive, "y", where), p.stem, where)
        missing = [k for k in ("X", "y") if k not in keys]
        if missing:
            raise ProxGTValueError(
                f"{where}: missing {'array' if len(missing) == 1 else 'arrays'} "
                f"{', '.join(repr(k) for k in missing)} "
                f"(found: {', '.join(keys) if keys else 'no arrays'}); save with np.savez(path, X=..., y=...)"
            )
        try:
            X = archive["X"]
            y = archive["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ProxGTValueError(f"{where}: cannot read arrays X and y ({msg})") from None
    return make_dataset(X, y, p.stem, where)


#: Keys of a sparse X in an .npz: scipy.sparse.save_npz's own (``format`` ``csr``/``csc``/``coo`` and its arrays,
#: then ``y`` added with np.savez) or the documented ``data``, ``indices``, ``indptr``, ``shape`` of a CSR
#: matrix beside ``y``.
_CSR_KEYS = ("data", "indices", "indptr", "shape")


def _read(archive: np.lib.npyio.NpzFile, key: str, where: str) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProxGTValueError(f"{where}: cannot read array {key!r} ({msg})") from None


def _sparse_X(archive: np.lib.npyio.NpzFile, keys: list[str], where: str) -> sp.spmatrix | None:
    """The sparse X an archive holds (CSR/CSC/COO arrays), or None if it holds a dense ``X``."""
    if "X" in keys or not all(k in keys for k in ("data", "shape")):
        return None
    fmt: object = _read(archive, "format", where).item() if "format" in keys else "csr"
    fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else str(fmt)
    try:
        shape = tuple(int(v) for v in _read(archive, "shape", where))
        data = _read(archive, "data", where)
        if fmt in ("csr", "csc"):
            missing = [k for k in ("indices", "indptr") if k not in keys]
            if missing:
                raise ProxGTValueError(f"{where}: sparse {fmt} X is missing {', '.join(map(repr, missing))}")
            cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
            return cls((data, _read(archive, "indices", where), _read(archive, "indptr", where)), shape=shape)
        if fmt == "coo":
            return sp.coo_matrix((data, (_read(archive, "row", where), _read(archive, "col", where))), shape=shape)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ProxGTValueError):
            raise
        raise ProxGTValueError(f"{where}: inconsistent sparse X arrays ({str(exc).splitlines()[0]})") from None
    raise ProxGTValueError(f"{where}: sparse format {fmt!r} is not supported (save X as csr, csc or coo)")
