"""Settings -> the objects of a run: data, split, graph, problem, regularizer, algorithm, step and rounds.

Building is global and deterministic (everything follows from the settings and the seed), so every process of
a distributed run builds the same run and keeps its own rows. Values the user left to the library (``auto``
step and rounds, estimator sizes, iterations from epochs, ``weights = user`` from a weights file) are resolved
here and recorded in :attr:`RunSpec.resolved`; the settings the user gave are never changed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxgt import __version__
from proxgt.algorithms.base import Algorithm, Capabilities
from proxgt.data import Dataset, NodeData
from proxgt.data._dataset import densify, is_sparse
from proxgt.data._local import hold_out_local, local_test_counts
from proxgt.data._run_split import load_run_split
from proxgt.data._shard import ShardRequest, load_node_shard
from proxgt.errors import ProxGTValueError
from proxgt.mixing.asynchrony import check_async
from proxgt.mixing.auto import resolve_gossip
from proxgt.mixing.clock import ClockProfile, clock_profile
from proxgt.mixing.compressed import check_compressed_run
from proxgt.mixing.dynamic import (
    NetworkSchedule,
    check_network_settings,
    network_schedule,
    warn_time_varying_mixing,
)
from proxgt.mixing.running_sums import check_message_loss, messages_may_miss
from proxgt.privacy.mechanism import PrivacyMechanism
from proxgt.problems.base import Problem
from proxgt.problems.linear import LinearProblem
from proxgt.problems.oracle import GradientOracle
from proxgt.prox import Regularizer, make_regularizer
from proxgt.registry import ALGORITHMS, PROBLEMS, REGULARIZERS, SPARSE_FEATURES, TIME_VARYING, TOPOLOGIES
from proxgt.settings import RunConfig
from proxgt.topology import Topology, make_topology
from proxgt.topology.time_varying import time_varying_topology
from proxgt.training.privacy import AUTO_STEP_ACROSS_PROCESSES, dp_requested, privacy_from_settings, secure_seed
from proxgt.training.sparsify import RegSchedule, averaging_rounds, check_sparse_path, flood_rounds

__all__ = ["AlgorithmContext", "RunSpec", "build_run"]

# Run setting -> keyword parameter of the regularizers that take it (see proxgt.prox).
REG_PARAM_SETTINGS: dict[str, str] = {
    "l1_ratio": "l1_ratio",
    "reg_radius": "radius",
    "box_lower": "lower",
    "box_upper": "upper",
    "group_size": "group_size",
    "groups": "groups",
    "support_file": "support",
}


@dataclass(frozen=True)
class AlgorithmContext:
    """What an algorithm builder may use: resolved numbers, never an executor.

    ``cfg.batch`` is an int or None here (with ``batch = full`` the oracle returns exact local gradients
    whatever batch an estimator asks for, so builders see None and keep their defaults).
    """

    cfg: RunConfig
    n_nodes: int
    local_size: int
    regularizer: Regularizer
    step: float
    recursion_ratio: float | None = None  # the problem's stable q / b of a SARAH recursion (None: no limit known)


@dataclass
class RunSpec:
    """A fully resolved run, before any executor touches it."""

    settings: RunConfig  # validated, as the user gave them
    resolved: RunConfig  # every derived value filled in
    train: Dataset | None
    test: Dataset | None
    node_data: NodeData
    topology: Topology
    problem: Problem
    regularizer: Regularizer
    algorithm: Algorithm[Any]
    x0: torch.Tensor  # (d,) shared by every node, or (n, d)
    smoothness: float | None
    meta: dict[str, Any] = field(default_factory=dict)
    privacy: PrivacyMechanism | None = None  # differential privacy per node (proxgt.privacy); None: off
    #: the round-by-round network (link failures, node dropout, a time-varying graph), built once here and
    #: followed by every executor's communicator; None: a static, reliable graph
    network: NetworkSchedule | None = None
    #: compute and link times of the simulator's virtual clock (proxgt.mixing.clock); None: no clock settings
    clock: ClockProfile | None = None
    #: each node's held-out local test samples (``local_test_fraction``; proxgt.data._local), rows as node_data's
    local_test: NodeData | None = None
    #: the penalty's warm-up and the sparsify phase (``reg_warmup``, ``sparsify_density``;
    #: proxgt.training.sparsify); None: h is the same at every iteration
    reg_schedule: RegSchedule | None = None

    @property
    def step(self) -> float:
        return float(self.resolved.step)

    @property
    def rounds(self) -> int:
        return int(self.resolved.rounds)

    @property
    def iters(self) -> int:
        return int(self.resolved.iters)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.settings.dtype == "float64" else torch.float32

    @property
    def full_batch(self) -> bool:
        return bool(self.settings.batch == "full")

    @property
    def secure_noise(self) -> bool:
        """DP noise and samples from a secret seed (``dp_secure_noise``): raw-data values stay where they are."""
        return self.privacy is not None and bool(self.settings.dp_secure_noise)

    def resolved_config(self) -> dict[str, Any]:
        """The resolved settings, flat, plus a ``meta`` table (what :class:`~proxgt.training.History` carries)."""
        d = {k: v for k, v in self.resolved.to_dict().items() if v is not None}
        d["meta"] = dict(self.meta)
        return d

    def initial_rows(self, node_ids: list[int] | tuple[int, ...]) -> torch.Tensor:
        """x0 for the rows ``node_ids``, on the run's device and dtype."""
        x0 = self.x0.to(device=torch.device(self.settings.device), dtype=self.dtype)
        if x0.ndim == 1:
            return x0.unsqueeze(0).repeat(len(node_ids), 1)
        return x0[list(node_ids)].clone()

    def make_oracle(self, node_ids: list[int] | tuple[int, ...], *, noise_seed: int | None = None) -> GradientOracle:
        """The gradient oracle of the nodes ``node_ids``. Under DP with ``dp_secure_noise`` their Poisson samples
        and noise come from ``noise_seed`` (a site's own, :func:`~proxgt.training.privacy.site_noise_seed`), or
        from a fresh :func:`~proxgt.training.privacy.secure_seed` when None; otherwise from the run's seed."""
        secret = None
        if self.secure_noise:
            secret = secure_seed() if noise_seed is None else int(noise_seed)
        return GradientOracle(
            self.problem,
            self.node_data.shard(list(node_ids)),
            self.settings.seed,
            chunk_size=self.problem.chunk_size,
            dtype=self.dtype,
            device=torch.device(self.settings.device),
            full_batch=self.full_batch,
            privacy=self.privacy,
            private_seed=secret,
        )

    def keep_only(self, node_ids: list[int] | tuple[int, ...]) -> None:
        """Drop every training sample the nodes ``node_ids`` do not own (a distributed process keeps its shard)."""
        self.node_data = self.node_data.shard(list(node_ids))
        if self.local_test is not None:
            self.local_test = self.local_test.shard(list(node_ids))
        self.train = None


