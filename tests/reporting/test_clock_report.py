"""Reports of runs on the virtual clock: the simulated time to target in the table and curves against it."""

from __future__ import annotations

import csv
import io

import pytest

import proxgt.reporting.report as report_mod
from proxgt.reporting.curves import sustained_index
from proxgt.reporting.report import write_report
from proxgt.reporting.runs import load_run
from proxgt.suites import load_suite, run_suite

SUITE = """
[suite]
name = "clock"
target = 0.05
[suite.cost]
sample_s = 0.001
[base]
data = "breast_cancer"
nodes = 4
iters = 12
log_every = 2
rounds = 1
mixing = "plain"
node_speed = "exp:0.001"
link_latency = 0.002
[grid]
algorithm = ["proxgt-sa", "prox-adpsgd"]
asynchronous = [false, true]
seed = [0]
[[cell]]
match = { algorithm = "prox-adpsgd", asynchronous = false }
skip = true
"""


def _report_axes(tmp_path, monkeypatch, text):
    """Run the suite ``text`` and write its report; the suite and the axes each figure was drawn against."""
    (tmp_path / "s.toml").write_text(text)
    s = load_suite(tmp_path / "s.toml")
    assert not run_suite(s).failed
    drawn = []
    monkeypatch.setattr(report_mod, "plot_curves", lambda curves, path, **kw: drawn.append(kw["axes"]))
    write_report(s.out)
    return s, drawn


def test_sim_time_to_target_and_curves_against_it(tmp_path, monkeypatch):
    s, drawn = _report_axes(tmp_path, monkeypatch, SUITE)
    assert drawn == [report_mod.CLOCK_PLOT_AXES] and drawn[0][0] == "sim_time_s"
    monkeypatch.undo()
    # grouped by a setting that names a file: the figure is named after the file, not its absolute path
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("".join(f"{i},0.001\n" for i in range(4)))
    for cell in s.cells:
        (s.folder(cell) / "config.toml").write_text(
            (s.folder(cell) / "config.toml").read_text().replace('"exp:0.001"', f'"{speeds}"'))
    write_report(s.out, out=tmp_path / "rep", group_by="node_speed")
    assert (tmp_path / "rep" / "report-speeds.csv.png").is_file()
    table = (s.out / "table.csv").read_text()
    rows = {r["series"]: r for r in csv.DictReader(io.StringIO(table))}
    header = table.splitlines()[0].split(",")
    assert header.index("modeled_s_to_target") + 1 == header.index("sim_s_to_target")
    assert len(rows) == 3
    for cell in s.cells:  # one seed: the seed mean is the run's own curve
        run = load_run(s.folder(cell))
        k = sustained_index([r["grad_mapping_sq"] for r in run.rows], 0.05)
        want = float("inf") if k is None else run.rows[k]["sim_time_s"]
        assert float(rows[cell.series]["sim_s_to_target"]) == pytest.approx(want)
    assert any(float(r["sim_s_to_target"]) < float("inf") for r in rows.values())


def test_runs_without_the_clock_keep_the_old_table_and_axes(tmp_path, monkeypatch):
    text = SUITE.replace('node_speed = "exp:0.001"\nlink_latency = 0.002\n', "").replace(
        'algorithm = ["proxgt-sa", "prox-adpsgd"]', 'algorithm = ["proxgt-sa"]').replace(
        'asynchronous = [false, true]', 'asynchronous = [false]').split("[[cell]]")[0]
    s, drawn = _report_axes(tmp_path, monkeypatch, text)
    assert drawn == [report_mod.PLOT_AXES]
    assert "sim_s_to_target" not in (s.out / "table.csv").read_text()
