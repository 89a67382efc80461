"""``.npz`` reader: arrays ``X`` (N first, any shape) and ``y`` (N,)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, make_dataset

__all__ = ["load_npz"]


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Read a numpy ``.npz`` archive holding arrays ``X`` (N, ...) and ``y`` (N,) into a :class:`Dataset`.

    ``X`` may have any shape with the sample axis first (e.g. ``(N, 1, 28, 28)`` images) and is cast to
    float32; a 1-D ``X`` is read as one feature. ``y`` follows the package label rule (integer labels with at
    most 1000 distinct values are classes mapped to ``0..C-1`` in sorted order, otherwise float32 regression).
    Object arrays are refused (the file is opened with ``allow_pickle=False``).

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
