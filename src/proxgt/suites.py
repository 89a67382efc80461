"""Experiment suites: a grid of runs (algorithms x topologies x node counts x seeds x any other setting),
each cell a normal run folder, run in parallel processes, resumable, summarized in one table.

Suite file (TOML)::

    [suite]
    name = "claim-a"                 # required
    out = "runs/claim-a"             # output folder, relative to the suite file (default: "<name>" there)
    target = 1e-4                    # required: the metric value to reach
    metric = "grad_mapping_sq"       # any metrics column (default grad_mapping_sq)
    jobs = 2                         # parallel processes (default 1; --jobs overrides)
    group_by = "topology"            # optional: one report figure per value of this setting

    [suite.cost]                     # optional cost model (proxgt.costmodel); sample_s measured if absent
    latency_s = 0.01
    bandwidth_Bps = 12.5e6

    [base]                           # settings shared by every cell (any RunConfig field, plus [base.extra])
    data = "a9a-synthetic"
    iters = 400

    [grid]                           # lists crossed into cells, in this order (seed is always varied last)
    algorithm = ["proxgt-sa", "proxgt-sr-o"]
    topology = ["ring", "grid"]
    seed = [0, 1]

    [[cell]]                         # overrides for the cells whose settings match
    match = { algorithm = "proxgt-sr-o" }
    set = { batch = 8 }

    [tune]                           # optional fair tuning (proxgt.tuning): pilots per series, best setting kept
    iters = 80
    [tune.grid]
    "*" = { step = [0.1, 0.3, 1.0] }

Layout of the output folder: ``runs/<cell>/`` (config.toml, metrics.csv, final.npz, summary.json, cell.json),
``suite.json`` (the resolved suite), ``table.csv`` and ``table.md`` (per series, the costs at which the seed-mean
metric gets to the target and stays there, the first dip below it, and the median of the seed mean over the last
20% of the logged points: :func:`proxgt.reporting.runs.series_table`). A cell whose folder holds a finished
summary.json (status ok or diverged) and the same settings in cell.json is not rerun. With a ``[tune]`` table,
pilots run first under ``tune/<pilot>/`` (run folders, resumable the same way), ``tune/tuning.json`` records the
choices, and each tuned cell runs with its series' chosen values (:mod:`proxgt.tuning`).

A cell with a ``central-*`` algorithm and ``nodes = n > 1`` runs on the pooled data: ``nodes = 1``, batch
sizes multiplied by n (SA default 32 -> 32 n), ``extra.pooled_nodes = n`` (reports show total work / n).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_text
from proxgt._validation import DivergenceError, ProxGTValueError
from proxgt.settings import RunConfig, read_toml

__all__ = [
    "Cell", "Suite", "SuiteResult", "load_suite", "run_suite", "cell_is_done", "suite_table", "suite_table_caption",
    "pooled_config", "run_tuning",
]

_SUITE_KEYS = {"name", "out", "target", "metric", "jobs", "group_by", "cost", "description"}
_TOP_KEYS = {"suite", "base", "grid", "cell", "tune"}
_SHORT = {"nodes": "n", "seed": "seed", "rounds": "K", "batch": "b"}
_GRAPH_KEYS = {"topology", "topology_p", "topology_radius", "edge_file", "weights", "mixing", "rounds", "mix_target"}
_PLAIN = {"algorithm", "topology", "mixing", "data", "problem", "split", "order", "weights"}


@dataclass
class Cell:
    index: int
    name: str
    series: str
    axes: dict[str, Any]
    config: dict[str, Any]
    tuned: dict[str, Any] | None = None  # the values a [tune] table chose for this cell's series
    untuned: dict[str, Any] | None = field(default=None, repr=False)  # the config before they were set

    def to_json(self) -> dict[str, Any]:
        out = {"index": self.index, "name": self.name, "series": self.series, "axes": self.axes,
               "config": self.config}
        if self.tuned is not None:
            out["tuned"] = self.tuned
        return out


@dataclass
class Suite:
    name: str
    out: Path
    target: float
    metric: str
    jobs: int
    group_by: str | None
    cost: dict[str, float]
    cells: list[Cell]
    source: str = ""
    description: str = ""
    tune: Any = None  # proxgt.tuning.Tune or None

    def folder(self, cell: Cell) -> Path:
        return self.out / "runs" / cell.name

    def pilot_folder(self, pilot: Cell) -> Path:
        return self.out / "tune" / pilot.name


@dataclass
class SuiteResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pilots_ran: list[str] = field(default_factory=list)
    pilots_skipped: list[str] = field(default_factory=list)


def _err(src: str, msg: str) -> ProxGTValueError:
    return ProxGTValueError(f"{src}: {msg}")


def _slug(key: str, value: Any) -> str:
    text = str(value) if key in _PLAIN else f"{_SHORT.get(key, key)}{value}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def pooled_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A centralized-reference cell of n nodes turned into its pooled run (nodes = 1, batches x n)."""
    n = int(cfg.get("nodes", RunConfig.nodes))
    if not str(cfg.get("algorithm", "")).startswith("central-") or n <= 1:
        return cfg
    out = dict(cfg)
    out["nodes"] = 1
    out["topology"] = "complete"
    batch = cfg.get("batch")
    if out["algorithm"] == "central-prox-sgd":
        out["batch"] = n * (32 if batch is None else int(batch))
    elif batch is not None:
        out["batch"] = n * int(batch)
    if cfg.get("big_batch") is not None:
        out["big_batch"] = n * int(cfg["big_batch"])
    extra = dict(out.get("extra") or {})
    extra["pooled_nodes"] = n
    out["extra"] = extra
    return out


