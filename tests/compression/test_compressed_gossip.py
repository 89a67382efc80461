"""Error-compensated compressed gossip: exactness without compression, exact averages with it, byte counting,
CDProxSGT's update written out from the spec, determinism and the settings it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from proxgt.compression.operators import make_compressor
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.mixing.compressed import CompressedMixer
from proxgt.settings import RunConfig
from proxgt.training import build_run

BASE = dict(data="breast_cancer", nodes=5, topology="ring", dtype="float64", reg="l1", reg_strength=0.01,
            iters=12, log_every=4, seed=1)


def _mixers(kind: str, rounds: int, spec: str = "none", gamma: float = 1.0):
    b = build_run(RunConfig(**BASE, algorithm="proxgt-sr-e", mixing=kind, rounds=rounds))
    plain = Mixer(SimulatedCommunicator(b.topology.W, b.topology.degrees), kind, rounds, lam=b.topology.lam)
    comm = SimulatedCommunicator(b.topology.W, b.topology.degrees)
    comp = CompressedMixer(comm, make_compressor(spec), gamma, seed=0,
                           schedule=Mixer(comm, kind, rounds, lam=b.topology.lam)._schedule)
    return b, plain, comp


@pytest.mark.parametrize("kind,rounds", [("plain", 1), ("plain", 3), ("chebyshev", 3)])
def test_none_with_gamma_one_is_the_uncompressed_algorithm(kind, rounds):
    b, plain, comp = _mixers(kind, rounds)
    alg = b.algorithm
    states = []
    for mix in (plain, comp):
        oracle = b.make_oracle(range(5))
        st = alg.init(b.initial_rows(range(5)), oracle, mix)
        for _ in range(8):
            st = alg.update(st, oracle, mix)
        states.append(st)
    for a, c in zip(states[0][:3], states[1][:3], strict=True):
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)
    assert not torch.equal(states[0].x, b.initial_rows(range(5)))
    # the same rounds, and the same bytes: the 'none' payload is the float64 row
    assert comp.comm.counter.rounds == plain.comm.counter.rounds == 2 * 8 * rounds
    assert comp.comm.counter.bytes_per_node == plain.comm.counter.bytes_per_node


def test_cdproxsgt_with_none_and_gamma_one_is_dproxsgt():
    common = dict(BASE, mixing="plain", rounds=1)
    d = run_simulation(dict(common, algorithm="dproxsgt"))
    c = run_simulation(dict(common, algorithm="cdproxsgt", compress="none", consensus_step=1.0))
    torch.testing.assert_close(c.x, d.x, rtol=1e-12, atol=1e-12)
    assert c.summary["final"]["bytes_per_node"] == d.summary["final"]["bytes_per_node"]


def _ring_W(n: int) -> torch.Tensor:
    W = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        W[i, i] = W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
    return W


def test_cdproxsgt_follows_the_spec_update_with_topk():
    """Spec section 4, written out here with a hand-made top-k, against the registered cdproxsgt."""
    cfg = dict(BASE, algorithm="cdproxsgt", compress="topk:0.25", consensus_step=0.6, mixing="plain", rounds=1,
               batch="full", iters=5, nodes=4, reg_strength=0.02)
    got = run_simulation(cfg)
    b = build_run(RunConfig(**cfg))
    oracle = b.make_oracle(range(4))
    W, eta, gamma = b.topology.W.to(torch.float64), b.step, 0.6
    X = b.initial_rows(range(4))
    d = X.shape[1]
    k = max(1, math.floor(0.25 * d))

    def topk(M):
        idx = M.abs().topk(k, dim=1).indices
        return torch.zeros_like(M).scatter_(1, idx, M.gather(1, idx))

    def soft(M, t):
        return M.sign() * (M.abs() - t).clamp_min(0)

    Y = torch.zeros_like(X)
    G_old = torch.zeros_like(X)
    Xh, Yh = torch.zeros_like(X), torch.zeros_like(X)
    for _ in range(5):
        G = oracle.full_grad(X)  # batch = full: the minibatch gradient is the exact local gradient
        Y_half = Y + G - G_old
        Yh = Yh + topk(Y_half - Yh)
        Y = Y_half + gamma * (W @ Yh - Yh)
        X_half = soft(X - eta * Y, eta * 0.02)
        Xh = Xh + topk(X_half - Xh)
        X = X_half + gamma * (W @ Xh - Xh)
        G_old = G
    torch.testing.assert_close(got.x, X, rtol=1e-10, atol=1e-12)
    # mean(Y) = mean(G): tracking is exact on average whatever the compression error
    torch.testing.assert_close(Y.mean(0), G_old.mean(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", ["topk:0.1", "qsgd:4", "sign", "randk:0.3", "fp16"])
def test_compressed_rounds_preserve_the_node_average(spec):
    comm = SimulatedCommunicator(_ring_W(6), [2] * 6)
    mix = CompressedMixer(comm, make_compressor(spec), 0.7, rounds=2, seed=4)
    g = torch.Generator().manual_seed(0)
    for key in ("x", "y", "x"):
        Z = torch.randn(6, 40, generator=g, dtype=torch.float64)
        out = mix(Z, key=key)
        torch.testing.assert_close(out.mean(0), Z.mean(0), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(out, Z)
    assert set(mix.public) == {"x", "y"}  # one public copy per quantity


def test_public_copies_converge_and_the_error_feedback_reaches_consensus():
    comm = SimulatedCommunicator(_ring_W(6), [2] * 6)
    # gamma small enough for delta = k/d = 0.1 (with gamma = 0.3 this example settles into a cycle at ~4e-5)
    mix = CompressedMixer(comm, make_compressor("topk:0.1"), 0.1, rounds=1)
    Z = torch.randn(6, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Z0 = Z.clone()
    for _ in range(700):
        Z = mix(Z, key="x")
    torch.testing.assert_close(Z, Z0.mean(0).expand_as(Z), rtol=0, atol=1e-8)  # CHOCO-gossip: exact consensus
    torch.testing.assert_close(mix.public["x"], Z, rtol=0, atol=1e-8)  # and the public copies caught up


def test_counted_bytes_are_the_payload_bytes():
    res = run_simulation(dict(BASE, algorithm="proxgt-sr-e", compress="qsgd:4", mixing="plain", rounds=2))
    d = res.x.shape[1]
    rounds = 2 * 2 * BASE["iters"]
    payload = 8 + math.ceil(d * 4 / 8)  # float64 norm + 4-bit codes
    assert res.summary["final"]["comm_rounds"] == rounds
    assert res.summary["final"]["bytes_per_node"] == 2 * payload * rounds  # ring: 2 messages per round
    omega = min(d / 16, math.sqrt(d) / 4)  # auto with an operator: min(1, 1/(1 + omega)) for an unbiased one
    assert res.config["consensus_step"] == pytest.approx(1 / (1 + omega))


# breast_cancer with the logistic loss: d = 30; gamma = min(1, delta), delta = 1/(1 + omega) if unbiased
@pytest.mark.parametrize("spec,gamma", [("none", 1.0), ("qsgd:16", 1 / (1 + 30 / 16**2)),
                                        ("fp16", 1 - 2.0**-22), ("topk:0.5", 15 / 30), ("topk:0.01", 1 / 30),
                                        ("randk:0.1", 3 / 30), ("sign", 1 / 30)])
def test_auto_consensus_step_is_the_operators_gossip_contraction(spec, gamma):
    b = build_run(RunConfig(**dict(BASE, algorithm="cdproxsgt", compress=spec, mixing="plain", rounds=1)))
    assert b.problem.dim == 30
    assert b.resolved.consensus_step == pytest.approx(gamma)


def test_same_seed_same_run_and_the_seed_matters():
    cfg = dict(BASE, algorithm="proxgt-sr-e", compress="randk:0.3", mixing="plain", rounds=1, consensus_step=0.4)
    a, b = run_simulation(cfg), run_simulation(cfg)
    assert torch.equal(a.x, b.x)
    c = run_simulation(dict(cfg, seed=2))
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("extra,msg", [
    (dict(algorithm="prox-dsgt", compress="topk:0.1"), "does not name what it mixes"),
    (dict(algorithm="proxgt-sa", consensus_step=0.5), "step of compressed gossip"),
    (dict(algorithm="cdproxsgt", on_failure="continue"), "shrunken graph"),
    (dict(algorithm="proxgt-sa", compress="topk:2"), r"\(0, 1\]"),
    (dict(algorithm="proxgt-sa", compress="qsgd:0"), "levels"),
    (dict(algorithm="proxgt-sa", compress="gzip"), "unknown compression operator"),
    (dict(algorithm="proxgt-sa", compress="sign", consensus_step=1.5), "consensus_step"),
])
def test_settings_compressed_gossip_cannot_honour_are_one_line_errors(extra, msg):
    with pytest.raises(ProxGTValueError, match=msg) as info:
        build_run(RunConfig(**dict(BASE, **extra)))
    assert "\n" not in str(info.value)


def test_unbiased_operators_enter_rescaled_by_one_over_one_plus_omega():
    from proxgt.mixing.compressed import _node_generator

    comm = SimulatedCommunicator(_ring_W(4), [2] * 4)
    c = make_compressor("qsgd:2")
    mix = CompressedMixer(comm, c, 1.0, seed=9)
    Z = torch.randn(4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mix(Z, key="y")
    omega = c.constant(30)
    assert omega > 1  # unscaled, this operator would not be contractive
    expected = c(Z, [_node_generator(9, i, "y") for i in range(4)]) / (1 + omega)
    torch.testing.assert_close(mix.public["y"], expected, rtol=1e-12, atol=1e-12)
    topk = CompressedMixer(comm, make_compressor("topk:0.5"), 1.0)
    assert topk.scale(30) == 1.0 and mix.scale(30) == pytest.approx(1 / (1 + omega))
