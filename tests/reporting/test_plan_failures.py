"""The plan's network model: link failures (lambda_p, round and byte factors) and stragglers (per-round waits)."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.costmodel import (
    CostModel,
    NetworkModel,
    Straggler,
    candidate_from_runs,
    failure_contraction,
    round_factor,
    straggler_wait,
)
from proxgt.topology import Topology


def _harmonic(m: int) -> float:
    return sum(1.0 / i for i in range(1, m + 1))


def test_lambda_p_is_lambda_at_zero_and_grows_with_p_on_a_ring():
    ring = nx.cycle_graph(10)
    lam = Topology.from_graph(ring).lam  # the library's own Metropolis W
    assert failure_contraction(ring, 0.0) == pytest.approx(lam, rel=1e-12, abs=1e-12)
    lams = [failure_contraction(ring, p, samples=300, seed=3) for p in (0.1, 0.3, 0.5, 0.8)]
    assert lam < lams[0] < lams[1] < lams[2] < lams[3] < 1.0
    # the lazy rule at p = 0: (I + W) / 2 has eigenvalues (1 + mu) / 2
    lazy = Topology.from_graph(ring, weights="lazy_metropolis").lam
    assert failure_contraction(ring, 0.0, lazy=True) == pytest.approx(lazy, rel=1e-12)


def test_lambda_p_on_a_complete_graph():
    K = nx.complete_graph(6)
    assert failure_contraction(K, 0.0) == pytest.approx(0.0, abs=1e-7)  # Metropolis on K_n is J
    assert 0.0 < failure_contraction(K, 0.3, samples=200) < 1.0  # a failed link leaves some disagreement


def test_round_factor_is_the_ratio_of_log_contractions():
    ring = nx.cycle_graph(12)
    e = NetworkModel(0.3, samples=200).on_graph(ring, seed=1)
    assert e.lam > 0.05 and e.lam_p > e.lam
    assert e.round_factor == pytest.approx(math.log(e.lam) / math.log(e.lam_p), rel=1e-12)
    assert round_factor(0.0, 0.01) == 1.0 and round_factor(0.0, 0.5) > 1.0 and round_factor(0.5, 1.0) == math.inf


def test_bytes_scale_by_one_minus_p_and_rounds_by_the_factor():
    cost = CostModel(latency_s=0.02, bandwidth_Bps=1e5, sample_s=1e-4)
    for p in (0.1, 0.4):
        e = NetworkModel(p, samples=100).on_graph(nx.cycle_graph(8), seed=0)
        assert e.byte_factor == pytest.approx(e.round_factor * (1 - p), rel=1e-12)
        rounds, nbytes, secs = e.expected(cost, 500.0, 40.0, 8000.0)
        assert rounds == pytest.approx(40.0 * e.round_factor) and nbytes == pytest.approx(8000.0 * e.round_factor
                                                                                          * (1 - p))
        assert secs == pytest.approx(500 * 1e-4 + rounds * 0.02 + nbytes / 1e5)
    # a target not reached stays not reached
    assert e.expected(cost, math.inf, math.inf, math.inf) == (math.inf,) * 3


def test_reliable_network_gives_exactly_todays_numbers():
    cost = CostModel(latency_s=0.01, bandwidth_Bps=1e6, sample_s=1e-5)
    e = NetworkModel().on_graph(nx.cycle_graph(8))
    assert e.trivial and e.round_factor == 1.0 and e.byte_factor == 1.0 and e.wait.round_s == 0.0
    for work in ((1000, 10, 2e6), (123.0, 7.0, 3.5e3), (0.0, 0.0, 0.0)):
        assert e.expected(cost, *work) == (work[1], work[2], cost.time(*work))
    rows = [{"iter": t, "ifo_per_node": 10.0 * t, "comm_rounds": 2.0 * t, "bytes_per_node": 50.0 * t,
             "grad_mapping_sq": 1.0 / (1 + t)} for t in range(20)]
    plain = candidate_from_runs("plain", 1, 0.5, [rows], target=0.1, metric="grad_mapping_sq", cost=cost)
    modeled = candidate_from_runs("plain", 1, 0.5, [rows], target=0.1, metric="grad_mapping_sq", cost=cost,
                                  network=e)
    assert math.isnan(plain.expected_s) and plain.time_s == plain.modeled_s
    assert (modeled.expected_rounds, modeled.expected_bytes) == (plain.comm_rounds, plain.bytes_per_node)
    assert modeled.expected_s == plain.modeled_s and modeled.overhead == 1.0


@pytest.mark.parametrize("graph,k", [(nx.cycle_graph(16), 2), (nx.convert_node_labels_to_integers(
    nx.hypercube_graph(4)), 4)])
def test_slowest_neighbour_wait_of_exponential_delays(graph, k):
    # every node has degree k, so one round waits for the max of k + 1 iid Exp(MEAN): MEAN * H_{k+1}
    mean, rounds, n = 0.3, 2000, graph.number_of_nodes()
    w = straggler_wait(graph, f"exp:{mean}", rounds=rounds, seed=11)
    sd = mean * math.sqrt(sum(1.0 / i**2 for i in range(1, k + 2)))  # sd of the max of k + 1 exponentials
    se = sd / math.sqrt(rounds * n / (2 * k + 1))  # maxes of nodes within 2 hops share draws
    assert w.neighbour_s == pytest.approx(mean * _harmonic(k + 1), abs=4 * se)
    # waits propagate over rounds (sustained >= one round) and never exceed a global barrier's
    assert w.neighbour_s < w.round_s <= w.barrier_s * 1.02
    assert w.barrier_s == pytest.approx(mean * _harmonic(n), rel=0.05)


def test_constant_and_no_delay_and_failures_shorten_the_wait():
    ring = nx.cycle_graph(6)
    w = straggler_wait(ring, "const:0.25", rounds=50)
    assert (w.neighbour_s, w.barrier_s) == (0.25, 0.25) and w.round_s == pytest.approx(0.25, rel=1e-12)
    assert straggler_wait(ring, "none") == straggler_wait(ring, Straggler())
    assert straggler_wait(ring, "none").round_s == 0.0
    # a node does not wait for a neighbour whose link is down
    assert straggler_wait(ring, "exp:1", link_failure=0.5, seed=2).neighbour_s < \
        straggler_wait(ring, "exp:1", seed=2).neighbour_s


def test_seeded():
    G = nx.cycle_graph(9)
    a = NetworkModel(0.2, "lognormal:-3,0.8", samples=80, wait_rounds=300).on_graph(G, seed=5)
    b = NetworkModel(0.2, "lognormal:-3,0.8", samples=80, wait_rounds=300).on_graph(G, seed=5)
    c = NetworkModel(0.2, "lognormal:-3,0.8", samples=80, wait_rounds=300).on_graph(G, seed=6)
    assert a == b and a.lam_p != c.lam_p and a.wait != c.wait


def test_straggler_specs():
    assert Straggler.parse("exp:0.02") == Straggler("exp", (0.02,)) and Straggler.parse(" none ").kind == "none"
    assert Straggler.parse("lognormal:-4,0.5").mean == pytest.approx(math.exp(-4 + 0.125))
    assert Straggler.parse("const:0.5").spec == "const:0.5"
    for bad in ("gamma:1", "exp", "exp:a", "lognormal:1", "const:1,2", "exp:-1", "lognormal:0,-1", "exp:nan"):
        with pytest.raises(ProxGTValueError):
            Straggler.parse(bad)
    with pytest.raises(ProxGTValueError, match=r"link_failure.*\[0, 1\)"):
        NetworkModel(1.0)


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


_PLAN = ["plan", "--data", "breast_cancer", "--nodes", "4", "--topology", "ring", "--iters", "10", "--log-every", "2",
         "--ks", "1,2", "--sample-time", "1e-5", "--no-progress", "--target", "0.05", "--mixings", "plain"]


@pytest.mark.parametrize("flags,needle", [
    (["--link-failure", "1"], "link"),
    (["--link-failure", "-0.1"], "link"),
    (["--straggler", "weibull:1"], "straggler"),
    (["--straggler", "exp:-0.5"], "straggler"),
    (["--straggler", "lognormal:1"], "straggler"),
])
def test_plan_bad_network_input_is_one_line_exit_2(flags, needle, capsys):
    assert _code([*_PLAN, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and err.startswith("proxgt: error:")


def test_plan_prints_expected_columns_and_pilots_stay_reliable(capsys):
    assert main(_PLAN) == 0
    reliable = capsys.readouterr().out
    assert "expected s" not in reliable and "network:" not in reliable  # today's output without the model
    assert main([*_PLAN, "--link-failure", "0.3", "--straggler", "const:0.01"]) == 0
    out = capsys.readouterr().out
    assert "network: link failure 0.3" in out and "straggler const:0.01" in out
    header = next(line for line in out.splitlines() if line.startswith("| mixing |"))
    for col in ("| expected rounds |", "| expected bytes/node |", "| expected s |", "| overhead |"):
        assert col in header
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| plain |")]
    base = [line.split("|")[1:-1] for line in reliable.splitlines() if line.startswith("| plain |")]
    assert len(rows) == 2 and [r[:11] for r in rows] == base  # the pilots ran without failures
    for r in rows:
        rounds, exp_rounds, modeled, expected = (float(r[i].replace(",", "")) for i in (5, 11, 7, 13))
        assert exp_rounds > rounds and expected > modeled + rounds * 0.01  # more rounds, each waiting 10 ms
    assert "expected under the network model" in out.splitlines()[-1]
