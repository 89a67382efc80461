"""Every feature works at its defaults, alone and combined: a pairwise-covering subset of the defaults matrix
(algorithm x network x compression operator x DP; the full matrix on a9a is experiments/defaults_matrix.py and
docs/defaults-matrix.md). Each pair of factor values appears in at least one cell; every cell either finishes
without NaN and gets most of the way its reference run gets, or is refused with one line because the method
declares it cannot do that (no gossip keys to compress, more than fresh minibatches under DP)."""

from __future__ import annotations

import itertools
import math
import statistics
import warnings

import pytest

import proxgt
from proxgt.errors import ProxGTValueError
from proxgt.registry import ALGORITHMS, ASYNC_ONLY, POOLED
from proxgt.training import build_run

# the centralized have no network; the asynchronous-only methods have their own tests (the matrix is synchronous)
ALGS = [n for n in ALGORITHMS.names() if not {POOLED, ASYNC_ONLY} & set(ALGORITHMS.traits(n))]
NETWORKS = {"static": {}, "link-failure": {"link_failure": 0.3}, "dropout": {"node_dropout": 0.2},
            "one-peer-exp": {"topology": "one-peer-exponential"}, "random-matching": {"topology": "random-matching"}}
OPERATORS = ["none", "topk:0.1", "randk:0.1", "qsgd:16", "sign", "fp16", "bf16"]
DP = {"off": {}, "on": {"dp_clip": 1.0, "dp_noise": 0.3}}
BASE = {"data": "breast_cancer", "nodes": 4, "topology": "ring", "iters": 80, "log_every": 8, "seed": 1}
#: share of the reference run's decrease of the objective a cell must reach (the a9a script asks 0.8 of
#: 300-iteration runs; these runs are short, so a slower start costs more of the budget)
PASS = 0.5


def pairwise_cells(factors: list[list[str]]) -> list[tuple[str, ...]]:
    """A small list of cells in which every pair of values of every two factors appears (greedy, deterministic)."""
    uncovered = {(i, a, j, b) for i, j in itertools.combinations(range(len(factors)), 2)
                 for a in factors[i] for b in factors[j]}
    cells: list[tuple[str, ...]] = []
    all_cells = list(itertools.product(*factors))
    while uncovered:
        best = max(all_cells, key=lambda c: sum((i, c[i], j, c[j]) in uncovered
                                                 for i, j in itertools.combinations(range(len(c)), 2)))
        cells.append(best)
        uncovered -= {(i, best[i], j, best[j]) for i, j in itertools.combinations(range(len(best)), 2)}
    return cells


def test_the_pairwise_cover_covers_every_pair():
    factors = [["a", "b", "c"], ["x", "y"], ["0", "1", "2"]]
    cells = pairwise_cells(factors)
    for i, j in itertools.combinations(range(3), 2):
        assert {(c[i], c[j]) for c in cells} == set(itertools.product(factors[i], factors[j]))
    assert len(cells) < 3 * 2 * 3


CELLS = pairwise_cells([ALGS, list(NETWORKS), OPERATORS, list(DP)])


def _config(alg: str, net: str, op: str, dp: str) -> dict:
    cfg = {**BASE, "algorithm": alg, **NETWORKS[net], **DP[dp]}
    if op != "none":
        cfg["compress"] = op
    return cfg


def _tail(values: list[float]) -> float:
    return statistics.median(values[-max(1, len(values) // 5):])


_REFERENCES: dict[tuple[str, str], tuple[float, float]] = {}


def _reference(alg: str, dp: str) -> tuple[float, float]:
    if (alg, dp) not in _REFERENCES:
        obj = proxgt.run(_config(alg, "static", "none", dp)).column("objective")
        _REFERENCES[alg, dp] = (obj[0], _tail(obj))
    return _REFERENCES[alg, dp]


@pytest.mark.parametrize("alg, net, op, dp", CELLS, ids=["-".join(c) for c in CELLS])
def test_every_feature_at_its_defaults(alg, net, op, dp):
    caps = build_run({**BASE, "algorithm": alg}).algorithm.capabilities
    cannot = (op != "none" and not caps.compressible) or (dp == "on" and not caps.private)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings name unusual settings; the defaults are what is tested here
        if cannot:
            with pytest.raises(ProxGTValueError) as err:
                proxgt.run(_config(alg, net, op, dp))
            assert "\n" not in str(err.value)
            return
        hist = proxgt.run(_config(alg, net, op, dp))
        objective = hist.column("objective")
        assert all(math.isfinite(v) for v in objective), objective
        f0, ref = _reference(alg, dp)
        progress = (f0 - _tail(objective)) / (f0 - ref)
        assert progress >= PASS, f"{alg} {net} {op} dp={dp}: progress {progress:.3f} of the reference's decrease"
