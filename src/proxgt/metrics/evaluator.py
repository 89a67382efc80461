"""One row of stationarity and accuracy metrics at the network average (spec section 2): MetricsEvaluator.

Evaluated every ``log_every`` iterations with the full local data, outside the algorithm's cost counters:
these full passes and the reductions over nodes are logging overhead, not part of the method.

Columns:
    grad_mapping_sq  ||s(xbar)||^2 with s(x) = (x - prox_{a h}(x - a grad f(x))) / a, a the run's step
    consensus        (1/n) sum_i ||x_i - xbar||^2
    total_opt        ||xbar - prox_h(xbar - grad f(xbar))||^2 + sum_i ||x_i - xbar||^2 (literature's measure)
    objective        f(xbar) + h(xbar)
    active_nodes     nodes still in the run: n, unless a distributed run with on_failure = continue lost some;
                     then xbar, every sum and mean above (consensus, ifo_per_node, bytes_per_node, f) are over the
                     surviving nodes only (docs/fault-tolerance.md)
    train_accuracy, test_accuracy, test_loss   where the problem is a classification (test: if a test set)
    sim_time_s       runs with a virtual clock only (node_speed, link_latency or link_bandwidth set): the virtual
                     seconds at which the logged state exists (proxgt.mixing.clock)
    epsilon          differentially private runs only: the largest per-node epsilon spent so far at dp_delta
                     (every node of the run; Opacus's RDP accountant, see proxgt.privacy)
    density          share of non-zero entries of the proximal point z = prox_{a h}(xbar - a grad f(xbar)) (over
                     the regularized coordinates, if a mask is given). z is the point the gradient mapping
                     certifies (||xbar - z|| = a ||s(xbar)||) and is exactly sparse under l1, while xbar itself
                     mixes the nodes' sparse iterates and is rarely exactly sparse.

Subsampled training metrics: if the problem's ``metrics_samples`` attribute is an int S (the neural-network
problems set it from the run's ``metrics_samples`` setting; it is None elsewhere), grad f, and with it
grad_mapping_sq, total_opt and the f part of objective, and train_accuracy are evaluated on a fixed seeded subset
of at most S samples of each node's shard (the same subset at every logged row and in every executor; see
``GradientOracle.subsample``), not on all local data: an estimate that keeps logging cheap for networks (a full
LeNet-5 pass over the 60000 Fashion-MNIST images costs about as much CPU time as 1.5 training passes).
test_accuracy and test_loss always use the whole test set.
"""

from __future__ import annotations

import torch

from proxgt.data._dataset import row_block
from proxgt.metrics.columns import BASE_COLUMNS, CLOCK_COLUMNS, PRIVACY_COLUMNS
from proxgt.metrics.per_node import LocalTestMetrics

__all__ = ["MetricsEvaluator", "gradient_mapping"]


