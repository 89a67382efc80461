"""The `proxgt run` command: outputs, flags over TOML, determinism, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from proxgt.cli import main

FAST = ["--data", "breast_cancer", "--nodes", "4", "--iters", "20", "--log-every", "10", "--no-progress"]


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, err = _run(["run", *FAST, "--algorithm", "proxgt-sr-e", "--out", str(out)], capsys)
    assert code == 0, err
    assert {"config.toml", "metrics.csv", "final.npz", "summary.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for col in ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "wall_s", "grad_mapping_sq", "consensus",
                "total_opt", "objective", "train_accuracy", "test_accuracy", "density"):
        assert col in rows[0]
    assert [int(r["iter"]) for r in rows] == [0, 10, 20]
    fin = np.load(out / "final.npz")
    assert fin["x"].shape == (4, 30)
    np.testing.assert_allclose(fin["x_bar"], fin["x"].mean(0))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["iters"] == 20
    assert "seed = 0" in (out / "config.toml").read_text()


def test_flags_override_toml_and_same_seed_same_csv(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('algorithm = "proxgt-sa"\nnodes = 8\niters = 500\ndata = "breast_cancer"\nlog_every = 10\n')
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        code, _, err = _run(["run", "-c", str(cfg), "--iters", "20", "--no-progress", "--out", str(out)], capsys)
        assert code == 0, err
        outs.append(out)
    text = [(o / "metrics.csv").read_text().splitlines() for o in outs]
    assert len(text[0]) == 4  # header + iterations 0, 10, 20: --iters 20 beat the file's 500

    def no_wall(lines):
        header = lines[0].split(",")
        j = header.index("wall_s")
        return [[c for i, c in enumerate(line.split(",")) if i != j] for line in lines]

    assert no_wall(text[0]) == no_wall(text[1])
    assert "nodes = 8" in (outs[0] / "config.toml").read_text()


def test_config_file_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('algoritm = "proxgt-sa"\n')
    code, _, err = _run(["run", "-c", str(cfg)], capsys)
    assert code == 2 and "unknown setting 'algoritm'" in err


BAD = [
    (["--algorithm", "sgd-magic"], "unknown algorithm 'sgd-magic'"),
    (["--topology", "moebius"], "moebius"),
    (["--topology", "erdos_renyi", "--topology-p", "0.01"], "disconnected"),
    (["--data", "/nonexistent/file.svm"], "does not exist"),
    (["--step", "-1"], "'step'"),
    (["--step", "0"], "'step'"),
    (["--batch", "0"], "'batch'"),
    (["--iters", "0"], "'iters'"),
    (["--nodes", "0"], "'nodes'"),
    (["--nodes", "1000"], "each node needs at least one sample"),
    (["--rounds", "many"], "expected an integer or 'auto'"),
    (["--mixing", "telepathy"], "'mixing'"),
    (["--reg", "l7"], "l7"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_one_line_error_exit_2(tmp_path, capsys, extra, message):
    code = None
    try:
        code = main(["run", *FAST, *extra, "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse type errors
        code = exc.code
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert err.startswith("proxgt: error: ") and err.count("\n") == 1, err


def test_malformed_data_file_names_the_line(tmp_path, capsys):
    f = tmp_path / "d.svm"
    f.write_text("1 1:0.5 2:1\n-1 1:0.25\n1 1:oops\n")
    code, _, err = _run(["run", *FAST, "--data", str(f), "--nodes", "2"], capsys)
    assert code == 2 and "line 3" in err and err.count("\n") == 1


def test_divergence_keeps_metrics_and_exits_3(tmp_path, capsys):
    out = tmp_path / "div"
    code, _, err = _run(
        ["run", *FAST, "--problem", "least_squares", "--data", "breast_cancer", "--step", "1e6", "--reg", "none",
         "--iters", "200", "--log-every", "1", "--out", str(out)],
        capsys,
    )
    assert code == 3
    assert "NaN/Inf" in err and "smaller step" in err and err.count("\n") <= 2  # the warning line may precede it
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) >= 2  # header and at least the iteration-0 row survive
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


def test_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "proxgt.cli", "run", "--algorithm", "nope", "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("proxgt: error:")


def test_empty_config_file_is_called_empty_not_missing(tmp_path, capsys):
    (tmp_path / "empty.toml").write_text("")
    for path, message in (("/dev/null", "config file /dev/null is empty"),
                          (str(tmp_path / "empty.toml"), "is empty"),
                          (str(tmp_path / "none.toml"), "config file not found"),
                          (str(tmp_path), "is a folder, not a file")):
        code, _, err = _run(["run", "-c", path], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_too_many_nodes_fail_fast_with_the_reason(capsys):
    code, _, err = _run(["run", "--nodes", "100000", "--topology", "complete", "--no-progress"], capsys)
    assert code == 2 and "nodes = 100000" in err and "111.8 GiB" in err and err.count("\n") == 1


def test_unknown_setting_suggests_the_close_one(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text("[graph]\nnodse = 4\n")
    code, _, err = _run(["run", "-c", str(cfg)], capsys)
    assert code == 2 and "unknown setting 'graph.nodse'" in err and err.count("\n") == 1
