"""Read run folders back and aggregate them into series (one series = one setting over several seeds).

A run folder is what :func:`proxgt.executors.simulation.run_simulation` writes (config.toml, metrics.csv,
summary.json); a suite cell adds ``cell.json`` naming its series. Reading never re-runs anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proxgt._io import atomic_write_text, read_metrics_csv
from proxgt.errors import ProxGTValueError
from proxgt.reporting.curves import (
    FINAL_RULE,
    FIRST_DIP_RULE,
    TO_TARGET_RULE,
    Curve,
    final_median,
    first_dip_cost,
    mean_curve,
    sustained_cost,
    tail_median,
)
from proxgt.reporting.per_node import final_per_node, worst_node
from proxgt.settings import load_config_file

__all__ = [
    "RunRecord",
    "COMPLETE_STATUSES",
    "load_run",
    "find_runs",
    "suite_records",
    "group_series",
    "series_table",
    "TABLE_COLUMNS",
    "TO_TARGET_COLUMNS",
    "CLOCK_COLUMNS",
    "FIRST_DIP_COLUMNS",
    "table_caption",
    "table_columns",
    "table_markdown",
    "table_csv",
    "spread_columns",
    "seed_spread_markdown",
    "write_table",
    "tuning_markdown",
]

COMPLETE_STATUSES = ("ok", "diverged")
COST_AXES = ("iter", "ifo_per_node", "comm_rounds", "bytes_per_node", "wall_s", "modeled_s", "sim_time_s")
# Settings that never name a series (they differ between seeds or are bookkeeping).
_NOT_SERIES = {"seed", "out", "meta", "data_dir", "threads", "device", "tensorboard"}
#: settings a run resolves from the others (``auto`` step, rounds, mixing and consensus step, estimator sizes):
#: a difference in them alone does not make another series or another method of a sweep
RESOLVED_SETTINGS = ("step", "rounds", "mixing", "consensus_step", "batch", "big_batch", "period")


@dataclass
class RunRecord:
    """One run folder: its resolved config, logged rows, summary (None while running) and suite cell info."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, float]]
    summary: dict[str, Any] | None
    cell: dict[str, Any] | None

    @property
    def status(self) -> str:
        return "running" if self.summary is None else str(self.summary.get("status", "unknown"))

    @property
    def pooled_nodes(self) -> int:
        """n for a centralized reference run on the pooled data of n nodes (1 otherwise)."""
        return int((self.config.get("extra") or {}).get("pooled_nodes", 1))


