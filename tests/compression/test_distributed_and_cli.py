"""Compressed gossip on the torch.distributed executor (gloo, 4 single-threaded processes): the encoded payload
is what travels, the bytes measured on the wire equal the counted bytes, and the iterates equal the simulation's.
Plus the CLI's one-line errors for bad compression input."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.compression.operators import make_compressor
from proxgt.executors.distributed import partition_nodes
from proxgt.executors.launch.launcher import launch
from proxgt.executors.simulation import run_simulation
from proxgt.topology import make_topology

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="multi-process runs: Linux")
NPROCS = 4


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=400) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, X=X, y=y)
    return str(path)


CASES = {
    # one node per process, a random operator: every node draws from its own generator in both executors
    "qsgd-1-per-rank": dict(nodes=4, algorithm="proxgt-sr-o", compress="qsgd:4", batch=8),
    # blocks of nodes per process ([0, 1], [2, 3], [4], [5]), a sparsifier, CDProxSGT
    "topk-blocks": dict(nodes=6, algorithm="cdproxsgt", compress="topk:0.2", batch=8),
}


def _flags(case: dict, data: str) -> list[str]:
    flags = ["--data", data, "--topology", "ring", "--iters", "12", "--log-every", "4", "--seed", "5",
             "--mixing", "plain", "--rounds", "1", "--consensus-step", "0.5", "--no-progress"]
    for k, v in case.items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    return flags


@linux
@pytest.mark.parametrize("name", list(CASES))
def test_wire_bytes_equal_the_counted_payload_and_iterates_equal_the_simulation(name, data_file, tmp_path):
    case = CASES[name]
    out = tmp_path / "dist"
    code = launch(NPROCS, [*_flags(case, data_file), "--out", str(out)], timeout_s=20)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    info = summary["distributed"]
    n = case["nodes"]
    blocks = partition_nodes(n, NPROCS)
    assert [tuple(b) for b in info["blocks"]] == blocks
    x_d = np.load(out / "final.npz")["x"]
    d = x_d.shape[1]
    payload = make_compressor(case["compress"]).payload_bytes(d)
    assert payload < 4 * d  # compressed: fewer bytes than the float32 row
    rounds = 2 * 12
    topo = make_topology("ring", n)
    owner = {i: r for r, blk in enumerate(blocks) for i in blk}
    for r, blk in enumerate(blocks):
        rows_out = sum(len({owner[j] for j in topo.neighbors(i) if owner[j] != r}) for i in blk)
        assert info["bytes_sent_per_rank"][r] == rows_out * payload * rounds  # measured on the wire
        accounted = sum(topo.degrees[i] for i in blk) * payload * rounds
        assert info["bytes_accounted_per_rank"][r] == accounted
        if len(blk) == 1:
            assert info["bytes_sent_per_rank"][r] == accounted  # one node per rank: measured == counted
    last = read_metrics_csv(out / "metrics.csv")[1][-1]
    assert last["bytes_per_node"] == pytest.approx(np.mean(topo.degrees) * payload * rounds)

    sim = run_simulation(dict(case, data=data_file, topology="ring", iters=12, log_every=4, seed=5, mixing="plain",
                              rounds=1, consensus_step=0.5), out=tmp_path / "sim")
    x_s = sim.x.double().numpy()
    scale = max(1.0, float(np.abs(x_s).max()))
    np.testing.assert_allclose(x_d, x_s, rtol=0, atol=1e-5 * scale)
    assert np.abs(x_s).max() > 0
    rows_s = read_metrics_csv(tmp_path / "sim" / "metrics.csv")[1]
    for c in ("comm_rounds", "bytes_per_node"):
        assert last[c] == rows_s[-1][c]


@pytest.mark.parametrize("flags,msg", [
    (["--compress", "zip"], "unknown compression operator"),
    (["--compress", "topk:0"], "(0, 1]"),
    (["--compress", "randk:1.5"], "(0, 1]"),
    (["--compress", "qsgd:0"], "levels"),
    (["--compress", "topk:0.1", "--consensus-step", "0"], "consensus_step"),
    (["--compress", "topk:0.1", "--algorithm", "deepstorm"], "does not name what it mixes"),
])
def test_bad_compression_input_exits_2_with_one_line(flags, msg, capsys):
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "2", "--no-progress", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert msg in err and len(err.splitlines()) == 1, err


def test_payload_formula_used_above_is_the_real_encoding():
    import torch

    for spec in ("qsgd:4", "topk:0.2"):
        c = make_compressor(spec)
        gens = [torch.Generator().manual_seed(i) for i in range(3)]
        assert c.encode(torch.randn(3, 21), gens).shape[1] == c.payload_bytes(21) != 4 * 21
    assert math.ceil(21 * 4 / 8) + 4 == make_compressor("qsgd:4").payload_bytes(21)


@pytest.mark.parametrize("flags", [["--link-failure", "0.2"], ["--topology", "one-peer-exponential"]])
def test_launch_refuses_compression_on_a_changing_graph_before_any_worker_starts(flags, capsys, tmp_path):
    code = main(["launch", "--nprocs", "2", "--data", "breast_cancer", "--nodes", "4", "--iters", "2",
                 "--compress", "topk:0.5", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "not yet with proxgt launch" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
