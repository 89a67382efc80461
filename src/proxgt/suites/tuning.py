"""Fair tuning for suites: the ``[tune]`` table of a suite file.

Every series of the suite (an algorithm crossed with the other grid axes except the seed) whose algorithm has a
tuning grid first runs pilots of each combination of that grid, on the first ``seeds`` seeds of the series and
``iters`` iterations (or ``fraction`` of the cell's own length: 1.0 makes each pilot as long as its cell, so a
step that diverges late in a run diverges in its pilot too); the combination with the best final value of
``metric`` (the median of the seed-mean curve over the last 20% of the logged points,
:func:`proxgt.reporting.curves.final_median`; lower is better, higher for accuracy columns; a diverged or failed
pilot counts as worst, ties go to the first in grid order) is then set in every cell of the series::

    [tune]
    iters = 150                 # pilot budget per pilot run (default: a fifth of the cell's iters or epochs)
    # fraction = 1.0            # or: the pilot's share of its own cell's iters or epochs (not with iters)
    seeds = 1                   # pilot seeds: the first seeds of the series (default 1)
    metric = "grad_mapping_sq"  # default: the suite's metric
    [tune.grid]                 # per algorithm ("*": any algorithm without its own entry)
    "proxgt-sr-e" = { step = [0.1, 0.3, 1.0], period = [8, 32] }
    "deepstorm" = { step = [0.1, 0.3], "extra.beta" = [0.5, 1.0] }
    "*" = { step = [0.1, 0.3, 1.0] }

A grid key is a run setting (``step``, ``period``, ``batch``, ...) or ``extra.<key>``, a method setting of
the cell's algorithm (``extra.beta`` sets ``[extra.deepstorm] beta`` in a deepstorm cell). Pilots are
ordinary run folders under ``<out>/tune/``, skipped when finished with the same settings like cells; the
choices follow from the finished pilots, so a resumed suite reruns neither pilots nor cells. The chosen values
are recorded in each cell's cell.json (``tuned``) and config.toml; ``<out>/tune/tuning.json`` holds, per series,
the grid, each pilot's final value (None: diverged or failed), the choice and the pilot cost (component
gradients per node and wall seconds over all its pilots), which tables and reports show as a "Tuning" section.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_text
from proxgt._validation import ProxGTValueError, is_number
from proxgt.suites.cells import Cell, Suite, _err, cell_slug

__all__ = ["Tune", "TuneSeries", "parse_tune", "apply_setting", "resolve_tuning", "METRIC_COLUMNS"]

_TUNE_KEYS = {"iters", "fraction", "seeds", "metric", "grid"}
#: Columns a run may log (classification and test-set columns where the problem has them).
METRIC_COLUMNS = ("grad_mapping_sq", "consensus", "total_opt", "objective", "train_accuracy", "test_accuracy",
                  "test_loss", "density")
_NOT_TUNABLE = {"algorithm", "seed", "out", "iters", "epochs", "log_every", "meta"}


@dataclass
class TuneSeries:
    """One tuned series: its grid, the combinations tried and their pilots (one list of seeds per combination)."""

    series: str
    algorithm: str
    grid: dict[str, list[Any]]
    combos: list[dict[str, Any]]
    pilots: list[list[Cell]]
    cells: list[str]
    iters: Any = None


@dataclass
class Tune:
    iters: int | None
    seeds: int
    metric: str
    grid: dict[str, dict[str, list[Any]]]
    series: list[TuneSeries] = field(default_factory=list)
    #: the pilot's share of its cell's iters or epochs (None: ``iters`` if given, else a fifth)
    fraction: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return "accuracy" in self.metric

    def all_pilots(self) -> list[Cell]:
        return [p for s in self.series for seeds in s.pilots for p in seeds]

    def to_json(self) -> dict[str, Any]:
        return {"iters": self.iters, "fraction": self.fraction, "seeds": self.seeds, "metric": self.metric,
                "grid": self.grid}


def parse_tune(raw: Any, src: str, algorithms: list[str], metric: str) -> Tune:
    """Validate a ``[tune]`` table (one-line errors); ``algorithms`` are the suite's."""
    from proxgt.registry import ALGORITHMS
    from proxgt.settings import RunConfig

    if not isinstance(raw, dict):
        raise _err(src, "[tune] must be a table (iters, seeds, metric, grid)")
    for k in raw:
        if k not in _TUNE_KEYS:
            raise _err(src, f"unknown key tune.{k}; known: {', '.join(sorted(_TUNE_KEYS))}")
    iters = raw.get("iters")
    if iters is not None and (isinstance(iters, bool) or not isinstance(iters, int) or iters < 1):
        raise _err(src, f"tune.iters must be an int >= 1. Got {iters!r} instead.")
    fraction = raw.get("fraction")
    if fraction is not None:
        if not is_number(fraction) or not 0 < fraction <= 1:
            raise _err(src, f"tune.fraction must be a number in (0, 1]. Got {fraction!r} instead.")
        if iters is not None:
            raise _err(src, "give tune.iters (the same pilot length for every series) or tune.fraction (a share "
                            "of each cell's own length), not both")
        fraction = float(fraction)
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise _err(src, f"tune.seeds must be an int >= 1. Got {seeds!r} instead.")
    tmetric = raw.get("metric", metric)
    if not isinstance(tmetric, str) or tmetric not in METRIC_COLUMNS:
        raise _err(src, f"tune.metric must be one of {', '.join(METRIC_COLUMNS)}. Got {tmetric!r} instead.")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise _err(src, "tune.grid must be a table of algorithm = { setting = [values] }")
    known = set(RunConfig.field_names()) - _NOT_TUNABLE
    out: dict[str, dict[str, list[Any]]] = {}
    for alg, table in grid.items():
        if alg != "*":
            if alg not in ALGORITHMS:
                raise _err(src, f"tune.grid: unknown algorithm '{alg}'; known: {', '.join(ALGORITHMS.names())}")
            if alg not in algorithms:
                raise _err(src, f"tune.grid: algorithm '{alg}' is not in the suite "
                                f"(it runs {', '.join(sorted(set(algorithms)))})")
        if not isinstance(table, dict) or not table:
            raise _err(src, f"tune.grid.{alg} must be a table of setting = [values]. Got {table!r} instead.")
        settings: dict[str, list[Any]] = {}
        for key, values in table.items():
            name = key.replace("-", "_") if not key.startswith("extra.") else key
            if name.startswith("extra."):
                if not name[len("extra."):] or "." in name[len("extra."):]:
                    raise _err(src, f"tune.grid.{alg}: a method setting is extra.<key>, e.g. extra.beta. "
                                    f"Got {key!r} instead.")
            elif name not in known:
                raise _err(src, f"tune.grid.{alg}: unknown setting '{key}'; tunable: "
                                f"{', '.join(sorted(known))}, or extra.<key> for a method setting")
            if not isinstance(values, list) or not values:
                raise _err(src, f"tune.grid.{alg}.{key} must be a non-empty list. Got {values!r} instead.")
            if len({json.dumps(v) for v in values}) != len(values):
                raise _err(src, f"tune.grid.{alg}.{key} lists a value twice")
            settings[name] = values
        out[alg] = settings
    return Tune(iters, seeds, tmetric, out, fraction=fraction)


