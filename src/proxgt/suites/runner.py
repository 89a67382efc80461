"""Running a suite: cells (and tuning pilots) in parallel processes, resumable, with progress."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_bytes, atomic_write_text
from proxgt._validation import DivergenceError, ProxGTValueError, param_error
from proxgt.settings import RunConfig
from proxgt.suites.cells import (
    Cell,
    Suite,
    SuiteResult,
)
from proxgt.training.folder import CHECKPOINT_DIR, RUN_FILES

__all__ = ["run_suite", "run_tuning", "cell_is_done", "default_jobs"]


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


def _foreign_run(folder: Path) -> bool:
    """Whether ``folder`` holds run files but no ``cell.json``: a run of the user's, never replaced by a suite
    (a cell folder gets its cell.json before its run starts)."""
    return (folder.is_dir() and not (folder / "cell.json").exists()
            and any((folder / name).exists() for name in (*RUN_FILES, CHECKPOINT_DIR)))


def _run_cell(cell_json: dict[str, Any], folder: str) -> tuple[str, str, str]:
    """Run one cell in this process; returns (name, status, message). Never raises for run errors."""
    import warnings

    from proxgt.executors.simulation import run_simulation

    path = Path(folder)
    if _foreign_run(path):
        return cell_json["name"], "failed", (f"{path} holds a run this suite did not create (no cell.json); it is "
                                             "left as it is: move it, or give compare another --out")
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


def _reuse_pilot(suite: Suite, cell: Cell) -> bool:
    """Copy a finished pilot's run into ``cell``'s folder when the pilot ran exactly the cell's settings (a pilot
    as long as its cell, ``tune.fraction = 1``, on the cell's seed, at the chosen values): same settings, same
    results, so the cell is not run twice. False (nothing written) when no pilot matches or the cell's folder holds
    a run the suite did not create."""
    if suite.tune is None:
        return False
    pilot = next((p for p in suite.tune.all_pilots() if cell_is_done(suite.pilot_folder(p), cell)), None)
    folder = suite.folder(cell)
    if pilot is None or _foreign_run(folder):
        return False
    src = suite.pilot_folder(pilot)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").unlink(missing_ok=True)  # an interrupted copy must not look finished
    atomic_write_text(folder / "cell.json", json.dumps(cell.to_json(), indent=2, default=str) + "\n")
    for name in RUN_FILES:  # summary.json last: the copy counts as finished only once complete
        if (src / name).is_file():
            atomic_write_bytes(folder / name, (src / name).read_bytes())
        else:
            (folder / name).unlink(missing_ok=True)
    return True


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


#: the suite's progress line: cells done of all (those finished before this invocation included) and, once one
#: has finished here, an estimate of the time left (from the rate of this invocation's cells)
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} cells done |{bar}| [{elapsed} elapsed, about {remaining} left]{postfix}"


def _execute(
    items: list[tuple[Cell, Path]], jobs: int, desc: str, progress: bool, done: Callable[[str, str, str], None],
    already: int = 0,
) -> None:
    """Run ``(cell, folder)`` items, ``jobs`` at a time (separate processes when > 1); ``done`` per result.
    ``already``: cells finished before (counted as done on the progress line)."""
    bar = None
    if progress and items:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items) + already, initial=already, desc=desc, unit="cell", bar_format=BAR_FORMAT)
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
    from proxgt.suites.tuning import apply_setting, resolve_tuning

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

    _execute(todo, jobs, f"suite {suite.name} pilots", progress, done, already=len(result.pilots_skipped))
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
        raise param_error("", "jobs", "an int >= 1", jobs)
    result = SuiteResult()
    if suite.out.is_dir() and not (suite.out / "suite.json").exists() and _foreign_run(suite.out):
        raise ProxGTValueError(f"output folder {suite.out} holds a run, not a suite (no suite.json); compare does not "
                               "write into it: give another --out")
    suite.out.mkdir(parents=True, exist_ok=True)
    _write_suite_json(suite)
    choices = run_tuning(suite, jobs=jobs, progress=progress, result=result, on_cell=on_cell)
    todo = []
    for cell in suite.cells:
        if cell.name in choices and choices[cell.name] is None:
            result.failed[cell.name] = "not run: every tuning pilot of its series diverged or failed"
        elif cell_is_done(suite.folder(cell), cell):
            result.skipped.append(cell.name)
        elif _reuse_pilot(suite, cell):
            result.reused.append(cell.name)
            if json.loads((suite.folder(cell) / "summary.json").read_text()).get("status") == "diverged":
                result.diverged.append(cell.name)
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

    _execute(todo, jobs, f"suite {suite.name}", progress, done, already=len(result.skipped))
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




def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
