"""Report pictures for a sweep: the question a sweep asks (how does each method's result change with the swept
setting?) answered first, by a summary plot, then the curves as small multiples.

A group of series is a sweep (:func:`find_sweep`) when one numeric setting takes at least three values among
them and every other setting that differs (the *method*: algorithm, or whatever else varies) is crossed with it,
one series per (method, value). Then:

- :func:`summary_figure`: per method, one line of the final value (``final_median``: the tail median of the
  seed-mean curve, the table's column) against the swept value; the points are the table's;
- :func:`small_multiples_figure`: one panel per method, its curves coloured by the swept value (a sequential
  colour map, so that the order of the values reads off the colours), instead of every series in one panel.

Legends and colour bars sit outside the panels, so they never cover data. Centralized references (pooled runs,
which no graph setting changes) are drawn as horizontal lines in the summary and left out of the small multiples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxgt.reporting.curves import _AXIS_LABELS, Curve, series_style
from proxgt.reporting.runs import RESOLVED_SETTINGS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Sweep", "find_sweep", "summary_figure", "small_multiples_figure", "MIN_SWEEP_VALUES"]

#: a numeric setting with at least this many values among a group's series makes the group a sweep
MIN_SWEEP_VALUES = 3
# settings that never define a method: per-seed or bookkeeping, or derived from the others
_IGNORED = {"seed", "out", "meta", "data_dir", "threads", "device", "tensorboard", "step", "rounds", "batch",
            "big_batch", "period", "extra", "consensus_step"}


@dataclass(frozen=True)
class Sweep:
    """A group of series crossing methods with the values of one numeric ``setting``."""

    setting: str
    values: list[float]  # sorted
    methods: dict[str, dict[float, str]]  # method label -> {swept value: series label}
    references: list[str]  # series of centralized references (pooled runs), outside the sweep


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def find_sweep(series: dict[str, Sequence[Any]]) -> Sweep | None:
    """The sweep among ``series`` (label -> run records, as :func:`proxgt.reporting.runs.group_series` gives),
    or None (module docstring)."""
    configs = {label: recs[0].config for label, recs in series.items() if recs}
    refs = [label for label, recs in series.items() if recs and recs[0].pooled_nodes > 1]
    own = {label: cfg for label, cfg in configs.items() if label not in refs}
    if len(own) < MIN_SWEEP_VALUES:
        return None
    keys = sorted({k for cfg in own.values() for k in cfg if k not in _IGNORED})
    varying = [k for k in keys if len({json.dumps(cfg.get(k), sort_keys=True) for cfg in own.values()}) > 1]
    numeric = [k for k in varying if all(_number(cfg.get(k)) for cfg in own.values())
               and len({cfg.get(k) for cfg in own.values()}) >= MIN_SWEEP_VALUES]
    if not numeric:
        return None
    setting = max(numeric, key=lambda k: (len({cfg.get(k) for cfg in own.values()}), -numeric.index(k)))
    others = [k for k in varying if k != setting and k not in RESOLVED_SETTINGS]
    methods: dict[str, dict[float, str]] = {}
    for label, cfg in own.items():
        method = ", ".join(f"{k}={cfg.get(k)}" for k in others) or "all"
        value = float(cfg[setting])
        if value in methods.setdefault(method, {}):
            return None  # two series for one (method, value): not a clean sweep of this setting
        methods[method][value] = label
    values = sorted({v for m in methods.values() for v in m})
    return Sweep(setting, values, methods, refs)


def summary_figure(sweep: Sweep, finals: dict[str, float], *, metric: str, title: str = "",
                   log: bool | None = None) -> Figure:
    """One line per method of ``finals[series]`` (the tail-median ``metric``) against the swept value, and a
    dashed horizontal line per centralized reference; legend outside the panel. ``log`` (default: when every
    value is positive and they span more than a decade) puts the measure on a log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.6, 4.4))
    ax = fig.subplots()
    n = len(sweep.methods)
    shown = [v for v in finals.values() if math.isfinite(v)]
    if log is None:
        log = bool(shown) and min(shown) > 0 and max(shown) / min(shown) > 10
    for i, (method, by_value) in enumerate(sweep.methods.items()):
        xs = sorted(by_value)
        ys = [finals.get(by_value[x], math.nan) for x in xs]
        style = series_style(i, n)
        ax.plot(xs, ys, label=method, **style)
    for j, ref in enumerate(sweep.references):
        if math.isfinite(finals.get(ref, math.nan)):
            ax.axhline(finals[ref], color="grey", lw=1.0, ls=(0, (4, 2 + j)), label=f"{ref} (reference)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(sweep.setting)
    ax.set_xticks(sweep.values)
    ax.set_ylabel(f"final {metric} (tail median)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)  # outside: covers no data
    ax.set_title(title or f"final {metric} against {sweep.setting}", fontsize=10)
    fig.tight_layout()
    return fig


def small_multiples_figure(sweep: Sweep, curves: dict[str, Curve], *, axis: str, metric_label: str,
                           target: float | None = None, title: str = "", ncols: int = 2) -> Figure:
    """One panel per method: its seed-mean curves of the metric against ``axis``, coloured by the swept value
    (viridis, with a colour bar beside the panels), on shared axes; the target as a dotted line."""
    import matplotlib
    import matplotlib.cm
    import matplotlib.colors
    from matplotlib.figure import Figure

    methods = list(sweep.methods)
    ncols = max(1, min(ncols, len(methods)))
    nrows = -(-len(methods) // ncols)
    fig = Figure(figsize=(4.6 * ncols + 1.2, 3.4 * nrows + 0.5))
    panels = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    lo, hi = sweep.values[0], sweep.values[-1]
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    cmap = matplotlib.colormaps["viridis"]
    for j, method in enumerate(methods):
        ax = panels[j // ncols][j % ncols]
        items = sorted(sweep.methods[method].items())
        for k, (value, label) in enumerate(items):
            c = curves.get(label)
            if c is None or axis not in c.x:
                continue
            # thinner and on top as the value grows: a curve drawn over an identical one leaves it visible
            lw = 3.0 - 2.0 * k / max(1, len(items) - 1)
            ax.plot(c.x[axis], c.mean, color=cmap(norm(value)), lw=lw, zorder=2 + k)
        if target is not None:
            ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(method, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        if j % ncols == 0:
            ax.set_ylabel(metric_label)
        if j + ncols >= len(methods):  # no panel below it: it carries the x axis
            ax.set_xlabel(_AXIS_LABELS.get(axis, axis))
            ax.xaxis.set_tick_params(labelbottom=True)
    for j in range(len(methods), nrows * ncols):
        panels[j // ncols][j % ncols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    bar_ax = fig.add_axes((1 - 0.75 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.7))
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), cax=bar_ax)
    bar.set_label(sweep.setting)
    bar.set_ticks(sweep.values)
    return fig
