"""Building and running one configuration: :func:`build_run` (settings -> objects), :func:`train` (the loop),
:class:`History` (what a run returns) and :class:`RunFolder` (its files)."""

from proxgt.training.build import AlgorithmContext, RunSpec, build_run
from proxgt.training.folder import RunFolder
from proxgt.training.history import History, summarize
from proxgt.training.loop import compute_settings, train

__all__ = ["AlgorithmContext", "RunSpec", "build_run", "train", "compute_settings", "History", "summarize",
           "RunFolder"]
