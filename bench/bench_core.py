"""Core benchmark: mixing throughput and ProxGT-SA iteration cost, as ratios measured in one run.

    python bench/bench_core.py            # full (about a minute)
    python bench/bench_core.py --quick    # fewer repetitions

1. Mixing throughput: one gossip round (rows of W @ Z) against a plain copy of a tensor of the same size,
   reported as effective bandwidth (bytes of Z per second) and the ratio mixing / copy. Target >= 50%.
2. ProxGT-SA iteration with n nodes (batch b per node) against one centralized prox-SGD step on the same total
   batch n*b plus the iteration's mixing cost (2K gossip rounds), on a9a-shaped data, n in {8, 32}.
   Target: ProxGT iteration <= 1.5 x (centralized step + mixing).
Timings are medians over repetitions, one thread (the library's setting for problems this small).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.problems.oracle import GradientOracle
from proxgt.settings import RunConfig
from proxgt.training import build_run


def _median_time(fn, reps: int, inner: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def bench_mixing(reps: int) -> None:
    from proxgt.topology import make_topology

    print("== mixing throughput: one gossip round vs a tensor copy of the same size (float32) ==")
    print(f"{'graph':>10} {'n':>4} {'d':>9} {'path':>7} {'copy GB/s':>10} {'mix GB/s':>9} {'mix/copy':>9}")
    for topo, n in (("ring", 8), ("ring", 32), ("ring", 128), ("erdos_renyi", 32)):
        t = make_topology(topo, n, seed=1)
        for d in (123, 100_000, 1_000_000):
            Z = torch.randn(n, d)
            out = torch.empty_like(Z)
            inner = max(1, int(2e6 // (n * d)))
            t_copy = _median_time(lambda: out.copy_(Z), reps, inner)
            for sparse in (False, True):
                comm = SimulatedCommunicator(t.W, t.degrees, sparse=sparse)
                # the mixer's path: one round into a preallocated buffer
                t_mix = _median_time(lambda c=comm: c.gossip_into(Z, out), reps, inner)
                gb = Z.numel() * 4 / 1e9
                print(f"{topo:>10} {n:>4} {d:>9} {'sparse' if sparse else 'dense':>7} {gb / t_copy:>10.2f} "
                      f"{gb / t_mix:>9.2f} {t_copy / t_mix:>9.2f}")
            default = SimulatedCommunicator(t.W, t.degrees)
            t_def = _median_time(lambda c=default: c.gossip_into(Z, out), reps, inner)
            print(f"{topo:>10} {n:>4} {d:>9} {'auto':>7} {gb / t_copy:>10.2f} {gb / t_def:>9.2f} "
                  f"{t_copy / t_def:>9.2f}   <- library default ({'sparse' if default._use_sparse(Z) else 'dense'})")


def bench_iteration(reps: int) -> None:
    print("\n== ProxGT-SA iteration vs centralized prox-SGD step on the same total batch (a9a-shaped) ==")
    print(f"{'n':>4} {'b':>4} {'K':>3} {'proxgt ms':>10} {'central ms':>11} {'mixing ms':>10} "
          f"{'ratio proxgt/(central+mix)':>27}")
    for n in (8, 32):
        cfg = RunConfig(algorithm="proxgt-sa", nodes=n, topology="ring", mixing="chebyshev", iters=1,
                        test_fraction=0.0, batch=32)
        b = build_run(cfg)
        comm = SimulatedCommunicator(b.topology.W, b.topology.degrees)
        oracle = GradientOracle(b.problem, b.node_data, 0)
        mix = Mixer(comm, "chebyshev", b.rounds, lam=b.topology.lam)
        alg = b.algorithm
        state = [alg.init(torch.zeros(n, b.problem.dim), oracle, mix)]

        def proxgt_iter():
            state[0] = alg.update(state[0], oracle, mix)

        # centralized prox-SGD on the pooled data: one node holding everything, batch n * b
        pooled = b.node_data.shard(list(range(n))).pooled()
        from proxgt.data import split_nodes

        central = GradientOracle(b.problem, split_nodes(pooled, 1, "iid"), 0)
        x = [torch.zeros(1, b.problem.dim)]
        total_batch = n * 32

        def central_step():
            g = central.grad(x[0], central.sample(total_batch))
            x[0] = b.regularizer.prox(x[0] - b.step * g, b.step)

        Z = torch.randn(n, b.problem.dim)

        def mixing_only():
            mix(Z)
            mix(Z)

        torch.set_num_threads(1)
        t_p = _median_time(proxgt_iter, reps, 50)
        t_c = _median_time(central_step, reps, 50)
        t_m = _median_time(mixing_only, reps, 50)
        print(f"{n:>4} {32:>4} {b.rounds:>3} {t_p * 1e3:>10.3f} {t_c * 1e3:>11.3f} {t_m * 1e3:>10.3f} "
              f"{t_p / (t_c + t_m):>27.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    reps = 3 if args.quick else 7
    bench_mixing(reps)
    bench_iteration(reps)


if __name__ == "__main__":
    main()
