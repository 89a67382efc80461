"""Curves of logged runs: a metric averaged over seeds (:class:`Curve`, :func:`mean_curve`), the cost at which
it first reaches a target (:func:`cost_to_target`), and their plots (:func:`curves_figure`, :func:`plot_curves`).

Everything here reads plain rows (the content of ``metrics.csv``), so plots and tables can be made from run
folders long after the runs, without re-running anything.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from proxgt._io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Curve", "mean_curve", "cost_to_target", "curves_figure", "plot_curves", "series_style"]


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


def cost_to_target(curve: Curve, target: float, axis: str) -> float:
    """Value of the cost ``axis`` at the first logging point where the mean curve is <= target (nan if never)."""
    hit = np.nonzero(curve.mean <= target)[0]
    return float(curve.x[axis][hit[0]]) if hit.size else math.nan


_AXIS_LABELS = {
    "ifo_per_node": "component gradients per node",
    "comm_rounds": "communication rounds",
    "wall_s": "wall time (s)",
    "bytes_per_node": "bytes sent per node",
    "iter": "iteration",
    "modeled_s": "modeled time (s)",
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
    one legend entry per series (plus the target line) in the first panel.

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
    if legend:
        panels[0][0].legend(handles=legend, labels=[h.get_label() for h in legend], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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
    fig = curves_figure(curves, axes=axes, metric_label=metric_label, target=target, title=title, ncols=ncols)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
