"""Reading a suite file: its tables, checked, crossed into cells (and tuning pilots)."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

from proxgt._validation import ProxGTValueError
from proxgt.registry import ALGORITHMS, POOLED
from proxgt.settings import RunConfig, read_toml
from proxgt.suites.cells import (
    _GRAPH_KEYS,
    _SUITE_KEYS,
    _TOP_KEYS,
    Cell,
    Suite,
    _err,
    cell_slug,
)

__all__ = ["load_suite", "pooled_config"]


def pooled_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A centralized-reference cell of n nodes (an algorithm registered with the ``pooled`` trait) turned into its
    pooled run: nodes = 1, given batches x n, ``extra.pooled_nodes = n`` (the algorithm scales its own default
    batch by it)."""
    n = int(cfg.get("nodes", RunConfig.nodes))
    name = str(cfg.get("algorithm", ""))
    if name not in ALGORITHMS or POOLED not in ALGORITHMS.traits(name) or n <= 1:
        return cfg
    out = dict(cfg)
    out["nodes"] = 1
    out["topology"] = "complete"
    batch = cfg.get("batch")
    if batch is not None:
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
        if not isinstance(c, dict) or set(c) - {"match", "set", "skip"} or not isinstance(c.get("match", {}), dict) \
                or ("skip" in c) == ("set" in c) or not isinstance(c.get("set", {}), dict) \
                or c.get("skip", True) is not True:
            raise _err(src, f"cell #{i + 1} must have a 'match' table and either a 'set' table or skip = true")
        _check_settings(c.get("match", {}), src, f"cell #{i + 1} match")
        _check_settings(c.get("set", {}), src, f"cell #{i + 1} set")

    varying = [k for k, v in axes if len(v) > 1]
    cells: list[Cell] = []
    used = [0] * len(overrides)
    seen: set[str] = set()
    for combo in itertools.product(*[v for _, v in axes]):
        ax = dict(zip([k for k, _ in axes], combo, strict=True))
        cfg = {k.replace("-", "_"): v for k, v in base.items()}
        cfg.update(ax)
        skip = False
        for i, c in enumerate(overrides):
            if all(cfg.get(k.replace("-", "_")) == v for k, v in c.get("match", {}).items()):
                used[i] += 1
                skip = skip or bool(c.get("skip"))
                for k, v in c.get("set", {}).items():
                    k = k.replace("-", "_")
                    if k == "extra" and isinstance(v, dict):
                        cfg["extra"] = {**(cfg.get("extra") or {}), **v}
                    else:
                        cfg[k] = v
        if skip:  # a combination the grid crosses that does not exist (e.g. an asynchronous-only method, sync)
            continue
        pooled = pooled_config(cfg)
        if pooled is not cfg:  # graph settings do not apply to a pooled run: one cell for all of them
            ax = {k: ("pooled" if k in _GRAPH_KEYS else v) for k, v in ax.items()}
        cfg = pooled
        cfg.pop("out", None)
        cell_name = "__".join(cell_slug(k, ax[k]) for k in varying) or "run"
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
        from proxgt.suites.tuning import build_pilots, parse_tune

        tune = parse_tune(data["tune"], src, [str(c.config.get("algorithm")) for c in cells], metric)
        build_pilots(tune, cells, src)
    return Suite(name, out_dir, float(target), metric, jobs, group_by, dict(cost), cells, src,
                 str(meta.get("description", "")), tune)


