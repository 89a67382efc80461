"""Benchmark: peak memory (RSS) per process of ``proxgt launch`` with 1, 2 and 4 processes, with sharded loading
(each process reads only its nodes' rows and the test set, :mod:`proxgt.data._shard`) and, for comparison, with
the whole file read by every process (the behaviour before sharding).

The data is a LIBSVM text file shaped like a9a (123 binary features, 14 non-zeros per row) with ``--rows`` rows,
generated once from :func:`proxgt.data.synthetic_a9a` (the shipped a9a has 32,561 rows: at 16 MB dense it is
smaller than what torch itself takes, so the differences would vanish in the noise); ``--data FILE`` uses a file
of your own. Every process is a fresh ``python`` (no fork), so each peak is that process's own: torch's import
is the same in every configuration; ``peak - start`` is what the run (mostly the data) added.

Usage::

    PYTHONPATH=src python bench/bench_sharded.py                 # 131,072 rows, 1/2/4 processes
    PYTHONPATH=src python bench/bench_sharded.py --rows 65536 --nprocs 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _worker(argv: list[str]) -> int:
    """One process: the run, then its peak RSS (VmHWM) and the RSS it had before the run, in a JSON file."""
    start_kib = _status_kib("VmRSS")
    from proxgt.cli.flags import config_from_args
    from proxgt.executors import distributed
    from proxgt.executors.launch.worker import build_worker_parser

    p = build_worker_parser()
    p.add_argument("--report", required=True)
    p.add_argument("--whole", action="store_true", help="every process reads the whole file (no sharding)")
    args = p.parse_args(argv)
    if args.whole:
        distributed.DistributedExecutor.shard = None  # the driver then builds from the whole file
    start_kib = max(start_kib, _status_kib("VmRSS"))  # after the imports: what every configuration pays
    t0 = time.perf_counter()
    distributed.run_distributed(config_from_args(args), overwrite=True)
    rank = int(os.environ["RANK"])
    out = {"rank": rank, "peak_kib": _status_kib("VmHWM"), "start_kib": start_kib,
           "run_s": time.perf_counter() - t0}
    Path(f"{args.report}.rank{rank}.json").write_text(json.dumps(out))
    os._exit(0)


def _make_file(rows: int, path: Path) -> None:
    import numpy as np

    from proxgt.data import synthetic_a9a

    ds = synthetic_a9a(rows, seed=0)
    X = ds.X.numpy()
    y = ds.y.numpy() * 2 - 1
    with path.open("w") as fh:
        for start in range(0, rows, 8192):
            block = X[start:start + 8192]
            r, c = np.nonzero(block)
            cols = np.split(c + 1, np.cumsum(np.bincount(r, minlength=block.shape[0]))[:-1])
            fh.write("".join(f"{int(y[start + i])} {' '.join(f'{j}:1' for j in cols[i])}\n"
                             for i in range(block.shape[0])))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return _worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=131072, help="rows of the generated LIBSVM file")
    ap.add_argument("--data", default=None, help="a LIBSVM or .npz file instead of the generated one")
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-whole", action="store_true", help="skip the runs without sharding")
    ap.add_argument("--test-fraction", type=float, default=None,
                    help="held-out share (default: the run's, 0.2); every process keeps the whole test set")
    args = ap.parse_args()

    from proxgt.executors.launch.launcher import launch

    with tempfile.TemporaryDirectory(prefix="proxgt-bench-sharded-") as tmp:
        if args.data is None:
            data = Path(tmp) / f"a9a-like-{args.rows}.svm"
            t0 = time.perf_counter()
            _make_file(args.rows, data)
            print(f"data: {data.name}, {args.rows} rows x 123 features, {data.stat().st_size / 2**20:.1f} MiB of text "
                  f"(written in {time.perf_counter() - t0:.1f} s)")
        else:
            data = Path(args.data)
            print(f"data: {data} ({data.stat().st_size / 2**20:.1f} MiB)")
        tf = "" if args.test_fraction is None else f" --test-fraction {args.test_fraction:g}"
        print(f"run: --nodes {args.nodes} --iters {args.iters} --problem logistic{tf} (each process: own python, "
              "1 thread)")
        modes = ["sharded"] + ([] if args.no_whole else ["whole"])
        results: dict[tuple[str, int], list[dict]] = {}
        for mode in modes:
            for n in args.nprocs:
                report = str(Path(tmp) / f"{mode}-{n}")
                argv = ["--data", str(data), "--nodes", str(args.nodes), "--iters", str(args.iters), "--log-every",
                        str(args.iters), "--out", str(Path(tmp) / f"run-{mode}-{n}"), "--no-progress", "--report",
                        report, "--timeout", "300"] + (["--whole"] if mode == "whole" else []) \
                    + ([] if args.test_fraction is None else ["--test-fraction", str(args.test_fraction)])
                env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
                code = launch(n, argv, timeout_s=300, env=env, command=[sys.executable, __file__, "--worker"])
                if code != 0:
                    print(f"{mode} {n} process(es): launch failed with code {code}")
                    continue
                results[(mode, n)] = [json.loads(Path(f"{report}.rank{r}.json").read_text()) for r in range(n)]
        print()
        print(f"{'loading':8} {'procs':>5} {'peak RSS/process (MiB)':>24} {'ratio to 1':>10} "
              f"{'peak - start (MiB)':>19} {'ratio to 1':>10} {'run s':>6}")
        for mode in modes:
            base = results.get((mode, args.nprocs[0]))
            for n in args.nprocs:
                reps = results.get((mode, n))
                if not reps:
                    continue
                peak = max(r["peak_kib"] for r in reps) / 1024
                added = max(r["peak_kib"] - r["start_kib"] for r in reps) / 1024
                b_peak = max(r["peak_kib"] for r in base) / 1024 if base else float("nan")
                b_added = max(r["peak_kib"] - r["start_kib"] for r in base) / 1024 if base else float("nan")
                run_s = max(r["run_s"] for r in reps)
                print(f"{mode:8} {n:>5} {peak:>24.0f} {peak / b_peak:>10.2f} {added:>19.0f} {added / b_added:>10.2f} "
                      f"{run_s:>6.1f}")
        print("\npeak: the largest VmHWM over the processes; start: RSS after the imports, before the run "
              "(python + torch, the same in every row)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
