"""``auto`` means safe: every shipped operator converges at its defaults, the gossip auto picks for compression
and changing graphs, and compressed gossip on a changing graph (per-link public copies)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from proxgt.compression.operators import make_compressor
from proxgt.compression.spec import OPERATORS
from proxgt.executors.simulation import run_simulation
from proxgt.mixing import SimulatedCommunicator
from proxgt.mixing.compressed import CompressedMixer, LinkCompressedMixer
from proxgt.mixing.dynamic import DynamicCommunicator, NetworkSchedule
from proxgt.mixing.mixer import recurrence
from proxgt.settings import RunConfig
from proxgt.training import build_run

# breast_cancer (d = 30) on a 16-node ring: the auto rounds there are Chebyshev's 8, the uncompressed run's
SMALL = dict(data="breast_cancer", nodes=16, topology="ring", reg="l1", reg_strength=0.01, iters=150, log_every=10,
             batch=16, seed=3)
#: one spec per shipped operator, at the parameters docs/compression.md uses
SHIPPED = ("topk:0.1", "randk:0.1", "qsgd:4", "qsgd:16", "sign", "fp16", "bf16")


def test_every_shipped_operator_has_a_case_here():
    assert {s.partition(":")[0] for s in SHIPPED} | {"none"} == set(OPERATORS)


def _rows(cfg: dict) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto must not choose anything the run warns about
        return run_simulation(cfg).rows


def _final(cfg: dict) -> dict:
    return _rows(cfg)[-1]


@pytest.fixture(scope="module")
def uncompressed() -> dict:
    return _final(dict(SMALL, algorithm="proxgt-sr-e"))


@pytest.mark.parametrize("spec", SHIPPED)
def test_every_operator_converges_at_its_defaults(spec, uncompressed):
    # before auto followed the operator (Chebyshev, gamma 0.5), topk:0.1 and sign gave NaN on real a9a
    rows = _rows(dict(SMALL, algorithm="proxgt-sr-e", compress=spec))
    final = rows[-1]
    assert np.isfinite(final["grad_mapping_sq"]) and np.isfinite(final["consensus"])
    # within 3x of the uncompressed run's gradient mapping at the average (measured: 1.0-2.5x), and the nodes
    # keep coming together (sign, whose declared delta is the worst case 1/d, is the slowest: 0.048 -> 0.017)
    assert final["grad_mapping_sq"] <= 3 * uncompressed["grad_mapping_sq"]
    assert final["consensus"] < rows[len(rows) // 3]["consensus"] and final["consensus"] < 0.05


@pytest.mark.parametrize("algorithm", ["proxgt-sa", "cdproxsgt"])
def test_the_lossiest_operators_converge_with_the_other_compressed_methods(algorithm):
    base = _final(dict(SMALL, algorithm=algorithm, iters=100, batch=16))
    for spec in ("topk:0.1", "randk:0.1", "sign"):
        final = _final(dict(SMALL, algorithm=algorithm, iters=100, batch=16, compress=spec))
        assert final["grad_mapping_sq"] <= 3 * base["grad_mapping_sq"], spec


def test_auto_follows_the_operator_and_keeps_what_the_user_sets():
    auto = build_run(RunConfig(**SMALL, compress="topk:0.1"))
    plain = build_run(RunConfig(**SMALL))
    assert (plain.resolved.mixing, auto.resolved.mixing) == ("chebyshev", "plain")
    assert auto.rounds == plain.rounds > 1  # the uncompressed run's messages, each compressed
    assert auto.resolved.consensus_step == pytest.approx(3 / 30)  # min(1, delta), delta = k/d
    assert build_run(RunConfig(**SMALL, compress="none", algorithm="cdproxsgt")).resolved.mixing == "chebyshev"
    # Chebyshev stays where the operator contracts enough: sqrt(1 - delta) max(|alpha| + |beta|) < 1
    amplification = max(abs(a) + abs(b) for a, b in recurrence("chebyshev", plain.rounds, plain.topology.lam))
    for spec in ("fp16", "bf16", "qsgd:16", "qsgd:4", "randk:0.5", "sign"):
        built = build_run(RunConfig(**SMALL, compress=spec))
        delta = make_compressor(spec).gossip_contraction(30)
        keeps = (1 - delta) ** 0.5 * amplification < 1
        assert built.resolved.mixing == ("chebyshev" if keeps else "plain"), spec
        assert keeps == (spec in ("fp16", "bf16", "qsgd:16")), spec  # qsgd:16 at d = 30: delta 0.90
    with pytest.warns(UserWarning, match="amplify the lag of the public copies"):
        given = build_run(RunConfig(**SMALL, compress="sign", mixing="chebyshev", rounds=3, consensus_step=0.7))
    assert (given.resolved.mixing, given.rounds, given.resolved.consensus_step) == ("chebyshev", 3, 0.7)


def test_auto_on_one_peer_exponential_is_plain_with_log2_n_rounds():
    for n in (8, 16, 32):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "plain would average exactly" warning any more
            spec = build_run(RunConfig(**dict(SMALL, nodes=n, topology="one-peer-exponential", batch=8)))
        assert (spec.resolved.mixing, spec.rounds) == ("plain", int(np.log2(n)))


def test_auto_on_other_changing_graphs_reaches_the_target_on_the_schedule():
    from proxgt.mixing.auto import measured_contraction

    cases = [dict(topology="random-matching"), dict(link_failure=0.3), dict(link_failure=0.6),
             dict(node_dropout=0.3)]
    for extra in cases:
        spec = build_run(RunConfig(**dict(SMALL, **extra)))
        probe = spec.network.links_only()
        if probe is None:  # dropout alone: rounds for the links, which are all up
            assert (spec.resolved.mixing, spec.rounds) == ("chebyshev", build_run(RunConfig(**SMALL)).rounds)
            continue
        kind, k = spec.resolved.mixing, spec.rounds
        assert measured_contraction(probe, spec.topology.lam, kind, k, spec.settings.seed) <= spec.settings.mix_target
        assert k == 1 or measured_contraction(probe, spec.topology.lam, kind, k - 1, spec.settings.seed) \
            > spec.settings.mix_target, extra
        if "topology" in extra:
            assert kind == "plain"


def _link_mixer(spec: str, n: int = 8, p_link: float = 0.4, p_drop: float = 0.3, seed: int = 5):
    edges = np.array([(i, (i + 1) % n) for i in range(n)] + [(0, n // 2)])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    sched = NetworkSchedule(n, edges, link_failure=p_link, node_dropout=p_drop, seed=seed)
    W = torch.eye(n, dtype=torch.float64)
    comm = DynamicCommunicator(W, np.bincount(edges.ravel(), minlength=n), sched)
    return LinkCompressedMixer(comm, make_compressor(spec), 0.3, sched.edges, seed=seed,
                               schedule=[(1.0, 0.0)] * 3), comm, sched


@pytest.mark.parametrize("spec", ["topk:0.2", "randk:0.3", "qsgd:4", "sign"])
def test_link_copies_stay_consistent_and_the_average_is_exact_under_failures(spec):
    mix, comm, sched = _link_mixer(spec)
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(8, 20, dtype=torch.float64, generator=g)
    down = 0
    for t in range(1, 30):
        comm.begin_iteration(t)
        down += int(sched.edges.shape[0] - sched.edges_up(t, 0).shape[0])
        V = torch.randn(8, 20, dtype=torch.float64, generator=g)
        expected = (Y + V).mean(0)
        Y = mix(Y + V, key="y")  # a tracker's update: the mean must follow what was added, exactly
        torch.testing.assert_close(Y.mean(0), expected, rtol=0, atol=1e-12)
        assert mix.consistent("y")
    assert down > 0  # links did fail
    H = mix.public["y"]
    assert not torch.equal(H[0, :8], H[0, 8:16])  # different links of a node hold different copies


def test_link_copies_advance_only_on_links_that_carried_the_message():
    mix, comm, sched = _link_mixer("topk:0.5", p_drop=0.0)
    Z = torch.randn(8, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    comm.begin_iteration(1)
    up = {tuple(e) for e in sched.edges_up(1, 0)}
    mix.schedule = [(1.0, 0.0)]
    mix(Z, key="x")
    H, E = mix.public["x"], sched.edges.shape[0]
    for e, (a, b) in enumerate(sched.edges):
        moved = bool(H[0, e].abs().sum() > 0) or bool(H[0, E + e].abs().sum() > 0)
        assert moved == ((a, b) in up)


def test_on_a_reliable_static_graph_link_copies_equal_the_one_public_copy():
    mix, comm, sched = _link_mixer("topk:0.3", p_link=0.0, p_drop=0.0)
    W = sched.round_weights(1, 0).dense()  # no failure: the static Metropolis matrix
    one = CompressedMixer(SimulatedCommunicator(W, comm.counter.degrees), make_compressor("topk:0.3"), 0.3,
                          seed=5, schedule=[(1.0, 0.0)] * 3)
    a = b = torch.randn(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for t in range(1, 6):
        comm.begin_iteration(t)
        a, b = mix(a, key="x"), one(b, key="x")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("extra", [dict(link_failure=0.3), dict(node_dropout=0.2),
                                   dict(topology="one-peer-exponential"), dict(topology="random-matching")])
def test_compressed_runs_on_changing_graphs_converge_and_track_exactly(extra):
    base = _final(dict(SMALL, algorithm="proxgt-sr-e", iters=100, **extra))
    final = _final(dict(SMALL, algorithm="proxgt-sr-e", iters=100, compress="topk:0.1", **extra))
    assert final["grad_mapping_sq"] <= 3 * base["grad_mapping_sq"]
    assert final["bytes_per_node"] < 0.25 * base["bytes_per_node"]


def test_large_per_link_copies_are_announced(monkeypatch):
    import proxgt.mixing.compressed as compressed
    from proxgt.executors.simulation import simulated_communicator

    spec = build_run(RunConfig(**dict(SMALL, topology="random-matching", compress="topk:0.1")))
    links = len(spec.topology.edges)
    assert links == 16 * 15 // 2  # the union graph of random matchings: every pair
    monkeypatch.setattr(compressed, "_LINK_COPIES_WARN_BYTES", 4 * links * 30 * 4 - 1)
    with pytest.warns(UserWarning, match=f"two per directed link of its {links} links"):
        compressed.make_mixer(simulated_communicator(spec), spec)
    monkeypatch.setattr(compressed, "_LINK_COPIES_WARN_BYTES", 4 * links * 30 * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compressed.make_mixer(simulated_communicator(spec), spec)
