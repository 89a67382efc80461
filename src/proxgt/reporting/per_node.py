"""Per-site results in reports: each node's final accuracy on its own local test data (runs with
``local_test_fraction``; their ``per_node.csv``), the worst node beside the mean, and a per-node bar chart.

"Final" here is the last logged row of each run, averaged over a series' seeds node by node (the per-node rows
are a snapshot per logged iteration; a site reads the model it ends with). For regression problems, where there
is no accuracy, the measure is the loss and the worst node is the one with the highest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxgt._io import read_metrics_csv

__all__ = ["final_per_node", "per_node_markdown", "plot_per_node", "worst_node"]


def final_per_node(records: Sequence[Any]) -> dict[int, dict[str, float]] | None:
    """{node: {column: seed mean at each run's last logged row}} over ``records`` (runs of one series), or None
    when a run has no per_node.csv."""
    sums: dict[int, dict[str, float]] = {}
    counts: dict[int, int] = {}
    for rec in records:
        path = Path(rec.path) / "per_node.csv"
        if not path.is_file():
            return None
        _, rows = read_metrics_csv(path)
        if not rows:
            return None
        last = max(r["iter"] for r in rows)
        for r in rows:
            if r["iter"] != last:
                continue
            node = int(r["node"])
            acc = sums.setdefault(node, {})
            for k, v in r.items():
                if k not in ("iter", "node"):
                    acc[k] = acc.get(k, 0.0) + float(v)
            counts[node] = counts.get(node, 0) + 1
    if not sums:
        return None
    return {node: {k: v / counts[node] for k, v in vals.items()} for node, vals in sorted(sums.items())}


def _measure(per_node: dict[int, dict[str, float]]) -> str:
    return "accuracy" if "avg_accuracy" in next(iter(per_node.values())) else "loss"


def worst_node(per_node: dict[int, dict[str, float]]) -> tuple[int, float, float]:
    """(worst node, its value, the mean over nodes) of the average model's local measure (lowest accuracy, or
    highest loss; ties: the lowest node id)."""
    m = _measure(per_node)
    key = f"avg_{m}"
    sign = 1.0 if m == "accuracy" else -1.0
    node = min(per_node, key=lambda i: (sign * per_node[i][key], i))
    vals = [v[key] for v in per_node.values()]
    return node, per_node[node][key], sum(vals) / len(vals)


def per_node_markdown(series: Mapping[str, Sequence[Any]]) -> str | None:
    """The report's "Per-site results" section (None when no series has per-node results)."""
    lines: list[str] = []
    for label, recs in series.items():
        done = [r for r in recs if r.status == "ok"]
        per_node = final_per_node(done) if done else None
        if per_node is None:
            continue
        m = _measure(per_node)
        node, worst, mean = worst_node(per_node)
        own = [v[f"own_{m}"] for v in per_node.values()]
        spread = max(v[f"avg_{m}"] for v in per_node.values()) - min(v[f"avg_{m}"] for v in per_node.values())
        nodes = ", ".join(f"{i}: {v[f'avg_{m}']:.3f}" for i, v in per_node.items())
        lines.append(f"| {label} | {mean:.3f} | {node} | {worst:.3f} | {spread:.3f} | {sum(own) / len(own):.3f} | "
                     f"{nodes} |")
        measure = m
    if not lines:
        return None
    return "\n".join([
        "## Per-site results",
        "",
        f"Each node's {measure} on its own held-out data (`local_test_fraction`), at the last logged row, "
        "averaged over seeds node by node: of the network-average model (mean over nodes, the worst node and "
        f"its value, largest minus smallest) and of each node's own model (mean). Worst: lowest {measure}"
        + (" (highest loss)" if measure == "loss" else "") + ".",
        "",
        f"| series | mean {measure} | worst node | worst {measure} | spread | own model mean | per node |",
        "|---|---|---|---|---|---|---|",
        *lines,
        "",
    ])


def plot_per_node(series: Mapping[str, Sequence[Any]], path: str | Path, *, title: str = "") -> bool:
    """A bar chart per series (one panel each, at most 12): every node's final local measure, the average model
    beside the node's own model, with the mean over nodes as a line and the worst node marked. False (nothing
    written) when no series has per-node results."""
    from matplotlib.figure import Figure

    from proxgt.reporting.curves import save_figure

    panels = []
    for label, recs in series.items():
        done = [r for r in recs if r.status == "ok"]
        per_node = final_per_node(done) if done else None
        if per_node is not None:
            panels.append((label, per_node))
    panels = panels[:12]
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.6))
    axs = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (label, per_node) in zip(axs.flat, panels, strict=False):
        m = _measure(per_node)
        nodes = list(per_node)
        pos = list(range(len(nodes)))
        avg = [per_node[i][f"avg_{m}"] for i in nodes]
        own = [per_node[i][f"own_{m}"] for i in nodes]
        ax.bar([p - 0.2 for p in pos], avg, width=0.4, color="C0", label="average model")
        ax.bar([p + 0.2 for p in pos], own, width=0.4, color="C1", alpha=0.7, label="own model")
        worst, value, mean = worst_node(per_node)
        ax.axhline(mean, color="k", lw=1, ls="--", label=f"mean {mean:.3f}")
        w = nodes.index(worst)
        ax.bar([w - 0.2], [value], width=0.4, color="none", edgecolor="C3", lw=2, label=f"worst: node {worst}")
        ax.set_xticks(pos, [str(i) for i in nodes] if len(nodes) <= 32 else [""] * len(nodes))
        ax.set_xlabel("node")
        ax.set_ylabel(f"local test {m}")
        ax.set_title(label, fontsize=9)
        # headroom above the bars for the legend, which then covers none of them
        ax.set_ylim(0, 1.15 if m == "accuracy" else 1.35 * max(avg + own))
        ax.legend(fontsize=7, loc="upper center", ncols=2, frameon=False)
    for ax in list(axs.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return True
