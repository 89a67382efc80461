"""IDX (MNIST format) reader and the MNIST-style image folders built on it (Fashion-MNIST, MNIST)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, count, read_file_bytes

__all__ = [
    "load_idx",
    "load_fashion_mnist",
    "load_mnist_idx",
    "FASHION_MNIST_DEFAULT_DIR",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
]

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "PROXGT_FASHION_MNIST"
#: Pixel mean and std of the Fashion-MNIST training images after scaling to [0, 1].
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
#: Pixel mean and std of the MNIST training images after scaling to [0, 1].
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# IDX type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    raw = read_file_bytes(path)
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ProxGTValueError(f"{path}: corrupt gzip data ({exc})") from None
    return raw


def _parse_header(raw: bytes, where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, shape, header length) of an IDX byte string."""
    if len(raw) < 4:
        raise ProxGTValueError(
            f"{where}: truncated IDX file: {count(len(raw), 'byte')}, shorter than the 4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ProxGTValueError(
            f"{where}: not an IDX file: magic number starts with 0x{raw[0]:02x} 0x{raw[1]:02x}, "
            f"expected 0x00 0x00 <type code> <ndim>"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ProxGTValueError(f"{where}: unknown IDX type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise ProxGTValueError(f"{where}: IDX magic number gives 0 dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ProxGTValueError(
            f"{where}: truncated IDX file: header needs {head} bytes for {count(ndim, 'dimension')}, "
            f"found {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[code], shape, head


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed, into a numpy array.

    Gzip is recognized by its magic bytes ``1f 8b``, not by the file name. The IDX header is the magic
    number ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` big-endian uint32 sizes; type codes are
    0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. The result has the stored
    shape and a native-byte-order dtype.

    Raises:
        ProxGTValueError: missing file, bad gzip data, wrong magic number, unknown type code, a truncated
            file (``"<path>: truncated IDX file: expected N bytes of data, found M"``) or trailing bytes.

    Example:
        >>> load_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    where = str(path)
    raw = _read_bytes(path)
    dtype, shape, head = _parse_header(raw, where)
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - head
    if found < expected:
        raise ProxGTValueError(
            f"{where}: truncated IDX file: expected {count(expected, 'byte')} of data, found {found}"
        )
    if found > expected:
        raise ProxGTValueError(
            f"{where}: IDX file has {count(found - expected, 'byte')} after the {count(expected, 'byte')} "
            f"of data its header announces (shape {shape})"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=head).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _find(root: Path, split: str, kind: str) -> Path | None:
    ndim = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte"):
        for suffix in ("", ".gz"):
            cand = root / (stem + suffix)
            if cand.is_file():
                return cand
    return None


def _load_image_folder(
    root: Path, train: bool, mean: float, std: float, name: str, n_classes: int | None, what: str, hint: str
) -> Dataset:
    split = "train" if train else "t10k"
    images_path = _find(root, split, "images")
    labels_path = _find(root, split, "labels")
    if images_path is None or labels_path is None:
        raise ProxGTValueError(
            f"{what} not found in {root} (looked for {split}-images-idx3-ubyte[.gz] and "
            f"{split}-labels-idx1-ubyte[.gz]); {hint}"
        )
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.ndim != 3:
        raise ProxGTValueError(f"{images_path}: expected images of shape (N, H, W); got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ProxGTValueError(
            f"{labels_path}: expected {count(images.shape[0], 'label')} to match {images_path.name}; "
            f"got shape {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ProxGTValueError(f"{labels_path}: negative class label {int(labels.min())}")
    n_cls = n_classes if n_classes is not None else (int(labels.max()) + 1 if labels.size else 0)
    if labels.size and int(labels.max()) >= n_cls:
        raise ProxGTValueError(f"{labels_path}: class label {int(labels.max())} outside 0..{n_cls - 1}")
    X = torch.from_numpy(images.astype(np.float32))
    if images.dtype == np.uint8:
        X.mul_(1.0 / 255.0)
    X.sub_(mean).div_(std)
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(X.unsqueeze(1), y, n_cls, name)


def load_mnist_idx(
    root: str | os.PathLike[str],
    train: bool = True,
    *,
    mean: float = MNIST_MEAN,
    std: float = MNIST_STD,
    name: str = "mnist",
) -> Dataset:
    """Images and labels from an MNIST-format folder (``train-``/``t10k-images-idx3-ubyte[.gz]`` + labels).

    Also accepts the dotted names ``train-images.idx3-ubyte``. uint8 pixels are scaled to [0, 1], then
    normalized as ``(x - mean) / std`` (defaults: MNIST's 0.1307 and 0.3081). ``X`` is float32
    ``(N, 1, H, W)``; ``n_classes`` is the largest label + 1.
    """
    return _load_image_folder(
        Path(root),
        train,
        mean,
        std,
        name,
        None,
        "MNIST-format files",
        "pass the folder holding the IDX files",
    )


def load_fashion_mnist(root: str | None = None, *, train: bool = True) -> Dataset:
    """Fashion-MNIST (60000 train / 10000 test images, 10 classes) from local IDX files.

    The folder is ``root`` if given, else the environment variable ``PROXGT_FASHION_MNIST``, else
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``). ``train=False`` reads
    the ``t10k`` files. Pixels are scaled to [0, 1] and then normalized with Fashion-MNIST's usual training
    mean 0.2860 and std 0.3530, giving ``X`` float32 of shape ``(N, 1, 28, 28)``.

    Example:
        >>> load_fashion_mnist(train=False).X.shape     # doctest: +SKIP
        torch.Size([10000, 1, 28, 28])
    """
    folder = root if root is not None else os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR
    return _load_image_folder(
        Path(folder),
        train,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        "fashion-mnist",
        10,
        "Fashion-MNIST",
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir / set "
        "PROXGT_FASHION_MNIST",
    )
