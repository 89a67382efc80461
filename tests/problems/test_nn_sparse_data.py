"""A network problem on sparse features: the run densifies them first (with a size check) and trains exactly as
on the same data stored dense."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from proxgt.data import load_dataset
from proxgt.data._dataset import is_sparse
from proxgt.executors.simulation import run_simulation


def _files(tmp_path):
    X = sp.random(80, 30, density=0.2, random_state=0, format="csr", dtype=np.float64)
    row_sums = np.asarray(X.sum(axis=1)).ravel()
    y = (row_sums > np.median(row_sums)).astype(np.int64)
    sparse, dense = tmp_path / "sparse.npz", tmp_path / "dense.npz"
    np.savez(sparse, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape), format=b"csr", y=y)
    np.savez(dense, X=X.toarray(), y=y)
    return sparse, dense


def test_mlp_on_sparse_features_equals_the_dense_run(tmp_path):
    sparse, dense = _files(tmp_path)
    assert is_sparse(load_dataset(str(sparse))[0].X)  # the file really loads sparse
    cfg = {"problem": "mlp", "hidden": 8, "nodes": 2, "iters": 5, "log_every": 5, "dtype": "float64"}
    a = run_simulation({**cfg, "data": str(sparse)})
    b = run_simulation({**cfg, "data": str(dense)})
    assert torch.allclose(a.x, b.x, atol=1e-12)
    assert a.rows[-1]["objective"] == b.rows[-1]["objective"]
