"""--tensorboard DIR: every logged metric as TensorBoard scalars that TensorBoard's own reader loads, one
TensorBoard run per run folder, written by the writing process only."""

from __future__ import annotations

import sys

import pytest

import proxgt
from proxgt._io import read_metrics_csv
from proxgt.cli import main
from proxgt.errors import MissingDependencyError

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'proxgt[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CFG = {"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 10}


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(rows, columns) -> dict[str, list[tuple[int, float]]]:
    return {c: [(int(r["iter"]), r[c]) for r in rows] for c in columns if c != "iter"}


def _assert_same(got, want):
    assert set(got) == set(want)
    for tag, events in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in events], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in events], rel=1e-6, abs=1e-30), tag


def test_every_logged_metric_is_a_scalar_tensorboard_reads(tmp_path):
    hist = proxgt.run({**CFG, "tensorboard": str(tmp_path / "tb")}, out=tmp_path / "runA")
    runs = [p.name for p in (tmp_path / "tb").iterdir()]
    assert runs == ["runA"]  # one TensorBoard run per run folder, named after it
    _assert_same(_scalars(tmp_path / "tb" / "runA"), _expected(hist.rows, hist.columns))
    assert len(hist.columns) > 10  # train/test accuracy, test loss, density as well as the base columns


def test_a_replaced_run_is_not_drawn_twice_and_the_settings_are_hparams(tmp_path):
    tb = str(tmp_path / "tb")
    proxgt.run({**CFG, "tensorboard": tb, "seed": 1}, out=tmp_path / "r")
    hist = proxgt.run({**CFG, "tensorboard": tb, "seed": 2, "iters": 20}, out=tmp_path / "r", overwrite=True)
    _assert_same(_scalars(tmp_path / "tb" / "r"), _expected(hist.rows, hist.columns))
    acc = EventAccumulator(str(tmp_path / "tb" / "r"))
    acc.Reload()
    plugin = acc.PluginTagToContent("hparams")
    assert plugin, "no hparams summary"
    from tensorboard.plugins.hparams import plugin_data_pb2

    infos = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in plugin.values()]
    starts = [i.session_start_info for i in infos if i.HasField("session_start_info")]
    assert [s.hparams["seed"].number_value for s in starts] == [2.0]  # the run now in the folder
    assert {s.hparams["algorithm"].string_value for s in starts} == {"proxgt-sa"}


def test_the_cli_flag_and_a_run_without_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "20", "--log-every", "10",
                 "--no-progress", "--tensorboard", "tb", "--out", "cli-run"]) == 0
    assert set(_scalars(tmp_path / "tb" / "cli-run")["grad_mapping_sq"]) and \
        [s for s, _ in _scalars(tmp_path / "tb" / "cli-run")["grad_mapping_sq"]] == [0, 10, 20]
    hist = proxgt.run({**CFG, "algorithm": "prox-dsgt", "seed": 4, "tensorboard": "tb2"})
    _assert_same(_scalars(tmp_path / "tb2" / "prox-dsgt-seed4"), _expected(hist.rows, hist.columns))


def test_missing_tensorboard_is_a_one_line_error_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"tensorboard package.*pip install 'proxgt\[tensorboard\]'"):
        proxgt.run({**CFG, "tensorboard": str(tmp_path / "tb")}, out=tmp_path / "r")
    assert not (tmp_path / "r" / "metrics.csv").exists()
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "5", "--no-progress",
                 "--tensorboard", str(tmp_path / "tb"), "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "proxgt[tensorboard]" in err


class _Stop(Exception):
    pass


def test_a_resumed_run_continues_its_curves_without_drawing_the_redone_rows_twice(tmp_path):
    from proxgt.executors.simulation import run_simulation

    cfg = {**CFG, "iters": 40, "log_every": 5, "checkpoint_every": 10, "tensorboard": str(tmp_path / "tb")}

    def stop(rank: int, t: int) -> None:
        if t == 27:  # after the checkpoint at 20 and the rows of 25: those are logged again on resume
            raise _Stop

    with pytest.raises(_Stop):
        run_simulation(cfg, out=tmp_path / "r", fault_hook=stop)
    before = _scalars(tmp_path / "tb" / "r")
    assert [s for s, _ in before["wall_s"]] == [0, 5, 10, 15, 20, 25]
    resumed = run_simulation(None, resume=tmp_path / "r")
    got = _scalars(tmp_path / "tb" / "r")
    _assert_same(got, _expected(resumed.rows, resumed.columns))  # every step once, the resumed run's values
    assert got["wall_s"][:5] == before["wall_s"][:5]  # the rows up to the checkpoint are the first attempt's


def test_a_suite_setting_gives_each_cell_its_own_tensorboard_run(tmp_path):
    from proxgt.suites import load_suite, run_suite

    (tmp_path / "s.toml").write_text(f"""
[suite]
name = "s"
target = 1e-2
[suite.cost]
sample_s = 1e-6
[base]
data = "breast_cancer"
nodes = 3
iters = 10
log_every = 5
tensorboard = "{tmp_path / 'tb'}"
[grid]
algorithm = ["proxgt-sa", "prox-dsgt"]
""")
    suite = load_suite(tmp_path / "s.toml")
    res = run_suite(suite, jobs=1)
    assert sorted(res.ran) == ["prox-dsgt", "proxgt-sa"]
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(c.name for c in suite.cells)
    for cell in suite.cells:
        cols, rows = read_metrics_csv(suite.folder(cell) / "metrics.csv")
        _assert_same(_scalars(tmp_path / "tb" / cell.name), _expected(rows, cols))
