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


@pytest.mark.parametrize("extra, message", [
    (["--reg", "support", "--support-file", "EMPTY"], "a support with at least one coordinate"),
    (["--dp-delta", "1e-6"], "--dp-delta is the delta of a differential privacy guarantee"),
    (["--on-failure", "continue"], "on_failure (--on-failure) applies to 'proxgt launch'"),
    (["--extra", "deepstorm.beta=0.1"], "--extra deepstorm.* sets a setting of deepstorm, but this run's algorithm"),
    (["--algorithm", "deepstorm", "--extra", "deepstorm.beta=abc"], "extra.deepstorm.beta must be a float"),
    (["--algorithm", "deepstorm", "--extra", "deepstorm.beta"], "--extra expects METHOD.KEY=VALUE"),
    # a key the method does not know (ProxGT and the pooled SGD read no [extra] settings of their own)
    (["--algorithm", "proxgt-sa", "--extra", "proxgt-sa.foo=bar"], "unknown setting extra.proxgt-sa.foo"),
    (["--algorithm", "proxgt-sr-o", "--extra", "proxgt-sr-o.foo=1"], "unknown setting extra.proxgt-sr-o.foo"),
    (["--algorithm", "central-prox-sgd", "--nodes", "1", "--extra", "central-prox-sgd.foo=1"],
     "unknown setting extra.central-prox-sgd.foo"),
])
def test_settings_that_would_be_ignored_or_empty_are_refused(extra, message, data_file, tmp_path, capsys):
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((1, 8), dtype=np.float32))
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    code = main(["run", *FLAGS, "--data", data_file, "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_extra_for_the_table_an_algorithm_declares_is_accepted(data_file, tmp_path):
    # deepstorm-diminishing reads [extra.deepstorm] (declared in the registry), not a table of its own name
    assert main(["run", *FLAGS, "--data", data_file, "--out", str(tmp_path / "run"),
                 "--algorithm", "deepstorm-diminishing", "--extra", "deepstorm.k0=3"]) == 0
    assert main(["run", *FLAGS, "--data", data_file, "--out", str(tmp_path / "dp"), "--dp-clip", "1",
                 "--dp-noise", "1", "--dp-delta", "1e-6", "--batch", "4"]) == 0


SUITE = """
[suite]
name = "tiny"
out = "out"
target = 1
[suite.cost]
sample_s = 1e-6
[base]
data = "{data}"
nodes = 4
iters = 4
log_every = 2
[grid]
seed = [0]
algorithm = ["proxgt-sa"]
"""


def test_compare_never_replaces_a_folder_it_did_not_create(data_file, finished, tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(data=data_file))
    from proxgt.suites import load_suite

    spec = load_suite(suite)
    mine = spec.folder(spec.cells[0])  # the user's run, where the suite's cell would go
    shutil.copytree(finished, mine)
    before = {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()}
    code = main(["compare", "-c", str(suite)])
    out = capsys.readouterr()
    assert code != 0 and "did not create" in out.out + out.err, out
    assert {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()} == before
    # a run folder as the suite's output folder is refused before anything is written into it
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    assert main(["compare", "-c", str(suite), "--out", str(run)]) == 2
    assert "holds a run, not a suite" in capsys.readouterr().err
    assert not (run / "suite.json").exists()
