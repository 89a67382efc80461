"""A sweep's report: a summary plot first (a line per method of the tail-median measure against the swept
setting, whose points are table.csv's), then small multiples (one panel per method, coloured by the swept value),
with legends outside the panels."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import proxgt
import proxgt.reporting.report as report_mod
from proxgt.reporting.runs import find_runs, group_series
from proxgt.reporting.sweep import find_sweep

ALGS = ("proxgt-sa", "prox-dsgd")
FAILURES = (0.0, 0.2, 0.5)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for alg in ALGS:
        for p in FAILURES:
            proxgt.run({"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 5, "algorithm": alg,
                        "link_failure": p, "seed": 0}, out=root / f"{alg}-{p}")
    return root


def test_the_sweep_is_found(sweep_dir):
    sweep = find_sweep(group_series(find_runs(sweep_dir)))
    assert sweep is not None and sweep.setting == "link_failure" and sweep.values == list(FAILURES)
    assert sorted(sweep.methods) == sorted(f"algorithm={a}" for a in ALGS)
    assert all(sorted(v) == list(FAILURES) for v in sweep.methods.values())


def test_summary_points_are_the_tables_and_come_first(sweep_dir, tmp_path, monkeypatch):
    figures = {}
    save = report_mod.save_figure

    def keep(fig, path):
        figures[path.name] = fig
        save(fig, path)

    monkeypatch.setattr(report_mod, "save_figure", keep)
    report_mod.write_report(sweep_dir, out=tmp_path, target=1e-3, cost={"sample_s": 1e-6})
    assert set(figures) == {"summary.png", "report.png"}
    md = (tmp_path / "report.md").read_text()
    assert md.index("![summary.png]") < md.index("![report.png]")
    with open(tmp_path / "table.csv", newline="") as fh:
        table = {(r["algorithm"], r["series"]): float(r["final_median"]) for r in csv.DictReader(fh)}
    (ax,) = figures["summary.png"].axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {f"algorithm={a}" for a in ALGS}
    for alg in ALGS:
        line = lines[f"algorithm={alg}"]
        assert list(line.get_xdata()) == list(FAILURES)
        want = [next(v for (a, s), v in table.items() if a == alg and f"link_failure={p}" in s) for p in FAILURES]
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
    # small multiples: one panel per method, one curve per swept value, each its own colour, and a colour bar
    fig = figures["report.png"]
    panels = [a for a in fig.axes if a.get_title().startswith("algorithm=")]
    assert sorted(a.get_title() for a in panels) == sorted(f"algorithm={a}" for a in ALGS)
    for a in panels:
        curves = [ln for ln in a.get_lines() if ln.get_linestyle() == "-"]
        assert len(curves) == len(FAILURES) and len({ln.get_color() for ln in curves}) == len(FAILURES)
    assert any(a.get_ylabel() == "link_failure" for a in fig.axes)  # the colour bar names the swept setting


def test_legends_cover_no_data(sweep_dir, tmp_path, monkeypatch):
    figures = {}
    monkeypatch.setattr(report_mod, "save_figure", lambda fig, path: figures.setdefault(path.name, fig))
    report_mod.write_report(sweep_dir, out=tmp_path, target=1e-3, cost={"sample_s": 1e-6})
    for name, fig in figures.items():
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        r = canvas.get_renderer()
        legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend() is not None)]
        panels = [a for a in fig.axes if a.get_visible() and a.get_lines()]
        for leg in legends:
            for a in panels:
                assert not leg.get_window_extent(r).overlaps(a.get_window_extent(r)), name


def test_a_folder_without_a_sweep_keeps_one_panel_per_cost_axis(tmp_path, monkeypatch):
    for alg in ALGS:
        proxgt.run({"data": "breast_cancer", "nodes": 4, "iters": 10, "log_every": 5, "algorithm": alg},
                   out=tmp_path / alg)
    assert find_sweep(group_series(find_runs(tmp_path))) is None
    report_mod.write_report(tmp_path, target=1e-3, cost={"sample_s": 1e-6})
    assert not (tmp_path / "summary.png").exists() and (tmp_path / "report.png").exists()
