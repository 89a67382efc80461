"""Multi-round mixing: average preservation, contraction bounds, round selection, accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from proxgt._validation import ProxGTValueError
from proxgt.mixing import (
    MIXING_KINDS,
    Mixer,
    SimulatedCommunicator,
    contraction,
    mixing_matrix,
    rounds_for_target,
)
from proxgt.topology import make_topology

J = lambda n: torch.full((n, n), 1.0 / n, dtype=torch.float64)  # noqa: E731


def _cheb_T(k: int, s: float) -> float:
    """T_k(s) for s >= 1 in closed form."""
    return math.cosh(k * math.acosh(s))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 24),
    kind=st.sampled_from(MIXING_KINDS),
    rounds=st.integers(1, 12),
    topo=st.sampled_from(["ring", "path", "star", "grid", "erdos_renyi"]),
    seed=st.integers(0, 50),
)
def test_mixing_preserves_average(n, kind, rounds, topo, seed):
    try:
        t = make_topology(topo, n, seed=seed)
    except ProxGTValueError:  # a disconnected random draw
        return
    comm = SimulatedCommunicator(t.W, t.degrees)
    Z = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    Z0 = Z.clone()
    out = Mixer(comm, kind, rounds, lam=t.lam)(Z)
    assert torch.equal(Z, Z0), "the mixer must not modify its input"
    torch.testing.assert_close(out.mean(0), Z.mean(0), rtol=0, atol=1e-12)
    assert comm.counter.rounds == rounds


@pytest.mark.parametrize("topo", ["ring", "path", "grid", "star"])
@pytest.mark.parametrize("rounds", [1, 2, 5, 9])
def test_contraction_bounds(topo, rounds):
    t = make_topology(topo, 16)
    n, lam = t.n, t.lam
    plain = torch.linalg.matrix_norm(mixing_matrix(t.W, "plain", rounds) - J(n), ord=2).item()
    cheb = torch.linalg.matrix_norm(mixing_matrix(t.W, "chebyshev", rounds) - J(n), ord=2).item()
    fast = torch.linalg.matrix_norm(mixing_matrix(t.W, "fastmix", rounds) - J(n), ord=2).item()
    assert plain <= lam**rounds + 1e-10
    assert cheb <= 1.0 / _cheb_T(rounds, 1.0 / lam) + 1e-10
    assert cheb <= 2 * ((1 - math.sqrt(1 - lam**2)) / lam) ** rounds + 1e-10
    # the spectral formula used by rounds_for_target agrees with the explicit matrix
    for kind, val in (("plain", plain), ("chebyshev", cheb), ("fastmix", fast)):
        assert contraction(t.eigenvalues, kind, rounds) == pytest.approx(val, abs=1e-9)


def test_chebyshev_polynomial_matches_definition():
    """M_K = T_K(W / lam) / T_K(1 / lam), checked through the eigen-decomposition of W."""
    t = make_topology("ring", 10)
    ev, U = np.linalg.eigh(t.W.numpy())
    K, lam = 6, t.lam
    T = np.polynomial.chebyshev.Chebyshev.basis(K)
    expected = U @ np.diag(T(ev / lam) / T(1 / lam)) @ U.T
    np.testing.assert_allclose(mixing_matrix(t.W, "chebyshev", K).numpy(), expected, atol=1e-10)


def test_rounds_for_target_is_minimal_and_chebyshev_needs_fewer():
    t = make_topology("ring", 32)
    for kind in MIXING_KINDS:
        k = rounds_for_target(t.eigenvalues, kind, 0.2)
        assert contraction(t.eigenvalues, kind, k) <= 0.2
        if k > 1:
            assert contraction(t.eigenvalues, kind, k - 1) > 0.2
    k_plain = rounds_for_target(t.eigenvalues, "plain", 0.2)
    k_cheb = rounds_for_target(t.eigenvalues, "chebyshev", 0.2)
    assert k_cheb * 3 < k_plain  # ~1/sqrt(gap) against ~1/gap
    assert rounds_for_target(make_topology("complete", 8).eigenvalues, "chebyshev", 0.2) == 1


def test_rounds_for_target_rejects_bad_target():
    t = make_topology("ring", 8)
    with pytest.raises(ProxGTValueError, match="must be in"):
        rounds_for_target(t.eigenvalues, "plain", 1.5)


def test_single_node_and_complete_graph_mix_exactly():
    for topo, n in (("ring", 1), ("complete", 6)):
        t = make_topology(topo, n)
        comm = SimulatedCommunicator(t.W, t.degrees)
        Z = torch.randn(n, 3, dtype=torch.float64)
        for kind in MIXING_KINDS:
            out = Mixer(comm, kind, 3, lam=t.lam)(Z)
            torch.testing.assert_close(out, Z.mean(0, keepdim=True).expand_as(Z), atol=1e-12, rtol=0)


def test_communication_accounting():
    t = make_topology("star", 5)  # hub degree 4, leaves degree 1
    comm = SimulatedCommunicator(t.W, t.degrees)
    Mixer(comm, "chebyshev", 3, lam=t.lam)(torch.zeros(5, 10, dtype=torch.float32))
    c = comm.counter
    assert c.rounds == 3
    np.testing.assert_array_equal(c.messages, np.array(t.degrees) * 3)
    np.testing.assert_array_equal(c.bytes, np.array(t.degrees) * 3 * 10 * 4)
    assert c.bytes_per_node == pytest.approx(3 * 10 * 4 * 8 / 5)


def test_sparse_and_dense_gossip_agree():
    t = make_topology("ring", 64)
    Z = torch.randn(64, 7)
    dense = SimulatedCommunicator(t.W, t.degrees, sparse=False).gossip(Z)
    sparse = SimulatedCommunicator(t.W, t.degrees, sparse=True).gossip(Z)
    torch.testing.assert_close(dense, sparse)


def test_mixer_validates():
    t = make_topology("ring", 4)
    comm = SimulatedCommunicator(t.W, t.degrees)
    with pytest.raises(ProxGTValueError, match="'mixing'"):
        Mixer(comm, "magic", 2, lam=t.lam)
    with pytest.raises(ProxGTValueError, match="'rounds'"):
        Mixer(comm, "plain", 0, lam=t.lam)


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("kind", MIXING_KINDS)
def test_rotating_buffers_and_consumed_input_give_the_recurrence(kind, cached, monkeypatch):
    """The three-tensor rotation (result + scratch, or result + one scratch + the consumed input) computes
    Z_{k+1} = alpha_k W Z_k + beta_k Z_{k-1} for every K, with cached and with fresh scratch buffers."""
    import proxgt.mixing.mixer as mixer_module

    if not cached:
        monkeypatch.setattr(mixer_module, "_CACHED_BUFFER_BYTES", 0)
    t = make_topology("ring", 7)
    comm = SimulatedCommunicator(t.W, t.degrees)
    W = torch.as_tensor(t.W, dtype=torch.float64)
    Z = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for rounds in range(1, 11):
        mixer = Mixer(comm, kind, rounds, lam=t.lam, fused=False)
        prev, cur = Z, Z
        for alpha, beta in mixer.schedule:
            prev, cur = cur, alpha * (W @ cur) + beta * prev
        kept = Z.clone()
        plain = mixer(Z)
        torch.testing.assert_close(Z, kept, atol=0, rtol=0)  # not consumed: left unmodified
        torch.testing.assert_close(plain, cur, atol=1e-12, rtol=0)
        handed_over = Z.clone()
        consumed = mixer(handed_over, consume=True)
        torch.testing.assert_close(consumed, plain, atol=0, rtol=0)
        assert consumed.data_ptr() != handed_over.data_ptr()
        again = mixer(Z)  # buffers reused across calls hold no stale rounds
        torch.testing.assert_close(again, plain, atol=0, rtol=0)


@pytest.mark.parametrize("kind", MIXING_KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_rounds_match_the_rounds_one_by_one_and_count_the_same(kind, dtype):
    """On a simulated static graph the K rounds are one product with p(W): the same result up to float rounding,
    the same rounds, messages and bytes counted; a sparse W (sparse=True) and a changing graph keep the rounds."""
    t = make_topology("ring", 8)
    Z = torch.randn(8, 300, dtype=dtype, generator=torch.Generator().manual_seed(1))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for rounds in (1, 2, 4, 7):
        fused_comm, plain_comm = SimulatedCommunicator(t.W, t.degrees), SimulatedCommunicator(t.W, t.degrees)
        fused = Mixer(fused_comm, kind, rounds, lam=t.lam)
        plain = Mixer(plain_comm, kind, rounds, lam=t.lam, fused=False)
        out = fused(Z)
        torch.testing.assert_close(out, plain(Z), atol=tol, rtol=0)
        torch.testing.assert_close(fused(Z.clone(), consume=True), out, atol=0, rtol=0)
        plain(Z)
        assert fused_comm.counter.rounds == plain_comm.counter.rounds == 2 * rounds
        np.testing.assert_array_equal(fused_comm.counter.bytes, plain_comm.counter.bytes)
        assert fused_comm.rounds_into(Z, torch.empty_like(Z), fused.schedule) is not None
    sparse = SimulatedCommunicator(t.W, t.degrees, sparse=True)
    assert sparse.rounds_into(Z, torch.empty_like(Z), [(1.0, 0.0)]) is None
