"""Neural-network benchmark: one pass over Fashion-MNIST on 8 simulated nodes vs a centralized PyTorch loop.

    python bench/bench_nn.py                  # one pass, MLP 784-256-10, 3 interleaved repetitions
    python bench/bench_nn.py --quick          # a tenth of a pass, 2 repetitions
    python bench/bench_nn.py --model lenet    # LeNet-5 instead of the MLP
    python bench/bench_nn.py --modes          # also: per-node gradients, grouped vs vmap, same inputs
    python bench/bench_nn.py --quick --profile  # also: the top operators of the decentralized iterations

1. Decentralized: ProxGT-SA (l1 1e-4, batch b per node) on 8 nodes of a ring, shards split (2 classes per
   node), Chebyshev mixing with the automatic K; ``ceil(m / b)`` iterations = one pass over each node's
   m = 7500 samples (``--rounds`` sets K). Time = the run's ``wall_s`` (iterations only, no metrics).
2. Centralized: the same network, ``torch.optim.SGD`` on the pooled 60000 samples, batch 8*b per step, the same
   number of steps (so the same number of samples), plain ``model(x)``, ``cross_entropy``, ``backward``,
   ``step``. Data already in memory in both cases.
Prints the ratio decentralized / centralized (target <= 2x): the medians over interleaved repetitions, and the
ratio of the fastest repetitions (less sensitive to other processes on a shared machine); and the ratio of the CPU
time of this thread per step (both loops run on one thread: on a loaded machine it counts only the time the loop
ran, though memory bandwidth shared with other processes still slows the memory-bound decentralized steps).
Peak memory is the process's maximum resident set size (``resource.getrusage``), target < 4 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import statistics
import sys
import time

import torch

from proxgt.executors.simulation import simulated_communicator
from proxgt.problems.nn import TorchModelProblem
from proxgt.settings import RunConfig
from proxgt.training import build_run, compute_settings, train


def _decentralized(b, iters: int, profiler=None) -> tuple[float, float]:
    """(wall seconds of the ``iters`` iterations, CPU seconds of this thread per iteration). The CPU time is read
    after every iteration, between the calls for iterations 1 and iters - 1 (the last one also logs metrics)."""
    b = dataclasses.replace(b, resolved=b.resolved.replace(iters=iters), settings=b.settings.replace(log_every=iters))
    comm = simulated_communicator(b)
    rows: list[dict] = []
    cpu: list[float] = []

    def after(state, wall):
        cpu.append(time.thread_time())
        if profiler is not None and state.t == 1:
            profiler.start()
            torch.set_flush_denormal(True)  # as compute_settings set it (the profiler's start resets it)
        elif profiler is not None and state.t == iters - 1:
            profiler.stop()

    train(b, comm, b.make_oracle(comm.node_ids), on_row=rows.append, after_iteration=after)
    # rows[0].wall_s is the init (first gradient) only
    return rows[-1]["wall_s"] - rows[0]["wall_s"], (cpu[-2] - cpu[0]) / (iters - 2)


def _centralized(b, iters: int, batch: int, seed: int) -> tuple[float, float]:
    """(wall seconds of the ``iters`` steps, CPU seconds of this thread per step)."""
    problem: TorchModelProblem = b.problem
    model = _fresh_model(problem)
    opt = torch.optim.SGD(model.parameters(), lr=b.step)
    X, y = b.train.X, b.train.y
    if problem.input_shape is not None:
        X = X.reshape(X.shape[0], *problem.input_shape)
    g = torch.Generator().manual_seed(seed)
    perm = torch.cat([torch.randperm(len(y), generator=g) for _ in range(math.ceil(iters * batch / len(y)) + 1)])
    t0, c0 = time.perf_counter(), time.thread_time()
    for t in range(iters):
        idx = perm[t * batch : (t + 1) * batch]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - t0, (time.thread_time() - c0) / iters


def _fresh_model(problem: TorchModelProblem) -> torch.nn.Module:
    import copy

    model = copy.deepcopy(problem.model)
    x0 = problem.init_params(torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, p in problem.unflatten(x0).items():
            model.get_parameter(name).copy_(p)
    return model


def _modes(b, reps: int, batch: int) -> None:
    """Per-node gradients of 8 nodes, both batched paths on the same inputs, interleaved."""
    print(f"== per-node gradients (8 nodes x {batch} samples): grouped vs vmap, same inputs ==")
    probs = {m: TorchModelProblem(b.problem.model, input_shape=b.problem.input_shape, grad_mode=m)
             for m in ("grouped", "vmap")}
    x0 = b.x0
    gen = torch.Generator().manual_seed(1)
    X = x0.repeat(8, 1) + 0.01 * torch.randn(8, x0.numel(), generator=gen)
    idx = torch.randint(len(b.train), (8, batch), generator=gen)
    feats, labels = b.train.X[idx], b.train.y[idx]
    w = torch.full((8, batch), 1.0 / batch)
    times: dict[str, list[float]] = {m: [] for m in probs}
    for p in probs.values():
        p.loss_grad(X, feats, labels, w)
    for _ in range(reps):
        for m, p in probs.items():
            t0 = time.perf_counter()
            for _ in range(10):
                p.loss_grad(X, feats, labels, w)
            times[m].append((time.perf_counter() - t0) / 10)
    g1 = probs["grouped"].loss_grad(X, feats, labels, w)[1]
    g2 = probs["vmap"].loss_grad(X, feats, labels, w)[1]
    for m, ts in times.items():
        print(f"{m:>8}: median {statistics.median(ts) * 1e3:7.2f} ms, min {min(ts) * 1e3:7.2f} ms")
    print(f"grouped/vmap (medians): {statistics.median(times['grouped']) / statistics.median(times['vmap']):.2f}; "
          f"max |difference| of the gradients {float((g1 - g2).abs().max()):.2e}")


def _profile(b, iters: int, top: int = 12) -> None:
    """torch.profiler over the decentralized iterations 2..iters-1 (no metrics): the top operators by self CPU
    time. The profiler's own overhead inflates the memory-bound operators; read the shares, not the times."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    _decentralized(b, iters, profiler=prof)
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"== profile of {iters - 2} decentralized iterations: top {top} operators by self CPU time ==")
    for e in events[:top]:
        shapes = ", ".join(str(tuple(s)) for s in e.input_shapes if s)[:60]
        print(f"{e.key:>28} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count // (iters - 2):3d}/iter  {shapes}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of a pass, 2 repetitions")
    ap.add_argument("--model", choices=("mlp", "lenet"), default="mlp")
    ap.add_argument("--batch", type=int, default=32, help="samples per node per step (centralized: 8x)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 3, quick 2)")
    ap.add_argument("--threads", default="auto", help="torch threads for both loops (default: library's auto)")
    ap.add_argument("--nn-grad", default="auto", choices=("auto", "grouped", "vmap"))
    ap.add_argument("--rounds", default="auto", help="gossip rounds K per mixing (default auto: ||M_K - J|| <= 0.2)")
    ap.add_argument("--modes", action="store_true", help="also time grouped vs vmap gradients")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the decentralized iterations (torch.profiler, the top operators by CPU time)")
    ap.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    args = ap.parse_args(argv)
    reps = args.reps or (2 if args.quick else 3)
    cfg = RunConfig(problem=args.model, data="fashion-mnist", data_dir=args.data_dir, split="shards", nodes=8,
                    topology="ring", algorithm="proxgt-sa", batch=args.batch, reg="l1", reg_strength=1e-4,
                    nn_grad=args.nn_grad, rounds=args.rounds if args.rounds == "auto" else int(args.rounds),
                    threads=args.threads if args.threads == "auto" else int(args.threads),
                    # the metrics of the first and last rows (outside the timed iterations) on 1000 samples per node
                    metrics_samples=1000)
    b = build_run(cfg)
    m = int(b.node_data.counts.min())
    iters = math.ceil(m / args.batch)
    if args.quick:
        iters = max(2, iters // 10)
    print(f"Fashion-MNIST {len(b.train)} train samples, {cfg.nodes} nodes ({m} per node), {args.model} "
          f"d={b.problem.dim}, grad mode {b.problem.grad_mode}, batch {args.batch}/node = {8 * args.batch} total, "
          f"{iters} steps ({'a tenth of ' if args.quick else ''}one pass), K={b.rounds} Chebyshev rounds, "
          f"step {b.step}")
    dec, cen, dec_cpu, cen_cpu = [], [], [], []
    with compute_settings(cfg.threads) as cs:
        print(f"threads: {cs.threads}")
        _centralized(b, 3, 8 * args.batch, 0)  # warm-up
        for r in range(reps):
            wall, cpu = _decentralized(b, iters)
            dec.append(wall)
            dec_cpu.append(cpu)
            wall, cpu = _centralized(b, iters, 8 * args.batch, r)
            cen.append(wall)
            cen_cpu.append(cpu)
            print(f"rep {r}: decentralized {dec[-1]:.2f} s, centralized {cen[-1]:.2f} s, "
                  f"ratio {dec[-1] / cen[-1]:.2f}; CPU per step {dec_cpu[-1] * 1e3:.1f} ms vs "
                  f"{cen_cpu[-1] * 1e3:.1f} ms, ratio {dec_cpu[-1] / cen_cpu[-1]:.2f}")
        if args.modes:
            _modes(b, reps=max(3, 2 * reps), batch=args.batch)
        if args.profile:
            _profile(b, iters)
    md, mc = statistics.median(dec), statistics.median(cen)
    print(f"one {'tenth of a ' if args.quick else ''}pass: decentralized {md:.2f} s (median), centralized {mc:.2f} s; "
          f"ratio {md / mc:.2f} (medians), {min(dec) / min(cen):.2f} (fastest repetitions); target <= 2")
    dc, cc = statistics.median(dec_cpu), statistics.median(cen_cpu)
    print(f"CPU time of this thread per step: decentralized {dc * 1e3:.1f} ms, centralized {cc * 1e3:.1f} ms "
          f"(medians); ratio {dc / cc:.2f} (what other processes' load changes least)")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    print(f"peak memory (max RSS of this process): {peak_gb:.2f} GB; target < 4 GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
