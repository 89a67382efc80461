"""The metric columns every run logs (torch-free, so reports can name them without importing torch)."""

from __future__ import annotations

__all__ = ["BASE_COLUMNS", "CLOCK_COLUMNS", "PRIVACY_COLUMNS"]

#: Columns of every metrics row, in order; classification and test-set columns follow (see ``evaluator``).
BASE_COLUMNS = (
    "iter",
    "ifo_per_node",
    "comm_rounds",
    "bytes_per_node",
    "wall_s",
    "grad_mapping_sq",
    "consensus",
    "total_opt",
    "objective",
    "active_nodes",
)

#: Columns a differentially private run adds after the others: the largest per-node epsilon spent so far at the
#: run's dp_delta (see proxgt.privacy).
PRIVACY_COLUMNS = ("epsilon",)

#: Columns of a run with a virtual clock (a clock setting given; the simulator, see proxgt.mixing.clock): the
#: virtual seconds at which the logged state exists.
CLOCK_COLUMNS = ("sim_time_s",)
