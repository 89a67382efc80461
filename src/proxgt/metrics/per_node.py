"""Per-site results: each node's accuracy and loss on its own held-out data (``local_test_fraction``).

For every node i, at every logged row, on node i's local test samples (:mod:`proxgt.data._local`):

    avg_accuracy, avg_loss   of the network-average model xbar (the model the network agrees on)
    own_accuracy, own_loss   of node i's own iterate x_i (what the site holds at that moment)

(accuracy for classification problems only; the loss is the data loss, without a smooth penalty, as
``test_loss``). These rows go to ``per_node.csv``; the metrics row gets summary columns over the nodes:
``local_<m>_mean``, ``local_<m>_worst`` (the lowest accuracy, the highest loss) and ``local_<m>_spread``
(largest minus smallest) for the average model, the same ``own_<m>_*`` for the nodes' own models, and
``local_worst_node``, the node where the average model does worst (lowest accuracy; highest loss for
regression). A node no longer in the run (a lost site) has no row.

The values reach every process through one ``sum_over_nodes`` of an (n x 5) table, outside the iteration's
communication counts, like every other metric.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from proxgt.data import NodeData
from proxgt.problems.oracle import GradientOracle

__all__ = ["LocalTestMetrics", "node_columns", "summary_columns"]

_WHO = ("avg", "own")


def _measures(classification: bool) -> tuple[str, ...]:
    return ("accuracy", "loss") if classification else ("loss",)


def node_columns(classification: bool) -> list[str]:
    """The columns of per_node.csv."""
    return ["iter", "node", *(f"{who}_{m}" for who in _WHO for m in _measures(classification))]


def summary_columns(classification: bool) -> list[str]:
    """The summary columns a run with local test data adds to its metrics rows."""
    cols = [f"{pre}_{m}_{stat}" for pre in ("local", "own") for m in _measures(classification)
            for stat in ("mean", "worst", "spread")]
    return [*cols, "local_worst_node"]


class LocalTestMetrics:
    """Per-node accuracy and loss on the nodes' local test data (module docstring).

    Args:
        problem: the run's problem.
        local_test: the local test shards of this process's nodes (rows in ``comm.node_ids`` order).
        comm: the communicator (``sum_over_nodes``, ``node_ids``, ``n_nodes``).
        dtype, device, chunk_size: as the run's oracle.
    """

    def __init__(self, problem: Any, local_test: NodeData, comm: Any, *, dtype: torch.dtype,
                 device: torch.device, chunk_size: int | None):
        self.oracle = GradientOracle(problem, local_test, 0, chunk_size=chunk_size, dtype=dtype, device=device,
                                     full_batch=True)
        self.comm = comm
        self.n = int(comm.n_nodes)
        self.node_ids = torch.tensor(list(comm.node_ids), dtype=torch.int64)
        self.classification = problem.task == "classification"
        self.columns = summary_columns(self.classification)
        self.node_columns = node_columns(self.classification)
        self.rows: list[dict[str, float]] = []  # the per-node rows of the last call

    def _values(self, X: torch.Tensor) -> list[torch.Tensor]:
        with torch.enable_grad():
            loss, _ = self.oracle.full_loss_grad(X, penalty=False)
        out = [loss.detach().double()]
        if self.classification:
            correct, count = self.oracle.predictions(X)
            out.insert(0, correct / count)
        return out

    @torch.no_grad()
    def __call__(self, X: torch.Tensor, xbar: torch.Tensor, t: int) -> dict[str, float]:
        """The summary columns for iterates ``X`` (local rows) with network average ``xbar``; the per-node rows
        are left in :attr:`rows`."""
        Xb = xbar.unsqueeze(0).expand(X.shape[0], -1).contiguous()
        local = torch.stack([torch.ones(X.shape[0], dtype=torch.float64, device=X.device),
                             *(v.to(X.device) for v in self._values(Xb)),
                             *(v.to(X.device) for v in self._values(X))], dim=1)
        k = local.shape[1]
        table = torch.zeros(self.n, k, dtype=torch.float64, device=X.device)
        table[self.node_ids.to(X.device)] = local
        table = self.comm.sum_over_nodes(table.reshape(1, -1)).reshape(self.n, k).cpu()
        present = [i for i in range(self.n) if table[i, 0] > 0]
        names = self.node_columns[2:]
        self.rows = [{"iter": t, "node": i, **{c: float(table[i, 1 + j]) for j, c in enumerate(names)}}
                     for i in present]
        return _summary(self.rows, names, self.classification)


def _summary(rows: list[dict[str, float]], names: list[str], classification: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        who, m = name.split("_", 1)
        vals = [r[name] for r in rows]
        pre = "local" if who == "avg" else "own"
        worst = (min if m == "accuracy" else max)(vals) if vals else math.nan
        out[f"{pre}_{m}_mean"] = sum(vals) / len(vals) if vals else math.nan
        out[f"{pre}_{m}_worst"] = worst
        out[f"{pre}_{m}_spread"] = max(vals) - min(vals) if vals else math.nan
    key = "avg_accuracy" if classification else "avg_loss"
    sign = 1.0 if classification else -1.0  # the lowest accuracy, the highest loss; ties: the lowest node id
    out["local_worst_node"] = min(rows, key=lambda r: (sign * r[key], r["node"]))["node"] if rows else math.nan
    return {c: out[c] for c in summary_columns(classification)}
