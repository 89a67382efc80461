"""Curves of logged runs: a metric averaged over seeds (:class:`Curve`, :func:`mean_curve`), the cost at which
it reaches a target, its final value, and their plots (:func:`curves_figure`, :func:`plot_curves`).

How "to target" and "final" are measured (the project's standard, used by every table):

- **to target** (:func:`sustained_cost`, :func:`sustained_index`): the cost (iterations, samples, rounds,
  bytes, time: whichever column) at the first logged point from which the seed-mean curve stays at or below
  the target for the rest of the run; ``inf`` ("not reached") when the curve ends above it. A noisy method
  whose mean dips below the target once and rises again has not reached it.
- **first dip** (:func:`first_dip_cost`, :func:`first_dip_index`; secondary): the cost at the first logged
  point where the seed mean is at or below the target, whatever comes after (``inf`` if never).
- **final** (:func:`final_median`, :func:`tail_median`): the median of the seed-mean curve over the last 20%
  of the logged points (at least one point), not the single noisy last point.

Everything here reads plain rows (the content of ``metrics.csv``), so plots and tables can be made from run
folders long after the runs, without re-running anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from proxgt._io import atomic_write_with

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Curve",
    "mean_curve",
    "sustained_index",
    "first_dip_index",
    "tail_median",
    "sustained_cost",
    "first_dip_cost",
    "final_median",
    "TAIL_FRACTION",
    "TO_TARGET_RULE",
    "FIRST_DIP_RULE",
    "FINAL_RULE",
    "cost_to_target",
    "curves_figure",
    "plot_curves",
    "save_figure",
    "series_style",
]

#: Share of the logged points (the last ones) over which :func:`tail_median` takes the final value.
TAIL_FRACTION = 0.2

#: Clauses for table captions (joined into one sentence there): how "to target", "first dip" and "final" are read.
TO_TARGET_RULE = (
    "\"to target\" costs are read at the first logged point from which the seed mean stays at or below the "
    "target to the end of the run (\"not reached\" if it ends above it)"
)
FIRST_DIP_RULE = "`first_dip_*` costs at the first logged point at or below the target, even if the curve rises again"
FINAL_RULE = "\"final\" values are medians of the seed-mean curve over the last 20% of the logged points"


@dataclass
class Curve:
    """A metric averaged over seeds at common logging points."""

    label: str
    x: dict[str, np.ndarray]  # cost axes (ifo_per_node, comm_rounds, wall_s, ...): mean over seeds
    mean: np.ndarray
    low: np.ndarray  # min over seeds
    high: np.ndarray  # max over seeds
    n_seeds: int


def mean_curve(
    runs: Sequence[Sequence[dict[str, float]]],
    metric: str = "grad_mapping_sq",
    label: str = "",
    axes: Sequence[str] = ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "wall_s"),
) -> Curve:
    """Average ``metric`` over runs (seeds) row by row, truncated to the shortest run.

    The arithmetic mean estimates the expectation E[metric] that convergence theory bounds, so a curve that
    only dips by luck in one seed does not count as reaching a target.
    """
    if not runs:
        raise ValueError("no runs to average")
    length = min(len(r) for r in runs)
    vals = np.array([[row[metric] for row in r[:length]] for r in runs], dtype=np.float64)
    x = {}
    for a in axes:
        if all(a in r[0] for r in runs if r):
            x[a] = np.array([[row[a] for row in r[:length]] for r in runs], dtype=np.float64).mean(axis=0)
    return Curve(label, x, vals.mean(axis=0), vals.min(axis=0), vals.max(axis=0), len(runs))


def sustained_index(values: Sequence[float] | np.ndarray, target: float) -> int | None:
    """Index of the first point from which ``values`` stay at or below ``target`` to the end (None if the
    last value is above it, or there are no values). NaN counts as above the target.

    >>> sustained_index([1.0, 0.1, 0.5, 0.1, 0.05], 0.2)  # dips at 1, rises at 2, settles from 3
    3
    >>> sustained_index([1.0, 0.1, 0.5], 0.2) is None  # dips, then ends above: not reached
    True
    >>> sustained_index([0.1, 0.1], 0.2)
    0
    """
    v = np.asarray(values, dtype=np.float64)
    above = np.nonzero(~(v <= target))[0]
    if v.size == 0 or (above.size and above[-1] == v.size - 1):
        return None
    return int(above[-1]) + 1 if above.size else 0


def first_dip_index(values: Sequence[float] | np.ndarray, target: float) -> int | None:
    """Index of the first point where ``values`` is at or below ``target`` (None if never).

    >>> first_dip_index([1.0, 0.1, 0.5], 0.2)
    1
    >>> first_dip_index([1.0, 0.5], 0.2) is None
    True
    """
    hit = np.nonzero(np.asarray(values, dtype=np.float64) <= target)[0]
    return int(hit[0]) if hit.size else None


def tail_median(values: Sequence[float] | np.ndarray, fraction: float = TAIL_FRACTION) -> float:
    """Median of the last ``fraction`` of ``values`` (rounded up, at least one point; nan if empty).

    >>> tail_median([9.0, 9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 3.0, 2.0, 50.0])  # last 2 of 10 points: 2 and 50
    26.0
    >>> tail_median([5.0, 4.0, 3.0])  # 20% of 3 points rounds up to one point
    3.0
    >>> tail_median([8.0, 1.0, 2.0, 3.0, 100.0], fraction=0.6)  # last 3 of 5 points
    3.0
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan
    k = max(1, math.ceil(round(v.size * fraction, 9)))
    return float(np.median(v[-k:]))