def _regularizer(cfg: RunConfig, problem: Problem) -> Regularizer:
    cls = REGULARIZERS.get(cfg.reg)
    name = REGULARIZERS.canonical(cfg.reg)
    params: dict[str, Any] = {}
    for setting, param in REG_PARAM_SETTINGS.items():
        value = getattr(cfg, setting)
        if value is None:
            continue
        if param not in cls.PARAMS:
            users = [n for n in REGULARIZERS.names() if param in REGULARIZERS.get(n).PARAMS]
            raise ProxGTValueError(
                f"{setting} (--{setting.replace('_', '-')}) is a parameter of {' and '.join(users)}, "
                f"not of reg = {name!r}"
            )
        params[param] = _read_groups(value) if setting == "groups" else \
            _read_support(value, int(problem.dim)) if setting == "support_file" else value
    if "support" in cls.PARAMS and "support" not in params and cfg.init is not None:
        params["support"] = _read_support(cfg.init, int(problem.dim))  # the pattern of the point it starts from
    if problem.reg_mask is not None and "mask" in cls.PARAMS:
        params["mask"] = problem.reg_mask  # e.g. leave neural-net biases unpenalized
    missing = [s for s, p in REG_PARAM_SETTINGS.items() if p in cls.REQUIRED and p not in params]
    if missing:
        flags = " and ".join(f"{m} (--{m.replace('_', '-')})" for m in missing)
        alt = " or init (--init)" if missing == ["support_file"] else ""
        raise ProxGTValueError(f"reg = {name!r} needs {flags}{alt}")
    return make_regularizer(name, cfg.reg_strength, **params)


