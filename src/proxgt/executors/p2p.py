"""Gossip over torch.distributed point-to-point messages between graph neighbours (no collective inside an
iteration), and the partition of nodes into per-process blocks."""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from proxgt.errors import ProxGTValueError
from proxgt.executors.failures import FaultMonitor
from proxgt.mixing import CommCounter
from proxgt.mixing.communicator import fused_round
from proxgt.topology import Topology, metropolis_weight

__all__ = ["DistributedCommunicator", "partition_nodes"]


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

    #: link failures / node dropout / a time-varying graph (proxgt.mixing.dynamic); None: the static plan
    schedule: Any = None

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
        # who is still in the run (on_failure = continue; see drop_ranks): original ranks, in the order of their
        # rank in the current process group, and the nodes they host
        self.members: tuple[int, ...] = tuple(range(self.world))
        self._pg_rank = {r: r for r in range(self.world)}
        self.active_nodes = self.n_nodes
        self.active_mask: np.ndarray | None = None
        self._coalesce: bool | None = None  # NCCL posts a batch of point-to-point ops as one call
        owner = np.empty(self.n_nodes, dtype=np.int64)
        for r, blk in enumerate(self.blocks):
            owner[list(blk)] = r
        cols = self._plan_exchange(topology.neighbors, owner)
        # only this block's rows of W, from its CSR form: large topologies hold W sparse (never n x n dense)
        self._W_local = torch.from_numpy(topology.W_csr[list(self.node_ids)][:, cols].toarray())
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

    def _reason(self, exc: Exception, what: str) -> str:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = re.sub(r"^\[[^\]]*\]\s*", "", detail).split(". This is typically")[0]  # gloo's prefix
        if "Timed out" in detail or "timed out" in detail.lower():
            return f"no answer within {self.timeout.total_seconds():g} s during {what}"
        return f"connection lost during {what}: {detail[:160]}"

    def _wait(self, works: list[Any], peers: list[int | None], what: str) -> None:
        for work, peer in zip(works, peers, strict=True):
            try:
                work.wait(self.timeout)
            except Exception as exc:  # RuntimeError from gloo/nccl: timeout or connection lost
                raise self.monitor.fail(peer, self._reason(exc, what)) from None

    def _post(self, start: Any, what: str) -> Any:
        """``start()`` posts a collective; failing already (a connection known lost) is a failure like a wait's."""
        try:
            return start()
        except Exception as exc:
            raise self.monitor.fail(None, self._reason(exc, what)) from None

    def _post_p2p(self, ops: list[tuple[Any, torch.Tensor, int]], what: str) -> list[Any]:
        """Post point-to-point ops ``(dist.isend or dist.irecv, tensor, peer)``; returns their works.

        gloo posts one op at a time and raises at once for a peer whose connection is already known lost (it
        died while this process was computing): that names the peer like a failed wait. Every other op is
        still posted first, so that the other peers see this process reach the op (their suspicion then
        carries a later op and the root cause keeps the earliest). NCCL coalesces the batch (one call)."""
        if self._coalesce is None:
            self._coalesce = dist.get_backend(self.group) == "nccl"
        if self._coalesce:
            return self._post(lambda: dist.batch_isend_irecv([dist.P2POp(fn, t, self._pg_rank[q], self.group)
                                                                 for fn, t, q in ops]),
                              what)
        works: list[Any] = []
        failed: tuple[int, Exception] | None = None
        for fn, t, q in ops:
            try:
                works.append(fn(t, self._pg_rank[q], self.group))
            except Exception as exc:
                failed = failed or (q, exc)
        if failed is not None:
            raise self.monitor.fail(failed[0], self._reason(failed[1], what)) from None
        return works

    # ------------------------------------------------------------ the protocol
    def exchange(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Send the needed local rows of ``flat`` (k, w) to each neighbouring rank and receive theirs."""
        ops: list[tuple[Any, torch.Tensor, int]] = []
        recvs = []
        sent = 0
        for q in self.peers:
            idx = self._send_idx[q]
            if idx.device != flat.device:  # moved once: a copy from the host each round would wait for the GPU
                idx = self._send_idx[q] = idx.to(flat.device)
            buf = flat.index_select(0, idx)
            ops.append((dist.isend, buf, q))
            sent += buf.numel() * buf.element_size()
        for q in self.peers:
            r = flat.new_empty((len(self._recv_ids[q]), flat.shape[1]))
            recvs.append(r)
            ops.append((dist.irecv, r, q))
        self.monitor.op += 1
        if ops:
            what = f"gossip op {self.monitor.op}"
            works = self._post_p2p(ops, what)
            # receives first: a missing peer is seen on what we need from it
            n = len(self.peers)
            order = list(range(n, 2 * n)) + list(range(n))
            self._wait([works[i] for i in order], [ops[i][2] for i in order], what)
        self.bytes_sent += sent
        self.messages_sent += len(self.peers)
        return recvs

    def gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round: the local rows of ``W @ Z_global``. ``Z`` holds the local rows and is not modified."""
        if self.schedule is not None:
            return self._scheduled_gossip(Z)
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

    def gossip_into(self, Z: torch.Tensor, out: torch.Tensor, alpha: float = 1.0, beta: float = 0.0,
                    prev: torch.Tensor | None = None) -> torch.Tensor:
        """One round fused with the mixing recurrence (:meth:`proxgt.mixing.communicator.Gossip.gossip_into`)."""
        return fused_round(self.gossip(Z), out, alpha, beta, prev)

    def share(self, payload: torch.Tensor) -> torch.Tensor:
        """One round of compressed gossip (:mod:`proxgt.mixing.compressed`): send the encoded rows (uint8,
        (k, w)) as they are, receive the neighbours'; returns ``[local rows; received rows]`` in the column
        order of :meth:`mix_shared`. Counted as ``w`` bytes per message, which is what goes on the wire."""
        t0 = time.perf_counter()
        payload = payload.contiguous()
        recvs = self.exchange(payload)
        self.counter.record_round(payload.shape[1], payload.element_size())
        self.exchange_s += time.perf_counter() - t0
        self.gossip_s += time.perf_counter() - t0
        return torch.cat([payload, *recvs], dim=0) if recvs else payload

    def mix_shared(self, H: torch.Tensor) -> torch.Tensor:
        """Local rows of ``W @ H_global`` from ``H`` laid out like :meth:`share`'s result (local; not counted)."""
        return self._matrix(H) @ H

    def _collective_device(self) -> torch.device:
        """Where collective buffers live: the current GPU for nccl, the CPU otherwise."""
        if dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def sum_over_nodes(self, T: torch.Tensor) -> torch.Tensor:
        """Sum over every node of the network (all_reduce; logging only, not counted in the iteration)."""
        local = T.sum(dim=0).to(self._collective_device()).contiguous()
        self.monitor.op += 1
        what = f"metrics all_reduce (op {self.monitor.op})"
        work = self._post(lambda: dist.all_reduce(local, op=dist.ReduceOp.SUM, group=self.group, async_op=True), what)
        self._wait([work], [None], what)
        self.logging_bytes += local.numel() * local.element_size()
        return local.to(T.device)

    def barrier(self) -> None:
        """Wait for every process (set-up only, never inside an iteration)."""
        self.monitor.op += 1
        work = self._post(lambda: dist.barrier(group=self.group, async_op=True), "the start-up barrier")
        self._wait([work], [None], "the start-up barrier")

    def gather_rows(self, X: torch.Tensor) -> torch.Tensor | None:
        """All n rows in global order on rank 0 (None elsewhere); for the final output only. After a loss
        (:meth:`drop_ranks`) the lowest surviving rank receives them, and the lost nodes' rows are NaN."""
        kmax = max(len(b) for b in self.blocks)
        pad = X.new_zeros((kmax,) + tuple(X.shape[1:]))
        pad[: X.shape[0]] = X
        pad = pad.to(self._collective_device())
        writer = self._pg_rank[self.rank] == 0
        bufs = [torch.empty_like(pad) for _ in self.members] if writer else None
        self.monitor.op += 1
        work = self._post(lambda: dist.gather(pad, bufs, dst=0, group=self.group, async_op=True), "the final gather")
        self._wait([work], [None], "the final gather")
        if bufs is None:  # not the writer
            return None
        if len(self.members) == self.world:
            rows = [bufs[r][: len(self.blocks[r])] for r in range(self.world)]
            return torch.cat(rows, dim=0).to(X.device)
        out = X.new_full((self.n_nodes,) + tuple(X.shape[1:]), float("nan"))
        for buf, r in zip(bufs, self.members, strict=True):
            out[list(self.blocks[r])] = buf[: len(self.blocks[r])].to(X.device)
        return out

    def all_stats(self, values: Sequence[float]) -> np.ndarray:
        """Small per-rank statistics gathered on every rank: array (world, len(values)); zero rows for lost ranks."""
        v = torch.zeros((self.world, len(values)), dtype=torch.float64)
        v[self.rank] = torch.tensor(list(values), dtype=torch.float64)
        v = v.to(self._collective_device())
        self.monitor.op += 1
        work = self._post(lambda: dist.all_reduce(v, group=self.group, async_op=True), "the final statistics")
        self._wait([work], [None], "the final statistics")
        return v.cpu().numpy()



    def _plan_exchange(self, neighbours: Callable[[int], Iterable[int]], owner: Any) -> list[int]:
        """Set ``peers`` (the ranks this one exchanges rows with), ``_send_idx`` (local positions of the rows each
        peer needs) and ``_recv_ids`` (the node ids each peer sends) for the graph ``neighbours(i)``, nodes
        owned by ``owner[j]``; returns the columns of this block's rows of W: its own nodes, then the received
        ones peer by peer."""
        local = set(self.node_ids)
        recv: dict[int, set[int]] = {}
        send: dict[int, set[int]] = {}
        for i in self.node_ids:
            for j in neighbours(i):
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
        return list(self.node_ids) + [j for q in self.peers for j in self._recv_ids[q]]

    # ------------------------------------------------------------ lost ranks (on_failure = continue)
    def drop_ranks(self, survivors: Sequence[int], graph: Any) -> None:
        """Go on with the ranks ``survivors`` only (original rank numbers; the process group was re-formed with
        them, in this order): their nodes' edges to lost nodes are dropped and W is recomputed on the surviving
        graph with Metropolis weights, ``w_ij = 1 / (1 + max(d_i, d_j))`` over surviving degrees and
        ``w_ii = 1 - sum_j w_ij``, which every node computes from its neighbours' degrees alone (symmetric and
        doubly stochastic on the surviving graph, whatever weight rule the run started with).

        ``graph`` is the run's full graph (networkx). The accounting keeps what every node sent so far and counts
        the surviving degrees from now on; ``active_nodes``/``active_mask`` say which nodes are left (metrics are
        averages over them)."""
        self.members = tuple(sorted(int(r) for r in survivors))
        self._pg_rank = {r: k for k, r in enumerate(self.members)}
        alive = sorted(i for r in self.members for i in self.blocks[r])
        alive_set = set(alive)
        nbrs = {i: [int(j) for j in graph.neighbors(i) if j != i and j in alive_set] for i in alive}
        owner = {i: r for r in self.members for i in self.blocks[r]}
        cols = self._plan_exchange(nbrs.__getitem__, owner)
        col = {g: c for c, g in enumerate(cols)}
        W = torch.zeros((len(self.node_ids), len(cols)), dtype=torch.float64)
        for a, i in enumerate(self.node_ids):
            for j in nbrs[i]:
                W[a, col[j]] = float(metropolis_weight(len(nbrs[i]), len(nbrs[j])))
            W[a, a] = 1.0 - float(W[a].sum())
        self._W_local = W
        self._cache.clear()
        # bytes = degrees * units - unsent_bytes: keep each node's past count, count surviving degrees from now on
        self.counter.change_degrees(np.array([len(nbrs.get(i, ())) for i in range(self.n_nodes)], dtype=np.int64))
        self.active_mask = np.zeros(self.n_nodes, dtype=bool)
        self.active_mask[alive] = True
        self.active_nodes = len(alive)


    # ------------------------------------------------------------ unreliable / time-varying network (issue 9)
    def attach_schedule(self, schedule: Any) -> None:
        """Follow ``schedule`` (a :class:`proxgt.mixing.dynamic.NetworkSchedule`, the same pattern as the
        simulation's): each round exchanges over the links up only, with that round's Metropolis weights."""
        self.schedule = schedule
        self._round_t, self._round_k = 0, 0
        self._owner = np.empty(self.n_nodes, dtype=np.int64)
        for r, blk in enumerate(self.blocks):
            self._owner[list(blk)] = r
        self._is_local = np.zeros(self.n_nodes, dtype=bool)
        self._is_local[list(self.node_ids)] = True

    def begin_iteration(self, t: int) -> None:
        """Iteration ``t`` starts (0: the init): its rounds are numbered from 0 again."""
        self._round_t, self._round_k = int(t), 0

    def _scheduled_gossip(self, Z: torch.Tensor) -> torch.Tensor:
        """One round of the schedule: rows go only over this round's up links (a rank with no up link to us this
        round gets no message), then ``diag_i z_i + sum_j w_ij z_j`` for the local rows."""
        t0 = time.perf_counter()
        rw = self.schedule.round_weights(self._round_t, self._round_k, self.counter.rounds)
        self._round_k += 1
        k = Z.shape[0]
        flat = (Z.reshape(k, -1) if Z.ndim > 1 else Z.reshape(k, 1)).contiguous()
        e, w = rw.edges, rw.w
        touch = self._is_local[e[:, 0]] | self._is_local[e[:, 1]] if e.size else np.zeros(0, dtype=bool)
        e, w = e[touch], w[touch]
        # (local end, remote end) of each up link that leaves this rank
        cross = self._is_local[e[:, 0]] != self._is_local[e[:, 1]]
        mine = np.where(self._is_local[e[cross, 0]], e[cross, 0], e[cross, 1])
        theirs = np.where(self._is_local[e[cross, 0]], e[cross, 1], e[cross, 0])
        pos = {g: a for a, g in enumerate(self.node_ids)}
        peers = sorted({int(q) for q in self._owner[theirs]})
        ops: list[tuple[Any, torch.Tensor, int]] = []
        recv_ids, recvs, sent = {}, [], 0
        for q in peers:
            to_q = self._owner[theirs] == q
            send_ids = sorted({int(i) for i in mine[to_q]})
            recv_ids[q] = sorted({int(j) for j in theirs[to_q]})
            buf = flat.index_select(0, torch.tensor([pos[i] for i in send_ids], dtype=torch.int64,
                                                    device=flat.device))
            ops.append((dist.isend, buf, q))
            sent += buf.numel() * buf.element_size()
        for q in peers:
            r = flat.new_empty((len(recv_ids[q]), flat.shape[1]))
            recvs.append(r)
            ops.append((dist.irecv, r, q))
        self.monitor.op += 1
        if ops:
            what = f"gossip op {self.monitor.op}"
            works = self._post_p2p(ops, what)
            n = len(peers)
            order = list(range(n, 2 * n)) + list(range(n))
            self._wait([works[i] for i in order], [ops[i][2] for i in order], what)
        self.bytes_sent += sent
        self.messages_sent += len(peers)
        t1 = time.perf_counter()
        cols = list(self.node_ids) + [j for q in peers for j in recv_ids[q]]
        col = np.full(self.n_nodes, -1, dtype=np.int64)
        col[cols] = np.arange(len(cols))
        buf = torch.cat([flat, *recvs], dim=0) if recvs else flat
        diag = torch.as_tensor(rw.diag[list(self.node_ids)], dtype=flat.dtype, device=flat.device)
        out = flat * diag.unsqueeze(1)
        if e.size:
            wt = torch.as_tensor(w, dtype=flat.dtype, device=flat.device).unsqueeze(1)
            for a, b in ((0, 1), (1, 0)):  # z_a receives w * z_b, for each local end a
                keep = self._is_local[e[:, a]]
                if keep.any():
                    rows = torch.as_tensor(col[e[keep, a]], device=flat.device)
                    src = torch.as_tensor(col[e[keep, b]], device=flat.device)
                    out.index_add_(0, rows, buf.index_select(0, src) * wt[torch.as_tensor(keep)])
        self.counter.record_round(Z[0].numel() if Z.ndim > 1 else 1, Z.element_size(), sent=rw.degrees)
        t2 = time.perf_counter()
        self.exchange_s += t1 - t0
        self.gossip_s += t2 - t0
        return out.reshape(Z.shape)
