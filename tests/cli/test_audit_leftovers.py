"""The audit's leftovers (issue 19, item 6): damaged or unusual inputs are one-line errors or warnings, never a
traceback and never silently wrong output."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from proxgt.cli import main

FLAGS = ["--nodes", "4", "--topology", "ring", "--algorithm", "proxgt-sa", "--iters", "6", "--log-every", "3",
         "--seed", "1", "--no-progress"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, X=X, y=y)
    return str(path)


@pytest.fixture(scope="module")
def finished(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "one"
    assert main(["run", *FLAGS, "--data", data_file, "--out", str(out)]) == 0
    return out


def test_overwrite_never_deletes_through_a_symlinked_checkpoint_folder(data_file, tmp_path, capsys):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main(["run", *FLAGS, "--data", data_file, "--out", str(out), "--checkpoint-every", "3"]) == 0
    shutil.rmtree(out / "checkpoint")
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the run's")
    (out / "checkpoint").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    code = main(["run", *FLAGS, "--data", data_file, "--out", str(out), "--checkpoint-every", "3", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint is a symbolic link" in err and len(err.strip().splitlines()) == 1, err
    assert (elsewhere / "keep.txt").read_text() == "not the run's"


@pytest.mark.parametrize("damage", ["summary", "metrics-text", "metrics-empty"])
def test_report_skips_a_damaged_run_with_a_warning_and_never_counts_it_finished(damage, finished, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(finished, root / "good")
    shutil.copytree(finished, root / "bad")
    bad = root / "bad"
    if damage == "summary":
        (bad / "summary.json").write_text('{"iterations": 6, "fin')
    elif damage == "metrics-text":
        lines = (bad / "metrics.csv").read_text().splitlines()
        (bad / "metrics.csv").write_text("\n".join([lines[0], "x" + lines[1][1:], *lines[2:]]) + "\n")
    else:
        (bad / "metrics.csv").write_text((bad / "metrics.csv").read_text().splitlines()[0] + "\n")
    capsys.readouterr()
    assert main(["report", str(root), "--target", "1"]) == 0
    err = capsys.readouterr().err
    assert f"proxgt: warning: skipped run folder {bad}" in err and "Traceback" not in err, err
    report = (root / "report.md").read_text()
    assert "1 finished of 1" in report and "nan" not in (root / "table.md").read_text()
    shutil.rmtree(root / "good")
    assert main(["report", str(bad.parent), "--target", "1"]) == 2
    assert "no readable run folders" in capsys.readouterr().err