def _cost_at(curve: Curve, axis: str, index: int | None) -> float:
    if axis not in curve.x:
        raise KeyError(f"curve {curve.label!r} has no cost axis {axis!r}; axes: {', '.join(curve.x)}")
    return float(curve.x[axis][index]) if index is not None else math.inf


def sustained_cost(curve: Curve, target: float, axis: str) -> float:
    """Cost ``axis`` (e.g. ``ifo_per_node``, ``comm_rounds``) at the first logged point from which the seed mean
    stays at or below ``target`` for the rest of the run; ``inf`` if it ends above the target.

    >>> m = np.array([1.0, 0.1, 0.5, 0.1, 0.05])  # seed mean: dips at iteration 1, settles from iteration 3
    >>> c = Curve("c", {"iter": np.arange(5.0)}, m, m, m, n_seeds=1)
    >>> sustained_cost(c, 0.2, "iter"), sustained_cost(c, 0.01, "iter")
    (3.0, inf)
    """
    return _cost_at(curve, axis, sustained_index(curve.mean, target))


def first_dip_cost(curve: Curve, target: float, axis: str) -> float:
    """Cost ``axis`` at the first logged point where the seed mean is at or below ``target``, even if it rises
    again afterwards (secondary to :func:`sustained_cost`); ``inf`` if never.

    >>> m = np.array([1.0, 0.1, 0.5, 0.1, 0.05])
    >>> c = Curve("c", {"iter": np.arange(5.0)}, m, m, m, n_seeds=1)
    >>> first_dip_cost(c, 0.2, "iter"), first_dip_cost(c, 0.01, "iter")
    (1.0, inf)
    """
    return _cost_at(curve, axis, first_dip_index(curve.mean, target))


def final_median(curve: Curve, fraction: float = TAIL_FRACTION) -> float:
    """The curve's final value: the median of its seed mean over the last ``fraction`` (20%) of the logged
    points, at least one (see :func:`tail_median`).

    >>> m = np.array([1.0, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.12, 0.9])
    >>> c = Curve("c", {}, m, m, m, n_seeds=1)
    >>> final_median(c), float(c.mean[-1])  # median of the last 3 of 15 points, not the noisy last one
    (0.12, 0.9)
    """
    return tail_median(curve.mean, fraction)


def cost_to_target(curve: Curve, target: float, axis: str) -> float:
    """Compatibility: the first-dip cost (:func:`first_dip_cost`) with ``nan`` instead of ``inf`` when the
    curve never gets to the target. Tables use :func:`sustained_cost` instead."""
    v = first_dip_cost(curve, target, axis)
    return v if math.isfinite(v) else math.nan


_AXIS_LABELS = {
    "ifo_per_node": "component gradients per node",
    "comm_rounds": "communication rounds",
    "wall_s": "wall time (s)",
    "bytes_per_node": "bytes sent per node",
    "iter": "iteration",
    "modeled_s": "modeled time (s)",
    "sim_time_s": "virtual time (s)",
}


