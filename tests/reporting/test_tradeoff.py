"""Density / accuracy trade-off of an l1 sweep: per-node and average densities from final.npz, the report hook."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from proxgt.reporting.report import write_report
from proxgt.reporting.runs import find_runs
from proxgt.reporting.tradeoff import SPARSITY_FILE, run_sparsity, tradeoff_rows, write_tradeoff
from proxgt.suites import load_suite, run_suite

SUITE = """
[suite]
name = "sweep"
out = "out"
target = 1e-2
[suite.cost]
sample_s = 1e-6
[base]
data = "breast_cancer"
algorithm = "proxgt-sa"
order = "mix-prox"
nodes = 4
iters = 40
log_every = 10
step = 0.5
[grid]
reg_strength = [0.0, 0.05]
seed = [0]
"""


@pytest.fixture(scope="module")
def suite_out(tmp_path_factory) -> Path:
    """The sweep suite, run once for the module (tests that change files work on a copy)."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "s.toml").write_text(SUITE)
    suite = load_suite(root / "s.toml")
    res = run_suite(suite, jobs=1)
    assert not res.failed
    return suite.out


def test_densities_and_accuracies_from_final_npz(suite_out):
    out = suite_out
    recs = find_runs(out / "runs")
    for r in recs:
        x = np.load(r.path / "final.npz")["x"]
        info = run_sparsity(r.path)
        assert info is not None
        # counted independently: share of non-zeros of each node row and of the row mean
        assert np.allclose(info["node_density"], (x != 0).mean(axis=1))
        assert np.isclose(info["avg_density"], (x.mean(axis=0) != 0).mean())
        assert all(0.0 <= a <= 1.0 for a in info["node_test_accuracy"])
        assert (r.path / SPARSITY_FILE).is_file()
    rows = tradeoff_rows(recs)
    by_lam = {r["reg_strength"]: r for r in rows}
    assert set(by_lam) == {0.0, 0.05}
    assert by_lam[0.0]["node_density_max"] == 1.0  # no l1: nothing is set to zero
    assert by_lam[0.05]["node_density_max"] < 1.0  # mix-prox iterates are prox outputs: exactly sparse under l1


def test_cached_measurements_survive_without_final_npz(suite_out, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(suite_out, out)
    recs = find_runs(out / "runs")
    before = tradeoff_rows(recs)
    for r in recs:
        (r.path / "final.npz").unlink()  # as in the runs run_device.sh brings back
    assert tradeoff_rows(recs) == before


def test_report_adds_tradeoff_only_for_a_sweep(suite_out, tmp_path):
    out = suite_out
    md = write_report(out, out=tmp_path / "rep").read_text()
    assert "Density / test-accuracy trade-off" in md
    assert (tmp_path / "rep" / "tradeoff.png").stat().st_size > 0
    assert "dense model (reg_strength 0)" in (tmp_path / "rep" / "tradeoff.md").read_text()
    one = [r for r in find_runs(out / "runs") if r.config["reg_strength"] == 0.0]
    assert write_tradeoff(out, tmp_path / "one", records=one) is None
