"""Sharded loading: a process of a distributed run reads only the rows of the nodes it hosts (plus the test set).

The split over nodes needs only the number of rows and the labels, so loading is two steps:

1. a cheap look at the whole file for ``N`` and the labels (and, for LIBSVM text, the width ``p``): a LIBSVM
   file is streamed in 1 MiB blocks (memory: one block, the labels and one line number per row); a ``.npz`` archive
   reads ``y`` and the header of ``X``;
2. the hold-out and node split of :func:`proxgt.training.build_run`, replayed on row ids (same seed, same
   functions, so the same rows in the same order), then only the rows this process needs are read: LIBSVM by
   streaming the file again and parsing the kept lines with :func:`~proxgt.data.load_libsvm` (the other lines
   are blanked, so error messages keep the file's line numbers); ``.npz`` by memory-mapping an uncompressed
   ``X`` and copying the needed rows (a compressed member cannot be mapped: it is decompressed whole, then
   all but the needed rows are dropped).

What a process keeps: the samples of its own nodes, padded like the full split's :class:`NodeData` (to the
largest node of the whole network), and the whole held-out test set (test metrics are evaluated at the network
average on every process). The problem sees the process's training rows; a constant that needs every row (the
linear problems' ``lambda_max(A^T A) / N``) is computed by a power iteration whose products are summed over
the processes.

Files are sharded; built-in data sets (``a9a``, ``a9a-synthetic``, scikit-learn sets, Fashion-MNIST) and
files in a layout this module does not know are loaded whole and split as before (:func:`load_node_shard`
returns None), and so is anything that looks wrong, so that the full loader reports it with its own message.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxgt._validation import ProxGTValueError
from proxgt.registry import DATASETS

from ._dataset import Dataset, NodeData, _encode_labels, csr_rows, is_sparse
from ._libsvm import _parse_checked, _parse_fast, load_libsvm
from ._npz import load_npz
from ._split import split_nodes, train_test_split

__all__ = ["ShardRequest", "NodeShard", "load_node_shard", "distributed_lambda_max_gram", "BLOCK_BYTES"]

#: Bytes of LIBSVM text parsed at a time in the first pass (the parser's Python objects take about 30 times this).
BLOCK_BYTES = 2**20


@dataclass(frozen=True)
class ShardRequest:
    """What a process of a distributed run asks the data loading for.

    ``hosted(n_nodes)`` gives the global ids of the nodes this process hosts; ``sum_over_processes(t)`` returns
    the sum of ``t`` over every process of the run (an all-reduce; same shape, dtype and device as ``t``).
    ``load(cfg)``, when given, loads the process's shard itself (a site of a cross-site run reads its own file,
    :mod:`proxgt.executors.site.data`) instead of cutting it from the whole data file.
    """

    hosted: Callable[[int], Sequence[int]]
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor]
    load: Callable[[Any], NodeShard] | None = None


@dataclass
class NodeShard:
    """This process's part of the data: equal, row for row, to the full load's split cut to ``node_ids``."""

    train: Dataset  # the hosted nodes' samples, node after node (what the problem builder sees)
    test: Dataset | None  # the whole held-out set
    node_data: NodeData  # the hosted nodes, padded to the largest node of the whole split
    counts: torch.Tensor  # (n,) int64: every node's number of samples (the full split's ``counts``)
    n_train: int  # training samples over all nodes
    request: ShardRequest

    def gram_lambda_max(self) -> float:
        """lambda_max(A^T A / N) of the training rows of all processes (every process gets the same value)."""
        return distributed_lambda_max_gram(self.train.X, self.n_train, self.request.sum_over_processes)


def distributed_lambda_max_gram(
    A_local: torch.Tensor, n_total: int, sum_over_processes: Callable[[torch.Tensor], torch.Tensor],
    iters: int = 100, seed: int = 0,
) -> float:
    """Largest eigenvalue of ``A^T A / N`` where the rows of ``A`` are split over processes (``A_local`` here):
    the power iteration of :func:`proxgt.problems.linear.lambda_max_gram` (same start, stopping rule and
    margin) with ``A^T (A v) = sum_p A_p^T (A_p v)`` summed by ``sum_over_processes``. Every process gets the
    same value; it equals the one of the stacked rows up to the order of floating-point sums."""
    p = math.prod(A_local.shape[1:])
    if n_total == 0 or p == 0:
        return 0.0
    from proxgt.problems.linear import gram_product, power_iteration

    gram = gram_product(A_local)
    v = torch.randn(p, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return power_iteration(lambda u: sum_over_processes(gram(u)) / n_total, v, iters)


# ---------------------------------------------------------------------------------------------- the plan
def _ids_dataset(y: torch.Tensor, n_classes: int, name: str) -> Dataset:
    """A Dataset whose two float32 features encode the row id exactly (high and low 20 bits): the hold-out and
    node split run on it unchanged and tell which file rows go where."""
    ids = np.arange(y.shape[0], dtype=np.int64)
    X = np.stack([ids >> 20, ids & (2**20 - 1)], axis=1).astype(np.float32)
    return Dataset(torch.from_numpy(X), y, n_classes, name)


def _decode(X: torch.Tensor) -> np.ndarray:
    Xi = X.to(torch.int64).numpy()
    return (Xi[..., 0] << 20) | Xi[..., 1]


@dataclass
class _Plan:
    rows: np.ndarray  # (k, m_max) file rows of the hosted nodes (padding: -1)
    counts: torch.Tensor  # (n,) every node's sample count
    test_rows: np.ndarray | None
    n_train: int


def _plan(cfg: Any, y: torch.Tensor, n_classes: int, name: str, node_ids: Sequence[int]) -> _Plan:
    """Replays build_run's hold-out and node split (:func:`proxgt.training.build_run`) on row ids."""
    train: Dataset = _ids_dataset(y, n_classes, name)
    test: Dataset | None = None
    if cfg.test_fraction > 0 and len(train) >= 10:
        train, test = train_test_split(train, cfg.test_fraction, seed=cfg.seed)
    if cfg.nodes > len(train):
        raise ProxGTValueError(
            f"cannot split {len(train)} training samples over {cfg.nodes} nodes: each node needs at least one sample"
        )
    nd = split_nodes(train, cfg.nodes, cfg.split, alpha=cfg.alpha, seed=cfg.seed)
    ids = list(node_ids)
    rows = _decode(nd.X[ids])
    rows[~nd.mask()[ids].numpy()] = -1
    test_rows = None if test is None else _decode(test.X)
    return _Plan(rows, nd.counts.clone(), test_rows, len(train))


