"""Neural-network problems end to end: registry, a short training run, the CLI on a tiny .npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.executors.simulation import run_simulation
from proxgt.registry import PROBLEMS
from proxgt.settings import RunConfig
from proxgt.training import build_run


def _cfg(**kw) -> RunConfig:
    base = dict(problem="mlp", data="digits", nodes=4, topology="ring", split="shards", algorithm="proxgt-sa",
                batch=16, step=0.5, hidden=32, iters=60, log_every=30, seed=0, threads=1)
    base.update(kw)
    return RunConfig(**base)


def test_problems_are_registered():
    assert {"mlp", "lenet"} <= set(PROBLEMS.names())


def test_build_uses_masks_and_records_settings():
    b = build_run(_cfg(reg_bias=False))
    p = b.problem
    assert p.dim == 64 * 32 + 32 + 32 * 10 + 10
    assert torch.equal(b.regularizer.mask, p.reg_mask) and int(p.reg_mask.sum()) == 64 * 32 + 32 * 10
    assert bool(build_run(_cfg(reg_bias=True)).regularizer.mask.all())
    resolved = b.resolved_config()
    assert resolved["hidden"] == 32 and resolved["nn_grad"] == "auto" and resolved["meta"]["dim"] == p.dim
    assert torch.equal(b.x0, build_run(_cfg()).x0)  # same seed, same x0


def test_short_training_run_improves_test_accuracy():
    """MLP on sklearn digits, 4 nodes with 2 classes each, 60 iterations of ProxGT-SA."""
    hist = run_simulation(_cfg())
    acc = hist.column("test_accuracy")
    assert acc[0] < 0.3
    assert acc[-1] > 0.8, acc
    assert hist.rows[-1]["consensus"] < 1e-2
    assert 0.0 < hist.rows[-1]["density"] <= 1.0


def test_sr_o_with_vmap_also_trains():
    hist = run_simulation(_cfg(algorithm="proxgt-sr-o", batch=8, big_batch=64, period=8, nn_grad="vmap"))
    acc = hist.column("test_accuracy")
    assert acc[-1] > acc[0] + 0.4, acc


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"problem": "lenet"}, "12 x 12"),
        ({"hidden": 0}, "hidden"),
        ({"nn_grad": "fast"}, "nn_grad"),
        ({"activation": "swish"}, "activation"),
        ({"data": "synthetic", "split": "iid"}, None),  # 2 classes: fine
    ],
)
def test_builder_validation(kw, message):
    if message is None:
        assert build_run(_cfg(**kw)).problem.dim > 0
        return
    with pytest.raises(ProxGTValueError, match=message):
        build_run(_cfg(**kw))


def _tiny_npz(path: Path, flat: bool) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 1, 14, 14)).astype(np.float32) + y[:, None, None, None]
    np.savez(path, X=X.reshape(120, -1) if flat else X, y=y)
    return path


@pytest.mark.parametrize("problem, flat", [("mlp", True), ("lenet", True), ("lenet", False)])
def test_cli_run_writes_outputs(tmp_path: Path, capsys, problem: str, flat: bool):
    data = _tiny_npz(tmp_path / "tiny.npz", flat)
    out = tmp_path / "run"
    code = main(["run", "--problem", problem, "--data", str(data), "--nodes", "3", "--split", "dirichlet",
                 "--alpha", "0.3", "--iters", "6", "--log-every", "3", "--hidden", "8", "--reg-bias", "true",
                 "--batch", "4", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    for name in ("config.toml", "metrics.csv", "final.npz", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["iters"] == 6
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"test_accuracy", "test_loss", "density", "grad_mapping_sq"} <= set(header)
    text = (out / "config.toml").read_text()
    assert f'problem = "{problem}"' in text and "reg_bias = true" in text
    x = np.load(out / "final.npz")
    assert any(a.ndim == 2 and a.shape[0] == 3 for a in (x[k] for k in x.files))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cli_device_cuda_without_gpu_is_one_line_exit_2(tmp_path: Path, capsys):
    code = main(["run", "--problem", "mlp", "--data", "iris", "--device", "cuda", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err and "--device cpu" in err


def test_cli_bad_reg_bias_value_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--problem", "mlp", "--reg-bias", "maybe"])
    assert exc.value.code == 2 and "true or false" in capsys.readouterr().err


def test_metrics_on_a_fixed_subsample():
    from proxgt.problems.oracle import GradientOracle

    b = build_run(_cfg(metrics_samples=20))
    assert b.problem.metrics_samples == 20
    orc = GradientOracle(b.problem, b.node_data, seed=0)
    sub, again = orc.subsample(20, seed=0), orc.subsample(20, seed=0)
    assert sub.counts.tolist() == [min(20, int(m)) for m in orc.counts.tolist()]
    assert torch.equal(sub.X, again.X) and sub.node_ids == orc.node_ids and int(sub.ifo.sum()) == 0
    for r in range(orc.k):  # every kept row is one of the node's own samples
        own = orc.X[r, : int(orc.counts[r])].reshape(int(orc.counts[r]), -1)
        kept = sub.X[r, :20].reshape(20, -1)
        assert bool((torch.cdist(kept, own).min(dim=1).values == 0).all())
    full = run_simulation(_cfg(iters=4, log_every=2))
    part = run_simulation(_cfg(iters=4, log_every=2, metrics_samples=20))
    assert full.columns == part.columns
    assert full.rows[-1]["test_accuracy"] == part.rows[-1]["test_accuracy"]  # same iterates, same test set
    assert full.rows[-1]["grad_mapping_sq"] != part.rows[-1]["grad_mapping_sq"]
    assert torch.equal(full.x, part.x)
    with pytest.raises(ProxGTValueError, match="metrics_samples"):
        build_run(_cfg(metrics_samples=0))
