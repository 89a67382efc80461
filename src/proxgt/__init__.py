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
from typing import TYPE_CHECKING, Any  # noqa: E402

from proxgt.errors import DivergenceError, ProxGTValueError  # noqa: E402
from proxgt.settings import RunConfig  # noqa: E402

if TYPE_CHECKING:
    from proxgt.training import History

__all__ = ["run", "RunConfig", "History", "ProxGTValueError", "DivergenceError", "__version__"]


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


def __getattr__(name: str) -> Any:
    if name == "History":  # imported on use: it needs torch
        from proxgt.training import History

        return History
    raise AttributeError(f"module 'proxgt' has no attribute {name!r}")
