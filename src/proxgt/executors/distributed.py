"""One process per node (or per contiguous block of nodes) on torch.distributed.

Every process builds the same run (building is deterministic), keeps only the data shard of the nodes it
hosts, and runs the unchanged algorithm objects through the shared driver (:mod:`proxgt.executors.driver`)
with a :class:`~proxgt.executors.p2p.DistributedCommunicator`: a gossip round exchanges rows with graph
neighbours only, by point-to-point messages; there is no collective inside the iteration. Metrics at the
network average (logging time only) use ``all_reduce``: that traffic is measured separately
(``logging_bytes``) and kept out of the iteration's count. What is distributed lives here and in
:mod:`~proxgt.executors.p2p` (the communicator) and :mod:`~proxgt.executors.failures` (naming a failed rank).

Lost processes (``on_failure = "continue"``, docs/fault-tolerance.md): :meth:`DistributedExecutor.train` wraps
the loop. After every iteration it keeps a copy of the state, the oracle's sampling state and the counters (the
last ``log_every + 2`` iterations: no survivor can be further apart from another, because the metrics all_reduce
every ``log_every`` iterations needs every process). When an op fails, the survivors agree on who left and on
the iteration T to redo (:meth:`FaultMonitor.agree`), form a new process group among themselves (the lowest
surviving rank becomes rank 0 and writes the run folder), drop the lost nodes' edges and recompute Metropolis
weights on the surviving graph (:meth:`DistributedCommunicator.drop_ranks`), roll back to the state after T - 1,
and restart the algorithm there: ``init`` at the survivors' iterates, so that trackers and estimators describe the
surviving network (a lost node takes its share of sum(y) = sum(v) with it; re-initializing restores the
invariant exactly, at the cost of one initial gradient estimate). A surviving graph that is disconnected ends the
run, naming its components. Checkpoints stop after a loss (a checkpoint needs every process of the run).

What each process loads: from a data file (LIBSVM text or ``.npz``), only the rows of its own nodes and the
held-out test set (:mod:`proxgt.data._shard`: the split is replayed on row ids, so the rows equal the full
load's); a built-in data set is read in full by every process and split with the run's seed, then every process
drops all but its own shard before training. The test set is kept by every process, because test metrics are
evaluated at the network average.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import networkx as nx
import torch
import torch.distributed as dist

from proxgt._state import map_state
from proxgt.data._shard import ShardRequest
from proxgt.errors import ProxGTValueError
from proxgt.executors._sockets import is_loopback, listen_on_loopback, store_socket
from proxgt.executors.agreement import agree_on_settings
from proxgt.executors.driver import FaultHook, ResumePlan, TrainFn, drive, plan_resume
from proxgt.executors.failures import (
    DistributedFailure,
    FaultMonitor,
    PeerLost,
    PublishedValueError,
    Verdict,
    key_prefix,
    publish_failure,
)
from proxgt.executors.p2p import DistributedCommunicator, partition_nodes
from proxgt.mixing import Communicator
from proxgt.mixing.clock import refuse_on_real_time
from proxgt.settings import RunConfig
from proxgt.training import History, RunSpec
from proxgt.training.folder import default_run_folder
from proxgt.training.privacy import private_across_processes

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
    backend: str, timeout_s: float, settings: dict[str, Any] | None = None
) -> tuple[int, int, dist.Store, dist.Store | None]:
    """Join the process group described by the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    The store is created here so that the fault monitor can use it: a client of the launcher's store when
    ``TORCHELASTIC_USE_AGENT_STORE=True`` (torchrun, ``proxgt launch``), else hosted by rank 0 on MASTER_ADDR's
    address only. When every rank is on this machine with a loopback MASTER_ADDR, gloo listens on loopback too
    (docs/security.md). Returns
    (rank, world, store, a second store client for the watchdog thread, or None). ``settings`` (a config's
    ``to_dict()``): first every process checks that all run the same (:func:`~proxgt.executors.agreement.
    agree_on_settings`), before the group forms (processes that count the world differently never form one).
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
    # every peer on this machine (a loopback MASTER_ADDR, and no other machine's ranks: torchrun's
    # LOCAL_WORLD_SIZE, where set, covers the world): gloo (and nccl's bootstrap) listen on loopback too
    if is_loopback(host) and os.environ.get("LOCAL_WORLD_SIZE", str(world)) == str(world):
        listen_on_loopback(os.environ)
    if rank == 0 and not agent:
        # this process hosts the store: on MASTER_ADDR's address only (the store is unauthenticated; torch's own
        # server would listen on every interface)
        try:
            fd = store_socket(host, port).detach()
        except OSError as exc:
            raise ProxGTValueError(f"rank 0 cannot host the rendezvous store on MASTER_ADDR {host}:{port} (it must "
                                   f"be an address of this machine and a free port): {exc.strerror or exc}") from None
        store = dist.TCPStore(host, port, world, is_master=True, timeout=timeout, wait_for_workers=False,
                              master_listen_fd=fd)
    else:
        store = dist.TCPStore(host, port, world, is_master=False, timeout=timeout, wait_for_workers=False)
    try:  # a second connection for the watchdog thread
        watch = dist.TCPStore(host, port, world, is_master=False, timeout=timeout)
    except Exception:
        watch = None
    if settings is not None:
        agree_on_settings(store, rank, world, settings, key_prefix(), float(timeout_s))
    # the prefix names the attempt: an elastic restart forms a new group on the same store
    dist.init_process_group(backend, store=dist.PrefixStore(key_prefix() + "pg", store), rank=rank, world_size=world,
                            timeout=timeout)
    return rank, world, store, watch


