"""experiments/nn_results.py: rewriting the committed network results table never loses its results."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from proxgt.cli import main as proxgt_main

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "nn_results.py"
COMMITTED = REPO / "experiments" / "reports" / "nn-results" / "table.md"


def _script():
    spec = importlib.util.spec_from_file_location("nn_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_any_run_it_refuses_in_one_line_and_leaves_the_committed_table(tmp_path):
    table = tmp_path / "experiments" / "reports" / "nn-results" / "table.md"
    table.parent.mkdir(parents=True)
    shutil.copy(COMMITTED, table)
    before = table.read_text()
    assert "not finished" not in before
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    # from a repository root without the device runs, as a user who did not bring them back runs it
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "left as it is" in done.stderr
    assert table.read_text() == before


def test_a_partial_rerun_replaces_its_own_row_and_keeps_the_others(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert proxgt_main(["run", "--problem", "mlp", "--data", "breast_cancer", "--nodes", "2", "--iters", "4",
                        "--log-every", "2", "--hidden", "4", "--out", str(runs / "mlp-sa-b128")]) == 0
    table = tmp_path / "table.md"
    shutil.copy(COMMITTED, table)
    old = _script().committed_rows(COMMITTED.read_text())
    capsys.readouterr()
    assert _script().cli([str(runs), "--out", str(table)]) == 0
    assert "kept the rows" in capsys.readouterr().err
    new = _script().committed_rows(table.read_text())
    assert set(new) == set(old) and "not finished" not in table.read_text()
    assert new["mlp-sa-b128"] != old["mlp-sa-b128"]  # the rerun run's own row
    assert all(new[name] == row for name, row in old.items() if name != "mlp-sa-b128")
    assert table.read_text().splitlines()[:2] == COMMITTED.read_text().splitlines()[:2]  # the same header
