"""Per-site results (local_test_fraction): every node's held-out samples, its per-node rows in per_node.csv
(the average model's and its own model's accuracy and loss there) and their summary columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import proxgt
from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.data import load_sklearn, split_nodes
from proxgt.data._local import hold_out_local, local_test_counts
from proxgt.errors import ProxGTValueError
from proxgt.metrics.per_node import node_columns, summary_columns
from proxgt.training import build_run

CFG = {"data": "breast_cancer", "nodes": 4, "split": "sorted", "iters": 40, "log_every": 20,
       "local_test_fraction": 0.25, "seed": 2}


def test_each_node_holds_out_its_own_samples_the_same_way_in_any_shard():
    nd = split_nodes(load_sklearn("iris"), 5, "sorted", seed=0)
    train, test = hold_out_local(nd, 0.3, seed=7)
    want = local_test_counts(nd.counts, 0.3)
    assert test.counts.tolist() == want.tolist() == [round(0.3 * m) for m in nd.counts.tolist()]
    assert (train.counts + test.counts).tolist() == nd.counts.tolist()
    for k in range(5):  # a split of node k's samples: disjoint, together all of them (rows are unique here)
        own = {tuple(r) for r in nd.X[k, : nd.counts[k]].reshape(int(nd.counts[k]), -1).tolist()}
        tr = {tuple(r) for r in train.X[k, : train.counts[k]].reshape(int(train.counts[k]), -1).tolist()}
        te = {tuple(r) for r in test.X[k, : test.counts[k]].reshape(int(test.counts[k]), -1).tolist()}
        assert tr | te == own and not tr & te
    # a process hosting nodes 3 and 1 cuts the same samples for them
    tr2, te2 = hold_out_local(nd.shard([3, 1]), 0.3, seed=7)
    assert torch.equal(te2.X, test.shard([3, 1]).X[:, : te2.m_max]) and torch.equal(tr2.y, train.shard([3, 1]).y)
    other = hold_out_local(nd, 0.3, seed=8)[1]
    assert not torch.equal(other.X, test.X)  # the seed picks the samples


def test_per_node_rows_are_the_models_on_each_nodes_local_test_data(tmp_path):
    hist = proxgt.run(CFG, out=tmp_path / "r")
    cols, rows = read_metrics_csv(tmp_path / "r" / "per_node.csv")
    assert cols == node_columns(True)
    assert [(r["iter"], r["node"]) for r in rows] == [(t, i) for t in (0, 20, 40) for i in range(4)]
    spec = build_run(CFG)
    assert spec.local_test is not None and spec.meta["local_test_sizes"] == spec.local_test.counts.tolist()
    X = hist.x.to(torch.float32)
    xbar = X.mean(dim=0)
    last = [r for r in rows if r["iter"] == 40]
    for i, r in enumerate(last):
        m = int(spec.local_test.counts[i])
        feats, labels = spec.local_test.X[i : i + 1, :m], spec.local_test.y[i : i + 1, :m]
        for who, x in (("avg", xbar), ("own", X[i])):
            pred = spec.problem.predict(x.unsqueeze(0), feats)
            assert r[f"{who}_accuracy"] == pytest.approx(float((pred == labels).double().mean()), abs=1e-12)
            w = torch.full(labels.shape, 1.0 / m, dtype=x.dtype)
            loss = float(spec.problem.loss_grad(x.unsqueeze(0), feats, labels, w, with_penalty=False)[0][0])
            assert r[f"{who}_loss"] == pytest.approx(loss, rel=1e-5)
    # the summary columns summarize them; the sorted split makes the nodes differ
    final = hist.rows[-1]
    acc = [r["avg_accuracy"] for r in last]
    assert final["local_accuracy_mean"] == pytest.approx(np.mean(acc))
    assert final["local_accuracy_worst"] == min(acc) and final["local_accuracy_spread"] == max(acc) - min(acc)
    assert final["local_worst_node"] == acc.index(min(acc))
    own = [r["own_loss"] for r in last]
    assert final["own_loss_worst"] == max(own) and final["own_loss_mean"] == pytest.approx(np.mean(own))
    assert set(summary_columns(True)) <= set(hist.columns)
    # the held-out samples are not trained on: the nodes' training data shrank by exactly them
    assert sum(spec.meta["local_sizes"]) + sum(spec.meta["local_test_sizes"]) == build_run(
        {k: v for k, v in CFG.items() if k != "local_test_fraction"}).meta["train_samples"]


def test_a_resumed_run_logs_each_node_row_once(tmp_path):
    from proxgt.executors.simulation import run_simulation

    class Stop(Exception):
        pass

    def stop(rank: int, t: int) -> None:
        if t == 27:
            raise Stop

    cfg = {**CFG, "iters": 40, "log_every": 5, "checkpoint_every": 10}
    ref = run_simulation(cfg, out=tmp_path / "ref")
    with pytest.raises(Stop):
        run_simulation(cfg, out=tmp_path / "r", fault_hook=stop)
    assert max(r["iter"] for r in read_metrics_csv(tmp_path / "r" / "per_node.csv")[1]) == 25
    run_simulation(None, resume=tmp_path / "r")
    got = read_metrics_csv(tmp_path / "r" / "per_node.csv")
    assert got == read_metrics_csv(tmp_path / "ref" / "per_node.csv")
    assert len(ref.rows) == 9


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_bad_fractions_are_one_line_errors(value, capsys):
    assert main(["run", "--data", "breast_cancer", "--local-test-fraction", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "local_test_fraction" in err and "(0, 1)" in err


def test_a_node_too_small_to_hold_out_is_a_one_line_error():
    with pytest.raises(ProxGTValueError, match="node 0 has 1 sample.*at least 2"):
        build_run({"data": "breast_cancer", "nodes": 455, "local_test_fraction": 0.5, "iters": 1})


def test_regression_problems_report_losses_only(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", X=X, y=(X @ rng.normal(size=5) + 0.1 * rng.normal(size=120)).astype(np.float32))
    hist = proxgt.run({"data": str(tmp_path / "reg.npz"), "problem": "least_squares", "reg": "none", "nodes": 3,
                       "iters": 10, "log_every": 10, "local_test_fraction": 0.2}, out=tmp_path / "r")
    cols, rows = read_metrics_csv(tmp_path / "r" / "per_node.csv")
    assert cols == ["iter", "node", "avg_loss", "own_loss"]
    assert hist.rows[-1]["local_loss_worst"] == max(r["avg_loss"] for r in rows if r["iter"] == 10)
    assert not math.isnan(hist.rows[-1]["local_worst_node"])