class DistributedExecutor:
    """This process's part of a torch.distributed job: the block of nodes of its rank."""

    def __init__(self, rank: int, world: int, monitor: FaultMonitor, timeout_s: float, *, store: Any = None,
                 backend: str = "gloo"):
        self.rank, self.world = int(rank), int(world)
        self.monitor = monitor
        self.timeout_s = float(timeout_s)
        self.comm: DistributedCommunicator | None = None
        self.store, self.backend = store, backend
        self.verdicts: list[Verdict] = []  # membership changes so far (on_failure = continue)
        self.folder: Any = None  # the run folder, when this process took the writer's place
        self.can_checkpoint = True
        self.raw_local = False  # DP across processes: raw-data metrics stay in their process (communicator())

    @property
    def shard(self) -> ShardRequest:
        """Sharded loading (:mod:`proxgt.data._shard`): this rank's nodes; sums over processes by all_reduce."""
        return ShardRequest(hosted=lambda n: partition_nodes(n, self.world)[self.rank],
                            sum_over_processes=_sum_over_processes)

    def communicator(self, spec: RunSpec) -> DistributedCommunicator:
        refuse_on_real_time(spec.settings)
        blocks = partition_nodes(spec.settings.nodes, self.world)
        self.comm = DistributedCommunicator(spec.topology, blocks, self.rank, timeout_s=self.timeout_s,
                                            monitor=self.monitor)
        if spec.network is not None:
            self.comm.attach_schedule(spec.network)
        spec.keep_only(self.comm.node_ids)
        self.raw_local = spec.secure_noise
        return self.comm

    def barrier(self) -> None:
        assert self.comm is not None
        self.comm.barrier()

    def gather(self, x: torch.Tensor) -> torch.Tensor | None:
        assert self.comm is not None
        return self.comm.gather_rows(x)

    def checkpoint_state(self) -> dict[str, Any]:
        return {}

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
            "iterations_this_process": int(stats[:, 7].max()),
            "note": "bytes_sent counts gossip rounds only (since the run started, checkpoints included); "
                    "logging_bytes is the metrics' all_reduce traffic, outside the iteration's count",
        }
        if self.raw_local:
            summary["distributed"]["note"] += (
                "; differential privacy: the columns computed on training data (objective, grad_mapping_sq, "
                "total_opt, train_accuracy, density) are over rank 0's own nodes at the network average, since no "
                "process's raw-data metrics reach another; each process drew its noise from a secret seed")
        summary["lost_nodes"] = [
            {"node": int(i), "rank": int(r), "iteration": v.iteration, "reason": why}
            for v in self.verdicts for r, why in sorted(v.lost.items()) for i in comm.blocks[r]
        ]
        if self.verdicts:
            summary["distributed"]["surviving_ranks"] = list(comm.members)
            summary["distributed"]["note"] += ("; after a lost process, metrics are over the surviving nodes "
                                               "(active_nodes) and final.npz has NaN rows for the lost nodes")

    # ------------------------------------------------------------ on_failure = continue
    def train(self, train_fn: TrainFn, spec: RunSpec, comm: Communicator, oracle: Any, *,
              state: Any, start_wall: float, on_row: Any, after_iteration: Any, progress: bool,
              rows: list[dict[str, float]], folder: Any = None, mixer: Any = None) -> tuple[Any, Any]:
        """``train_fn`` (the shared loop); under ``on_failure = "continue"`` it goes on after lost processes
        (module docstring): a failed op rolls the survivors back to the agreed iteration on the surviving graph."""
        if self.monitor.on_failure != "continue":
            return train_fn(spec, comm, oracle, state=state, start_wall=start_wall, on_row=on_row,
                            after_iteration=after_iteration, progress=progress, mixer=mixer)
        assert isinstance(comm, DistributedCommunicator)  # the one self.communicator() made
        ring: deque[tuple[int, Any, Any, Any, float]] = deque(maxlen=spec.settings.log_every + 2)

        def remember(st: Any, wall: float) -> None:
            ring.append((int(st.t), _copy_state(st), oracle.state_dict(), comm.counter.state_dict(), wall))
            self.monitor.iteration = int(st.t) + 1
            after_iteration(st, wall)

        if state is not None:  # resumed from a checkpoint
            ring.append((int(state.t), _copy_state(state), oracle.state_dict(), comm.counter.state_dict(),
                         start_wall))
            self.monitor.iteration = int(state.t) + 1
        current, wall = spec, start_wall  # current: the run on the graph of the surviving nodes
        while True:
            try:
                out = train_fn(current, comm, oracle, state=state, start_wall=wall, on_row=on_row,
                               after_iteration=remember, progress=progress, mixer=mixer)
                self.monitor.iteration = current.iters + 1
                comm.barrier()  # every survivor finished: a process lost after the last iteration is seen here
                return out
            except PeerLost as lost:
                state, wall, current, mixer = self._go_on(lost, spec, comm, oracle, ring, rows, folder)

    def _go_on(self, lost: PeerLost, spec: RunSpec, comm: DistributedCommunicator, oracle: Any,
               ring: deque, rows: list[dict[str, float]], folder: Any) -> tuple[Any, float, RunSpec, Any]:
        """Agree on the survivors, re-form the group on the surviving graph and return the state to go on from,
        its wall time, the run on the surviving graph (``spec`` itself is left as built) and its mixer."""
        from proxgt.mixing.compressed import make_mixer
        from proxgt.topology import Topology

        verdict = self.monitor.agree(lost)
        self.verdicts.append(verdict)
        self.can_checkpoint = False
        T = verdict.iteration
        nodes = sorted(i for r in verdict.survivors for i in comm.blocks[r])
        topology = spec.topology
        sub = topology.graph.subgraph(nodes)
        parts = sorted(sorted(int(i) for i in c) for c in nx.connected_components(sub))
        if len(parts) > 1:
            names = ["{" + ",".join(map(str, c)) + "}" for c in parts]
            msg = (f"the surviving graph is disconnected: components {', '.join(names[:-1])} and {names[-1]} "
                   f"(after losing rank(s) {', '.join(map(str, sorted(verdict.lost)))} at iteration {T})")
            publish_failure(self.store, msg)
            raise DistributedFailure(msg)
        snap = next((s for s in ring if s[0] == T - 1), None)
        if snap is None:
            msg = (f"{lost}; the survivors agreed to redo iteration {T}, but this process no longer holds the state "
                   f"after iteration {T - 1}")
            publish_failure(self.store, msg)
            raise DistributedFailure(msg)
        self._regroup(verdict)
        oracle.load_state_dict(snap[2])
        comm.counter.load_state_dict(snap[3])  # the counts after T - 1; then the surviving degrees from T on
        comm.drop_ranks(verdict.survivors, topology.graph)
        survived = dataclasses.replace(spec, topology=Topology.from_graph(sub, "metropolis",
                                                                         name=f"{topology.name} (surviving)"))
        # a row of iteration >= T was logged only if the lost process died in that row's all_reduce after some
        # survivors had their result: it is logged again, over the survivors
        keep = next((k for k, r in enumerate(rows) if r["iter"] >= T), len(rows))
        writer = folder if folder is not None else self.folder
        if keep < len(rows):
            del rows[keep:]
            if writer is not None:
                writer.start_metrics(list(rows[0]), rows)
        if self.rank == comm.members[0] and writer is None and spec.settings.out:
            self._take_over_folder(spec.settings.out, rows)
        mixer = make_mixer(comm, survived)  # with the surviving graph's lambda
        st = spec.algorithm.init(snap[1].x, oracle, mixer)
        return st._replace(t=T - 1), float(snap[4]), survived, mixer

    def _regroup(self, verdict: Verdict) -> None:
        """A new default process group of the survivors (lowest surviving rank first)."""
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        try:
            dist.init_process_group(
                self.backend, store=dist.PrefixStore(f"{key_prefix()}pg{verdict.epoch + 1}", self.store),
                rank=verdict.survivors.index(self.rank), world_size=len(verdict.survivors),
                timeout=datetime.timedelta(seconds=self.timeout_s))
        except Exception as exc:
            raise DistributedFailure(f"the survivors of iteration {verdict.iteration} could not form a new group: "
                                     f"{str(exc).splitlines()[0][:200]}") from None

    def _take_over_folder(self, out: str, rows: list[dict[str, float]]) -> None:
        """Rank 0 was lost: this process (the lowest survivor) writes the run folder from now on."""
        from proxgt.training import RunFolder

        end = time.monotonic() + self.monitor.grace_s + 5.0
        while True:
            try:  # a hung rank 0 holds the folder's lock until its watchdog ends it
                self.folder = RunFolder(out, resume=True)
                break
            except ProxGTValueError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        if rows:
            self.folder.start_metrics(list(rows[0]), rows)
        sys.stderr.write(f"proxgt: rank {self.rank} writes {out} from now on (rank 0 was lost)\n")


