"""Run folders as pandas DataFrames: :func:`load_run` (one run) and :func:`load_suite` (every run under a
folder: a suite's output, or any folder of run folders).

A frame holds the rows of ``metrics.csv`` (or, with ``table="per_node"``, of ``per_node.csv``: one row per
logged iteration and node) exactly as written, followed by the run's settings as constant columns (the resolved
settings of its ``config.toml``; a nested table such as ``[extra]`` gives ``extra.<key>`` columns). pandas is
an optional dependency (``pip install 'proxgt[pandas]'``), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from proxgt._frames import pandas, rows_frame
from proxgt._io import read_metrics_csv
from proxgt.errors import ProxGTValueError
from proxgt.reporting.runs import group_series, suite_records
from proxgt.settings import load_config_file

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_run", "load_suite", "TABLES"]

#: table name -> the file of a run folder that holds it
TABLES: dict[str, str] = {"metrics": "metrics.csv", "per_node": "per_node.csv"}

Table = Literal["metrics", "per_node"]


def _file(path: Path, table: str) -> Path:
    if table not in TABLES:
        raise ProxGTValueError(f"table must be one of {', '.join(map(repr, TABLES))}; got {table!r}")
    if not path.is_dir():
        raise ProxGTValueError(f"run folder not found: {path}")
    f = path / TABLES[table]
    if not f.is_file():
        why = " (the run did not set local_test_fraction)" if table == "per_node" else " (not a run folder)"
        raise ProxGTValueError(f"{path} has no {TABLES[table]}{why}")
    return f


def _settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if k == "meta" and not prefix:
            continue  # derived facts of the run (lambda, sizes), not settings
        if isinstance(v, dict):
            out.update(_settings(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _with_settings(df: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    for name, value in _settings(config).items():
        col = name if name not in df.columns else f"setting.{name}"  # never hide a logged column
        df[col] = [value] * len(df)
    return df


def load_run(path: str | Path, *, table: Table = "metrics", settings: bool = True) -> pd.DataFrame:
    """The rows of one run folder's ``metrics.csv`` (``table="per_node"``: ``per_node.csv``) as a DataFrame,
    column for column, followed by the run's settings as constant columns (``settings=False`` leaves them out).

    Iteration, round, node and active-node counts are int64, every other logged column float64. Rows of a run
    still being written are read up to its last complete line.

    >>> import proxgt                                           # doctest: +SKIP
    >>> df = proxgt.load_run("runs/proxgt-sa-seed0")            # doctest: +SKIP
    >>> df.plot(x="comm_rounds", y="grad_mapping_sq", logy=True)  # doctest: +SKIP
    """
    p = Path(path)
    columns, rows = read_metrics_csv(_file(p, table))
    df = rows_frame(columns, rows)
    if settings and (p / "config.toml").is_file():
        df = _with_settings(df, load_config_file(p / "config.toml"))
    return df


def load_suite(path: str | Path, *, table: Table = "metrics", settings: bool = True) -> pd.DataFrame:
    """Every run under ``path`` (a suite's output folder: its cells; any other folder: every run folder below
    it) in one DataFrame: :func:`load_run`'s columns after three that say whose row it is, ``run`` (the run
    folder, relative to ``path``), ``series`` (the suite's series, else the settings that differ between the
    runs) and ``status`` (ok, diverged, or running for a run without summary.json).

    With ``table="per_node"``, only the runs that wrote ``per_node.csv``.
    """
    pd = pandas()
    root = Path(path)
    if not root.is_dir():
        raise ProxGTValueError(f"folder not found: {root}")
    _, records = suite_records(root)
    labels = {id(r): label for label, recs in group_series(records).items() for r in recs}
    frames = []
    for rec in records:
        if table == "per_node" and not (rec.path / TABLES[table]).is_file():
            continue
        df = load_run(rec.path, table=table, settings=settings)
        df.insert(0, "status", rec.status)
        df.insert(0, "series", labels[id(rec)])
        df.insert(0, "run", rec.path.relative_to(root).as_posix())
        frames.append(df)
    if not frames:
        what = "per_node.csv" if table == "per_node" else "metrics.csv"
        raise ProxGTValueError(f"no readable run folders (with {what}) under {root}")
    return pd.concat(frames, ignore_index=True)
