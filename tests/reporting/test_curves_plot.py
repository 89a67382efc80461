"""``proxgt.reporting.curves``: seed means, cost to target and plots in which coincident series stay visible."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

import proxgt.reporting as reporting
from proxgt.reporting import Curve, cost_to_target, curves_figure, mean_curve, plot_curves, series_style
from proxgt.reporting import curves as curves_mod


def _runs(scale: float, n_rows: int = 41, seeds: int = 2) -> list[list[dict[str, float]]]:
    return [
        [
            {"iter": float(k), "ifo_per_node": 10.0 * k, "comm_rounds": 3.0 * k,
             "grad_mapping_sq": scale * (1 + 0.1 * s) * math.exp(-k / 10) + 1e-6}
            for k in range(n_rows)
        ]
        for s in range(seeds)
    ]


def test_names_are_reexported_from_the_package() -> None:
    for name in ("Curve", "mean_curve", "cost_to_target", "plot_curves", "curves_figure", "series_style"):
        assert getattr(reporting, name) is getattr(curves_mod, name)
        assert name in reporting.__all__


def test_mean_curve_and_cost_to_target() -> None:
    c = mean_curve(_runs(1.0), label="a")
    assert c.n_seeds == 2 and c.mean.shape == (41,) and set(c.x) >= {"iter", "ifo_per_node", "comm_rounds"}
    assert np.all(c.low <= c.mean) and np.all(c.mean <= c.high)
    k = int(np.nonzero(c.mean <= 0.1)[0][0])
    assert cost_to_target(c, 0.1, "comm_rounds") == 3.0 * k
    assert math.isnan(cost_to_target(c, 0.0, "comm_rounds"))
    with pytest.raises(ValueError):
        mean_curve([])


def _series_lines(ax, labels: list[str]) -> list[Line2D]:
    return [line for line in ax.get_lines() if line.get_label() in labels]


def test_two_identical_curves_are_drawn_differently_and_both_have_a_legend_entry() -> None:
    # the demo's case: plain and Chebyshev gossip of one algorithm take the same samples, so their curves over
    # samples per node coincide exactly
    a = mean_curve(_runs(1.0), label="proxgt-sa plain K=9")
    b = mean_curve(_runs(1.0), label="proxgt-sa chebyshev K=3")
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.x["ifo_per_node"], b.x["ifo_per_node"])
    labels = [a.label, b.label]
    fig = curves_figure([a, b], axes=("ifo_per_node", "comm_rounds"), target=1e-3)
    for ax in fig.axes:
        la, lb = _series_lines(ax, labels)
        assert np.array_equal(la.get_xdata(), lb.get_xdata()) and np.array_equal(la.get_ydata(), lb.get_ydata())
        assert la.get_linestyle() != lb.get_linestyle() or la.get_marker() != lb.get_marker()
        assert la.get_marker() != lb.get_marker() and la.get_color() != lb.get_color()
        assert la.get_markevery() != lb.get_markevery()  # markers at different offsets
        assert la.get_linewidth() > lb.get_linewidth() and la.get_zorder() < lb.get_zorder()  # later: thinner, on top
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [*labels, "target 0.001"]


def test_both_coincident_series_show_in_the_pixels() -> None:
    a = mean_curve(_runs(1.0), label="first")
    b = mean_curve(_runs(1.0), label="second")
    fig = curves_figure([a, b], axes=("ifo_per_node",))
    fig.legends[0].remove()  # count only pixels of the drawn curves
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[:, :, :3].astype(float) / 255.0
    for line in _series_lines(fig.axes[0], ["first", "second"]):
        near = np.abs(img - np.array(to_rgb(line.get_color()))).max(axis=2) < 0.08
        assert near.sum() > 200, line.get_label()


def test_series_styles_differ_for_every_pair() -> None:
    n = 6
    styles = [series_style(i, n) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            si, sj = styles[i], styles[j]
            assert si["color"] != sj["color"] and si["marker"] != sj["marker"]
            assert si["lw"] > sj["lw"]
    assert [s["ls"] for s in styles[:2]] == ["-", "--"]
    assert series_style(0, 1)["lw"] > 0


def test_every_series_has_a_legend_entry_even_when_missing_from_the_first_panel() -> None:
    a = mean_curve(_runs(1.0), label="has rounds")
    b = mean_curve(_runs(1.0), label="no rounds", axes=("iter", "ifo_per_node"))
    fig = curves_figure([a, b], axes=("comm_rounds", "ifo_per_node"))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["has rounds", "no rounds"]
    # colours belong to the series, not to the order of drawing in a panel
    colors = {ln.get_label(): ln.get_color() for ax in fig.axes for ln in _series_lines(ax, ["no rounds"])}
    assert colors["no rounds"] == series_style(1, 2)["color"]


def test_plot_curves_writes_a_png_without_touching_pyplot(tmp_path) -> None:
    import sys

    c = Curve("one", {"ifo_per_node": np.arange(3.0)}, np.array([1.0, 0.5, 0.2]), np.array([1.0, 0.5, 0.2]),
              np.array([1.0, 0.5, 0.2]), 1)
    before = "matplotlib.pyplot" in sys.modules
    plot_curves([c], tmp_path / "one.png", axes=("ifo_per_node",), title="t")
    assert (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ("matplotlib.pyplot" in sys.modules) == before


def test_the_legend_covers_no_panel_even_with_many_series() -> None:
    curves = [mean_curve(_runs(1.0 + 0.1 * i), label=f"series {i} with a long label") for i in range(16)]
    fig = curves_figure(curves, axes=("ifo_per_node", "comm_rounds", "wall_s"), target=1e-3, ncols=2)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_visible():
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_xlabel()
