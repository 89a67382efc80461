"""Build a run from a :class:`~proxgt.config.RunConfig` and drive it on an executor.

The build step is global and deterministic (data, split, topology, problem, regularizer, step and rounds
resolved from the config and seed), so every process of a distributed run builds the same thing and keeps its
own rows. The training loop (:func:`train`) is executor-agnostic: it gets a communicator and the local rows.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from proxgt import __version__
from proxgt._validation import DivergenceError, ProxGTValueError
from proxgt.algorithms import ProxGT
from proxgt.config import RunConfig
from proxgt.data import Dataset, NodeData, load_dataset, split_nodes, train_test_split
from proxgt.estimators import make_estimator
from proxgt.metrics import MetricsEvaluator
from proxgt.mixing import Communicator, Mixer, rounds_for_target
from proxgt.problems import LeastSquares, LogisticRegression, SoftmaxRegression, lambda_max_gram
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import make_regularizer
from proxgt.topology import Topology, make_topology

__all__ = [
    "AlgorithmContext",
    "Build",
    "History",
    "build",
    "make_oracle",
    "train",
    "PROBLEM_BUILDERS",
    "ALGORITHM_BUILDERS",
    "register_algorithm",
    "register_problem",
]

# Used when no smoothness constant can be computed (e.g. neural networks).
DEFAULT_STEP_NO_L = 0.1


# ---------------------------------------------------------------------------------------------- registries
def _linear_gram(train: Dataset) -> float:
    return lambda_max_gram(train.X.reshape(len(train), -1))


def _build_logistic(cfg: RunConfig, train: Dataset):
    if train.n_classes != 2:
        raise ProxGTValueError(
            f"problem 'logistic' needs 2 classes; the data has {train.n_classes or 'real-valued'} labels "
            "(use --problem softmax or least_squares)"
        )
    return LogisticRegression(train.n_features, rho=cfg.rho, gram_lambda_max=_linear_gram(train))


def _build_softmax(cfg: RunConfig, train: Dataset):
    if train.n_classes < 2:
        raise ProxGTValueError("problem 'softmax' needs class labels; the data is real-valued")
    return SoftmaxRegression(train.n_features, train.n_classes, gram_lambda_max=_linear_gram(train))


def _build_least_squares(cfg: RunConfig, train: Dataset):
    return LeastSquares(train.n_features, gram_lambda_max=_linear_gram(train))


PROBLEM_BUILDERS: dict[str, Callable[[RunConfig, Dataset], Any]] = {
    "logistic": _build_logistic,
    "softmax": _build_softmax,
    "least_squares": _build_least_squares,
}


@dataclass(frozen=True)
class AlgorithmContext:
    """What an algorithm builder may use: resolved numbers, never an executor."""

    cfg: RunConfig
    n_nodes: int
    local_size: int
    regularizer: Any
    step: float


def _proxgt_builder(kind: str) -> Callable[[AlgorithmContext], Any]:
    def build_it(ctx: AlgorithmContext):
        est = make_estimator(
            kind,
            n_nodes=ctx.n_nodes,
            local_size=ctx.local_size,
            batch=ctx.cfg.batch,
            big_batch=ctx.cfg.big_batch,
            period=ctx.cfg.period,
        )
        return ProxGT(est, ctx.regularizer, step=ctx.step, order=ctx.cfg.order, name=f"proxgt-{kind}")

    return build_it


ALGORITHM_BUILDERS: dict[str, Callable[[AlgorithmContext], Any]] = {
    "proxgt-sa": _proxgt_builder("sa"),
    "proxgt-sr-o": _proxgt_builder("sr-o"),
    "proxgt-sr-e": _proxgt_builder("sr-e"),
}


def register_algorithm(name: str, builder: Callable[[AlgorithmContext], Any]) -> None:
    """Make ``name`` available to ``run``/the CLI; ``builder(ctx)`` returns an algorithm object."""
    ALGORITHM_BUILDERS[name] = builder


def register_problem(name: str, builder: Callable[[RunConfig, Dataset], Any]) -> None:
    PROBLEM_BUILDERS[name] = builder


# ---------------------------------------------------------------------------------------------- build
@dataclass
class Build:
    """A fully resolved run, before any executor touches it."""

    cfg: RunConfig
    train: Dataset
    test: Dataset | None
    node_data: NodeData
    topology: Topology
    problem: Any
    regularizer: Any
    algorithm: Any
    step: float
    rounds: int
    smoothness: float | None
    x0: torch.Tensor
    density_mask: torch.Tensor | None = None
    chunk_size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.cfg.dtype == "float64" else torch.float32

    def resolved_config(self) -> dict[str, Any]:
        """The config with every "auto" replaced by the value used, plus a ``meta`` table."""
        d = self.cfg.to_dict()
        d["step"] = self.step
        d["rounds"] = self.rounds
        est = getattr(self.algorithm, "estimator", None)
        if est is not None:
            for key in ("batch", "big_batch", "period"):
                if hasattr(est, key):
                    d[key] = getattr(est, key)
        d = {k: v for k, v in d.items() if v is not None}
        meta = {
            "version": __version__,
            "lambda": self.topology.lam,
            "spectral_gap": self.topology.spectral_gap,
            "n_features": self.train.n_features,
            "dim": int(self.problem.dim),
            "train_samples": len(self.train),
            "test_samples": 0 if self.test is None else len(self.test),
            "local_sizes": [int(c) for c in self.node_data.counts.tolist()],
            **({"smoothness_L": self.smoothness} if self.smoothness is not None else {}),
            **self.meta,
        }
        d["meta"] = meta
        return d


def build(cfg: RunConfig) -> Build:
    """Resolve everything that does not depend on the executor. Raises ProxGTValueError on bad input."""
    cfg = cfg.validate()
    train, test = load_dataset(cfg.data, seed=cfg.seed, data_dir=cfg.data_dir)
    if test is None and cfg.test_fraction > 0 and len(train) >= 10:
        train, test = train_test_split(train, cfg.test_fraction, seed=cfg.seed)
    if cfg.nodes > len(train):
        raise ProxGTValueError(
            f"cannot split {len(train)} training samples over {cfg.nodes} nodes: each node needs at least one sample"
        )
    node_data = split_nodes(train, cfg.nodes, cfg.split, alpha=cfg.alpha, seed=cfg.seed)
    topology = make_topology(
        cfg.topology,
        cfg.nodes,
        weights=cfg.weights,
        seed=cfg.seed,
        p=cfg.topology_p,
        radius=cfg.topology_radius,
        edge_file=cfg.edge_file,
    )
    problem = PROBLEM_BUILDERS[cfg.problem](cfg, train)
    reg_params = dict(cfg.extra.get("reg_params", {}))
    reg_mask = getattr(problem, "reg_mask", None)  # e.g. leave neural-net biases unpenalized
    if reg_mask is not None and cfg.reg in ("l1", "l2sq", "l2", "elastic_net", "elasticnet"):
        reg_params.setdefault("mask", reg_mask)
    regularizer = make_regularizer(cfg.reg, cfg.reg_strength, **reg_params)
    L = problem.smoothness()
    if cfg.step == "auto":
        step = 1.0 / L if L else float(getattr(problem, "default_step", DEFAULT_STEP_NO_L))
    else:
        step = float(cfg.step)
        if L and step > 2.0 / L:
            warnings.warn(
                f"step {step:g} exceeds 2/L = {2.0 / L:.4g} (L = {L:.4g} bounds the smoothness of f); "
                "the run may diverge",
                stacklevel=2,
            )
    if cfg.rounds == "auto":
        rounds = rounds_for_target(topology.eigenvalues, cfg.mixing, cfg.mix_target)
    else:
        rounds = int(cfg.rounds)
    local_size = int(round(node_data.total / node_data.n_nodes))
    algorithm = ALGORITHM_BUILDERS[cfg.algorithm](
        AlgorithmContext(cfg=cfg, n_nodes=cfg.nodes, local_size=local_size, regularizer=regularizer, step=step)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    x0 = problem.init_params(gen)
    return Build(
        cfg=cfg,
        train=train,
        test=test,
        node_data=node_data,
        topology=topology,
        problem=problem,
        regularizer=regularizer,
        algorithm=algorithm,
        step=step,
        rounds=rounds,
        smoothness=L,
        x0=x0,
        density_mask=getattr(problem, "density_mask", None),
        chunk_size=getattr(problem, "chunk_size", None),
    )


# ---------------------------------------------------------------------------------------------- history
@dataclass
class History:
    """What a run returns: the logged rows, the final iterates and a summary."""

    columns: list[str]
    rows: list[dict[str, float]]
    x: torch.Tensor
    config: dict[str, Any]
    summary: dict[str, Any]

    @property
    def x_bar(self) -> torch.Tensor:
        return self.x.mean(dim=0)

    def column(self, name: str) -> list[float]:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        return [r[name] for r in self.rows]

    def first_reaching(self, metric: str, target: float) -> dict[str, float] | None:
        """The first logged row with ``metric <= target``, or None."""
        for r in self.rows:
            v = r.get(metric)
            if v is not None and v <= target:
                return r
        return None


# ---------------------------------------------------------------------------------------------- training
class compute_settings:
    """Context manager for the CPU settings of a run, restored on exit.

    * threads: intra-op threads. ``"auto"`` uses one thread. The per-node tensors of these workloads are
      small (a 16 x 16 by 16 x 123 product takes ~7 us on one thread and ~0.5 ms on two when the other core is
      busy, because the worker threads spin-wait), and even for the Fashion-MNIST MLP one thread measured as
      fast or faster (8-10 ms against 10-110 ms per iteration on this shared 2-core machine). Give an integer to
      use more.
    * denormals are flushed to zero: mixing sparse prox outputs creates values near 1e-40 whose arithmetic is
      up to 4x slower and which carry no information.
    """

    def __init__(self, threads: int | str):
        if threads == "auto":
            threads = 1
        self.threads = int(threads)

    def __enter__(self) -> compute_settings:
        self._old_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self._old_flush = torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._old_threads)
        torch.set_flush_denormal(False)


def _first_bad_row(X: torch.Tensor) -> int:
    bad = (~torch.isfinite(X)).any(dim=1).nonzero()
    return int(bad[0]) if bad.numel() else 0


def make_oracle(b: Build, node_ids: list[int] | tuple[int, ...]) -> GradientOracle:
    """The gradient oracle of the nodes ``node_ids`` (what :func:`train` builds; executors use it to restore a
    checkpointed oracle before resuming)."""
    return GradientOracle(
        b.problem,
        b.node_data.shard(list(node_ids)),
        b.cfg.seed,
        chunk_size=b.chunk_size,
        dtype=b.dtype,
        device=torch.device(b.cfg.device),
    )


def train(
    b: Build,
    comm: Communicator,
    *,
    on_row: Callable[[dict[str, float]], None] | None = None,
    progress: bool = False,
    state: Any = None,
    oracle: GradientOracle | None = None,
    start_wall: float = 0.0,
    on_state: Callable[[Any, GradientOracle, float], None] | None = None,
) -> tuple[Any, list[dict[str, float]], MetricsEvaluator]:
    """Run the algorithm for ``cfg.iters`` iterations on the rows of ``comm.node_ids``.

    ``on_row`` receives each metrics row (to write it as it comes); ``state``/``oracle`` resume a run;
    ``on_state(state, oracle, wall_s)`` is called after every iteration (checkpointing hooks).
    Raises DivergenceError when the iterates stop being finite (rows logged so far were already passed on).
    """
    cfg = b.cfg
    node_ids = list(comm.node_ids)
    device = torch.device(cfg.device)
    if oracle is None:
        oracle = make_oracle(b, node_ids)
    mixer = Mixer(comm, cfg.mixing, b.rounds, lam=b.topology.lam)
    metrics = MetricsEvaluator(
        b.problem, b.regularizer, oracle, comm, b.step, test=b.test, density_mask=b.density_mask
    )
    alg = b.algorithm
    rows: list[dict[str, float]] = []
    wall = start_wall
    if state is None:
        x0 = b.x0.to(device=device, dtype=b.dtype).unsqueeze(0).repeat(len(node_ids), 1)
        t0 = time.perf_counter()
        state = alg.init(x0, oracle, mixer)
        wall += time.perf_counter() - t0
        row = metrics(state.x, 0, wall)
        rows.append(row)
        if on_row:
            on_row(row)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.iters, initial=state.t, desc=cfg.algorithm, unit="it", leave=False)
    try:
        while state.t < cfg.iters:
            t0 = time.perf_counter()
            state = alg.update(state, oracle, mixer)
            wall += time.perf_counter() - t0
            if not bool(torch.isfinite(state.x).all()):
                node = node_ids[_first_bad_row(state.x)]
                raise DivergenceError(
                    f"iterates became NaN/Inf at iteration {state.t} on node {node}; "
                    f"try a smaller step (now {b.step:.4g}) or a larger batch"
                )
            if state.t % cfg.log_every == 0 or state.t == cfg.iters:
                row = metrics(state.x, state.t, wall)
                rows.append(row)
                if on_row:
                    on_row(row)
                if bar is not None:
                    bar.set_postfix(gm=f"{row['grad_mapping_sq']:.2e}", refresh=False)
            if on_state:
                on_state(state, oracle, wall)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return state, rows, metrics


def summarize(rows: list[dict[str, float]], b: Build, status: str = "ok", message: str = "") -> dict[str, Any]:
    last = rows[-1] if rows else {}
    best = min((r["grad_mapping_sq"] for r in rows), default=math.nan)
    return {
        "status": status,
        "message": message,
        "algorithm": b.cfg.algorithm,
        "iters": int(last.get("iter", 0)),
        "step": b.step,
        "rounds": b.rounds,
        "lambda": b.topology.lam,
        "final": last,
        "best_grad_mapping_sq": best,
        "version": __version__,
    }


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


# Modules that register more problems and algorithms on import (neural networks, baselines). Imported last so
# that they can use the registries above.
import proxgt.algorithms.baselines  # noqa: E402, F401
import proxgt.problems.nn  # noqa: E402, F401
