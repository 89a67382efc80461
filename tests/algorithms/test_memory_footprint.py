"""How many node-state-sized tensors an iteration holds at once, for a wide model (one (k, d) tensor is then as
large as a node state: 16 nodes x 10^6 parameters is 64 MiB each; see docs/scale.md, "Memory of wide node
states"). Counted exactly, op by op, with a dispatch mode: no timing and no resident-memory reading."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from proxgt.algorithms import ProxGT
from proxgt.data import split_nodes
from proxgt.data._dataset import make_dataset
from proxgt.estimators import make_estimator
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.problems.linear import LogisticRegression
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import L1
from proxgt.topology import make_topology


class LargeTensorCount(TorchDispatchMode):
    """The largest number of distinct storages of at least ``nbytes`` bytes alive at once, over every op run
    under the mode (plus the tensors given as ``initial``)."""

    def __init__(self, nbytes: int, initial: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.nbytes, self.peak = nbytes, 0
        self._refs: list[weakref.ref] = []
        for t in initial:
            self._track(t)

    def _track(self, t: object) -> None:
        if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.untyped_storage().nbytes() >= self.nbytes:
            self._refs.append(weakref.ref(t))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((out, args, kwargs))[0]:
            self._track(t)
        alive = {r().untyped_storage().data_ptr() for r in self._refs if r() is not None}
        self._refs = [r for r in self._refs if r() is not None]
        self.peak = max(self.peak, len(alive))
        return out


# 4 nodes x 600,000 features (9.6 MB per (k, d) float32 tensor): the penalty's row blocks (2^20 entries) are then
# one row, a quarter of a node-sized tensor, as in the wide runs (16 x 10^6: one row of sixteen)
K, P = 4, 600_000


def _wide_oracle() -> GradientOracle:
    rng = np.random.default_rng(0)
    rows = 64
    cols = rng.integers(0, P, size=(rows, 12))
    X = sp.csr_matrix((rng.random(rows * 12), (np.repeat(np.arange(rows), 12), cols.ravel())), shape=(rows, P))
    data = make_dataset(X, (rng.random(rows) < 0.5).astype(np.int64), "wide", "wide")
    return GradientOracle(LogisticRegression(P, rho=1e-3), split_nodes(data, K, "iid", seed=0), seed=0)


@pytest.mark.parametrize("estimator", ["sa", "sr-e"])
@pytest.mark.parametrize("rounds, most", [(8, 8), (6, 9), (1, 7)])
def test_an_iteration_holds_few_node_sized_tensors(estimator, rounds, most, monkeypatch):
    """State (x, v, y), the new x and v, the mixed input, one or two scratch buffers and the result: 8 with
    K = 8 (the tracking input is handed over to the mixer), 9 where K - 1 is a multiple of 3 plus 2 (no
    hand-over), 7 with one round (no scratch). The code before these limits held 12 (SA) and 13 (SR-E) at K = 8."""
    import proxgt.mixing.mixer as mixer_module

    # as for node states above the mixer's cache limit (32 MiB): scratch buffers live during the mixing only
    monkeypatch.setattr(mixer_module, "_CACHED_BUFFER_BYTES", 0)
    oracle = _wide_oracle()
    topo = make_topology("ring", K)
    mix = Mixer(SimulatedCommunicator(topo.W, topo.degrees), "chebyshev", rounds, lam=topo.lam)
    est = make_estimator(estimator, n_nodes=K, local_size=16, batch=4, big_batch=None, period=3)
    alg = ProxGT(est, L1(1e-4), step=0.5)
    state = alg.init(torch.zeros(K, P), oracle, mix)
    for _ in range(2):  # past the first refresh, into SARAH pair steps (period 3)
        state = alg.update(state, oracle, mix)
    with LargeTensorCount(K * P * 4, initial=(state.x, state.v, state.y)) as count:
        for _ in range(3):
            state = alg.update(state, oracle, mix)
    assert count.peak <= most, f"{count.peak} node-sized tensors alive at once (at most {most} expected)"
    assert torch.isfinite(state.x).all()
