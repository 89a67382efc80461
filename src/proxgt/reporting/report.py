"""``report.md`` and PNG plots for a folder of runs (a suite's output folder or any folder of run folders).

Plots: the metric on a log scale against component gradients per node, communication rounds, wall time and
modeled time (:mod:`proxgt.costmodel`), seed mean with a min-max band; when every run logged ``sim_time_s`` (the
virtual clock, :mod:`proxgt.mixing.clock`), against virtual time, samples, bytes and wall time instead. Table
(:func:`proxgt.reporting.runs.series_table`): per series, the iterations, samples per node, rounds, bytes, wall
time and modeled time at the first logged point from which the seed-mean metric stays at or below the target
(``*_to_target``; the first dip below it, ``first_dip_*``, as secondary columns), and the final value as the
median of the seed-mean curve over the last 20% of the logged points (``final_median``). A tuned suite's report
adds a "Tuning" section (:func:`proxgt.reporting.runs.tuning_markdown`: grid, pilot values, choice, pilot cost).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_text
from proxgt._validation import ProxGTValueError
from proxgt.reporting.curves import plot_curves, save_figure
from proxgt.reporting.runs import (
    group_series,
    seed_spread_markdown,
    series_table,
    suite_records,
    table_caption,
    table_markdown,
    tuning_markdown,
    write_table,
)
from proxgt.reporting.sweep import find_sweep, small_multiples_figure, summary_figure

__all__ = ["write_report", "PLOT_AXES", "CLOCK_PLOT_AXES"]

PLOT_AXES = ("ifo_per_node", "comm_rounds", "wall_s", "modeled_s")
#: runs on the virtual clock: the simulated time replaces the modeled one (the clock prices the same samples,
#: rounds and bytes, with the waiting a barrier costs)
CLOCK_PLOT_AXES = ("sim_time_s", "ifo_per_node", "bytes_per_node", "wall_s")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))


def write_report(
    root: str | Path,
    *,
    out: str | Path | None = None,
    target: float | None = None,
    metric: str | None = None,
    cost: Any = None,
    group_by: str | None = None,
    title: str | None = None,
) -> Path:
    """Write ``report.md``, ``table.csv``/``table.md`` and one PNG per group into ``out`` (default ``root``).

    Unset options come from ``root/suite.json`` when present (what ``proxgt compare`` writes), else: metric
    grad_mapping_sq, no default target (required), the default cost model with ``sample_s`` measured on the
    first run's problem. ``cost`` is a CostModel, or a dict of CostModel fields overriding the suite's
    (``sample_s = "measure"`` times gradients on this machine).
    """
    from proxgt.costmodel import CostModel, measure_sample_time
    from proxgt.metrics import BASE_COLUMNS

    root = Path(root)
    if not root.is_dir():
        raise ProxGTValueError(f"report folder not found: {root}")
    info, records = suite_records(root)
    if not records:
        raise ProxGTValueError(f"no readable run folders (with metrics.csv) under {root}")
    metric = metric or info.get("metric", "grad_mapping_sq")
    columns = next((list(r.rows[0]) for r in records if r.rows), list(BASE_COLUMNS))
    if metric not in columns:
        raise ProxGTValueError(f"metric {metric!r} is not a logged column; columns: {', '.join(columns)}")
    target = target if target is not None else info.get("target")
    if target is None:
        raise ProxGTValueError("no target: pass --target (or run the folder as a suite, whose suite.json has one)")
    group_by = group_by if group_by is not None else info.get("group_by")
    if not isinstance(cost, CostModel):
        c = {**(info.get("cost") or {}), **(cost or {})}
        first = {k: v for k, v in records[0].config.items() if k not in ("meta", "out")}
        if c.get("sample_s") == "measure":
            c["sample_s"] = measure_sample_time(first)
        if "sample_s" not in c:
            c["sample_s"] = info.get("measured_sample_s") or measure_sample_time(first)
        cost = CostModel.from_dict(c)
    out = Path(out) if out is not None else root
    title = title or info.get("name") or root.name

    series = group_series(records)
    rows, curves = series_table(series, target=float(target), metric=metric, cost=cost)
    caption = table_caption(metric, float(target))
    _, table_md = write_table(rows, out / "table", caption=caption, metric=metric)
    from proxgt.suites.tuning import read_tuning

    tuning = read_tuning(root)  # a tuned suite: its pilots and choices, below the table
    if tuning is not None:
        atomic_write_text(table_md, table_md.read_text() + "\n" + tuning_markdown(tuning))
    by_label = {c.label: c for c in curves}
    clocked = bool(curves) and all("sim_time_s" in c.x for c in curves)
    plot_axes = CLOCK_PLOT_AXES if clocked else PLOT_AXES
    groups: dict[str, list[str]] = {}  # group -> its series labels
    pooled = []  # centralized references: drawn in every group's figure
    for label, recs in series.items():
        if label not in by_label:
            continue
        if group_by and recs[0].pooled_nodes > 1 and group_by in ("topology", "mixing", "rounds", "weights"):
            pooled.append(label)
            continue
        key = str(recs[0].config.get(group_by, "")) if group_by else ""
        groups.setdefault(key, []).append(label)
    if pooled:
        groups = {k: v + pooled for k, v in groups.items()} if groups else {"pooled": pooled}
    finals = {str(r["series"]): float(r["final_median"]) for r in rows}
    summaries, pngs = [], []
    for key, labels in groups.items():
        # a setting that names a file (a node-speed profile, a trace) is shown by the file's name: the resolved
        # absolute path would name the figure after the machine it ran on
        shown = Path(key).name if "/" in key else key
        name = f"report-{_slug(shown)}.png" if key else "report.png"
        suffix = f" ({group_by} = {shown})" if key else ""
        sweep = find_sweep({label: series[label] for label in labels})
        if sweep is None:
            plot_curves([by_label[label] for label in labels], out / name, axes=plot_axes, metric_label=metric,
                        target=float(target), title=f"{title}{suffix}: mean and range over seeds", ncols=2)
        else:  # the question first (final value against the swept setting), then one panel per method
            summary = f"summary-{_slug(shown)}.png" if key else "summary.png"
            save_figure(summary_figure(sweep, finals, metric=metric,
                                       title=f"{title}{suffix}: final {metric} against {sweep.setting}"),
                        out / summary)
            summaries.append(summary)
            save_figure(small_multiples_figure(sweep, by_label, axis=plot_axes[0], metric_label=metric,
                                               target=float(target),
                                               title=f"{title}{suffix}: seed-mean curves, one panel per method"),
                        out / name)
        pngs.append(name)
    pngs = summaries + pngs

    total = len(records)
    finished = sum(r.status in ("ok", "diverged") for r in records)
    lines = [
        f"# Report: {title}",
        "",
        *( [info["description"], ""] if info.get("description") else [] ),
        f"Runs: {finished} finished of {total} under `{root}`.",
        "",
        f"Cost model: latency {cost.latency_s:g} s per gossip round, bandwidth {cost.bandwidth_Bps:.4g} bytes/s "
        f"per node, {cost.sample_s:.3g} s per component gradient; modeled_s = samples * sample_s + rounds * "
        "latency + bytes / bandwidth (per node).",
        "",
        "Centralized references (`central-*`, topology `pooled`) run on the pooled data of `nodes` nodes; their "
        "samples (`samples_to_target`, `first_dip_samples`) are their total work divided by that n, and their "
        "modeled time is that share times sample_s (n machines splitting the pooled work with free "
        "communication: an ideal yardstick).",
        "",
        caption,
        "",
        table_markdown(rows),
    ]
    spread = seed_spread_markdown(rows, metric)  # several seeds: each seed's own final value, mean and spread
    if spread:
        lines += [spread]
    if tuning is not None:
        lines += [tuning_markdown(tuning)]
    for name in pngs:
        lines += [f"![{name}]({name})", ""]
    from proxgt.reporting.per_node import per_node_markdown, plot_per_node

    sites = per_node_markdown(series)  # runs with local test data: every site's result, the worst named
    if sites is not None:
        lines += [sites]
        if plot_per_node(series, out / "per-node.png", title=f"{title}: final local test results per node"):
            lines += ["![per-node.png](per-node.png)", ""]
    from proxgt.reporting.tradeoff import write_tradeoff

    tradeoff = write_tradeoff(root, out, records=records)  # an l1 sweep: density vs accuracy (None otherwise)
    if tradeoff is not None:
        lines += [tradeoff[1]]
    md = "\n".join(lines).rstrip() + "\n"
    atomic_write_text(out / "report.md", md)
    return out / "report.md"