def _read_support(path: str, d: int) -> torch.Tensor:
    """The non-zero pattern of an .npz file's ``x`` ((d,) or one row per node: their union), as a bool (d,)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x = np.asarray(z["x"]) if "x" in z else None
    except (OSError, ValueError) as exc:
        raise ProxGTValueError(f"support file {path}: not a readable .npz ({str(exc).splitlines()[0]})") from None
    if x is None or x.shape[-1:] != (d,) or x.ndim not in (1, 2):
        got = "no array 'x'" if x is None else f"x of shape {x.shape}"
        raise ProxGTValueError(f"support file {path}: {got}; expected x of shape ({d},) or (nodes, {d})")
    return torch.from_numpy((x != 0).reshape(-1, d).any(axis=0))


def _read_groups(path: str) -> list[int]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        ids = [int(tok) for tok in text.replace(",", " ").split()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProxGTValueError(f"groups file {path}: expected integer group ids, one per feature ({exc})") from None
    if not ids:
        raise ProxGTValueError(f"groups file {path} is empty; it needs one group id per feature")
    return ids


def _initial_point(cfg: RunConfig, problem: Problem) -> torch.Tensor:
    if cfg.init is None:
        return problem.init_params(torch.Generator().manual_seed(cfg.seed))
    try:
        with np.load(cfg.init, allow_pickle=False) as z:
            if "x" not in z:
                have = ", ".join(z.files) or "none"
                raise ProxGTValueError(f"init file {cfg.init} has no array 'x' (it has: {have})")
            x = np.asarray(z["x"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, ProxGTValueError):
            raise
        raise ProxGTValueError(f"init file {cfg.init}: not a readable .npz ({str(exc).splitlines()[0]})") from None
    d = int(problem.dim)
    if x.shape not in ((d,), (cfg.nodes, d)) or not np.issubdtype(x.dtype, np.number):
        raise ProxGTValueError(
            f"init file {cfg.init}: x has shape {x.shape}; expected ({d},) for every node or ({cfg.nodes}, {d}) "
            "for one row per node"
        )
    if not np.isfinite(x).all():
        raise ProxGTValueError(f"init file {cfg.init}: x has NaN or Inf entries")
    return torch.from_numpy(x.astype(np.float64))


def _check_batch_fits(cfg: RunConfig, node_data: NodeData, caps: Capabilities) -> None:
    """A minibatch larger than a node's local data: say what happens instead of silently resampling."""
    batch = caps.batch_per_iter
    smallest = int(node_data.counts.min())
    if batch is not None and cfg.batch != "full" and batch > smallest:
        warnings.warn(
            f"batch {batch} is larger than the smallest node's local data ({smallest} samples): minibatches are "
            f"drawn with replacement, so they repeat samples; use batch = full for exact local gradients",
            stacklevel=3,
        )


def _check_recursion(cfg: RunConfig, problem: Problem, caps: Capabilities, step: float) -> None:
    """A SARAH recursion set (by step, batch or period) past the problem's stable ratio: say so, run it anyway.
    Its error grows like exp((q / b) (a s)^2) between refreshes (:mod:`proxgt.estimators.sarah`), so the
    stable q / b at the default step a0 becomes ratio (a0 / a)^2 at a step a."""
    ratio, limit, a0 = caps.recursion_ratio, problem.recursion_ratio, problem.default_step_for(None)
    if not ratio or limit is None or not a0 or cfg.batch == "full":
        return
    effective = ratio * (step / a0) ** 2
    if effective > 1.5 * limit:
        warnings.warn(
            f"the {cfg.algorithm} recursion may diverge: period / batch = {ratio:.3g} at step {step:g} is "
            f"{effective / limit:.3g}x what is stable on this problem ({limit:g} at step {a0:g}); leave step, batch "
            f"and period to the defaults or use step <= {a0 * (limit / ratio) ** 0.5:.2g}",
            stacklevel=3,
        )


def _default_step(problem: Problem, algorithm: str) -> float:
    """``step = auto`` on a problem without a smoothness constant: the problem's default for the algorithm's
    gradient estimator (``default_step_for``, e.g. the networks' smaller step for SARAH-type estimators), else
    its ``default_step``, else 0.1."""
    estimator = ALGORITHMS.entry(algorithm).kwargs.get("estimator")
    step = problem.default_step_for(estimator)
    return float(step if step is not None else problem.default_step or 0.1)


