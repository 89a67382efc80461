"""The network results table (docs/neural-networks.md) from the runs experiments/run_device.sh writes to
experiments/runs/nn-results/.

Usage (repository root): python experiments/nn_results.py [RUNS_DIR] [--out TABLE]
-> experiments/reports/nn-results/table.md (the committed table).
Per run: batch, K, step, passes per node (component gradients per node / local samples), and at the last logged
row the test accuracy at the network average and the density of the proximal point there; plus, from the run's
sparsity.json (proxgt.reporting.tradeoff), the largest density of a node's own model and the test accuracy of the
worst node model.

Runs that are not under RUNS_DIR (the device runs were not brought back, or only some of them were rerun) keep
their row of the table being rewritten, so the committed results are never replaced by "not finished" rows;
only a run that has no row there either is listed as "not finished". With none of the runs under RUNS_DIR the
script refuses (one line, exit code 2) and leaves the table as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from proxgt._io import atomic_write_text
from proxgt.errors import ProxGTValueError
from proxgt.reporting.runs import load_run
from proxgt.reporting.tradeoff import run_sparsity

ORDER = ["mlp-sa-b32", "mlp-sa-b128", "mlp-sro", "mlp-sa-mixprox", "lenet-sa", "lenet-sa-step0.3", "lenet-sro"]
TARGET = {"mlp": 0.84, "lenet": 0.87}  # the accuracy targets of docs/neural-networks.md


HEADER = ["| run | model | algorithm | order | batch/node | K | step | passes | test acc. (target) | density (prox "
          "point at avg) | node-model density (max) | node-model test acc. (min) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]


def committed_rows(table: str) -> dict[str, str]:
    """The rows of an existing table, by run name (a row that says "not finished" is no result to keep)."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ORDER and "not finished" not in cells[1:2]:
            rows[cells[0]] = line
    return rows


def finished(root: Path) -> list[str]:
    """The runs of :data:`ORDER` that finished under ``root`` (their summary.json exists)."""
    return [name for name in ORDER if (root / name / "summary.json").is_file()]


def main(root: Path, committed: dict[str, str] | None = None) -> str:
    """The table of the runs under ``root``; a run not there keeps its row of ``committed`` (if it has one)."""
    lines = list(HEADER)
    kept = committed or {}
    for name in ORDER:
        p = root / name
        if not (p / "summary.json").is_file():
            lines.append(kept.get(name, f"| {name} | not finished | | | | | | | | | | |"))
            continue
        rec = load_run(p)
        s = json.loads((p / "summary.json").read_text())
        cfg, last = rec.config, rec.rows[-1]
        local = 60000 / int(cfg.get("nodes", 8))
        batch = cfg.get("batch")
        if cfg.get("algorithm") == "proxgt-sr-o":
            batch = f"{batch}, B {cfg.get('big_batch')}, q {cfg.get('period')}"
        sp = run_sparsity(p) or {}
        model = cfg.get("problem")
        acc = last.get("test_accuracy", float("nan"))
        mark = "**" if acc >= TARGET.get(model, 1.0) else ""
        nd = f"{max(sp['node_density']):.3f}" if sp else "-"
        na = f"{100 * min(sp['node_test_accuracy']):.1f}%" if sp else "-"
        lines.append(
            f"| {name} | {model} | {cfg.get('algorithm')} | {cfg.get('order', 'prox-mix')} | {batch} "
            f"| {s.get('rounds')} | {s.get('step'):g} | {last['ifo_per_node'] / local:.2f} "
            f"| {mark}{100 * acc:.1f}%{mark} "
            f"({100 * TARGET.get(model, 0):.0f}%) | {last.get('density', float('nan')):.3f} | {nd} | {na} |")
    return "\n".join(lines) + "\n"


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The network results table from the nn-results device runs.")
    ap.add_argument("runs", nargs="?", default="experiments/runs/nn-results", help="folder of the runs")
    ap.add_argument("--out", default="experiments/reports/nn-results/table.md", help="the table to (re)write")
    args = ap.parse_args(argv)
    root, out = Path(args.runs), Path(args.out)
    done = finished(root)
    if not done:
        print(f"error: none of the nn-results runs ({', '.join(ORDER)}) finished under {root} (experiments/"
              f"run_device.sh writes them); {out} is left as it is", file=sys.stderr)
        return 2
    committed = committed_rows(out.read_text()) if out.is_file() else {}
    try:
        md = main(root, committed)
    except ProxGTValueError as exc:  # a run folder that is not readable (load_run says which file)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = [n for n in ORDER if n not in done and n in committed]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, md)
    print(md)
    if kept:
        print(f"kept the rows of {out} for the runs not under {root}: {', '.join(kept)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
