"""One process per node (or per contiguous block of nodes) on torch.distributed.

Every process builds the same run (:func:`proxgt.runner.build` is deterministic), keeps only the data shard of
the nodes it hosts, and runs the unchanged algorithm objects through :func:`proxgt.runner.train` with a
:class:`DistributedCommunicator`. A gossip round exchanges rows with graph neighbours only, by point-to-point
messages (``batch_isend_irecv`` of isend/irecv), and computes the local rows of ``W @ Z`` from the local
weights; there is no collective inside the iteration. Metrics at the network average (logging time only) use
``all_reduce``: that traffic is measured separately (``logging_bytes``) and kept out of the iteration's count.

What each process loads: the data set is read in full by every process (the loaders read whole files) and
split with the run's seed, then every process drops all but its own shard (``Build.train`` and the other
nodes' rows are released before training). The held-out test set, if any, is kept by every process, because
test metrics are evaluated at the network average at logging time.

Faults: every wait (point-to-point or collective) has the run's ``timeout_s``. A process that sees a peer fail
(connection lost) or stop answering (timeout) records a *suspicion* (communication op index, peer) in the
rendezvous store, waits a short grace period for the others' suspicions, then names the culprit: the peer
suspected at the earliest op (a crashed or hung process stops the op count of its neighbours first; the
failures that cascade from their exit are seen at later ops). A process that fails on its own (an exception)
reports itself. The first resolved culprit is published in the store; a watchdog thread in every process
polls it and ends the process (exit code 1) with a message naming the failed rank, so no process hangs.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from proxgt._io import RunFolder
from proxgt._validation import DivergenceError, ProxGTValueError
from proxgt.config import RunConfig
from proxgt.executors._checkpoint import (
    Checkpointer,
    load_checkpoint,
    resolve_run_config,
    state_to,
)
from proxgt.mixing import CommCounter
from proxgt.runner import Build, History, build, compute_settings, make_oracle, summarize, to_numpy, train
from proxgt.topology import Topology

__all__ = [
    "DistributedCommunicator",
    "DistributedFailure",
    "FaultMonitor",
    "partition_nodes",
    "run_distributed",
    "init_process_group_from_env",
]

def _key_prefix() -> str:
    """Store keys of this attempt (torchrun restarts a failed job as a new attempt on the same store)."""
    return f"proxgt/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


FAULT_ENV = "PROXGT_FAULT_INJECT"  # test-only hook: "die:RANK:ITER" or "hang:RANK:ITER"


class DistributedFailure(RuntimeError):
    """Another process of the run failed or stopped answering; the message names its rank."""


def partition_nodes(n_nodes: int, world: int) -> list[tuple[int, ...]]:
    """Contiguous blocks of node ids, one per rank, sizes differing by at most one (larger blocks first).

    >>> partition_nodes(5, 2)
    [(0, 1, 2), (3, 4)]
    """
    if world < 1 or n_nodes < world:
        raise ProxGTValueError(
            f"cannot host {n_nodes} node(s) on {world} process(es): every process needs at least one node "
            "(use --nprocs <= --nodes)"
        )
    base, extra = divmod(n_nodes, world)
    blocks, start = [], 0
    for r in range(world):
        size = base + (1 if r < extra else 0)
        blocks.append(tuple(range(start, start + size)))
        start += size
    return blocks


# ---------------------------------------------------------------------------------------------- faults
class FaultMonitor:
    """Failure detection and naming through the rendezvous store (see the module docstring).

    ``op`` counts the communication operations this process entered; suspicions carry it so that the
    earliest one (the root cause) wins over the ones that cascade from it.
    """

    def __init__(self, store: dist.Store | None, rank: int, world: int, timeout_s: float,
                 watch_store: dist.Store | None = None):
        self.store, self.rank, self.world = store, int(rank), int(world)
        self.prefix = _key_prefix()
        self.timeout_s = float(timeout_s)
        self.grace_s = min(2.0, max(0.5, self.timeout_s / 10.0))
        self.op = 0
        self._watch_store = watch_store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._exiting = False

    # ------------------------------------------------------------ store helpers (never raise)
    def _set(self, key: str, value: str) -> None:
        try:
            if self.store is not None:
                self.store.set(self.prefix + key, value)
        except Exception:  # the store host may be gone: fall back to local knowledge
            pass

    def _get(self, store: dist.Store | None, key: str) -> str | None:
        try:
            if store is not None and store.check([self.prefix + key]):
                return store.get(self.prefix + key).decode()
        except Exception:
            pass
        return None

    # ------------------------------------------------------------ reporting
    def report_self(self, reason: str) -> None:
        """This process failed on its own (an exception): the others will name this rank."""
        msg = f"rank {self.rank} failed: {reason}"
        self._set(f"suspect/{self.rank}", f"-1 {self.rank} {reason}")
        self._publish(msg)

    def _publish(self, msg: str) -> None:
        try:
            if self.store is not None:
                self.store.compare_set(self.prefix + "failed", "", msg)
        except Exception:
            pass

    def fail(self, peer: int | None, reason: str) -> DistributedFailure:
        """Record a suspicion against ``peer`` (None: unknown, e.g. a collective), resolve the culprit after a
        grace period, publish it, and return the exception to raise."""
        self._set(f"suspect/{self.rank}", f"{self.op} {-2 if peer is None else peer} {reason}")
        time.sleep(self.grace_s)
        published = self._get(self.store, "failed")
        if published:
            return DistributedFailure(published)
        best: tuple[int, int, str] | None = None
        for r in range(self.world):
            val = self._get(self.store, f"suspect/{r}")
            if val is None:
                continue
            op_s, peer_s, why = (val.split(" ", 2) + [""])[:3]
            op, who = int(op_s), int(peer_s)
            if who == -2:
                continue
            if best is None or (op, who) < (best[0], best[1]):
                best = (op, who, why)
        if best is None:
            who = "an unknown rank" if peer is None else f"rank {peer}"
            msg = f"{who} failed or stopped answering ({reason})"
        elif best[0] == -1:
            msg = f"rank {best[1]} failed: {best[2]}"
        else:
            msg = f"rank {best[1]} failed or stopped answering ({best[2]})"
        self._publish(msg)
        return DistributedFailure(self._get(self.store, "failed") or msg)

    # ------------------------------------------------------------ watchdog
    def start(self) -> None:
        if self._watch_store is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="proxgt-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            try:
                if not self._watch_store.check([self.prefix + "failed"]):
                    continue
                msg = self._watch_store.get(self.prefix + "failed").decode()
            except Exception:  # store gone (e.g. its host finished): nothing left to watch
                return
            # give the main thread the chance to raise (and report) the same failure itself
            if self._stop.wait(self.grace_s + 1.0):
                return
            if msg.startswith(f"rank {self.rank} "):
                msg = f"the other ranks report this process: {msg}"
            sys.stderr.write(f"proxgt: error: rank {self.rank}: {msg}\n")
            sys.stderr.flush()
            os._exit(1)


# ---------------------------------------------------------------------------------------------- communicator
class DistributedCommunicator:
    """Gossip over torch.distributed point-to-point messages between graph neighbours.

    Rank ``rank`` hosts the nodes ``blocks[rank]``. For each neighbouring rank q the plan holds the local rows
    q needs and the rows of q this rank needs (sorted by global id on both sides); neighbours hosted by the
    same rank need no message. A round posts every send and receive at once (``batch_isend_irecv``), waits
    for each with the timeout, then computes ``W_loc @ [local rows; received rows]`` with the local weights.

    Counting: ``counter`` is the degree-based accounting of the whole network (identical on every rank and to
    the simulation); ``bytes_sent``/``messages_sent`` measure what this rank actually sent in gossip rounds.
    With one node per rank these are equal to the accounting of that node; with blocks they are smaller
    (intra-rank edges cost nothing and a row goes once to a rank however many of its nodes need it).
    ``logging_bytes`` measures the metrics' all_reduce traffic (not part of the iteration).
    """

    def __init__(
        self,
        topology: Topology,
        blocks: Sequence[Sequence[int]],
        rank: int,
        *,
        timeout_s: float = 120.0,
        monitor: FaultMonitor | None = None,
        group: Any = None,
    ):
        self.rank = int(rank)
        self.world = len(blocks)
        self.blocks = [tuple(int(i) for i in b) for b in blocks]
        self.n_nodes = int(topology.n)
        self.node_ids = self.blocks[self.rank]
        self.counter = CommCounter(np.asarray(topology.degrees))
        self.timeout = datetime.timedelta(seconds=float(timeout_s))
        self.monitor = monitor or FaultMonitor(None, rank, self.world, timeout_s)
        self.group = group
        owner = np.empty(self.n_nodes, dtype=np.int64)
        for r, blk in enumerate(self.blocks):
            owner[list(blk)] = r
        local = set(self.node_ids)
        recv: dict[int, set[int]] = {}
        send: dict[int, set[int]] = {}
        for i in self.node_ids:
            for j in topology.neighbors(i):
                if j in local:
                    continue
                q = int(owner[j])
                recv.setdefault(q, set()).add(int(j))  # i needs x_j from q
                send.setdefault(q, set()).add(int(i))  # j needs x_i (the graph is undirected)
        self.peers = sorted(set(recv) | set(send))
        pos = {g: a for a, g in enumerate(self.node_ids)}
        self._send_idx = {q: torch.tensor([pos[i] for i in sorted(send.get(q, ()))], dtype=torch.int64)
                          for q in self.peers}
        self._recv_ids = {q: sorted(recv.get(q, ())) for q in self.peers}
        cols = list(self.node_ids) + [j for q in self.peers for j in self._recv_ids[q]]
        W = torch.as_tensor(topology.W, dtype=torch.float64)
        self._W_local = W[list(self.node_ids)][:, cols].contiguous()
        self._cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self.bytes_sent = 0
        self.messages_sent = 0
        self.logging_bytes = 0
        self.exchange_s = 0.0  # time from posting the messages to having them all (gossip only)
        self.gossip_s = 0.0  # whole gossip calls (exchange + local weighted sum)

    # ------------------------------------------------------------ accounting state (checkpoints)
    def state_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter.state_dict(),
            "bytes_sent": self.bytes_sent,
            "messages_sent": self.messages_sent,
            "logging_bytes": self.logging_bytes,
            "op": self.monitor.op,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counter.load_state_dict(state["counter"])
        self.bytes_sent = int(state["bytes_sent"])
        self.messages_sent = int(state["messages_sent"])
        self.logging_bytes = int(state["logging_bytes"])
        self.monitor.op = int(state.get("op", 0))

    def _matrix(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        W = self._cache.get(key)
        if W is None:
            W = self._cache[key] = self._W_local.to(dtype=like.dtype, device=like.device)
        return W

    def _wait(self, works: list[Any], peers: list[int | None], what: str) -> None:
        for work, peer in zip(works, peers, strict=True):
            try:
                work.wait(self.timeout)
            except Exception as exc:  # RuntimeError from gloo/nccl: timeout or connection lost
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                detail = re.sub(r"^\[[^\]]*\]\s*", "", detail).split(". This is typically")[0]  # gloo's prefix
                if "Timed out" in detail or "timed out" in detail.lower():
                    reason = f"no answer within {self.timeout.total_seconds():g} s during {what}"
                else:
                    reason = f"connection lost during {what}: {detail[:160]}"
                raise self.monitor.fail(peer, reason) from None

    # ------------------------------------------------------------ the protocol
    def exchange(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Send the needed local rows of ``flat`` (k, w) to each neighbouring rank and receive theirs."""
        ops, peers, recvs = [], [], []
        sent = 0
        for q in self.peers:
            buf = flat.index_select(0, self._send_idx[q].to(flat.device))
            ops.append(dist.P2POp(dist.isend, buf, q, self.group))
            peers.append(q)
            sent += buf.numel() * buf.element_size()
        for q in self.peers:
            r = flat.new_empty((len(self._recv_ids[q]), flat.shape[1]))
            recvs.append(r)
            ops.append(dist.P2POp(dist.irecv, r, q, self.group))
            peers.append(q)
        self.monitor.op += 1
        if ops:
            works = dist.batch_isend_irecv(ops)
            # receives first: a missing peer is seen on what we need from it
            n = len(self.peers)
            order = list(range(n, 2 * n)) + list(range(n))
            self._wait([works[i] for i in order], [peers[i] for i in order], f"gossip op {self.monitor.op}")
        self.bytes_sent += sent
        self.messages_sent += len(self.peers)
        return recvs

    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round: the local rows of ``W @ Z_global``. ``Z`` holds the local rows and is not modified."""
        t0 = time.perf_counter()
        k = Z.shape[0]
        flat = Z.reshape(k, -1) if Z.ndim > 1 else Z.reshape(k, 1)
        flat = flat.contiguous()
        recvs = self.exchange(flat)
        t1 = time.perf_counter()
        buf = torch.cat([flat, *recvs], dim=0) if recvs else flat
        out = (self._matrix(flat) @ buf).reshape(Z.shape)
        self.counter.record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size())
        t2 = time.perf_counter()
        self.exchange_s += t1 - t0
        self.gossip_s += t2 - t0
        return out

    def _collective_device(self) -> torch.device:
        """Where collective buffers live: the current GPU for nccl, the CPU otherwise."""
        if dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        """Sum over every node of the network (all_reduce; logging only, not counted in the iteration)."""
        local = T.sum(dim=0).to(self._collective_device()).contiguous()
        self.monitor.op += 1
        work = dist.all_reduce(local, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        self._wait([work], [None], f"metrics all_reduce (op {self.monitor.op})")
        self.logging_bytes += local.numel() * local.element_size()
        return local.to(T.device)

    def gather_rows(self, X: torch.Tensor) -> torch.Tensor | None:
        """All n rows in global order on rank 0 (None elsewhere); for the final output only."""
        kmax = max(len(b) for b in self.blocks)
        pad = X.new_zeros((kmax,) + tuple(X.shape[1:]))
        pad[: X.shape[0]] = X
        pad = pad.to(self._collective_device())
        bufs = [torch.empty_like(pad) for _ in range(self.world)] if self.rank == 0 else None
        self.monitor.op += 1
        work = dist.gather(pad, bufs, dst=0, group=self.group, async_op=True)
        self._wait([work], [None], "the final gather")
        if self.rank != 0:
            return None
        rows = [bufs[r][: len(self.blocks[r])] for r in range(self.world)]
        return torch.cat(rows, dim=0).to(X.device)

    def all_stats(self, values: Sequence[float]) -> np.ndarray:
        """Small per-rank statistics gathered on every rank: array (world, len(values))."""
        v = torch.zeros((self.world, len(values)), dtype=torch.float64)
        v[self.rank] = torch.tensor(list(values), dtype=torch.float64)
        v = v.to(self._collective_device())
        self.monitor.op += 1
        work = dist.all_reduce(v, group=self.group, async_op=True)
        self._wait([work], [None], "the final statistics")
        return v.cpu().numpy()


# ---------------------------------------------------------------------------------------------- process group
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


def _keep_local_shard(b: Build, node_ids: Sequence[int]) -> None:
    """Drop every sample this process does not own (the full training set and the other nodes' shards)."""
    b.node_data = b.node_data.shard(list(node_ids))
    b.train = None  # type: ignore[assignment]


def _fault_hook(rank: int) -> tuple[str, int] | None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return None
    kind, r, it = spec.split(":")
    return (kind, int(it)) if int(r) == rank else None


def run_distributed(
    cfg: RunConfig | dict[str, Any] | None,
    *,
    resume: str | Path | None = None,
    backend: str | None = None,
    progress: bool = False,
    overrides: dict[str, Any] | None = None,
) -> History | None:
    """Run ``cfg`` as this process's part of a torch.distributed job (started by ``proxgt launch``/torchrun).

    Every rank returns a :class:`History` whose ``x`` holds its local rows; on rank 0 ``x`` holds all n rows
    and rank 0 writes the run folder (config.toml, metrics.csv, final.npz, summary.json). ``resume``
    continues from the newest checkpoint of that run folder (settings come from the checkpoint;
    ``overrides`` may change ``timeout_s``/``checkpoint_every``). Raises DistributedFailure naming the failed
    rank when another process fails or stops answering within ``timeout_s``.
    """
    cfg = resolve_run_config(cfg, resume, overrides, "run_distributed")
    if backend is None:
        backend = "gloo" if cfg.device == "cpu" else "nccl"
    rank, world, store, watch = init_process_group_from_env(backend, cfg.timeout_s)
    monitor = FaultMonitor(store, rank, world, cfg.timeout_s, watch_store=watch)
    monitor.start()
    try:
        return _run(cfg, rank, world, monitor, resume, progress)
    except DistributedFailure:
        raise
    except BaseException as exc:
        monitor.report_self(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        raise
    finally:
        monitor.stop()


def _run(cfg: RunConfig, rank: int, world: int, monitor: FaultMonitor, resume: str | Path | None,
         progress: bool) -> History:
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cfg.device = f"cuda:{local_rank % torch.cuda.device_count()}"
    if not cfg.out:
        cfg.out = f"runs/{cfg.algorithm}-seed{cfg.seed}"
    b = build(cfg)
    blocks = partition_nodes(cfg.nodes, world)
    comm = DistributedCommunicator(b.topology, blocks, rank, timeout_s=cfg.timeout_s, monitor=monitor)
    resolved = b.resolved_config()
    resolved["meta"]["world_size"] = world
    _keep_local_shard(b, comm.node_ids)
    folder = RunFolder(cfg.out) if rank == 0 else None
    if folder:
        folder.write_config(resolved)

    state = oracle = None
    start_wall = 0.0
    rows_before: list[dict[str, float]] = []
    if resume is not None:
        ck = load_checkpoint(resume, rank, world)
        oracle = make_oracle(b, comm.node_ids)
        oracle.load_state_dict(ck["oracle"])
        comm.load_state_dict(ck["comm"])
        state = state_to(ck["state"], cfg.device)
        start_wall = float(ck["wall"])
        rows_before = list(ck["rows"])
        if folder and rows_before:
            folder.start_metrics(ck["columns"], rows_before[:-1])
            folder.add_row(rows_before[-1])
    rows_all = list(rows_before)
    columns: list[str] = list(rows_before[0].keys()) if rows_before else []

    def on_row(row: dict[str, float]) -> None:
        rows_all.append(row)
        if not columns:
            columns.extend(row.keys())
        if folder:
            if len(rows_all) == 1:
                folder.start_metrics(columns)
            folder.add_row(row)

    ckpt = Checkpointer(cfg.out, rank, world, cfg.checkpoint_every)
    fault = _fault_hook(rank)

    def on_state(st: Any, orc: Any, wall: float) -> None:
        if fault is not None and st.t == fault[1]:
            if fault[0] == "die":
                os._exit(17)
            time.sleep(10 * cfg.timeout_s + 60)  # "hang": stop answering
        if ckpt.due(st.t):
            ckpt.save(st.t, {
                "state": state_to(st, "cpu"), "oracle": orc.state_dict(), "comm": comm.state_dict(),
                "rows": list(rows_all), "columns": list(columns), "wall": wall, "cfg": cfg.to_dict(),
                "node_ids": list(comm.node_ids),
            })

    t_start = time.perf_counter()
    try:
        with compute_settings(cfg.threads):
            state, rows, metrics = train(b, comm, on_row=on_row, progress=progress and rank == 0, state=state,
                                         oracle=oracle, start_wall=start_wall, on_state=on_state)
    except DivergenceError as exc:
        if folder:
            folder.write_summary(summarize(rows_all, b, status="diverged", message=str(exc)))
        raise
    elapsed = time.perf_counter() - t_start
    x_all = comm.gather_rows(state.x)
    iters_run = max(0, int(state.t) - (int(rows_before[-1]["iter"]) if rows_before else 0))
    stats = comm.all_stats([
        comm.bytes_sent, comm.messages_sent, comm.logging_bytes, comm.exchange_s, comm.gossip_s, elapsed,
        float(sum(int(comm.counter.bytes[i]) for i in comm.node_ids)), iters_run,
    ])
    summary = summarize(rows_all, b)
    summary["distributed"] = {
        "world_size": world,
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
    if folder:
        folder.write_final(to_numpy(x_all))
        folder.write_summary(summary)
    x = x_all if x_all is not None else state.x.detach().cpu()
    return History(columns=metrics.columns, rows=rows_all, x=x.detach().cpu(), config=resolved, summary=summary)