def apply_setting(cfg: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the tuning ``values`` set (``extra.<key>`` into ``extra[<algorithm>]``); a new dict."""
    out = copy.deepcopy(cfg)
    for key, v in values.items():
        if key.startswith("extra."):
            extra = dict(out.get("extra") or {})
            alg = str(out.get("algorithm"))
            extra[alg] = {**(extra.get(alg) or {}), key[len("extra."):]: v}
            out["extra"] = extra
        else:
            out[key] = v
    return out


def combo_label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _pilot_budget(cfg: dict[str, Any], tune: Tune) -> dict[str, Any]:
    """The pilot's run settings: ``tune.iters`` iterations, else ``tune.fraction`` (default a fifth) of the cell's
    own iterations or epochs."""
    from proxgt.settings import RunConfig

    out = dict(cfg)
    if tune.iters is not None or out.get("epochs") is None:
        cell_iters = int(out.get("iters", RunConfig.iters))
        if tune.iters is not None:
            iters = tune.iters
        elif tune.fraction is not None:
            iters = max(1, round(cell_iters * tune.fraction))
        else:
            iters = max(1, cell_iters // 5)
        out.pop("epochs", None)
        out["iters"] = iters
        log_every = int(out.get("log_every", RunConfig.log_every))
        # a shorter pilot logs at least 10 times; one as long as its cell logs like it (so it is that cell's run)
        out["log_every"] = log_every if iters >= cell_iters else max(1, min(log_every, iters // 10))
    else:
        out["epochs"] = float(out["epochs"]) * tune.fraction if tune.fraction is not None else float(out["epochs"]) / 5
    return out


def build_pilots(tune: Tune, cells: list[Cell], src: str) -> None:
    """Fill ``tune.series`` with the pilots of every series whose algorithm has a grid; validates each pilot."""
    from proxgt.settings import RunConfig

    by_series: dict[str, list[Cell]] = {}  # a series: the cells that differ only by their seed
    for c in cells:
        series = "__".join(cell_slug(k, v) for k, v in c.axes.items() if k != "seed") or "run"
        by_series.setdefault(series, []).append(c)
    tune.series = []
    index = 0
    for slug, members in by_series.items():
        series = members[0].series if slug != "run" else "all cells"
        alg = str(members[0].config.get("algorithm"))
        grid = tune.grid.get(alg, tune.grid.get("*"))
        if grid is None:
            continue
        if tune.seeds > len(members):
            raise _err(src, f"tune.seeds = {tune.seeds} but series {series} has {len(members)} seed(s)")
        combos = [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())]
        pilots: list[list[Cell]] = []
        for combo in combos:
            cslug = "__".join(cell_slug(k.split(".")[-1], v) for k, v in combo.items())
            seeds = []
            for m in members[: tune.seeds]:
                cfg = _pilot_budget(apply_setting(m.config, combo), tune)
                seed = cfg.get("seed", RunConfig.seed)
                name = f"{slug}__{cslug}__seed{seed}" if slug != "run" else f"{cslug}__seed{seed}"
                try:
                    RunConfig.from_dict(cfg, source=f"{src} pilot {name}").validate()
                except ProxGTValueError as exc:
                    raise _err(src, f"tune pilot {name}: {exc}") from None
                seeds.append(Cell(index, name, f"{series} [{combo_label(combo)}]", {}, cfg))
                index += 1
            pilots.append(seeds)
        budget = pilots[0][0].config.get("iters") if "epochs" not in pilots[0][0].config else \
            f"{pilots[0][0].config['epochs']:g} epochs"
        tune.series.append(TuneSeries(series, alg, grid, combos, pilots, [m.name for m in members], budget))


def _pilot_result(recs: list[Any], metric: str) -> tuple[float | None, str, float, float]:
    """(final value or None, status, component gradients per node, wall seconds) of one combination."""
    from proxgt.reporting.curves import final_median, mean_curve

    ifo = sum(float(r.rows[-1].get("ifo_per_node", 0.0)) for r in recs if r.rows)
    wall = sum(float(r.rows[-1].get("wall_s", 0.0)) for r in recs if r.rows)
    statuses = {r.status for r in recs}
    if statuses - {"ok", "diverged"} or any(not r.rows for r in recs if r.status == "ok"):
        return None, "failed", ifo, wall
    if "diverged" in statuses:
        return None, "diverged", ifo, wall
    if any(metric not in r.rows[0] for r in recs):
        return None, "failed", ifo, wall
    value = final_median(mean_curve([r.rows for r in recs], metric, axes=()))
    return (value, "ok", ifo, wall) if math.isfinite(value) else (None, "diverged", ifo, wall)


def resolve_tuning(suite: Suite) -> dict[str, dict[str, Any] | None]:
    """Read the finished pilots, pick each series' setting, write ``<out>/tune/tuning.json``; returns
    {cell name: chosen values (None: no pilot finished)} for the tuned cells."""
    from proxgt.reporting.runs import load_run

    tune = suite.tune
    assert tune is not None
    sign = -1.0 if tune.higher_is_better else 1.0
    choices: dict[str, dict[str, Any] | None] = {}
    report = []
    for s in tune.series:
        results = []
        for combo, seeds in zip(s.combos, s.pilots, strict=True):
            recs = [load_run(suite.pilot_folder(p)) for p in seeds]
            value, status, ifo, wall = _pilot_result(recs, tune.metric)
            results.append({"setting": combo, "value": value, "status": status, "ifo_per_node": ifo,
                            "wall_s": wall})
        ok = [r for r in results if r["value"] is not None]
        choice = min(ok, key=lambda r: sign * r["value"])["setting"] if ok else None
        for name in s.cells:
            choices[name] = choice
        report.append({
            "series": s.series, "algorithm": s.algorithm, "grid": s.grid, "pilot_iters": s.iters,
            "pilot_seeds": tune.seeds, "pilots": results, "choice": choice,
            "ifo_per_node": sum(r["ifo_per_node"] for r in results), "wall_s": sum(r["wall_s"] for r in results),
        })
    info = {"metric": tune.metric, "higher_is_better": tune.higher_is_better, "iters": tune.iters,
            "fraction": tune.fraction, "seeds": tune.seeds, "series": report}
    path = suite.out / "tune" / "tuning.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
    return choices


def read_tuning(root: str | Path) -> dict[str, Any] | None:
    """``<root>/tune/tuning.json`` (None when the folder has no tuning)."""
    path = Path(root) / "tune" / "tuning.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
