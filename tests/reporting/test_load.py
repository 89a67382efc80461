"""Results as pandas DataFrames (proxgt.load_run / load_suite, History.to_pandas / History.load), and metrics.csv
appended row by row with only whole rows ever read back."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest
import torch

import proxgt
from proxgt._io import read_metrics_csv
from proxgt.errors import MissingDependencyError, ProxGTValueError
from proxgt.training import History

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'proxgt[pandas]')")

CFG = {"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 10, "seed": 3}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("load") / "run"
    hist = proxgt.run(CFG, out=out)
    return out, hist


def test_load_run_equals_metrics_csv(finished):
    out, _ = finished
    df = proxgt.load_run(out, settings=False)
    with open(out / "metrics.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert list(df.columns) == lines[0]
    assert len(df) == len(lines) - 1 == 4
    for i, line in enumerate(lines[1:]):
        for col, text in zip(lines[0], line, strict=True):
            assert df.at[i, col] == float(text) or (math.isnan(df.at[i, col]) and math.isnan(float(text)))
    pd.testing.assert_frame_equal(df, pd.read_csv(out / "metrics.csv"), check_dtype=False)
    assert df["iter"].dtype == "int64" and df["grad_mapping_sq"].dtype == "float64"


def test_load_run_adds_the_settings_as_columns(finished):
    out, _ = finished
    df = proxgt.load_run(out)
    plain = proxgt.load_run(out, settings=False)
    pd.testing.assert_frame_equal(df[list(plain.columns)], plain)
    assert (df["nodes"] == 4).all() and (df["seed"] == 3).all() and (df["algorithm"] == "proxgt-sa").all()
    assert (df["data"] == "breast_cancer").all() and "meta" not in df.columns


def test_history_to_pandas_and_load_give_back_the_run(finished):
    out, hist = finished
    pd.testing.assert_frame_equal(hist.to_pandas(), proxgt.load_run(out, settings=False))
    back = History.load(out)
    assert back.columns == hist.columns
    assert back.rows == hist.rows
    assert [type(r["iter"]) for r in back.rows] == [int] * len(hist.rows)
    assert back.x.dtype == hist.x.dtype and torch.equal(back.x, hist.x)
    assert back.summary["final"] == pytest.approx(hist.summary["final"])
    assert back.config == hist.config
    target = hist.rows[-1]["grad_mapping_sq"] * 1.001
    assert back.reaching("grad_mapping_sq", target) == hist.reaching("grad_mapping_sq", target)


def test_history_load_refuses_a_folder_without_a_finished_run(tmp_path, finished):
    out, _ = finished
    with pytest.raises(ProxGTValueError, match="no summary.json"):
        History.load(tmp_path)
    diverged = tmp_path / "d"
    diverged.mkdir()
    for name in ("metrics.csv", "config.toml"):
        (diverged / name).write_bytes((out / name).read_bytes())
    (diverged / "summary.json").write_text('{"status": "diverged"}')
    with pytest.raises(ProxGTValueError, match="status 'diverged'.*final.npz"):
        History.load(diverged)


def test_load_suite_stacks_the_runs_with_their_series(tmp_path):
    for seed in (0, 1):
        for alg in ("proxgt-sa", "prox-dsgt"):
            proxgt.run({**CFG, "iters": 10, "algorithm": alg, "seed": seed}, out=tmp_path / f"{alg}-{seed}")
    df = proxgt.load_suite(tmp_path)
    assert len(df) == 4 * 2
    assert list(df.columns[:3]) == ["run", "series", "status"]
    assert sorted(df["run"].unique()) == ["prox-dsgt-0", "prox-dsgt-1", "proxgt-sa-0", "proxgt-sa-1"]
    assert set(df["status"]) == {"ok"}
    by_run = df.groupby("run")["series"].first()
    assert by_run["prox-dsgt-0"] == by_run["prox-dsgt-1"] != by_run["proxgt-sa-0"]
    one = proxgt.load_run(tmp_path / "prox-dsgt-1")
    pd.testing.assert_frame_equal(df[df["run"] == "prox-dsgt-1"].drop(columns=["run", "series", "status"])
                                  .reset_index(drop=True)[list(one.columns)], one)
    with pytest.raises(ProxGTValueError, match="no readable run folders"):
        proxgt.load_suite(tmp_path, table="per_node")


def test_bad_folders_and_tables_are_one_line_errors(tmp_path, finished):
    out, _ = finished
    with pytest.raises(ProxGTValueError, match="run folder not found"):
        proxgt.load_run(tmp_path / "nowhere")
    with pytest.raises(ProxGTValueError, match="has no metrics.csv"):
        proxgt.load_run(tmp_path)
    with pytest.raises(ProxGTValueError, match="has no per_node.csv"):
        proxgt.load_run(out, table="per_node")
    with pytest.raises(ProxGTValueError, match="table must be one of"):
        proxgt.load_run(out, table="nodes")  # type: ignore[arg-type]


def test_missing_pandas_is_a_one_line_error(monkeypatch, finished):
    out, hist = finished
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"needs the pandas package.*pip install 'proxgt\[pandas\]'"):
        proxgt.load_run(out)
    with pytest.raises(MissingDependencyError):
        hist.to_pandas()


def test_metrics_csv_is_appended_and_a_partial_last_line_is_not_read(tmp_path, monkeypatch):
    """Each logged row appends to metrics.csv (no rewrite of the whole file); a run killed in the middle of an
    append leaves a partial line that every reader drops."""
    import proxgt._io as io_mod

    writes = {"atomic": 0, "append": 0}
    atomic, append = io_mod.atomic_write_text, io_mod.append_text

    def count_atomic(path, text):
        writes["atomic"] += str(path).endswith("metrics.csv")
        atomic(path, text)

    def count_append(path, text):
        writes["append"] += 1
        append(path, text)

    import proxgt.training.folder as folder_mod

    monkeypatch.setattr(folder_mod, "atomic_write_text", count_atomic)
    monkeypatch.setattr(folder_mod, "append_text", count_append)
    out = tmp_path / "r"
    hist = proxgt.run({**CFG, "iters": 50}, out=out)
    assert writes == {"atomic": 1, "append": len(hist.rows) - 1}
    text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(text + text.splitlines()[-1][:7])  # a kill in the middle of an append
    cols, rows = read_metrics_csv(out / "metrics.csv")
    assert rows == hist.rows
    assert len(proxgt.load_run(out)) == len(hist.rows)
    np.testing.assert_array_equal(History.load(out).x, hist.x)
