"""The cost model: counted work (gradients, rounds, bytes) -> modeled wall time, and measuring sample_s."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from proxgt._validation import (
    ProxGTValueError,
    check_nonneg_float,
    check_positive_float,
)

if TYPE_CHECKING:  # numpy is imported where used: `proxgt --help` imports this module and stays light
    pass

__all__ = ["CostModel", "measure_sample_time", "DEFAULT_LATENCY_S", "DEFAULT_BANDWIDTH_BPS"]

#: Defaults describe a pilot across a few sites over the internet: 10 ms per round, 100 Mbit/s uplinks.
DEFAULT_LATENCY_S = 0.01
DEFAULT_BANDWIDTH_BPS = 12.5e6
DEFAULT_SAMPLE_S = 1e-6


@dataclass(frozen=True)
class CostModel:
    """Latency per gossip round (s), uplink bandwidth (bytes/s) and time per component gradient (s)."""

    latency_s: float = DEFAULT_LATENCY_S
    bandwidth_Bps: float = DEFAULT_BANDWIDTH_BPS
    sample_s: float = DEFAULT_SAMPLE_S

    def __post_init__(self) -> None:
        check_nonneg_float(self.latency_s, "latency_s", "CostModel")
        check_positive_float(self.bandwidth_Bps, "bandwidth_Bps", "CostModel")
        check_nonneg_float(self.sample_s, "sample_s", "CostModel")

    def time(self, ifo_per_node: float, comm_rounds: float, bytes_per_node: float) -> float:
        """Modeled seconds for the given per-node work and traffic."""
        return ifo_per_node * self.sample_s + comm_rounds * self.latency_s + bytes_per_node / self.bandwidth_Bps

    def row_time(self, row: dict[str, float]) -> float:
        return self.time(row.get("ifo_per_node", 0.0), row.get("comm_rounds", 0.0), row.get("bytes_per_node", 0.0))

    def with_modeled(self, rows: Iterable[dict[str, float]]) -> list[dict[str, float]]:
        """Copies of ``rows`` with a ``modeled_s`` column."""
        return [{**r, "modeled_s": self.row_time(r)} for r in rows]

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "cost") -> CostModel:
        known = {"latency_s", "bandwidth_Bps", "sample_s"}
        for k in d:
            if k not in known:
                raise ProxGTValueError(f"unknown setting '{k}' in {source}; known: {', '.join(sorted(known))}")
        vals = {}
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ProxGTValueError(f"{source}.{k} must be a number. Got {v!r} instead.")
            vals[k] = float(v)
        return cls(**vals)


def measure_sample_time(cfg: Any, *, batch: int = 256, repeats: int = 20) -> float:
    """Seconds per component gradient of ``cfg``'s problem on this machine, one node, one thread.

    Builds the run (data, problem), then times ``repeats`` minibatch gradients of ``batch`` samples at x0 on
    node 0 (after a warm-up call) and returns the median time divided by ``batch``.
    """
    import torch

    from proxgt.problems.oracle import GradientOracle
    from proxgt.training import build_run

    spec = build_run(cfg)
    device = torch.device(spec.settings.device)
    # minibatches even for a batch = full run: this measures the cost of one component gradient; on the run's
    # device, where initial_rows puts X (an oracle left on the CPU fed CPU images to LeNet-5's cuda weights:
    # "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor)", the device run of 2026-11-26)
    oracle = GradientOracle(spec.problem, spec.node_data.shard([0]), spec.settings.seed,
                            chunk_size=spec.problem.chunk_size, dtype=spec.dtype, device=device)
    X = spec.initial_rows([0])
    # GPU work is queued: wait for it, or the time is the launch only
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        idx = oracle.sample(batch)
        oracle.grad(X, idx)
        wait()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            oracle.grad(X, idx)
            wait()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    times.sort()
    return times[len(times) // 2] / batch


# ------------------------------------------------------------------------------------ unreliable networks
#: Mixing accuracy ||.|| <= MIX_TARGET counts as well mixed (the same 0.05 as :func:`candidate_rounds`' ladder).
