"""The defaults matrix: every algorithm x network x compression operator x DP, each at its defaults.

``auto`` must mean safe: a user who only turns a feature on (a flaky network, compressed gossip, differential
privacy) gets a run that finishes without NaN and gets most of the way the plain run gets. For each cell this
script runs the settings at their defaults (``step``, ``rounds``, ``mixing``, ``consensus_step`` all ``auto``)
and reports

    progress = (F_0 - F_T) / (F_0 - F_T^ref)

where F is the training objective (loss + regularizer at the network average), F_0 its value at the start, F_T
the median over the last 20% of the logged points, and ref the same algorithm (and the same DP setting) on the
static, reliable graph without compression. A cell passes when it finishes without NaN and progress >= PASS.
Combinations a method cannot honour (compressing a method that does not name its mixed quantities, DP for a
method that reads more than fresh minibatches) are refused with a one-line error; the table says "refused".

    python experiments/defaults_matrix.py --jobs 2                 # real a9a, 16-node ring, 200 iterations
    python experiments/defaults_matrix.py --quick                  # 3 algorithms, for a look
    python experiments/defaults_matrix.py --out docs/defaults-matrix.md

Writes the Markdown table (``--out``) and ``--csv`` next to it.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import proxgt
from proxgt.errors import DivergenceError, ProxGTValueError
from proxgt.registry import ALGORITHMS, POOLED

#: the minimum share of the reference run's decrease of the objective a cell must reach
PASS = 0.8

NETWORKS: dict[str, dict[str, Any]] = {
    "static": {},
    "link-failure-0.3": {"link_failure": 0.3},
    "dropout-0.2": {"node_dropout": 0.2},
    "one-peer-exp": {"topology": "one-peer-exponential"},
    "random-matching": {"topology": "random-matching"},
}
OPERATORS = ["none", "topk:0.1", "randk:0.1", "qsgd:16", "sign", "fp16", "bf16"]
DP = {"off": {}, "on": {"dp_clip": 1.0, "dp_noise": 0.5}}


def tail_median(values: list[float]) -> float:
    tail = values[-max(1, len(values) // 5):]
    return float(statistics.median(tail))


def run_cell(base: dict[str, Any], algorithm: str, network: str, op: str, dp: str) -> dict[str, Any]:
    cfg = {**base, "algorithm": algorithm, **NETWORKS[network], **DP[dp]}
    if op != "none":
        cfg["compress"] = op
    out: dict[str, Any] = {"algorithm": algorithm, "network": network, "compress": op, "dp": dp}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hist = proxgt.run(cfg)
        objective = hist.column("objective")
        out.update(status="ok", f0=objective[0], final=tail_median(objective),
                   grad_mapping=tail_median(hist.column("grad_mapping_sq")),
                   bytes_per_node=hist.rows[-1]["bytes_per_node"],
                   warnings=" | ".join(sorted({str(w.message).split(";")[0][:80] for w in caught})))
        if not all(math.isfinite(v) for v in objective):
            out["status"] = "nan"
    except ProxGTValueError as exc:
        out.update(status="refused", message=str(exc))
    except DivergenceError as exc:
        out.update(status="diverged", message=str(exc))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _run_cell_args(args: tuple[Any, ...]) -> dict[str, Any]:
    return run_cell(*args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="a9a")
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--algorithms", default="all", help="comma-separated names, or all")
    p.add_argument("--quick", action="store_true", help="proxgt-sa, proxgt-sr-e and prox-dsgd only")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (fork)")
    p.add_argument("--out", default="docs/defaults-matrix.md")
    p.add_argument("--csv", default=None, help="default: --out with .csv")
    p.add_argument("--from-csv", action="store_true", help="only write the Markdown table again from --csv")
    args = p.parse_args(argv)
    out = Path(args.out)
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    names = [n for n in ALGORITHMS.names() if POOLED not in ALGORITHMS.traits(n)] if args.algorithms == "all" else \
        args.algorithms.split(",")
    if args.quick:
        names = ["proxgt-sa", "proxgt-sr-e", "prox-dsgd"]
    base = {"data": args.data, "nodes": args.nodes, "topology": "ring", "iters": args.iters,
            "log_every": max(1, args.iters // 30), "seed": args.seed}
    command = " ".join(["python experiments/defaults_matrix.py", *(argv or sys.argv[1:])]).replace(" --from-csv", "")
    if args.from_csv:
        with csv_path.open(newline="") as f:
            rows = [_typed(r) for r in csv.DictReader(f)]
        out.write_text(markdown(rows, base, command))
        return 0
    cells = [(base, a, net, op, dp) for a in names for dp in DP for net in NETWORKS for op in OPERATORS]
    rows: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for i, row in enumerate(pool.imap(_run_cell_args, cells)):
            rows.append(row)
            sys.stderr.write(f"[{i + 1}/{len(cells)}] {row['algorithm']} {row['network']} {row['compress']} "
                             f"dp={row['dp']}: {row['status']} ({row['seconds']} s)\n")
    refs = {(r["algorithm"], r["dp"]): r for r in rows
            if r["network"] == "static" and r["compress"] == "none" and r["status"] == "ok"}
    for r in rows:
        ref = refs.get((r["algorithm"], r["dp"]))
        if r["status"] == "ok" and ref is not None and ref["f0"] - ref["final"] > 0:
            r["progress"] = (r["f0"] - r["final"]) / (ref["f0"] - ref["final"])
            r["passed"] = r["progress"] >= PASS
        elif r["status"] in ("nan", "diverged"):
            r["passed"] = False
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = ["algorithm", "dp", "network", "compress", "status", "progress", "passed", "f0", "final",
            "grad_mapping", "bytes_per_node", "seconds", "warnings", "message"]
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    out.write_text(markdown(rows, base, command))
    failed = [r for r in rows if r.get("passed") is False]
    ran = [r for r in rows if r["status"] != "refused"]
    print(f"{len(ran)} cells ran, {len(rows) - len(ran)} refused, {len(failed)} failed (NaN, diverged or progress "
          f"< {PASS}); table: {out}")
    for r in failed:
        print(f"  FAILED {r['algorithm']} {r['network']} {r['compress']} dp={r['dp']}: {r['status']} "
              f"progress={r.get('progress', float('nan')):.3f}")
    return 1 if failed else 0


def _typed(r: dict[str, str]) -> dict[str, Any]:
    """A CSV row with its numbers and flags read back."""
    out: dict[str, Any] = dict(r)
    for k in ("progress", "f0", "final", "grad_mapping", "bytes_per_node", "seconds"):
        out[k] = float(r[k]) if r.get(k) else None
    if r.get("passed"):
        out["passed"] = r["passed"] == "True"
    else:
        out.pop("passed", None)
    if out["progress"] is None:
        out.pop("progress")
    return out


def _cell(r: dict[str, Any]) -> str:
    if r["status"] == "refused":
        return "-"
    if r["status"] != "ok":
        return f"**{r['status']}**"
    prog = r.get("progress")
    if prog is None:
        return "ok"
    mark = "" if r.get("passed") else " **FAIL**"
    return f"{prog:.2f}{mark}"


def markdown(rows: list[dict[str, Any]], base: dict[str, Any], command: str) -> str:
    lines = [
        "# The defaults matrix",
        "",
        f"Every decentralized algorithm on {base['data']} ({base['nodes']}-node {base['topology']}, "
        f"{base['iters']} iterations, "
        f"seed {base['seed']}) with every network and every compression operator, differential privacy off and on "
        "(`dp_clip = 1`, `dp_noise = 0.5`), every other setting at its default (`auto` step, mixing, rounds and "
        "consensus step).",
        "",
        "A cell is the share of the reference run's decrease of the training objective that the cell reaches, "
        "(F_0 - F_T) / (F_0 - F_T^ref), with F_T the median over the last 20% of the logged points and the "
        "reference the same algorithm and DP setting on the static ring without compression (1.00 there by "
        f"definition). It passes at >= {PASS} without NaN; `-`: the combination is refused with a one-line "
        "error (compressing a method that does not name what it mixes, DP for a method that reads more than "
        "fresh minibatches).",
        "",
        f"Command: `{command}`",
        "",
    ]
    ops = OPERATORS
    by_alg: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_alg.setdefault((r["algorithm"], r["dp"]), []).append(r)
    for (alg, dp), rs in by_alg.items():
        if all(r["status"] == "refused" for r in rs):
            lines += [f"**{alg}, DP {dp}**: refused ({rs[0].get('message', '')})", ""]
            continue
        lines += [f"**{alg}, DP {dp}**", "", "| network | " + " | ".join(ops) + " |",
                  "|---|" + "---|" * len(ops)]
        for net in NETWORKS:
            cells = {r["compress"]: r for r in rs if r["network"] == net}
            lines.append(f"| {net} | " + " | ".join(_cell(cells[o]) if o in cells else "" for o in ops) + " |")
        lines.append("")
    failed = [r for r in rows if r.get("passed") is False]
    lines += [f"Cells that ran: {sum(r['status'] != 'refused' for r in rows)}; failed: {len(failed)}.", ""]
    refs = {(r["algorithm"], r["dp"]): r["grad_mapping"] for r in rows
            if r["status"] == "ok" and r["network"] == "static" and r["compress"] == "none"}
    ratios = sorted(((r["grad_mapping"] / refs[r["algorithm"], r["dp"]], r) for r in rows
                     if r["status"] == "ok" and refs.get((r["algorithm"], r["dp"]))), key=lambda x: -x[0])
    if ratios:
        worst = ", ".join(f"{r['algorithm']} {r['network']} {r['compress']} ({q:.1f}x)" for q, r in ratios[:6])
        lines += [
            "## Stationarity",
            "",
            "The objective measure above saturates once a run is near the solution. The gradient mapping (tail "
            "median) relative to the same reference is stricter: its median over the cells that ran is "
            f"{statistics.median(q for q, _ in ratios):.2f}x, {sum(q > 3 for q, _ in ratios)} cells are above 3x "
            f"and {sum(q > 10 for q, _ in ratios)} above 10x. The worst: {worst}. Rand-k on a changing graph "
            "is the weak spot at this budget: its unbiased, high-variance payload (omega = 9 at 10%) gets "
            "consensus step 1/(1 + omega), so the nodes agree slowly within 200 iterations.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
