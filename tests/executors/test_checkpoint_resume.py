"""Checkpoints of the simulation: kill -9 mid-run, resume, and end with the uninterrupted run's metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from proxgt._io import read_metrics_csv
from proxgt._validation import ProxGTValueError
from proxgt.cli import main
from proxgt.executors.checkpoint import Checkpointer, complete_checkpoints, latest_checkpoint, load_checkpoint
from proxgt.executors.simulation import run_simulation
from proxgt.registry import ALGORITHMS, ASYNC_ONLY

from .resuming import stopped_and_resumed

CFG = {"nodes": 4, "topology": "ring", "algorithm": "proxgt-sr-e", "batch": 4, "iters": 3000, "log_every": 100,
       "seed": 1, "test_fraction": 0.0, "checkpoint_every": 40}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 10)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, X=X, y=y)
    return str(path)


def _flags(cfg: dict) -> list[str]:
    return [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def test_kill_9_then_resume_gives_the_uninterrupted_metrics(data_file, tmp_path):
    cfg = dict(CFG, data=data_file)
    ref = run_simulation(dict(cfg, checkpoint_every=0), out=tmp_path / "ref")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "proxgt.cli", "run", *_flags(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while latest_checkpoint(out) is None or latest_checkpoint(out)[0] < 200:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()  # killed mid-run
    t_ck = latest_checkpoint(out)[0]
    assert 200 <= t_ck < cfg["iters"]
    # the folder is consistent: every file parses, metrics.csv has only complete rows
    cols, rows = read_metrics_csv(out / "metrics.csv")
    assert rows and all(len(r) == len(cols) for r in rows)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    cols_b, rows_b = read_metrics_csv(out / "metrics.csv")
    cols_a, rows_a = read_metrics_csv(tmp_path / "ref" / "metrics.csv")
    assert cols_a == cols_b and len(rows_a) == len(rows_b) == cfg["iters"] // cfg["log_every"] + 1
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    np.testing.assert_array_equal(np.load(out / "final.npz")["x"], ref.x.double().numpy())
    assert latest_checkpoint(out)[0] == cfg["iters"]


def test_resume_takes_settings_from_the_checkpoint_only(data_file, tmp_path, capsys):
    cfg = dict(CFG, data=data_file, iters=20, log_every=5)
    ref = run_simulation(dict(cfg, checkpoint_every=0))
    out = tmp_path / "u"
    with pytest.raises(_Stop):  # the hook runs before the checkpoint of its iteration: 5 is the newest
        run_simulation(dict(cfg, checkpoint_every=5), out=out, fault_hook=_stop_at(10))
    assert main(["run", "--resume", str(out), "--batch", "3"]) == 2
    assert "drop --batch" in capsys.readouterr().err
    hist = run_simulation(None, resume=out, overrides={"checkpoint_every": 3})
    assert [r["iter"] for r in hist.rows] == [0, 5, 10, 15, 20] and torch.equal(hist.x, ref.x)
    assert latest_checkpoint(out)[0] == 20 and (out / "checkpoint" / "iter000000018").is_dir()


class _Stop(Exception):
    pass


def _stop_at(t_stop: int):
    def hook(rank: int, t: int) -> None:
        if t == t_stop:
            raise _Stop

    return hook


def _components(x: torch.Tensor) -> dict:
    return {"algorithm": {"x": x}, "oracle": {}, "comm": {}, "mixer": {}, "metrics": {"columns": [], "rows": []},
            "executor": {"wall": 0.0, "node_ids": [0]}, "config": {}}


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("proxgt: error: no complete checkpoint under") and err.count("\n") == 1
    with pytest.raises(ProxGTValueError, match="checkpoint_every"):
        run_simulation({"checkpoint_every": -1, "data": "x"})


def test_only_complete_checkpoints_count_and_the_last_two_are_kept(tmp_path):
    a = Checkpointer(tmp_path, 0, 2, every=5)
    b = Checkpointer(tmp_path, 1, 2, every=5)
    assert not a.due(0) and a.due(5) and not a.due(7)
    a.save(5, _components(torch.ones(2)))
    assert latest_checkpoint(tmp_path) is None  # rank 1's file is missing
    b.save(5, _components(torch.zeros(2)))
    assert latest_checkpoint(tmp_path)[:1] == (5,) and latest_checkpoint(tmp_path)[2] == 2
    a.save(10, _components(torch.ones(2)))  # rank 0 is ahead: 5 stays the newest complete checkpoint
    t, d5, w = latest_checkpoint(tmp_path)
    assert t == 5 and (d5 / "rank1.pt").exists()
    b.save(10, _components(torch.zeros(2)))
    assert [c[0] for c in complete_checkpoints(tmp_path)] == [10, 5]  # two complete ones are kept
    a.save(15, _components(torch.ones(2)))
    b.save(15, _components(torch.zeros(2)))
    assert [c[0] for c in complete_checkpoints(tmp_path)] == [15, 10]
    assert not (d5 / "rank1.pt").exists() and (d5 / "rank0.pt").exists()  # rank 0 cleans up at its next save
    a.save(20, _components(torch.ones(2)))
    assert not d5.exists()
    assert torch.equal(load_checkpoint(tmp_path, 1, 2)["algorithm"]["x"], torch.zeros(2))
    with pytest.raises(ProxGTValueError, match="written by 2 process"):
        load_checkpoint(tmp_path, 0, 4)
    # leftover temporary files from a kill during a write are ignored
    (d5.parent / "iter000000025").mkdir()
    (d5.parent / "iter000000025" / ".rank0.pt.abc.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path)[0] == 15
    with pytest.raises(ValueError, match="components"):  # a checkpoint holds every component
        a.save(25, {"algorithm": {}})
    with pytest.raises(ValueError, match="numpy.ndarray"):  # and plain values only
        a.save(25, dict(_components(torch.ones(2)), oracle={"ifo": np.zeros(2)}))


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_every_algorithm_resumes_exactly(algorithm, data_file, tmp_path, monkeypatch):
    """Stop right after the checkpoint at 20, resume, and match the uninterrupted run (all but wall_s)."""
    nodes = 1 if algorithm.startswith("central") else 4  # the centralized references run on pooled data
    cfg = {"data": data_file, "nodes": nodes, "iters": 30, "log_every": 5, "batch": 8, "algorithm": algorithm,
           "test_fraction": 0.0, "asynchronous": ASYNC_ONLY in ALGORITHMS.traits(algorithm)}
    ref, hist = stopped_and_resumed(cfg, tmp_path / "r", monkeypatch)
    assert len(hist.rows) == len(ref.rows) == 7
    for ra, rb in zip(ref.rows, hist.rows, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    assert torch.equal(hist.x, ref.x)
