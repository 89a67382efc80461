"""ProxGT's step and tracking block by block of columns (a simulated static graph): the same numbers as the whole
(k, d) tensors, the same rounds counted, and the whole-tensor path wherever blocks do not apply."""

from __future__ import annotations

import pytest
import torch

from proxgt.algorithms._parts import mix_owned, prox_mix, prox_step, track
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.mixing.communicator import block_columns
from proxgt.prox import L1, GroupLasso, L2Ball
from proxgt.topology import make_topology

K, D = 6, 30001  # several blocks of columns (10922 each for 6 float32 rows) and a remainder


def _mixers(sparse: bool | None = None) -> tuple[Mixer, Mixer]:
    t = make_topology("ring", K)
    comms = [SimulatedCommunicator(t.W, t.degrees, sparse=sparse) for _ in range(2)]
    return Mixer(comms[0], "chebyshev", 3, lam=t.lam), Mixer(comms[1], "chebyshev", 3, lam=t.lam)


def _rows(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(K, D, generator=torch.Generator().manual_seed(seed))


def test_the_blocks_cover_the_columns_more_than_once():
    assert D > 2 * block_columns(_rows(0))


@pytest.mark.parametrize("sparse", [None, True])
def test_tracking_by_blocks_is_the_whole_tracking_update(sparse):
    blocked, whole = _mixers(sparse)
    Y, V1, V0 = _rows(1), _rows(2), _rows(3)
    got = track(Y, V1, V0, blocked)
    expect = mix_owned(whole, torch.sub(V1, V0).add_(Y), key="y")
    assert torch.equal(got, expect)
    assert blocked.comm.counter.rounds == whole.comm.counter.rounds == 3
    assert blocked.comm.counter.bytes.tolist() == whole.comm.counter.bytes.tolist()


@pytest.mark.parametrize("reg", [L1(0.02, mask=torch.arange(D) % 1000 < 900), L1(0.02),
                                 GroupLasso(0.02, groups=[0] * D), L2Ball(1.0)],
                         ids=["l1-mask", "l1", "group-lasso", "l2-ball"])
def test_prox_and_mixing_by_blocks_is_the_whole_step(reg):
    """l1 (separable) goes by blocks, the others (not separable over coordinates) as whole tensors."""
    blocked, whole = _mixers()
    X, Y = _rows(4, 1e-2), _rows(5, 1e-1)
    got = prox_mix(reg, X, Y, 0.5, blocked, key="x")
    expect = mix_owned(whole, prox_step(reg, X, Y, 0.5), key="x")
    assert torch.equal(got, expect)
    assert blocked.comm.counter.rounds == whole.comm.counter.rounds == 3


def test_l1_of_a_column_block_is_that_block_of_the_prox():
    mask = torch.arange(D) % 7 != 0
    reg = L1(0.3, mask=mask)
    X = _rows(6, 0.2)
    for cols in (slice(0, 300), slice(299, 14000), slice(20000, D)):
        assert torch.equal(reg.columns(cols).prox(X[:, cols], 0.5), reg.prox(X, 0.5)[:, cols])
    assert reg.columns(slice(0, 300)) is reg.columns(slice(0, 300))  # cached