def _dense_data(train: Dataset, test: Dataset | None, node_data: NodeData,
                what: str) -> tuple[Dataset, Dataset | None, NodeData]:
    """The data with dense features (unchanged when already dense); one line giving the size if it cannot fit."""
    def dense(ds: Dataset) -> Dataset:
        if not is_sparse(ds.X):
            return ds
        return Dataset(densify(ds.X, what), ds.y, ds.n_classes, ds.name)

    return dense(train), None if test is None else dense(test), node_data.densified(what)


def build_run(cfg: RunConfig | dict[str, Any], shard: ShardRequest | None = None) -> RunSpec:
    """Validate ``cfg`` and resolve everything that does not depend on the executor.

    ``shard`` (a process of a distributed run): read only the rows of the nodes it hosts, plus the test set, from
    a data file (:mod:`proxgt.data._shard`); ``node_data`` then holds those nodes only and ``train`` their rows.

    Raises ProxGTValueError (one line) on bad input.
    """
    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    cfg = cfg.validate()
    # the graph first: it needs no data, and too many nodes or a disconnected graph should fail at once
    weights = "user" if cfg.weights_file is not None else cfg.weights
    time_varying = TIME_VARYING in TOPOLOGIES.traits(cfg.topology)
    check_network_settings(cfg, cfg.topology, time_varying)
    topology = make_topology(
        cfg.topology, cfg.nodes, weights=weights, seed=cfg.seed, p=cfg.topology_p, radius=cfg.topology_radius,
        edge_file=cfg.edge_file, matrix=cfg.weights_file,
    )
    if time_varying:  # the union graph of its rounds, with the expected round matrix as W
        topology = time_varying_topology(topology.name, topology.graph)
        warn_time_varying_mixing(cfg, topology)
    clock = clock_profile(cfg, topology.n, topology.edges)  # a bad speed or link file fails before the data loads
    hosted = load_node_shard(cfg, shard) if shard is not None else None  # None: not a file it shards
    if hosted is None:
        train, test, node_data = load_run_split(cfg)
    else:  # the same split, this process's nodes only (load_node_shard replays the lines above on row ids)
        train, test, node_data = hosted.train, hosted.test, hosted.node_data
    counts = node_data.counts if hosted is None else hosted.counts  # every node's number of samples
    builder = PROBLEMS.get(cfg.problem)
    if SPARSE_FEATURES not in PROBLEMS.traits(cfg.problem):  # e.g. the networks: dense features, refused if too large
        train, test, node_data = _dense_data(train, test, node_data, f"problem = {cfg.problem!r}")
    local_test, held = None, None
    if cfg.local_test_fraction is not None:  # each site keeps part of its own samples to test on
        node_data, local_test = hold_out_local(node_data, cfg.local_test_fraction, cfg.seed)
        held = local_test_counts(counts, cfg.local_test_fraction)  # every node's, hosted here or not
        counts = counts - held
    problem: Problem = builder(cfg, train)
    if hosted is not None:
        if isinstance(problem, LinearProblem) and problem.gram_lambda_max is not None:
            if dp_requested(cfg) and cfg.dp_secure_noise:
                # the power iteration sums products of every process's raw rows: under DP across processes
                # nothing computed from raw data leaves its process, so the step must be given
                if cfg.step == "auto":  # private_across_processes refuses it first; a direct caller here
                    raise ProxGTValueError(AUTO_STEP_ACROSS_PROCESSES)
            else:
                # L of all rows, not of this process's: summed over processes
                problem = problem.with_gram_lambda_max(hosted.gram_lambda_max())
    regularizer = _regularizer(cfg, problem)
    L = problem.smoothness()
    if cfg.step == "auto":
        step = 1.0 / L if L else _default_step(problem, cfg.algorithm)
    else:
        step = float(cfg.step)
        if L and step > 2.0 / L:
            warnings.warn(
                f"step {step:g} exceeds 2/L = {2.0 / L:.4g} (L = {L:.4g} bounds the smoothness of f); "
                "the run may diverge",
                stacklevel=2,
            )
    local_size = int(round(int(counts.sum()) / len(counts)))
    ctx_cfg = cfg.replace(batch=None) if cfg.batch == "full" else cfg

    def algorithm_for(reg: Regularizer) -> Algorithm[Any]:
        built: Algorithm[Any] = ALGORITHMS.get(cfg.algorithm)(
            AlgorithmContext(cfg=ctx_cfg, n_nodes=cfg.nodes, local_size=local_size, regularizer=reg, step=step,
                             recursion_ratio=problem.recursion_ratio))
        return built

    algorithm = algorithm_for(regularizer)
    if not isinstance(algorithm, Algorithm):
        raise ProxGTValueError(
            f"algorithm {cfg.algorithm!r}: its builder returned a {type(algorithm).__name__}, which lacks init, update "
            "or capabilities (see proxgt.algorithms.base.Algorithm)")
    caps: Capabilities = algorithm.capabilities
    check_message_loss(cfg, algorithm, time_varying)
    check_async(cfg, algorithm, time_varying)
    _check_batch_fits(cfg, node_data, caps)
    _check_recursion(cfg, problem, caps, step)
    x0 = _initial_point(cfg, problem)

    # the network first: auto mixing and rounds are chosen for the graph the run really has, and for its operator
    network = network_schedule(cfg, topology, weights=weights)
    gamma, delta = check_compressed_run(cfg, algorithm, int(problem.dim))  # gamma None: no compressed gossip
    # --async exchanges one message per neighbour and mixing: rounds = auto is 1 there
    asked_rounds = 1 if cfg.asynchronous and cfg.rounds == "auto" else cfg.rounds
    mixing, rounds = resolve_gossip(cfg.mixing, asked_rounds, topology, network, compress=cfg.compress, delta=delta,
                                    target=cfg.mix_target, seed=cfg.seed,
                                    plain_only=messages_may_miss(cfg) or cfg.asynchronous)
    derived: dict[str, Any] = {"step": step, "rounds": rounds, "mixing": mixing, "weights": weights}
    if gamma is not None:
        derived["consensus_step"] = gamma
    if cfg.batch != "full":
        derived.update({key: int(v) for key, v in caps.sizes.items()})
    if cfg.epochs is not None:  # an epoch: as many fresh samples per node as it holds
        per_iter = local_size if cfg.batch == "full" or caps.batch_per_iter is None else caps.batch_per_iter
        derived["iters"] = max(1, math.ceil(cfg.epochs * local_size / per_iter))
    privacy, dp_derived = privacy_from_settings(cfg, algorithm=algorithm, problem=problem,
                                                local_sizes=counts.tolist(),
                                                iters=int(derived.get("iters", cfg.iters)))
    derived.update(dp_derived)  # dp_noise solved from dp_epsilon
    resolved = cfg.replace(**derived).with_absolute_paths()
    reg_schedule = _reg_schedule(cfg, problem, topology, int(resolved.iters), network is not None,
                                 algorithm_for)
    meta = {
        "version": __version__,
        "lambda": topology.lam,
        "spectral_gap": topology.spectral_gap,
        "n_features": train.n_features,
        "dim": int(problem.dim),
        "train_samples": int(counts.sum()),
        "test_samples": 0 if test is None else len(test),
        "local_sizes": [int(c) for c in counts.tolist()],
        **({"local_test_sizes": [int(c) for c in held.tolist()]} if held is not None else {}),
        **({"smoothness_L": L} if L is not None else {}),
    }
    return RunSpec(settings=cfg, resolved=resolved, train=train, test=test, node_data=node_data, topology=topology,
                   problem=problem, regularizer=regularizer, algorithm=algorithm, x0=x0, smoothness=L, meta=meta,
                   privacy=privacy, network=network, clock=clock, local_test=local_test, reg_schedule=reg_schedule)


def _reg_schedule(cfg: RunConfig, problem: Problem, topology: Topology, iters: int, dynamic: bool,
                  algorithm_for: Any) -> RegSchedule | None:
    """The sparse path's schedule (proxgt.training.sparsify), or None when h never changes."""
    switch = check_sparse_path(cfg, iters=iters, dynamic_network=dynamic or messages_may_miss(cfg))
    warmup = int(round(float(cfg.reg_warmup) * iters))
    if switch is None and warmup == 0:
        return None
    return RegSchedule(
        strength=float(cfg.reg_strength), warmup_iters=warmup, switch_iter=switch, density=cfg.sparsify_density,
        weights=problem.density_mask, avg_rounds=averaging_rounds(topology.lam), flood=flood_rounds(topology.W_csr),
        regularizer_for=lambda s: _regularizer(cfg.replace(reg_strength=s), problem), algorithm_for=algorithm_for,
        steps=1 if cfg.sparsify_steps is None else int(cfg.sparsify_steps))
