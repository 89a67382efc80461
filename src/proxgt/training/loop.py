"""The training loop, the same for every executor: update, divergence check, metrics every ``log_every``
iterations, and a hook after each iteration (checkpoints, tests' fault injection)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import torch

from proxgt.errors import DivergenceError
from proxgt.metrics import MetricsEvaluator
from proxgt.mixing import Communicator, Mixer
from proxgt.mixing.asynchrony import AsyncNetwork
from proxgt.mixing.communicator import Clocked, Scheduled
from proxgt.mixing.compressed import make_mixer
from proxgt.mixing.dynamic import keep_inactive_rows
from proxgt.problems.oracle import GradientOracle
from proxgt.training.sparsify import SparsePath

__all__ = ["compute_settings", "train"]


class compute_settings:
    """Context manager for the CPU settings of a run, restored on exit.

    * threads: intra-op threads. ``"auto"`` uses one thread. The per-node tensors of these workloads are
      small (a 16 x 16 by 16 x 123 product takes ~7 us on one thread and ~0.5 ms on two when the other core is
      busy, because the worker threads spin-wait), and even for the Fashion-MNIST MLP one thread measured as
      fast or faster (8-10 ms against 10-110 ms per iteration on a shared 2-core machine). Give an integer to
      use more.
    * denormals are flushed to zero: mixing sparse prox outputs creates values near 1e-40 whose arithmetic is
      up to 4x slower and which carry no information.
    """

    def __init__(self, threads: int | str):
        self.threads = 1 if threads == "auto" else int(threads)

    def __enter__(self) -> compute_settings:
        self._old_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._old_threads)
        torch.set_flush_denormal(False)


def _all_finite(X: torch.Tensor) -> bool:
    """Whether every entry of ``X`` is finite. A NaN or infinite entry makes the sum NaN or infinite, so a finite
    sum settles it in one read of X (``isfinite(X).all()`` measured ~15x slower on a (8, 203530) state, a third
    of a Fashion-MNIST MLP iteration); only a sum that is not finite (a bad entry, or finite entries whose sum
    overflows) is checked entry by entry."""
    return bool(torch.isfinite(X.sum())) or bool(torch.isfinite(X).all())


def _first_bad_row(X: torch.Tensor) -> int:
    bad = (~torch.isfinite(X)).any(dim=1).nonzero()
    return int(bad[0]) if bad.numel() else 0


def _diverged(t: int, row: int, node_ids: list[int], step: float) -> DivergenceError:
    return DivergenceError(
        f"iterates became NaN/Inf at iteration {t} on node {node_ids[row]}; "
        f"try a smaller step (now {step:.4g}) or a larger batch"
    )


class _DeviceDivergence:
    """The first iteration (and its first bad row) whose iterates held NaN/Inf, kept on the device and read only
    when asked: on a GPU, reading a value back waits for all queued work, so the loop reads it at logged
    iterations only (the iterations in between may run on NaN; no logged row ever includes them)."""

    def __init__(self, x: torch.Tensor):
        self.first = torch.full((2,), -1, dtype=torch.int64, device=x.device)  # (iteration, row)

    def record(self, t: int, x: torch.Tensor) -> None:
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        now = torch.stack([torch.full_like(self.first[0], t), bad.to(torch.int64).argmax()])
        self.first = torch.where((self.first[0] < 0) & bad.any(), now, self.first)

    def check(self, node_ids: list[int], step: float) -> None:
        t, row = (int(v) for v in self.first.tolist())
        if t >= 0:
            raise _diverged(t, row, node_ids, step)


def _update_some(alg: Any, state: Any, oracle: GradientOracle, mixer: Mixer | AsyncNetwork, active: Any) -> Any:
    """One update in which only the ``active`` local rows (None: all) take part: the others are isolated in every
    round matrix, their gradients are not counted, and all of their state rows are kept."""
    if active is None or active.all():
        return alg.update(state, oracle, mixer)
    oracle.active = active
    try:
        new = alg.update(state, oracle, mixer)
    finally:
        oracle.active = None
    return keep_inactive_rows(state, new, ~active)


def train(
    spec: Any,
    comm: Communicator,
    oracle: GradientOracle,
    *,
    state: Any = None,
    start_wall: float = 0.0,
    on_row: Callable[[dict[str, float]], None] | None = None,
    on_nodes: Callable[[list[dict[str, float]]], None] | None = None,
    after_iteration: Callable[[Any, float], None] | None = None,
    progress: bool = False,
    mixer: Any = None,
    path: SparsePath | None = None,
) -> tuple[Any, MetricsEvaluator]:
    """Run ``spec``'s algorithm to ``spec.iters`` iterations on the rows ``comm.node_ids``.

    ``state`` resumes a run (``None`` starts at x0 and logs row 0); ``on_row`` receives each metrics row as it
    is logged, and ``on_nodes`` its per-node rows (runs with local test data: per_node.csv);
    ``after_iteration(state, wall_s)`` runs after every iteration. Raises DivergenceError when the iterates stop
    being finite (the rows logged so far were already passed on). ``mixer`` is the run's mixing operator (default
    :func:`~proxgt.mixing.compressed.make_mixer`; the driver passes its own, to checkpoint it). ``path``: the
    sparse path's state (:mod:`proxgt.training.sparsify`; the driver passes it, to checkpoint it), which picks h
    for every iteration and sparsifies the rows at its switch.
    """
    node_ids = list(comm.node_ids)
    # a Mixer, or compressed gossip with --compress (proxgt.mixing.compressed)
    mixer = make_mixer(comm, spec) if mixer is None else mixer
    # the virtual clock (clock settings, simulator only): compute is charged from this oracle's gradient counts
    # --async: the mixer also schedules the nodes on their own clocks (proxgt.mixing.asynchrony)
    net = cast(AsyncNetwork, mixer) if spec.settings.asynchronous else None
    clock: Any = net if net is not None else cast(Clocked, comm).clock if spec.clock is not None else None
    if clock is not None:
        clock.follow(oracle)
    metrics = MetricsEvaluator(spec.problem, spec.regularizer, oracle, comm, spec.step, test=spec.test,
                               density_mask=spec.problem.density_mask, clock=clock, local_test=spec.local_test,
                               raw_local=spec.secure_noise)
    if path is None and spec.reg_schedule is not None:
        path = spec.reg_schedule.start()
    # the sparse path: h (and so the algorithm) of the iteration at hand; spec.algorithm otherwise
    alg = spec.algorithm if path is None else path.algorithm(0 if state is None else state.t)
    if path is not None and path.support is not None:  # resumed after the switch: metrics see h = the support
        metrics.use_regularizer(path.regularizer(0))
    wall = start_wall
    # unreliable or time-varying network: the communicator follows the schedule round by round, and nodes that
    # sit an iteration out keep their state (absent on a reliable static graph: today's code path)
    schedule = spec.network
    # the executor made a communicator that follows it (proxgt.mixing.communicator.Scheduled)
    begin_iteration = cast(Scheduled, comm).begin_iteration if schedule is not None else None
    dropout = schedule is not None and schedule.dynamic_nodes
    if state is None:
        t0 = time.perf_counter()
        if begin_iteration is not None:
            begin_iteration(0)
        state = alg.init(spec.initial_rows(node_ids), oracle, mixer)
        wall += time.perf_counter() - t0
        row = metrics(state.x, 0, wall)
        if on_row:
            on_row(row)
        if on_nodes and metrics.per_node_rows:
            on_nodes(metrics.per_node_rows)
    # no read-back from a GPU inside the loop: finiteness is recorded on the device and read at logged
    # iterations, before the clock, so that wall_s (metrics excluded) includes all of the iterations' device work
    on_device = _DeviceDivergence(state.x) if state.x.device.type != "cpu" else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.iters, initial=state.t, desc=spec.settings.algorithm, unit="it", leave=False)
    try:
        while state.t < spec.iters:
            t0 = time.perf_counter()
            t_before = state.t
            if path is not None:
                if path.due(state.t):  # the network agrees on a threshold and every node projects its row
                    state = path.sparsify(state, comm)
                    metrics.use_regularizer(path.regularizer(state.t + 1))
                alg = path.algorithm(state.t + 1)
            if net is not None:  # the nodes ready first run one iteration; t: the iterations every node has done
                state = _update_some(alg, state, oracle, net, net.next_active()[node_ids])
                net.end_tick()
                state = state._replace(t=int(net.iters.min()))
            elif begin_iteration is None:
                state = alg.update(state, oracle, mixer)
            else:
                begin_iteration(state.t + 1)
                state = _update_some(alg, state, oracle, mixer, schedule.active(state.t + 1)[node_ids]
                                     if dropout else None)
            log_now = state.t != t_before and (state.t % spec.settings.log_every == 0 or state.t == spec.iters)
            if on_device is None:
                if not _all_finite(state.x):
                    raise _diverged(state.t, _first_bad_row(state.x), node_ids, spec.step)
            else:
                on_device.record(state.t, state.x)
                if log_now:
                    on_device.check(node_ids, spec.step)
            wall += time.perf_counter() - t0
            if log_now:
                row = metrics(state.x, state.t, wall)
                if on_row:
                    on_row(row)
                if on_nodes and metrics.per_node_rows:
                    on_nodes(metrics.per_node_rows)
                if bar is not None:
                    bar.set_postfix(gm=f"{row['grad_mapping_sq']:.2e}", refresh=False)
            if after_iteration and state.t != t_before:  # --async: a tick that finished no network iteration
                after_iteration(state, wall)
            if bar is not None:
                bar.update(state.t - t_before)
    finally:
        if bar is not None:
            bar.close()
    return state, metrics