#: Per-series line styles and markers, cycled; together with the colour, the width and the marker phase of
#: :func:`series_style` they keep series apart even where their curves coincide.
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_style(i: int, n: int) -> dict[str, Any]:
    """Matplotlib line keywords of series ``i`` of ``n``: its own colour, line style and marker; widths and
    marker sizes shrink from the first series to the last, so a later series drawn over an identical earlier
    one (e.g. two runs that took the same samples) leaves the thicker line and larger marker visible under it.

    >>> series_style(0, 2)["ls"], series_style(1, 2)["ls"], series_style(0, 2)["lw"] > series_style(1, 2)["lw"]
    ('-', '--', True)
    """
    import matplotlib

    colors = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color") or ["C0"]
    frac = i / (n - 1) if n > 1 else 0.0
    return {
        "color": colors[i % len(colors)],
        "ls": LINESTYLES[i % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
        "lw": 2.8 - 1.6 * frac,
        "ms": 7.5 - 3.0 * frac,
        "zorder": 2.0 + frac,
    }


def _markevery(i: int, n_points: int, marks: int = 8) -> tuple[int, int]:
    """About ``marks`` markers per line (every other point at most), series ``i`` starting at offset
    ``i mod step``, so neighbouring series that coincide (the demo's plain and Chebyshev runs over samples)
    show their markers side by side instead of on top of each other."""
    step = max(2, n_points // marks) if n_points > 2 else 1
    return i % step, step


def curves_figure(
    curves: Sequence[Curve],
    *,
    axes: Sequence[str] = ("ifo_per_node", "comm_rounds"),
    metric_label: str = "||gradient mapping||^2 at x̄",
    target: float | None = None,
    title: str = "",
    ncols: int | None = None,
) -> Figure:
    """The figure :func:`plot_curves` saves: one panel per cost axis, log-scale metric, per series the seed
    mean (style of :func:`series_style`, markers at a per-series offset) with a min-max band over seeds, and
    one legend entry per series (plus the target line) in a figure legend beside the panels.

    Built on a bare :class:`matplotlib.figure.Figure` (no pyplot, no global backend change).
    """
    from matplotlib.figure import Figure

    ncols = len(axes) if not ncols else min(int(ncols), len(axes))
    nrows = -(-len(axes) // ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.0 * nrows))
    panels = fig.subplots(nrows, ncols, squeeze=False)
    for j in range(len(axes), nrows * ncols):
        panels[j // ncols][j % ncols].set_visible(False)
    n = len(curves)
    handles: dict[int, Any] = {}
    target_handle = None
    for j, axis in enumerate(axes):
        ax = panels[j // ncols][j % ncols]
        for i, c in enumerate(curves):
            if axis not in c.x:
                continue
            style = series_style(i, n)
            (line,) = ax.plot(c.x[axis], c.mean, label=c.label, markevery=_markevery(i, len(c.mean)), **style)
            handles.setdefault(i, line)
            if c.n_seeds > 1:
                ax.fill_between(c.x[axis], c.low, c.high, color=style["color"], alpha=0.15, lw=0)
        if target is not None:
            target_handle = ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:g}")
        ax.set_yscale("log")
        ax.set_xlabel(_AXIS_LABELS.get(axis, axis))
        ax.set_ylabel(metric_label)
        ax.grid(True, which="both", alpha=0.25)
    legend = [handles[i] for i in sorted(handles)] + ([target_handle] if target_handle is not None else [])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if legend:  # beside the panels (the saved image widens to hold it): a legend never covers a curve
        fig.legend(handles=legend, labels=[h.get_label() for h in legend], fontsize=8, loc="upper left",
                   bbox_to_anchor=(1.0, 0.97), frameon=False)
    return fig


def plot_curves(
    curves: Sequence[Curve],
    path: str | Path,
    *,
    axes: Sequence[str] = ("ifo_per_node", "comm_rounds"),
    metric_label: str = "||gradient mapping||^2 at x̄",
    target: float | None = None,
    title: str = "",
    ncols: int | None = None,
) -> None:
    """Save :func:`curves_figure` as a PNG, written atomically. ``ncols`` wraps the panels into rows of that
    many (default: one row)."""
    save_figure(curves_figure(curves, axes=axes, metric_label=metric_label, target=target, title=title,
                              ncols=ncols), path)


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG atomically, its bounding box widened to hold legends placed outside the panels."""
    atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
