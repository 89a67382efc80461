"""proxgt: decentralized stochastic proximal gradient tracking (ProxGT) and its baselines.

Quick start::

    import proxgt
    hist = proxgt.run({"algorithm": "proxgt-sr-e", "nodes": 16, "topology": "ring", "iters": 200})
    print(hist.rows[-1]["grad_mapping_sq"])

Importing proxgt is cheap (no torch): the heavy modules load when a run starts.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, Literal  # noqa: E402

from proxgt.errors import DivergenceError, ProxGTValueError  # noqa: E402
from proxgt.settings import RunConfig  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

    from proxgt.training import History

__all__ = ["run", "load_run", "load_suite", "RunConfig", "History", "ProxGTValueError", "DivergenceError",
           "__version__"]


def run(
    config: RunConfig | dict[str, Any],
    *,
    out: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> History:
    """Run one configuration with all nodes simulated in this process and return its :class:`History`.

    ``config`` is a :class:`RunConfig` or a mapping of its settings (flat, e.g. ``{"algorithm": "proxgt-sr-o",
    "nodes": 8, "topology": "grid"}``, or by sections); ``out`` (or ``config.out``) names a folder for the
    run's files, which must not hold another run unless ``overwrite``.
    """
    from proxgt.executors.simulation import run_simulation

    return run_simulation(config, out=out, progress=progress, overwrite=overwrite)


def load_run(path: str | Path, *, table: Literal["metrics", "per_node"] = "metrics",
             settings: bool = True) -> pd.DataFrame:
    """A run folder's metrics.csv (``table="per_node"``: per_node.csv) as a pandas DataFrame, its settings as
    constant columns (:func:`proxgt.reporting.load.load_run`; needs ``pip install 'proxgt[pandas]'``)."""
    from proxgt.reporting.load import load_run as _load_run

    return _load_run(path, table=table, settings=settings)


def load_suite(path: str | Path, *, table: Literal["metrics", "per_node"] = "metrics",
               settings: bool = True) -> pd.DataFrame:
    """Every run under a folder (a suite's output, or any folder of run folders) in one pandas DataFrame, with
    ``run``, ``series`` and ``status`` columns (:func:`proxgt.reporting.load.load_suite`)."""
    from proxgt.reporting.load import load_suite as _load_suite

    return _load_suite(path, table=table, settings=settings)


def __getattr__(name: str) -> Any:
    if name == "History":  # imported on use: it needs torch
        from proxgt.training import History

        return History
    raise AttributeError(f"module 'proxgt' has no attribute {name!r}")