def gradient_mapping(
    regularizer, x: torch.Tensor, grad: torch.Tensor, step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(x), z) with z = prox_{a h}(x - a g) and s(x) = (x - z) / a, for a single point x (d,)."""
    z = regularizer.prox((x - step * grad).unsqueeze(0), step)[0]
    return (x - z) / step, z


class MetricsEvaluator:
    """Computes one metrics row for node-stacked iterates, through the communicator's reductions.

    Args:
        problem: the smooth loss.
        regularizer: h.
        oracle: the local nodes' oracle (its full-data passes are uncounted here).
        comm: the communicator (``sum_over_nodes`` gives network sums).
        step: the run's step a, used in the gradient mapping.
        test: optional held-out ``Dataset`` evaluated at xbar.
        density_mask: optional bool (d,) of coordinates that count in ``density``.
        test_chunk: test samples per forward pass.
        clock: the run's virtual clock (:class:`proxgt.mixing.clock.VirtualClock`), or None.
        raw_local: what is computed on the nodes' raw training data (objective's f, grad f and with it
            grad_mapping_sq, total_opt and density, train_accuracy) is averaged over this process's own nodes,
            never summed over processes: differential privacy across processes (``dp_secure_noise``), where no
            such value may leave its process. One process holds every node, so there it changes nothing.
    """

    def __init__(self, problem, regularizer, oracle, comm, step: float, test=None, density_mask=None,
                 test_chunk: int = 8192, clock=None, local_test=None, raw_local: bool = False):
        self.problem, self.reg, self.oracle, self.comm = problem, regularizer, oracle, comm
        self.raw_local = bool(raw_local)
        sub = problem.metrics_samples
        # the oracle the training metrics evaluate: all local data, or a fixed subsample (module docstring)
        self.train_oracle = oracle.subsample(sub, seed=0) if sub and sub < oracle.m_max else oracle
        self.step = float(step)
        self.n = comm.n_nodes
        self.classification = problem.task == "classification"
        self.test = test
        self.test_chunk = int(test_chunk)
        self.density_mask = density_mask
        self.clock = clock
        self._test_data: tuple[torch.Tensor, torch.Tensor] | None = None  # features (dense or CSR), labels
        if test is not None and len(test) > 0:
            self._test_data = (test.X.to(device=oracle.device, dtype=oracle.dtype), test.y.to(device=oracle.device))
        # per-site results (local_test_fraction): every node's own held-out data (proxgt.metrics.per_node)
        self.local = None if local_test is None else LocalTestMetrics(
            problem, local_test, comm, dtype=oracle.dtype, device=oracle.device, chunk_size=problem.chunk_size)

    def use_regularizer(self, regularizer) -> None:
        """Evaluate the rows from now on with this h (the sparse path's switch to its support)."""
        self.reg = regularizer

    @property
    def columns(self) -> list[str]:
        cols = list(BASE_COLUMNS)
        if self.classification:
            cols.append("train_accuracy")
        if self._test_data is not None:
            if self.classification:
                cols.append("test_accuracy")
            cols.append("test_loss")
        cols.append("density")
        if self.clock is not None:
            cols.extend(CLOCK_COLUMNS)
        if self.oracle.privacy is not None:
            cols.extend(PRIVACY_COLUMNS)
        if self.local is not None:
            cols.extend(self.local.columns)
        return cols

    @property
    def per_node_rows(self) -> list[dict[str, float]]:
        """The per-node rows of the last metrics row (per_node.csv); empty without local test data."""
        return self.local.rows if self.local is not None else []

    def _test_metrics(self, xbar: torch.Tensor, test_X: torch.Tensor, test_y: torch.Tensor) -> tuple[float, float]:
        X1 = xbar.unsqueeze(0)
        N = test_X.shape[0]
        correct, loss = 0.0, 0.0
        for s in range(0, N, self.test_chunk):
            feats = row_block(test_X, s, s + self.test_chunk)  # (1, b, ...), or CSR rows for sparse data
            labels = test_y[s : s + self.test_chunk].unsqueeze(0)
            w = torch.full(labels.shape, 1.0 / N, dtype=X1.dtype, device=X1.device)
            loss += float(self.problem.loss_grad(X1, feats, labels, w, with_penalty=False)[0][0])
            if self.classification:
                correct += float((self.problem.predict(X1, feats) == labels).sum())
        return correct / N, loss

    @torch.no_grad()
    def __call__(self, X: torch.Tensor, t: int, wall_s: float) -> dict[str, float]:
        comm, n = self.comm, int(self.comm.active_nodes)  # survivors (a lost site is gone)
        xbar = comm.sum_over_nodes(X) / n
        dev_sq = comm.sum_over_nodes(((X - xbar) ** 2).sum(dim=1, keepdim=True))[0]
        Xb = xbar.unsqueeze(0).expand(X.shape[0], -1).contiguous()
        with torch.enable_grad():
            loss_rows, grad_rows = self.train_oracle.full_loss_grad(Xb)
        # raw-data values: over this process's nodes only under DP across processes (raw_local)
        raw_sum = (lambda T: T.sum(dim=0)) if self.raw_local else comm.sum_over_nodes
        n_raw = int(X.shape[0]) if self.raw_local else n
        f_bar = float(raw_sum(loss_rows.unsqueeze(1))[0]) / n_raw
        g_bar = raw_sum(grad_rows) / n_raw
        s, z = gradient_mapping(self.reg, xbar, g_bar, self.step)
        s1, _ = gradient_mapping(self.reg, xbar, g_bar, 1.0)
        ifo = torch.as_tensor(self.oracle.ifo, dtype=torch.float64).unsqueeze(1)
        counter = comm.counter
        row: dict[str, float] = {
            "iter": t,
            "ifo_per_node": float(comm.sum_over_nodes(ifo)[0]) / n,
            "comm_rounds": counter.rounds,
            "bytes_per_node": counter.bytes_per_node if comm.active_mask is None
            else float(counter.bytes[comm.active_mask].mean()),
            "wall_s": wall_s,
            "grad_mapping_sq": float(s.double().square().sum()),
            "consensus": float(dev_sq) / n,
            "total_opt": float(s1.double().square().sum()) + float(dev_sq),
            "objective": f_bar + float(self.reg.value(xbar.unsqueeze(0))[0]),
            "active_nodes": n,
        }
        if self.classification:
            correct, count = self.train_oracle.predictions(Xb)
            tot = raw_sum(torch.stack([correct, count], dim=1))
            row["train_accuracy"] = float(tot[0] / tot[1])
        if self._test_data is not None:
            acc, tloss = self._test_metrics(xbar, *self._test_data)
            if self.classification:
                row["test_accuracy"] = acc
            row["test_loss"] = tloss
        vals = z if self.density_mask is None else z[self.density_mask.to(z.device)]
        row["density"] = float((vals != 0).sum()) / max(1, vals.numel())
        if self.clock is not None:
            row["sim_time_s"] = self.clock.now()
        if self.oracle.privacy is not None:
            row["epsilon"] = self.oracle.epsilon()
        if self.local is not None:
            row.update(self.local(X, xbar, t))
        return row
