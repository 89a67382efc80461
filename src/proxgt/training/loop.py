"""The training loop, the same for every executor: update, divergence check, metrics every ``log_every``
iterations, and a hook after each iteration (checkpoints, tests' fault injection)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from proxgt.errors import DivergenceError
from proxgt.metrics import MetricsEvaluator
from proxgt.mixing import Communicator, Mixer
from proxgt.problems.oracle import GradientOracle

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


def _first_bad_row(X: torch.Tensor) -> int:
    bad = (~torch.isfinite(X)).any(dim=1).nonzero()
    return int(bad[0]) if bad.numel() else 0


def train(
    spec: Any,
    comm: Communicator,
    oracle: GradientOracle,
    *,
    state: Any = None,
    start_wall: float = 0.0,
    on_row: Callable[[dict[str, float]], None] | None = None,
    after_iteration: Callable[[Any, float], None] | None = None,
    progress: bool = False,
) -> tuple[Any, MetricsEvaluator]:
    """Run ``spec``'s algorithm to ``spec.iters`` iterations on the rows ``comm.node_ids``.

    ``state`` resumes a run (``None`` starts at x0 and logs row 0); ``on_row`` receives each metrics row as it
    is logged; ``after_iteration(state, wall_s)`` runs after every iteration. Raises DivergenceError when the
    iterates stop being finite (the rows logged so far were already passed on).
    """
    node_ids = list(comm.node_ids)
    mixer = Mixer(comm, spec.settings.mixing, spec.rounds, lam=spec.topology.lam)
    metrics = MetricsEvaluator(spec.problem, spec.regularizer, oracle, comm, spec.step, test=spec.test,
                               density_mask=spec.problem.density_mask)
    alg = spec.algorithm
    wall = start_wall
    if state is None:
        t0 = time.perf_counter()
        state = alg.init(spec.initial_rows(node_ids), oracle, mixer)
        wall += time.perf_counter() - t0
        row = metrics(state.x, 0, wall)
        if on_row:
            on_row(row)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.iters, initial=state.t, desc=spec.settings.algorithm, unit="it", leave=False)
    try:
        while state.t < spec.iters:
            t0 = time.perf_counter()
            state = alg.update(state, oracle, mixer)
            wall += time.perf_counter() - t0
            if not bool(torch.isfinite(state.x).all()):
                node = node_ids[_first_bad_row(state.x)]
                raise DivergenceError(
                    f"iterates became NaN/Inf at iteration {state.t} on node {node}; "
                    f"try a smaller step (now {spec.step:.4g}) or a larger batch"
                )
            if state.t % spec.settings.log_every == 0 or state.t == spec.iters:
                row = metrics(state.x, state.t, wall)
                if on_row:
                    on_row(row)
                if bar is not None:
                    bar.set_postfix(gm=f"{row['grad_mapping_sq']:.2e}", refresh=False)
            if after_iteration:
                after_iteration(state, wall)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return state, metrics