def _assemble(local: Dataset, kept: np.ndarray, plan: _Plan, y: torch.Tensor, n_classes: int, name: str,
              node_ids: Sequence[int]) -> tuple[Dataset, Dataset | None, NodeData]:
    """The hosted nodes' padded NodeData, their pooled rows and the test set from ``local`` (the rows ``kept``,
    sorted file row ids, in that order) with the labels of the whole file (``y``)."""
    pos = np.searchsorted(kept, np.where(plan.rows >= 0, plan.rows, kept[0]))
    mask = torch.from_numpy(plan.rows >= 0)
    k, m_max = plan.rows.shape
    idx = torch.from_numpy(pos.reshape(-1))
    yn = y[torch.from_numpy(np.where(plan.rows >= 0, plan.rows, 0).reshape(-1))].reshape(k, m_max)
    yn[~mask] = 0
    if is_sparse(local.X):  # CSR rows (k * m_max, p) as in proxgt.data.NodeData; padding rows are empty
        X = csr_rows(local.X, torch.where(mask.reshape(-1), idx, -1))
        train_X = csr_rows(local.X, idx[mask.reshape(-1)])
    else:
        X = local.X[idx].reshape(k, m_max, *local.feature_shape)
        X[~mask] = 0
        train_X = X[mask]
    node_data = NodeData(X, yn, mask.sum(dim=1).to(torch.int64), n_classes, tuple(int(i) for i in node_ids), name)
    train = Dataset(train_X, yn[mask], n_classes, name)
    test = None
    if plan.test_rows is not None:
        t = torch.from_numpy(np.searchsorted(kept, plan.test_rows))
        test_X = csr_rows(local.X, t) if is_sparse(local.X) else local.X[t]
        test = Dataset(test_X, y[torch.from_numpy(plan.test_rows)], n_classes, name)
    return train, test, node_data


def _needed(plan: _Plan) -> np.ndarray:
    parts = [plan.rows[plan.rows >= 0]] + ([plan.test_rows] if plan.test_rows is not None else [])
    return np.unique(np.concatenate(parts))


# ---------------------------------------------------------------------------------------------- LIBSVM
def _blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines (the last may lack its newline)."""
    with path.open("rb") as fh:
        rest = b""
        while True:
            chunk = fh.read(BLOCK_BYTES)
            if not chunk:
                if rest:
                    yield rest
                return
            chunk = rest + chunk
            cut = chunk.rfind(b"\n")
            if cut < 0:
                rest = chunk
                continue
            rest = chunk[cut + 1:]
            yield chunk[: cut + 1]


class _Unusual(Exception):
    """Something the full loader should report (or handle) itself."""


def _libsvm_scan(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, line index of each data row, largest feature index) of the whole file, one block at a time."""
    labels: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    p = 0
    line0 = 0
    for block in _blocks(path):
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unusual from None
        parsed = _parse_fast(text)
        if parsed is None:
            try:
                parsed = _parse_checked(text, str(path))
            except ProxGTValueError:  # the message's line number is the block's: the full loader says it right
                raise _Unusual from None
        y, line_of_row, _, cols, _ = parsed
        labels.append(y)
        lines.append(np.asarray(line_of_row, dtype=np.int64) - 1 + line0)
        if cols.size:
            p = max(p, int(cols.max()))
        line0 += text.count("\n")
    y_all = np.concatenate(labels) if labels else np.zeros(0)
    if y_all.size == 0 or not np.isfinite(y_all).all():
        raise _Unusual
    return y_all, np.concatenate(lines), p


