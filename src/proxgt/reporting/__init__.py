"""Aggregation of logged runs (mean and spread over seeds, cost to reach a target) and their plots.

Everything here reads plain rows (the content of ``metrics.csv``), so plots and tables can be made from run
folders long after the runs, without re-running anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxgt._io import atomic_write_bytes

__all__ = ["Curve", "mean_curve", "cost_to_target", "plot_curves"]


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
    """One panel per cost axis, log-scale metric, mean line with a min-max band over seeds; PNG written
    atomically. ``ncols`` wraps the panels into rows of that many (default: one row)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = len(axes) if not ncols else min(int(ncols), len(axes))
    nrows = -(-len(axes) // ncols)
    fig, panels = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    for j in range(len(axes), nrows * ncols):
        panels[j // ncols][j % ncols].set_visible(False)
    styles = ["-", "--", "-.", ":"]
    for j, axis in enumerate(axes):
        ax = panels[j // ncols][j % ncols]
        for i, c in enumerate(curves):
            if axis not in c.x:
                continue
            (line,) = ax.plot(c.x[axis], c.mean, styles[(i // 10) % len(styles)], label=c.label, lw=1.6)
            if c.n_seeds > 1:
                ax.fill_between(c.x[axis], c.low, c.high, color=line.get_color(), alpha=0.15, lw=0)
        if target is not None:
            ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:g}")
        ax.set_yscale("log")
        ax.set_xlabel(_AXIS_LABELS.get(axis, axis))
        ax.set_ylabel(metric_label)
        ax.grid(True, which="both", alpha=0.25)
    panels[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