def _check_settings(d: dict[str, Any], src: str, where: str) -> None:
    known = set(RunConfig.field_names()) | {"extra"}
    for k in d:
        if k.replace("-", "_") not in known:
            raise _err(src, f"unknown setting '{k}' in {where}; known settings: {', '.join(sorted(known))}")


def load_suite(path: str | Path, *, out: str | Path | None = None) -> Suite:
    """Read and validate a suite file; every cell's settings are validated up front (one-line errors)."""
    p = Path(path)
    src = str(p)
    data = read_toml(p, "suite file")
    for k in data:
        if k not in _TOP_KEYS:
            raise _err(src, f"unknown table [{k}]; a suite has [suite], [base], [grid], [[cell]] and [tune]")
    meta = data.get("suite")
    if not isinstance(meta, dict):
        raise _err(src, "missing [suite] table (name, target)")
    for k in meta:
        if k not in _SUITE_KEYS:
            raise _err(src, f"unknown key suite.{k}; known: {', '.join(sorted(_SUITE_KEYS))}")
    name = meta.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise _err(src, f"suite.name must be a word of letters, digits, '.', '_' or '-'. Got {name!r} instead.")
    target = meta.get("target")
    if isinstance(target, bool) or not isinstance(target, int | float) or not (math.isfinite(target) and target > 0):
        raise _err(src, f"suite.target must be a number > 0. Got {target!r} instead.")
    metric = meta.get("metric", "grad_mapping_sq")
    if not isinstance(metric, str):
        raise _err(src, f"suite.metric must be a column name. Got {metric!r} instead.")
    jobs = meta.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise _err(src, f"suite.jobs must be an int >= 1. Got {jobs!r} instead.")
    group_by = meta.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or group_by not in RunConfig.field_names()):
        raise _err(src, f"suite.group_by must name a setting. Got {group_by!r} instead.")
    cost = meta.get("cost", {})
    if not isinstance(cost, dict):
        raise _err(src, "suite.cost must be a table")
    from proxgt.costmodel import CostModel

    CostModel.from_dict(cost, source=f"{src}: suite.cost")
    out_dir = Path(out) if out is not None else p.parent / str(meta.get("out", name))

    base = data.get("base", {})
    if not isinstance(base, dict):
        raise _err(src, "[base] must be a table of settings")
    _check_settings(base, src, "[base]")
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise _err(src, "[grid] must be a table of lists")
    _check_settings(grid, src, "[grid]")
    axes: list[tuple[str, list[Any]]] = []
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise _err(src, f"grid.{k} must be a non-empty list. Got {v!r} instead.")
        if len({json.dumps(x) for x in v}) != len(v):
            raise _err(src, f"grid.{k} lists a value twice")
        axes.append((k.replace("-", "_"), v))
    axes.sort(key=lambda kv: kv[0] == "seed")  # seed last: cells of one series are adjacent
    overrides = data.get("cell", [])
    if not isinstance(overrides, list):
        raise _err(src, "[[cell]] must be an array of tables")
    for i, c in enumerate(overrides):
        if not isinstance(c, dict) or set(c) - {"match", "set"} or not isinstance(c.get("match", {}), dict) \
                or not isinstance(c.get("set"), dict):
            raise _err(src, f"cell #{i + 1} must have a 'match' table and a 'set' table")
        _check_settings(c.get("match", {}), src, f"cell #{i + 1} match")
        _check_settings(c["set"], src, f"cell #{i + 1} set")

    varying = [k for k, v in axes if len(v) > 1]
    cells: list[Cell] = []
    used = [0] * len(overrides)
    seen: set[str] = set()
    for combo in itertools.product(*[v for _, v in axes]):
        ax = dict(zip([k for k, _ in axes], combo, strict=True))
        cfg = {k.replace("-", "_"): v for k, v in base.items()}
        cfg.update(ax)
        for i, c in enumerate(overrides):
            if all(cfg.get(k.replace("-", "_")) == v for k, v in c.get("match", {}).items()):
                used[i] += 1
                for k, v in c["set"].items():
                    k = k.replace("-", "_")
                    if k == "extra" and isinstance(v, dict):
                        cfg["extra"] = {**(cfg.get("extra") or {}), **v}
                    else:
                        cfg[k] = v
        pooled = pooled_config(cfg)
        if pooled is not cfg:  # graph settings do not apply to a pooled run: one cell for all of them
            ax = {k: ("pooled" if k in _GRAPH_KEYS else v) for k, v in ax.items()}
        cfg = pooled
        cfg.pop("out", None)
        cell_name = "__".join(_slug(k, ax[k]) for k in varying) or "run"
        if cell_name in seen:
            continue
        seen.add(cell_name)
        series = ", ".join(f"{k}={ax[k]}" for k in varying if k != "seed") or cell_name
        try:
            RunConfig.from_dict(cfg, source=f"{src} cell {cell_name}").validate()
        except ProxGTValueError as exc:
            raise _err(src, f"cell {cell_name}: {exc}") from None
        cells.append(Cell(len(cells), cell_name, series, {k: ax[k] for k in varying}, cfg))
    for i, n_used in enumerate(used):
        if n_used == 0:
            raise _err(src, f"cell #{i + 1} matches no grid cell ({overrides[i].get('match')})")
    tune = None
    if "tune" in data:
        from proxgt.tuning import build_pilots, parse_tune

        tune = parse_tune(data["tune"], src, [str(c.config.get("algorithm")) for c in cells], metric)
        build_pilots(tune, cells, src)
    return Suite(name, out_dir, float(target), metric, jobs, group_by, dict(cost), cells, src,
                 str(meta.get("description", "")), tune)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def cell_is_done(folder: Path, cell: Cell) -> bool:
    """True when the folder holds a finished run (summary status ok/diverged) of exactly this cell's settings."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        recorded = json.loads((folder / "cell.json").read_text())
    except (OSError, ValueError):
        return False
    return summary.get("status") in ("ok", "diverged") and _same(recorded.get("config"), cell.config)


def _run_cell(cell_json: dict[str, Any], folder: str) -> tuple[str, str, str]:
    """Run one cell in this process; returns (name, status, message). Never raises for run errors."""
    import warnings

    from proxgt.executors.simulation import run_simulation

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").unlink(missing_ok=True)  # an interrupted rerun must not look finished
    atomic_write_text(path / "cell.json", json.dumps(cell_json, indent=2, default=str) + "\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the suite owns its cell folders: a cell not finished with these settings is rerun from scratch
            run_simulation(RunConfig.from_dict(cell_json["config"]), out=path, overwrite=True)
    except DivergenceError as exc:
        return cell_json["name"], "diverged", str(exc)
    except ProxGTValueError as exc:
        return cell_json["name"], "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a cell's crash must not stop the other cells
        return cell_json["name"], "failed", f"{type(exc).__name__}: {exc}"
    return cell_json["name"], "ok", ""


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _start_method(cells: list[Cell]) -> str:
    """How suite workers start: fork where available (Linux), so that they start at once with torch and proxgt
    already imported, the way torch's DataLoader starts its workers; spawn elsewhere, and whenever a cell runs
    on a GPU (the CUDA runtime does not survive a fork once the parent has touched it, and PyTorch asks for
    spawn or forkserver for CUDA in subprocesses)."""
    import multiprocessing as mp

    on_gpu = any(str(c.config.get("device", "cpu")).startswith("cuda") for c in cells)
    return "fork" if not on_gpu and "fork" in mp.get_all_start_methods() else "spawn"


def _execute(
    items: list[tuple[Cell, Path]], jobs: int, desc: str, progress: bool, done: Callable[[str, str, str], None],
) -> None:
    """Run ``(cell, folder)`` items, ``jobs`` at a time (separate processes when > 1); ``done`` per result."""
    bar = None
    if progress and items:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="run")
    try:
        if jobs == 1 or len(items) <= 1:
            for cell, folder in items:
                name, status, msg = _run_cell(cell.to_json(), str(folder))
                done(name, status, msg)
                if bar is not None:
                    bar.set_postfix_str(f"{name}: {status}", refresh=False)
                    bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            method = _start_method([cell for cell, _ in items])
            with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=mp.get_context(method),
                                     initializer=_init_worker) as pool:
                futures = [pool.submit(_run_cell, c.to_json(), str(f)) for c, f in items]
                for fut in as_completed(futures):
                    name, status, msg = fut.result()
                    done(name, status, msg)
                    if bar is not None:
                        bar.set_postfix_str(f"{name}: {status}", refresh=False)
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def run_tuning(suite: Suite, *, jobs: int = 1, progress: bool = False, result: SuiteResult | None = None,
               on_cell: Callable[[str, str], None] | None = None) -> dict[str, dict[str, Any] | None]:
    """Run the suite's unfinished pilots, pick each tuned series' values and set them in its cells (config and
    ``tuned``); returns {cell name: chosen values, None where no pilot finished}. Empty without ``[tune]``."""
    if suite.tune is None:
        return {}
    from proxgt.tuning import apply_setting, resolve_tuning

    result = result if result is not None else SuiteResult()
    todo = []
    for p in suite.tune.all_pilots():
        if cell_is_done(suite.pilot_folder(p), p):
            result.pilots_skipped.append(p.name)
        else:
            todo.append((p, suite.pilot_folder(p)))

    def done(name: str, status: str, msg: str) -> None:
        result.pilots_ran.append(name)
        if status not in ("ok", "diverged"):
            result.failed[f"tune/{name}"] = msg
        if on_cell:
            on_cell(f"tune/{name}", status)

    _execute(todo, jobs, f"suite {suite.name} pilots", progress, done)
    choices = resolve_tuning(suite)
    for cell in suite.cells:
        if cell.name in choices:
            if cell.untuned is None:  # the choice is applied to the settings the suite file gives
                cell.untuned = cell.config
            chosen = choices[cell.name]
            cell.tuned = chosen
            cell.config = apply_setting(cell.untuned, chosen) if chosen is not None else cell.untuned
    return choices


def run_suite(
    suite: Suite,
    *,
    jobs: int | None = None,
    progress: bool = False,
    on_cell: Callable[[str, str], None] | None = None,
) -> SuiteResult:
    """Run every cell not already finished, ``jobs`` at a time (separate processes when > 1). With ``[tune]``,
    the unfinished pilots run first and the tuned cells get their series' chosen values (:func:`run_tuning`);
    a cell whose series has no finished pilot is not run (listed as failed)."""
    jobs = suite.jobs if jobs is None else int(jobs)
    if jobs < 1:
        raise ProxGTValueError(f"The 'jobs' parameter must be an int >= 1. Got {jobs!r} instead.")
    result = SuiteResult()
    suite.out.mkdir(parents=True, exist_ok=True)
    _write_suite_json(suite)
    choices = run_tuning(suite, jobs=jobs, progress=progress, result=result, on_cell=on_cell)
    todo = []
    for cell in suite.cells:
        if cell.name in choices and choices[cell.name] is None:
            result.failed[cell.name] = "not run: every tuning pilot of its series diverged or failed"
        elif cell_is_done(suite.folder(cell), cell):
            result.skipped.append(cell.name)
        else:
            todo.append((cell, suite.folder(cell)))

    def done(name: str, status: str, msg: str) -> None:
        if status == "ok":
            result.ran.append(name)
        elif status == "diverged":
            result.ran.append(name)
            result.diverged.append(name)
        else:
            result.failed[name] = msg
        if on_cell:
            on_cell(name, status)

    _execute(todo, jobs, f"suite {suite.name}", progress, done)
    return result


def _write_suite_json(suite: Suite) -> None:
    info = {
        "name": suite.name, "source": suite.source, "description": suite.description, "target": suite.target,
        "metric": suite.metric, "group_by": suite.group_by, "cost": suite.cost,
        "cells": [c.name for c in suite.cells], "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if suite.tune is not None:
        info["tune"] = {**suite.tune.to_json(), "pilots": [p.name for p in suite.tune.all_pilots()]}
    old = suite.out / "suite.json"
    if old.is_file():  # keep a measured sample time between invocations
        try:
            prev = json.loads(old.read_text())
            if "measured_sample_s" in prev:
                info["measured_sample_s"] = prev["measured_sample_s"]
        except ValueError:
            pass
    atomic_write_text(old, json.dumps(info, indent=2) + "\n")


def suite_cost_model(suite: Suite):
    """The suite's cost model; ``sample_s`` measured on the first cell's problem when not given (cached in
    suite.json)."""
    from proxgt.costmodel import CostModel, measure_sample_time

    cost = dict(suite.cost)
    if "sample_s" not in cost:
        path = suite.out / "suite.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        if "measured_sample_s" not in info:
            info["measured_sample_s"] = measure_sample_time(RunConfig.from_dict(suite.cells[0].config))
            atomic_write_text(path, json.dumps(info, indent=2) + "\n")
        cost["sample_s"] = info["measured_sample_s"]
    return CostModel.from_dict(cost)


def suite_table(suite: Suite) -> list[dict[str, Any]]:
    """The aggregate table of the suite's finished cells; written to ``table.csv``/``table.md`` (the markdown
    headed by :func:`suite_table_caption`).

    Costs ``*_to_target`` are read where the seed-mean metric gets to the suite's target and stays at or below
    it to the end (``inf``: not reached), ``first_dip_*`` where it first gets there, and ``final_median`` is
    the median of the seed mean over the last 20% of the logged points.
    """
    from proxgt.reporting.runs import group_series, load_run, series_table, write_table

    recs = [load_run(suite.folder(c)) for c in suite.cells if (suite.folder(c) / "metrics.csv").is_file()]
    rows, _ = series_table(group_series(recs), target=suite.target, metric=suite.metric,
                           cost=suite_cost_model(suite))
    _, md = write_table(rows, suite.out / "table", caption=suite_table_caption(suite))
    if suite.tune is not None:
        from proxgt.reporting.runs import tuning_markdown
        from proxgt.tuning import read_tuning

        tuning = read_tuning(suite.out)
        if tuning is not None:
            atomic_write_text(md, md.read_text() + "\n" + tuning_markdown(tuning))
    return rows


def suite_table_caption(suite: Suite) -> str:
    """The one-sentence header of the suite's table: the target and how "to target" and "final" are read."""
    from proxgt.reporting.runs import table_caption

    return table_caption(suite.metric, suite.target)


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