def _libsvm_rows(path: Path, line_of_row: np.ndarray, kept: np.ndarray, p: int) -> Dataset:
    """The rows ``kept`` (sorted data-row ids) of the file, parsed by :func:`load_libsvm` with width ``p``."""
    keep_line = np.zeros(int(line_of_row[-1]) + 2, dtype=bool)
    keep_line[line_of_row[kept]] = True
    fd, tmp = tempfile.mkstemp(prefix="proxgt-shard-", suffix=".svm")
    try:
        with os.fdopen(fd, "wb") as out:
            line0 = 0
            for block in _blocks(path):
                lines = block.split(b"\n")
                if block.endswith(b"\n"):
                    lines.pop()
                flags = keep_line[line0: line0 + len(lines)]
                out.write(b"".join(ln + b"\n" if f else b"\n" for ln, f in zip(lines, flags, strict=False)))
                line0 += len(lines)
        try:
            return load_libsvm(tmp, n_features=max(p, 1))
        except ProxGTValueError as exc:  # name the user's file, not the temporary one
            raise ProxGTValueError(str(exc).replace(tmp, str(path))) from None
    finally:
        os.unlink(tmp)


# ---------------------------------------------------------------------------------------------- .npz
def _npz_member(path: Path, name: str) -> np.ndarray:
    """Member ``name`` (``X.npy``) of the archive: memory-mapped when stored uncompressed, else read whole."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        stored = info.compress_type == zipfile.ZIP_STORED
    if stored:
        with path.open("rb") as fh:
            fh.seek(info.header_offset)
            head = fh.read(30)
            if head[:4] != b"PK\x03\x04":
                raise _Unusual
            start = info.header_offset + 30 + int.from_bytes(head[26:28], "little") + \
                int.from_bytes(head[28:30], "little")
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise _Unusual
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        if dtype.hasobject:
            raise _Unusual
        if not shape or 0 in shape:
            raise _Unusual
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as archive:
        return archive[name[:-4]]


def _npz_parts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        if not {"X.npy", "y.npy"} <= names:
            raise _Unusual
        with np.load(path, allow_pickle=False) as archive:
            y = np.asarray(archive["y"])
        X = _npz_member(path, "X.npy")
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        raise _Unusual from None
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf" or X.ndim == 0:
        raise _Unusual
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != X.shape[0] or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        raise _Unusual
    return X, y


def _npz_rows(path: Path, X: np.ndarray, kept: np.ndarray, name: str) -> Dataset:
    rows = np.ascontiguousarray(X[kept], dtype=np.float32)  # a memmap reads only the pages of these rows
    if rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if not np.isfinite(rows).all():
        raise ProxGTValueError(f"{path}: X contains NaN or Inf")
    return Dataset(torch.from_numpy(rows), torch.zeros(len(kept), dtype=torch.float32), 0, name)


# ---------------------------------------------------------------------------------------------- entry point
def _data_file(cfg: Any) -> Path | None:
    """The data file of ``cfg`` as :func:`proxgt.data.load_dataset` resolves it, or None (a registered name)."""
    spec = os.fspath(cfg.data)
    if spec in DATASETS:
        return None
    p = Path(spec).expanduser()
    if not p.exists() and cfg.data_dir is not None and not p.is_absolute():
        p = Path(cfg.data_dir).expanduser() / p
    if not p.is_file():
        return None
    with p.open("rb") as fh:
        if fh.read(2) in (b"\x1f\x8b", b"\x00\x00"):  # gzip or IDX: load_dataset refuses it
            return None
    return p


def load_node_shard(cfg: Any, request: ShardRequest) -> NodeShard | None:
    """This process's rows of the data file of ``cfg`` (settings ``data``, ``data_dir``, ``seed``,
    ``test_fraction``, ``nodes``, ``split``, ``alpha``), split as :func:`proxgt.training.build_run` splits the
    full load; None when the data is not a file this module shards (the caller then loads it whole).

    Raises ProxGTValueError as the full loader would (the full loader itself is called to say what is wrong
    with a file this module finds unusual).
    """
    if request.load is not None:
        return request.load(cfg)
    path = _data_file(cfg)
    if path is None:
        return None
    name = path.stem
    node_ids = [int(i) for i in request.hosted(int(cfg.nodes))]
    npz = path.suffix.lower() == ".npz"
    try:
        if npz:
            X_file, y_raw = _npz_parts(path)
        else:
            y_raw, line_of_row, p = _libsvm_scan(path)
    except _Unusual:
        (load_npz if npz else load_libsvm)(path)  # raises the proper message, or loads a layout we skip
        return None
    y, n_classes = _encode_labels(y_raw)
    plan = _plan(cfg, y, n_classes, name, node_ids)
    kept = _needed(plan)
    local = _npz_rows(path, X_file, kept, name) if npz else _libsvm_rows(path, line_of_row, kept, p)
    train, test, node_data = _assemble(local, kept, plan, y, n_classes, name, node_ids)
    return NodeShard(train=train, test=test, node_data=node_data, counts=plan.counts, n_train=plan.n_train,
                     request=request)
