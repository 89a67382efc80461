"""One process per node (or per contiguous block of nodes) on torch.distributed.

Every process builds the same run (building is deterministic), keeps only the data shard of the nodes it
hosts, and runs the unchanged algorithm objects through the shared driver (:mod:`proxgt.executors.driver`)
with a :class:`~proxgt.executors.p2p.DistributedCommunicator`: a gossip round exchanges rows with graph
neighbours only, by point-to-point messages; there is no collective inside the iteration. Metrics at the
network average (logging time only) use ``all_reduce``: that traffic is measured separately
(``logging_bytes``) and kept out of the iteration's count. What is distributed lives here and in
:mod:`~proxgt.executors.p2p` (the communicator) and :mod:`~proxgt.executors.failures` (naming a failed rank).

What each process loads: the data set is read in full by every process (the loaders read whole files) and
split with the run's seed, then every process drops all but its own shard before training. The held-out test
set, if any, is kept by every process, because test metrics are evaluated at the network average.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from proxgt.errors import ProxGTValueError
from proxgt.executors.driver import FaultHook, drive, resume_settings
from proxgt.executors.failures import DistributedFailure, FaultMonitor
from proxgt.executors.p2p import DistributedCommunicator, partition_nodes
from proxgt.settings import RunConfig
from proxgt.training import History, RunSpec

__all__ = [
    "DistributedCommunicator",
    "DistributedExecutor",
    "DistributedFailure",
    "FaultMonitor",
    "partition_nodes",
    "run_distributed",
    "init_process_group_from_env",
]


def init_process_group_from_env(
    backend: str, timeout_s: float
) -> tuple[int, int, dist.Store, dist.Store | None]:
    """Join the process group described by the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    The store is created here so that the fault monitor can use it: a client of the launcher's store when
    ``TORCHELASTIC_USE_AGENT_STORE=True`` (torchrun, ``proxgt launch``), else hosted by rank 0. Returns
    (rank, world, store, a second store client for the watchdog thread, or None).
    """
    try:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        host = os.environ["MASTER_ADDR"]
        port = int(os.environ["MASTER_PORT"])
    except KeyError as exc:
        raise ProxGTValueError(
            f"environment variable {exc.args[0]} is not set; start workers with 'proxgt launch' or torchrun"
        ) from None
    timeout = datetime.timedelta(seconds=float(timeout_s))
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(host, port, world, is_master=(rank == 0 and not agent), timeout=timeout,
                          wait_for_workers=False)
    try:  # a second connection for the watchdog thread
        watch = dist.TCPStore(host, port, world, is_master=False, timeout=timeout)
    except Exception:
        watch = None
    dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=rank, world_size=world,
                            timeout=timeout)
    return rank, world, store, watch


class DistributedExecutor:
    """This process's part of a torch.distributed job: the block of nodes of its rank."""

    def __init__(self, rank: int, world: int, monitor: FaultMonitor, timeout_s: float):
        self.rank, self.world = int(rank), int(world)
        self.monitor = monitor
        self.timeout_s = float(timeout_s)
        self.comm: DistributedCommunicator | None = None

    def communicator(self, spec: RunSpec) -> DistributedCommunicator:
        blocks = partition_nodes(spec.settings.nodes, self.world)
        self.comm = DistributedCommunicator(spec.topology, blocks, self.rank, timeout_s=self.timeout_s,
                                            monitor=self.monitor)
        spec.keep_only(self.comm.node_ids)
        return self.comm

    def barrier(self) -> None:
        assert self.comm is not None
        self.comm.barrier()

    def gather(self, x: torch.Tensor) -> torch.Tensor | None:
        assert self.comm is not None
        return self.comm.gather_rows(x)

    def add_summary(self, summary: dict[str, Any], elapsed_s: float, iters_run: int) -> None:
        comm = self.comm
        assert comm is not None
        stats = comm.all_stats([
            comm.bytes_sent, comm.messages_sent, comm.logging_bytes, comm.exchange_s, comm.gossip_s, elapsed_s,
            float(sum(int(comm.counter.bytes[i]) for i in comm.node_ids)), iters_run,
        ])
        summary["distributed"] = {
            "world_size": self.world,
            "backend": dist.get_backend(),
            "blocks": [list(blk) for blk in comm.blocks],
            "bytes_sent_per_rank": [int(v) for v in stats[:, 0]],
            "bytes_accounted_per_rank": [int(v) for v in stats[:, 6]],
            "messages_sent_per_rank": [int(v) for v in stats[:, 1]],
            "logging_bytes_per_rank": [int(v) for v in stats[:, 2]],
            "exchange_s_per_rank": [float(v) for v in stats[:, 3]],
            "gossip_s_per_rank": [float(v) for v in stats[:, 4]],
            "train_s_per_rank": [float(v) for v in stats[:, 5]],
            "iterations_this_process": int(stats[0, 7]),
            "note": "bytes_sent counts gossip rounds only (since the run started, checkpoints included); "
                    "logging_bytes is the metrics' all_reduce traffic, outside the iteration's count",
        }


def run_distributed(
    cfg: RunConfig | dict[str, Any] | None,
    *,
    resume: str | Path | None = None,
    backend: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    fault_hook: FaultHook | None = None,
) -> History:
    """Run ``cfg`` as this process's part of a torch.distributed job (started by ``proxgt launch``/torchrun).

    Every rank returns a :class:`History` whose ``x`` holds its local rows; on rank 0 ``x`` holds all n rows
    and rank 0 writes the run folder. ``resume`` continues from the newest checkpoint of that run folder.
    ``fault_hook(rank, t)`` runs after every iteration (tests use it to kill or hang a process). Raises
    DistributedFailure naming the failed rank when another process fails or stops answering within
    ``timeout_s``.
    """
    if resume is not None:
        cfg, _, _ = resume_settings(resume, overrides)
    elif cfg is None:
        raise ProxGTValueError("nothing to run: give a config or resume=DIR")
    elif isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg = cfg.validate()
    if not cfg.out:
        cfg = cfg.replace(out=f"runs/{cfg.algorithm}-seed{cfg.seed}")
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cfg = cfg.replace(device=f"cuda:{local_rank % torch.cuda.device_count()}")
    if backend is None:
        backend = "gloo" if cfg.device == "cpu" else "nccl"
    rank, world, store, watch = init_process_group_from_env(backend, cfg.timeout_s)
    monitor = FaultMonitor(store, rank, world, cfg.timeout_s, watch_store=watch)
    monitor.start()
    try:
        executor = DistributedExecutor(rank, world, monitor, cfg.timeout_s)
        # on resume, cfg holds the settings resolved above (checkpoint, overrides, this process's GPU)
        return drive(executor, cfg, resume=resume, overwrite=overwrite, progress=progress, fault_hook=fault_hook)
    except DistributedFailure:
        raise
    except BaseException as exc:
        monitor.report_self(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        raise
    finally:
        monitor.stop()