def load_run(path: str | Path) -> RunRecord:
    """Read a run folder. Rows of a pooled centralized run report the per-node share of its work
    (``ifo_per_node`` divided by ``extra.pooled_nodes``)."""
    p = Path(path)
    config: dict[str, Any] = {}
    if (p / "config.toml").is_file():
        config = load_config_file(p / "config.toml")  # flat settings (config.toml is written by sections)
    rows: list[dict[str, float]] = []
    if (p / "metrics.csv").is_file():
        try:
            _, rows = read_metrics_csv(p / "metrics.csv")
        except (ValueError, csv.Error, UnicodeDecodeError) as exc:  # a cell that is no number, a row too short
            raise ProxGTValueError(f"{p / 'metrics.csv'} is not a readable metrics file ({exc})") from None
    summary = None
    if (p / "summary.json").is_file():
        try:
            summary = json.loads((p / "summary.json").read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProxGTValueError(f"{p / 'summary.json'} is not valid JSON ({exc})") from None
        if not isinstance(summary, dict):
            raise ProxGTValueError(f"{p / 'summary.json'} does not hold a run summary (a JSON object)")
        if not rows:  # a finished run logs at least its first and last iteration
            raise ProxGTValueError(f"{p / 'metrics.csv'} holds no rows, although the run finished (summary.json)")
    cell = json.loads((p / "cell.json").read_text()) if (p / "cell.json").is_file() else None
    rec = RunRecord(p, config, rows, summary, cell)
    if rec.pooled_nodes > 1:
        for r in rec.rows:
            r["ifo_per_node"] = r["ifo_per_node"] / rec.pooled_nodes
    return rec


def find_runs(root: str | Path) -> list[RunRecord]:
    """Every run folder (a folder holding metrics.csv) under ``root``, in suite order where known."""
    root = Path(root)
    recs = []
    for m in sorted(root.rglob("metrics.csv")):
        try:
            recs.append(load_run(m.parent))
        except ProxGTValueError as exc:  # one damaged run folder does not hide the others, nor counts as finished
            warnings.warn(f"skipped run folder {m.parent}: {exc}", stacklevel=2)
    return sorted(recs, key=lambda r: (r.cell.get("index", 0) if r.cell else 0, str(r.path)))


def suite_records(root: Path) -> tuple[dict[str, Any], list[RunRecord]]:
    """(suite.json's content, the runs of its cells) for a suite's output folder; ({}, every run folder below
    ``root``) for any other folder."""
    if (root / "suite.json").is_file():
        info = json.loads((root / "suite.json").read_text())
        names = set(info.get("cells", []))
        runs = root / "runs"
        return info, [r for r in find_runs(runs) if r.path.name in names] if runs.is_dir() else []
    return {}, find_runs(root)


def _series_label(rec: RunRecord, varying: Sequence[str]) -> str:
    if rec.cell and rec.cell.get("series"):
        return str(rec.cell["series"])
    parts = [f"{k}={rec.config.get(k)}" for k in varying]
    return ", ".join(parts) if parts else str(rec.config.get("algorithm", rec.path.name))


def group_series(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs grouped by series: the suite's series name, else the settings (other than the seed) that differ."""
    keys = sorted({k for r in records for k in r.config if k not in _NOT_SERIES and not isinstance(r.config[k], dict)})
    varying = [k for k in keys if len({json.dumps(r.config.get(k)) for r in records}) > 1]
    # resolved values follow from the other settings; name them only when nothing else differs
    primary = [k for k in varying if k not in RESOLVED_SETTINGS] or varying
    out: dict[str, list[RunRecord]] = {}
    for r in records:
        out.setdefault(_series_label(r, primary), []).append(r)
    return out


#: Primary cost columns (sustained: the seed mean gets to the target and stays) and the cost axis each reads.
TO_TARGET_COLUMNS = (
    ("iters_to_target", "iter"), ("samples_to_target", "ifo_per_node"), ("rounds_to_target", "comm_rounds"),
    ("bytes_to_target", "bytes_per_node"), ("wall_s_to_target", "wall_s"), ("modeled_s_to_target", "modeled_s"),
)
#: Secondary cost columns: the first logged point where the seed mean is at or below the target.
FIRST_DIP_COLUMNS = (
    ("first_dip_samples", "ifo_per_node"), ("first_dip_rounds", "comm_rounds"), ("first_dip_modeled_s", "modeled_s"),
)
#: Cost columns of runs on the virtual clock only (their rows log ``sim_time_s``): the simulated time to target,
#: sustained as the columns above; present in a table when some series has it.
CLOCK_COLUMNS = (("sim_s_to_target", "sim_time_s"),)
_SETTING_COLUMNS = ("series", "algorithm", "topology", "nodes", "mixing", "K", "seeds", "diverged")
TABLE_COLUMNS = (
    *_SETTING_COLUMNS, *(c for c, _ in TO_TARGET_COLUMNS), *(c for c, _ in FIRST_DIP_COLUMNS), "final_median",
)


def table_caption(metric: str, target: float) -> str:
    """The one-sentence header of a series table: how its "to target", first-dip and final columns are read.

    >>> table_caption("grad_mapping_sq", 1e-4).startswith("Target: seed-mean `grad_mapping_sq` <= 0.0001;")
    True
    """
    return (f"Target: seed-mean `{metric}` <= {float(target):g}; {TO_TARGET_RULE}, {FIRST_DIP_RULE}, and "
            f"{FINAL_RULE}.")


def series_table(
    series: dict[str, list[RunRecord]],
    *,
    target: float,
    metric: str = "grad_mapping_sq",
    cost: Any = None,
) -> tuple[list[dict[str, Any]], list[Curve]]:
    """One table row and one curve (the seed-mean ``metric``) per series.

    The ``*_to_target`` columns are read where the seed mean gets to ``target`` and stays at or below it to the
    end (:func:`~proxgt.reporting.curves.sustained_cost`; ``inf``, printed "not reached", otherwise); the
    ``first_dip_*`` columns where it is first at or below it (:func:`~proxgt.reporting.curves.first_dip_cost`);
    ``final_median`` and the optional ``final_*`` columns are medians of the seed-mean curves over the last 20%
    of the logged points (:func:`~proxgt.reporting.curves.final_median`). A series without finished runs has
    ``nan`` there.

    Finished runs only; diverged seeds are counted and left out of the mean (a diverged run has no finite
    tail to average). ``cost`` (a :class:`proxgt.costmodel.CostModel`) adds the ``modeled_s`` axis; runs on the
    virtual clock add ``sim_s_to_target`` (:data:`CLOCK_COLUMNS`).
    """
    rows, curves = [], []
    for label, recs in series.items():
        done = [r for r in recs if r.status in COMPLETE_STATUSES and r.rows]
        good = [r for r in done if r.status == "ok"]
        cfg = recs[0].config
        pooled = recs[0].pooled_nodes
        row: dict[str, Any] = {
            "series": label,
            "algorithm": cfg.get("algorithm", ""),
            "topology": cfg.get("topology", "") if pooled == 1 else "pooled",
            "nodes": cfg.get("nodes", "") if pooled == 1 else pooled,
            "mixing": cfg.get("mixing", "") if pooled == 1 else "-",
            "K": cfg.get("rounds", "") if pooled == 1 else 0,
            "seeds": len(good),
            "diverged": len(done) - len(good),
        }
        if good:
            runs = [cost.with_modeled(r.rows) if cost is not None else r.rows for r in good]
            c = mean_curve(runs, metric, label=label, axes=COST_AXES)
            curves.append(c)
            for col, axis in TO_TARGET_COLUMNS:
                row[col] = sustained_cost(c, target, axis) if axis in c.x else math.nan
            for col, axis in FIRST_DIP_COLUMNS:
                row[col] = first_dip_cost(c, target, axis) if axis in c.x else math.nan
            for col, axis in CLOCK_COLUMNS:
                if axis in c.x:
                    row[col] = sustained_cost(c, target, axis)
            row["final_median"] = final_median(c)
            per_node = final_per_node(good)  # runs with local test data: the worst site beside the mean
            if per_node is not None:
                row["worst_node"] = worst_node(per_node)[0]
            for col in OPTIONAL_FINALS:
                if all(r and col in r[0] for r in runs):
                    curve = mean_curve(runs, col, axes=())
                    # epsilon only grows: what a run spent is its last value, not a tail median
                    row[f"final_{col}"] = float(curve.mean[-1]) if col in LAST_VALUE_FINALS else final_median(curve)
            row.update(_seed_spread(runs, metric, target))
        else:
            for col in TABLE_COLUMNS[len(_SETTING_COLUMNS):]:
                row[col] = math.nan
        rows.append(row)
    return rows, curves


#: statistics over seeds of each seed's own final value (:func:`_seed_spread`), suffixed to the final columns
SPREAD_STATS = ("mean", "sd", "min", "max")


def _seed_spread(runs: Sequence[Sequence[dict[str, float]]], metric: str, target: float) -> dict[str, Any]:
    """Per final column (``final_median`` and the optional finals), the mean, sample standard deviation (nan for
    one seed), min and max over seeds of each seed's own final value (tail median of its curve; last value for
    :data:`LAST_VALUE_FINALS`); and ``seeds_at_target``, how many seeds' own curves get to ``target`` and stay,
    with the min and max of their ``samples_to_target``."""
    finals = {"final_median": metric, **{f"final_{c}": c for c in OPTIONAL_FINALS}}
    out: dict[str, Any] = {}
    for name, col in finals.items():
        if not all(r and col in r[0] for r in runs):
            continue
        v = np.array([float(r[-1][col]) if col in LAST_VALUE_FINALS else tail_median([row[col] for row in r])
                      for r in runs])
        out.update({f"{name}_mean": float(v.mean()), f"{name}_sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                    f"{name}_min": float(v.min()), f"{name}_max": float(v.max())})
    reach = [sustained_cost(mean_curve([r], metric, axes=("ifo_per_node",)), target, "ifo_per_node")
             for r in runs if r and "ifo_per_node" in r[0]]
    hit = [c for c in reach if math.isfinite(c)]
    out["seeds_at_target"] = len(hit)
    out["samples_to_target_min"] = min(hit) if hit else math.inf
    out["samples_to_target_max"] = max(hit) if hit else math.inf
    return out


OPTIONAL_FINALS = ("test_accuracy", "local_accuracy_mean", "local_accuracy_worst", "density", "epsilon")
#: finals reported as the last logged value (privacy spent so far), not as the tail median
LAST_VALUE_FINALS = ("epsilon",)


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """TABLE_COLUMNS plus the virtual-clock cost columns (after the modeled time) and the optional final columns
    (test accuracy, density) some row has."""
    clock = [c for c, _ in CLOCK_COLUMNS if any(c in r for r in rows)]
    base = list(TABLE_COLUMNS)
    at = base.index("modeled_s_to_target") + 1
    base[at:at] = clock
    extra = [f"final_{c}" for c in OPTIONAL_FINALS if any(f"final_{c}" in r for r in rows)]
    if any("worst_node" in r for r in rows):  # beside the local accuracy columns
        at = next((i + 1 for i, c in enumerate(extra) if c == "final_local_accuracy_worst"), len(extra))
        extra.insert(at, "worst_node")
    return [*base, *extra]


_SIG3_COLUMNS = ("bytes_to_target", "wall_s_to_target", "modeled_s_to_target", "first_dip_modeled_s", "sim_s_to_target")


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan" if col.startswith("final") else "-"  # no finished run
        if math.isinf(v) and not col.startswith("final"):
            return "not reached"
        if col.startswith("final") or col in _SIG3_COLUMNS:
            return f"{v:.3g}"
        return f"{v:,.0f}"
    return str(v)


def table_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows`` (default columns: :func:`table_columns`); a cost never reached reads
    "not reached", one without finished runs "-"."""
    columns = table_columns(rows) if columns is None else columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, ""), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def spread_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The over-seeds columns (:func:`_seed_spread`) some row has, in table order: ``<final>_mean``, ``_sd``,
    ``_min``, ``_max`` per final column, then ``seeds_at_target`` and ``samples_to_target_min``/``_max``."""
    finals = ["final_median", *(f"final_{c}" for c in OPTIONAL_FINALS)]
    cols = [f"{f}_{stat}" for f in finals for stat in SPREAD_STATS]
    cols += ["seeds_at_target", "samples_to_target_min", "samples_to_target_max"]
    return [c for c in cols if any(c in r for r in rows)]


def _spread_cell(r: dict[str, Any], final: str) -> str:
    if f"{final}_mean" not in r:
        return "-"
    mean, sd, lo, hi = (r[f"{final}_{stat}"] for stat in SPREAD_STATS)
    if math.isnan(sd):  # one seed: no spread to show
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {sd:.2g} [{lo:.3g}, {hi:.3g}]"


def seed_spread_markdown(rows: Sequence[dict[str, Any]], metric: str = "grad_mapping_sq") -> str:
    """The "Over seeds" section of a table: per series each seed's own final value (tail median of its curve)
    as mean ± sample standard deviation [min, max] over the seeds that did not diverge, and how many seeds' own
    curves reach the target and stay, with their samples per node (min-max). Empty when no series has two seeds.
    """
    if not any(int(r.get("seeds", 0)) > 1 for r in rows):
        return ""
    finals = [c for c in ("final_median", *(f"final_{c}" for c in OPTIONAL_FINALS)) if any(f"{c}_mean" in r
                                                                                          for r in rows)]
    names = [f"final {metric}" if c == "final_median" else c for c in finals]
    lines = [
        "## Over seeds",
        "",
        "Each seed's own final value (median of its last 20% of logged points): mean ± sample standard deviation "
        "[min, max] over the seeds that did not diverge; \"at target\": the seeds whose own curve gets to the "
        "target and stays at or below it, with their samples per node to get there (min-max).",
        "",
        "| series | seeds ok / diverged | " + " | ".join(names) + " | seeds at target | samples to target |",
        "|" + "---|" * (4 + len(finals)),
    ]
    for r in rows:
        n, k = int(r.get("seeds", 0)), int(r.get("seeds_at_target", 0))
        lo, hi = r.get("samples_to_target_min", math.inf), r.get("samples_to_target_max", math.inf)
        reach = "-" if not k else f"{lo:,.0f}" if lo == hi else f"{lo:,.0f}-{hi:,.0f}"
        cells = [_spread_cell(r, f) for f in finals]
        lines.append(f"| {r['series']} | {n} / {r.get('diverged', 0)} | " + " | ".join(cells)
                     + f" | {k} of {n} | {reach} |")
    return "\n".join(lines) + "\n"


def _csv_cell(v: Any) -> Any:
    return "" if isinstance(v, float) and math.isnan(v) else v


def table_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV of ``rows`` (default columns: :func:`table_columns`, then :func:`spread_columns`): a cost never
    reached is written ``inf``, a value without finished runs left empty."""
    columns = [*table_columns(rows), *spread_columns(rows)] if columns is None else columns
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_cell(r.get(c, "")) for c in columns])
    return buf.getvalue()


def write_table(rows: Sequence[dict[str, Any]], out_stem: str | Path, *, caption: str = "",
                metric: str = "grad_mapping_sq") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically (the markdown headed by ``caption``, e.g.
    :func:`table_caption`, and followed by the "Over seeds" section of :func:`seed_spread_markdown`); return
    their paths."""
    stem = Path(out_stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(csv_path, table_csv(rows))
    spread = seed_spread_markdown(rows, metric)
    atomic_write_text(md_path, (f"{caption}\n\n" if caption else "") + table_markdown(rows)
                      + (f"\n{spread}" if spread else ""))
    return csv_path, md_path


def _val(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def tuning_markdown(tuning: dict[str, Any]) -> str:
    """The "Tuning" section of a tuned suite's table and report, from ``tune/tuning.json``
    (:func:`proxgt.suites.tuning.resolve_tuning`): per series the grid, each pilot's final value ("diverged" or
    "failed" where it has none), the choice and the pilot cost, plus the total cost of all pilots."""
    metric = tuning.get("metric", "grad_mapping_sq")
    series = tuning.get("series", [])
    better = "highest" if tuning.get("higher_is_better") else "lowest"
    ifo = sum(float(s.get("ifo_per_node", 0.0)) for s in series)
    wall = sum(float(s.get("wall_s", 0.0)) for s in series)
    n_pilots = sum(len(p.get("pilots", [])) for p in series) * int(tuning.get("seeds", 1))
    budgets = [s.get("pilot_iters") for s in series]
    budget = max(budgets, key=budgets.count) if budgets else None  # the most common length; the others named
    budget_text = f"{budget} iterations" if isinstance(budget, int) else str(budget)
    others = [f"{s.get('series', '')}: {_val(s.get('pilot_iters'))}" for s in series if s.get("pilot_iters") != budget]
    if others:
        budget_text += f" ({'; '.join(others)})"
    lines = [
        "## Tuning",
        "",
        f"Each series ran one pilot of {budget_text} per grid setting on its first {tuning.get('seeds', 1)} "
        f"seed(s) and kept the setting with the {better} final `{metric}` (median of the seed mean over the last "
        f"20% of the logged points; a diverged or failed pilot counts as worst). Pilot cost in all: {n_pilots} "
        f"pilot runs, {ifo:,.0f} component gradients per node, {wall:.3g} s wall (the runs' `wall_s`).",
        "",
        "| series | grid | pilot final values | choice | pilot samples per node | pilot wall s |",
        "|---|---|---|---|---|---|",
    ]
    for s in series:
        grid = "; ".join(f"{k}: {', '.join(_val(v) for v in vs)}" for k, vs in s.get("grid", {}).items())
        results = "; ".join(
            ", ".join(f"{k}={_val(v)}" for k, v in r["setting"].items()) + ": "
            + (f"{r['value']:.3g}" if r.get("value") is not None else str(r.get("status", "diverged")))
            for r in s.get("pilots", [])
        )
        choice = s.get("choice")
        choice_text = ", ".join(f"{k}={_val(v)}" for k, v in choice.items()) if choice else "none (not run)"
        lines.append(f"| {s.get('series', '')} | {grid} | {results} | {choice_text} | "
                     f"{float(s.get('ifo_per_node', 0.0)):,.0f} | {float(s.get('wall_s', 0.0)):.3g} |")
    return "\n".join(lines) + "\n"
