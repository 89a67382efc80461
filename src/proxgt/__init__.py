"""proxgt: decentralized stochastic proximal gradient tracking (ProxGT) and its baselines.

Quick start::

    import proxgt
    hist = proxgt.run({"algorithm": "proxgt-sr-e", "nodes": 16, "topology": "ring", "iters": 200})
    print(hist.rows[-1]["grad_mapping_sq"])
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from proxgt._validation import DivergenceError, ProxGTValueError  # noqa: E402
from proxgt.config import RunConfig  # noqa: E402
from proxgt.runner import History  # noqa: E402

__all__ = ["run", "RunConfig", "History", "ProxGTValueError", "DivergenceError", "__version__"]


def run(config: RunConfig | dict[str, Any], *, out: str | Path | None = None, progress: bool = False) -> History:
    """Run one configuration with all nodes simulated in this process and return its :class:`History`.

    ``config`` is a :class:`RunConfig` or a mapping of its fields (e.g. ``{"algorithm": "proxgt-sr-o",
    "nodes": 8, "topology": "grid"}``); ``out`` (or ``config.out``) names a folder for the run's files.
    """
    from proxgt.executors.simulation import run_simulation

    return run_simulation(config, out=out, progress=progress)