def _sum_over_processes(t: torch.Tensor) -> torch.Tensor:
    """all_reduce (sum) of ``t`` over the default group, at set-up (the current GPU's buffer with nccl)."""
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buf = t.to(dev).contiguous()
    dist.all_reduce(buf)
    return buf.to(t.device)


def _copy_state(state: Any) -> Any:
    """A copy of a NamedTuple state whose tensors cannot change when the algorithm goes on."""
    return map_state(lambda v: v.detach().clone(), state)


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
    and rank 0 writes the run folder. ``resume`` continues the run in that folder from its newest usable
    checkpoint (``overrides`` may extend a finished one; ``overwrite`` starts it over: see
    :func:`~proxgt.executors.driver.plan_resume`).
    ``fault_hook(rank, t)`` runs after every iteration (tests use it to kill or hang a process). Raises
    DistributedFailure naming the failed rank when another process fails or stops answering within
    ``timeout_s``.
    """
    plan: ResumePlan | None = None
    if resume is not None:  # every process plans from the same files; rank 0 says what it falls back from
        plan = plan_resume(resume, overrides, overwrite=overwrite, warn=os.environ.get("RANK", "0") == "0")
        cfg, overwrite = plan.cfg, plan.start_over
        plan = None if plan.start_over else plan
    elif cfg is None:
        raise ProxGTValueError("nothing to run: give a config or resume=DIR")
    elif isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg = private_across_processes(cfg.validate())
    if not cfg.out:
        cfg = cfg.replace(out=default_run_folder(cfg.algorithm, cfg.seed))
    resolved = cfg.to_dict()  # before this process picks its GPU: what every machine must run alike
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cfg = cfg.replace(device=f"cuda:{local_rank % torch.cuda.device_count()}")
        torch.cuda.set_device(torch.device(cfg.device))  # nccl's communicator and collective buffers live there
    if backend is None:
        backend = "gloo" if cfg.device == "cpu" else "nccl"
    if backend == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise ProxGTValueError("the nccl backend needs CUDA GPUs and a torch built with NCCL, which this machine "
                               "lacks: use --backend gloo (and --device cpu)")
    rank, world, store, watch = init_process_group_from_env(backend, cfg.timeout_s, resolved)
    monitor = FaultMonitor(store, rank, world, cfg.timeout_s, watch_store=watch)
    monitor.on_failure = cfg.on_failure
    monitor.start()
    try:
        executor = DistributedExecutor(rank, world, monitor, cfg.timeout_s, store=store, backend=backend)
        # on resume, the plan holds the settings resolved above (checkpoint, overrides, this process's GPU)
        return drive(executor, cfg, resume=None if plan is None else dataclasses.replace(plan, cfg=cfg),
                     overwrite=overwrite, progress=progress, fault_hook=fault_hook)
    except DistributedFailure:
        raise
    except BaseException as exc:
        monitor.report_self(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        if isinstance(exc, ProxGTValueError) and not isinstance(exc, PublishedValueError):
            raise PublishedValueError(str(exc)) from None
        raise
    finally:
        monitor.stop()
