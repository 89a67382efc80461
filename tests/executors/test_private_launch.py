"""Differential privacy across the processes of ``proxgt launch``: every worker draws its noise from a seed of its
own (the run's seed is known to all), keeps it in its own 0600 checkpoint file, and a resume repeats it exactly."""

from __future__ import annotations

import shutil
import stat
import sys
import tomllib

import numpy as np
import opacus.accountants  # noqa: F401  (imported once here, as 'proxgt launch' does: the forked workers inherit it)
import pytest

from proxgt.executors.launch.launcher import launch

from .launching import captured, deadline, tiny_classification

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers: Linux")

FLAGS = ["--nodes", "4", "--topology", "ring", "--algorithm", "proxgt-sa", "--batch", "8", "--iters", "4",
         "--log-every", "2", "--seed", "5", "--no-progress", "--timeout", "20", "--dp-clip", "1", "--dp-noise", "1",
         "--checkpoint-every", "2", "--step", "0.5"]


def _launch(argv: list[str]) -> None:
    with captured() as got, deadline(120):
        code = launch(2, argv, timeout_s=20)
    assert code == 0, got["err"]


def _final(folder) -> np.ndarray:
    with np.load(folder / "final.npz", allow_pickle=False) as z:
        return np.asarray(z["x"])


def test_two_private_launches_with_one_seed_draw_different_noise_and_a_resume_repeats_one(tmp_path):
    data = tiny_classification(tmp_path)
    for name in ("a", "b"):
        _launch([*FLAGS, "--data", data, "--out", str(tmp_path / name)])
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert not np.array_equal(a, b)  # the same settings and seed, other noise: no process can regenerate it
    config = tomllib.loads((tmp_path / "a" / "config.toml").read_text())
    assert config["privacy"]["dp_secure_noise"] is True
    files = list((tmp_path / "a" / "checkpoint").rglob("rank*.pt"))
    assert len(files) >= 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    import json

    note = json.loads((tmp_path / "a" / "summary.json").read_text())["distributed"]["note"]
    assert "over rank 0's own nodes" in note
    # two extensions of the same checkpoints draw the same noise: every process's generators are in its file
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    for name in ("a", "a2"):
        _launch(["--resume", str(tmp_path / name), "--iters", "6", "--no-progress", "--timeout", "20"])
    a6, a26 = _final(tmp_path / "a"), _final(tmp_path / "a2")
    assert np.array_equal(a6, a26) and not np.array_equal(a6, a)
