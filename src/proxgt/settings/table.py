"""The one table of run settings: name, section, default, constraint and help of each.

The table drives everything a user sees of a setting: validation (:meth:`RunConfig.validate`), the flat CLI
flags with their defaults in ``--help`` (:mod:`proxgt.cli.flags`), the TOML tables (a setting's section is its
table: ``[graph] nodes = 8``) and the settings reference of docs/settings.md (:func:`reference_markdown`). A new feature
adds rows here; nothing else lists settings by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxgt.settings.constraints import (
    Bool,
    Choice,
    Constraint,
    Either,
    Float,
    Int,
    PathValue,
    Registered,
    Str,
)

__all__ = ["Setting", "SETTINGS", "SECTIONS", "BY_NAME", "PATH_SETTINGS", "SPEC_OR_PATH_SETTINGS", "RESUMABLE",
           "reference_markdown"]

#: section -> what it holds (also the TOML table names, in this order)
SECTIONS: dict[str, str] = {
    "data": "where the samples come from and how they are split over nodes",
    "graph": "the communication network and its mixing matrix",
    "mixing": "multi-round gossip",
    "algorithm": "the method, its step and its gradient estimator",
    "problem": "the loss, the model and the regularizer",
    "privacy": "differential privacy per node: per-sample clipping, Gaussian noise, accounting (docs/privacy.md)",
    "run": "length, logging, seeds, precision and hardware",
    "clock": "the simulator's virtual clock (sim_time_s): compute time per node, latency and bandwidth per link "
             "(docs/virtual-clock.md)",
    "distributed": "the torch.distributed executor",
}


@dataclass(frozen=True)
class Setting:
    """One run setting. ``default=None`` means "unset" (the run derives a value, or the feature is off)."""

    name: str
    section: str
    default: Any
    constraint: Constraint
    help: str
    flag: str | None = None  # default: --name with '-' for '_'
    metavar: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The normalized value, or a one-line ProxGTValueError; None passes where the default is None."""
        if value is None and self.default is None:
            return None
        return self.constraint.check(value, self.name)


_REG_PARAM = "regularizer parameter"


class _CompressSpec(Constraint):
    """``compress``: checked by :class:`proxgt.compression.spec.CompressSpec`, imported on use (the table is a leaf)."""

    def _spec(self) -> Constraint:
        from proxgt.compression.spec import CompressSpec

        return CompressSpec()  # type: ignore[return-value]

    def describe(self) -> str:
        return self._spec().describe()

    def check(self, value: Any, name: str) -> Any:
        return self._spec().check(value, name)

class _ClockSpec(Constraint):
    """A virtual-clock setting: a delay distribution (:func:`proxgt.delays.parse_delay_or_file`, imported on use)
    or a CSV file of per-node or per-link values."""

    def __init__(self, unit: str, *, positive: bool = False):
        self.unit, self.positive = unit, positive

    def describe(self) -> str:
        lead = "a number B, const:B" if self.positive else "a number S, const:S"
        return f"{lead}, exp:MEAN, lognormal:MU,SIGMA ({self.unit}) or a .csv file"

    def check(self, value: Any, name: str) -> Any:
        from proxgt.delays import parse_delay_or_file

        parse_delay_or_file(value, name, self.describe(), positive=self.positive)
        return value.strip() if isinstance(value, str) else float(value)

SETTINGS: tuple[Setting, ...] = (
    # ------------------------------------------------------------------ data
    Setting("data", "data", "a9a-synthetic", Registered("DATASETS", or_path=True),
            "a built-in data set or a .npz / LIBSVM file", metavar="NAME|PATH"),
    Setting("data_dir", "data", None, PathValue(folder=True), "folder holding a named data set's files",
            metavar="DIR"),
    Setting("test_fraction", "data", 0.2, Float(0.0, 1.0), "held-out share when the data has no test split"),
    Setting("split", "data", "iid", Choice(("iid", "sorted", "dirichlet", "shards", "pairs")),
            "how samples are dealt to nodes (sorted, dirichlet, shards and pairs skew labels)"),
    Setting("alpha", "data", 0.5, Float(0.0, low_open=True), "Dirichlet concentration for split = dirichlet"),
    Setting("local_test_fraction", "data", None, Float(0.0, 1.0, low_open=True),
            "each node holds out this share of its own samples and the run logs, per node, accuracy and loss of the "
            "average and of its own model on them (per_node.csv; docs/per-site-results.md)", metavar="F"),
    # ------------------------------------------------------------------ graph
    Setting("nodes", "graph", 16, Int(1), "number of nodes n"),
    Setting("topology", "graph", "ring", Registered("TOPOLOGIES"), "graph family"),
    Setting("topology_p", "graph", None, Float(0.0, 1.0, low_open=True, high_open=False),
            "edge probability for topology = erdos_renyi"),
    Setting("topology_radius", "graph", None, Float(0.0, low_open=True), "radius for topology = random_geometric"),
    Setting("edge_file", "graph", None, PathValue(), "edge list for topology = file", metavar="PATH"),
    Setting("weights", "graph", "metropolis", Choice(("metropolis", "max_degree", "lazy_metropolis", "user")),
            "rule for the mixing matrix W (user: read it from weights_file)"),
    Setting("weights_file", "graph", None, PathValue(),
            "a mixing matrix W (.npy, .csv or .txt), validated against the graph; implies weights = user",
            metavar="PATH"),
    Setting("link_failure", "graph", 0.0, Float(0.0, 1.0),
            "probability that a link is down in a gossip round (independently per link and round)"),
    Setting("node_dropout", "graph", 0.0, Float(0.0, 1.0),
            "probability that a node sits out an iteration (no gradient, no messages, state kept)"),
    Setting("message_loss", "graph", 0.0, Float(0.0, 1.0),
            "probability that a gossip message is lost without its sender knowing (independently per message and "
            "round; simulator): trackers go by running sums, iterates by the newest value (docs/message-loss.md)"),
    Setting("link_trace", "graph", None, PathValue(folder=None),
            "replay the late and lost messages a site runtime recorded (link_trace.csv of proxgt site, or a folder "
            "of site run folders) in the running-sum mixer, instead of message_loss (docs/site-runtime.md)",
            metavar="PATH"),
    # ------------------------------------------------------------------ mixing
    Setting("mixing", "mixing", "auto", Choice(("auto", "plain", "chebyshev", "fastmix")),
            "multi-round gossip M_K, or auto (plain with lossy compression or a time-varying topology, "
            "chebyshev on a static graph; see docs/unreliable-networks.md for failures)"),
    Setting("rounds", "mixing", "auto", Either("auto", Int(1)),
            "gossip rounds K per mixing, or auto (smallest K with ||M_K - J|| <= mix_target)"),
    Setting("mix_target", "mixing", 0.2, Float(0.0, 1.0, low_open=True), "target ||M_K - J|| for rounds = auto"),
    Setting("compress", "mixing", "none", _CompressSpec(),
            "compress gossip messages, with error feedback: none, topk:RATIO, randk:RATIO, qsgd:LEVELS, sign, "
            "fp16 or bf16 (docs/compression.md)", metavar="SPEC"),
    Setting("consensus_step", "mixing", "auto", Either("auto", Float(0.0, 1.0, low_open=True, high_open=False)),
            "consensus step gamma of compressed gossip, or auto (min(1, delta) with delta the operator's "
            "contraction, e.g. k/d for topk:RATIO; docs/compression.md)"),
    # ------------------------------------------------------------------ algorithm
    Setting("algorithm", "algorithm", "proxgt-sa", Registered("ALGORITHMS"), "the method"),
    Setting("order", "algorithm", "prox-mix", Choice(("prox-mix", "mix-prox")), "ProxGT: prox before or after mixing"),
    Setting("step", "algorithm", "auto", Either("auto", Float(0.0, low_open=True)),
            "step a, or auto (1/L where L is known, else the problem's default)"),
    Setting("batch", "algorithm", None, Either("full", Int(1)),
            "minibatch b per node, or full: every stochastic gradient is the exact local gradient "
            "(deterministic mode) [default: the estimator's]"),
    Setting("big_batch", "algorithm", None, Int(1), "large batch B of the SR-O refresh [default: min(m, 256)]"),
    Setting("period", "algorithm", None, Int(1), "refresh period q of SR-O and SR-E [default: from b and m]"),
    # ------------------------------------------------------------------ problem
    Setting("problem", "problem", "logistic", Registered("PROBLEMS"), "the smooth loss f"),
    Setting("rho", "problem", 1e-3, Float(0.0), "weight of the logistic problem's non-convex penalty"),
    Setting("reg", "problem", "l1", Registered("REGULARIZERS"), "the non-smooth regularizer or constraint h"),
    Setting("reg_strength", "problem", 1e-4, Float(0.0), "strength of a penalty (l1, l2sq, elastic_net, group_lasso)"),
    Setting("l1_ratio", "problem", None, Float(0.0, 1.0, high_open=False),
            f"{_REG_PARAM} of elastic_net: share of l1 [default 0.5]"),
    Setting("reg_radius", "problem", None, Float(0.0, low_open=True), f"{_REG_PARAM} of l2_ball and l1_ball: radius"),
    Setting("box_lower", "problem", None, Float(), f"{_REG_PARAM} of box: lower bound"),
    Setting("box_upper", "problem", None, Float(), f"{_REG_PARAM} of box: upper bound"),
    Setting("group_size", "problem", None, Int(1), f"{_REG_PARAM} of group_lasso: consecutive groups of this size"),
    Setting("groups", "problem", None, PathValue(),
            f"{_REG_PARAM} of group_lasso: a file with one group id per feature (whitespace or comma separated)",
            metavar="PATH"),
    Setting("support_file", "problem", None, PathValue(),
            f"{_REG_PARAM} of support: an .npz whose x's non-zeros are the support (union over rows) "
            "[default: init]", metavar="PATH"),
    Setting("reg_bias", "problem", False, Bool(), "networks: also regularize biases"),
    Setting("reg_warmup", "problem", 0.0, Float(0.0, 1.0, high_open=False),
            "share of the iterations over which the penalty's strength ramps linearly from 0 to reg_strength "
            "(docs/neural-networks.md, sparse path)", metavar="SHARE"),
    Setting("sparsify_density", "problem", None, Float(0.0, 1.0, low_open=True),
            "sparse path: at iteration sparsify_at x iters the nodes agree on a magnitude threshold keeping at "
            "most this share of the weights, project on that support, then train on it (reg = support) "
            "[default: off]", metavar="SHARE"),
    Setting("sparsify_at", "problem", None, Float(0.0, 1.0, low_open=True),
            "sparse path: share of the iterations after which the network sparsifies [default 0.5]",
            metavar="SHARE"),
    Setting("sparsify_steps", "problem", None, Int(1),
            "sparse path: prune gradually, in this many steps evenly spaced up to sparsify_at, the density falling "
            "cubically to sparsify_density [default 1]", metavar="N"),
    Setting("hidden", "problem", 256, Int(1), "hidden width of problem = mlp"),
    Setting("activation", "problem", "relu", Choice(("relu", "tanh")), "activation of mlp and lenet"),
    Setting("nn_grad", "problem", "auto", Choice(("auto", "grouped", "vmap")),
            "how network gradients are batched over nodes"),
    Setting("init", "problem", None, PathValue(),
            "an .npz whose x is the initial point: one (d,) for every node or one row per node (n, d)",
            metavar="PATH"),
    # ------------------------------------------------------------------ clock
    Setting("node_speed", "clock", None, _ClockSpec("seconds per component gradient, >= 0"),
            "seconds per component gradient of each node, drawn per node and compute phase, or a CSV file of "
            "NODE,SPEC rows; setting any clock setting logs sim_time_s [default: 0]", metavar="SPEC|CSV"),
    Setting("link_latency", "clock", None, _ClockSpec("seconds, >= 0"),
            "seconds a message takes on a link besides its size over the bandwidth, drawn per message, or a CSV "
            "file of I,J,SPEC rows (*,*,SPEC for the links not listed) [default: 0]", metavar="SPEC|CSV"),
    Setting("link_bandwidth", "clock", None, _ClockSpec("bytes per second, > 0", positive=True),
            "bytes per second of a link, drawn per message, or a CSV file of I,J,SPEC rows [default: infinite]",
            metavar="SPEC|CSV"),
    Setting("availability", "clock", None, PathValue(),
            "a CSV file of NODE,START_S,END_S rows: the node is off during [START_S, END_S) of virtual time (it "
            "does not compute or send; messages to it wait until it is back)", metavar="CSV"),
    Setting("link_outages", "clock", None, PathValue(),
            "a CSV file of I,J,START_S,END_S rows: the link carries nothing during [START_S, END_S); a message sent "
            "meanwhile leaves when it is back (late rather than lost, docs/virtual-clock.md)", metavar="CSV"),
    Setting("round_deadline", "clock", None, Float(0.0),
            "seconds a node waits in a synchronous round for its neighbours' messages past its own ready time; a "
            "later message is late: made good by the next one (trackers by running sums, docs/message-loss.md)",
            metavar="SECONDS"),
    Setting("asynchronous", "clock", False, Bool(),
            "nodes compute and send on their own virtual clocks and mix with the newest message from each "
            "neighbour, never waiting for one (ProxGT; plain mixing, one round)", flag="--async"),
    Setting("max_staleness", "clock", 4, Int(0),
            "with --async: a node waits rather than mix with a neighbour's message more than this many of its "
            "iterations old (0 would be the synchronous run)"),
    # ------------------------------------------------------------------ privacy
    Setting("dp_clip", "privacy", None, Float(0.0, low_open=True),
            "differential privacy: clip each per-sample gradient to this norm C [default: no DP]", metavar="C"),
    Setting("dp_noise", "privacy", None, Float(0.0, low_open=True),
            "noise multiplier sigma: Gaussian noise of std sigma*C on each node's clipped minibatch sum",
            metavar="SIGMA"),
    Setting("dp_epsilon", "privacy", None, Either("off", Float(0.0, low_open=True)),
            "target per-node epsilon: solve sigma before the run (instead of dp_noise); off: no DP",
            metavar="TARGET"),
    Setting("dp_delta", "privacy", 1e-5, Float(0.0, 1.0, low_open=True), "delta of the (epsilon, delta) reported",
            metavar="DELTA"),
    Setting("dp_secure_noise", "privacy", None, Bool(),
            "draw each node's DP noise and Poisson samples from a seed taken from the operating system's secure "
            "randomness, which no other process or site knows, instead of from seed (the run then repeats only "
            "through a resume) [default: off in one process, always on for 'proxgt launch' workers and sites]"),
    # ------------------------------------------------------------------ run
    Setting("iters", "run", 500, Int(1), "iterations T"),
    Setting("epochs", "run", None, Float(0.0, low_open=True),
            "passes over the local data instead of iters: T = ceil(epochs * m / b)"),
    Setting("log_every", "run", 10, Int(1), "log metrics every this many iterations"),
    Setting("metrics_samples", "run", None, Int(1),
            "networks: training metrics on a fixed subsample of this many samples per node [default: all]"),
    Setting("seed", "run", 0, Int(0), "random seed (data split, graph, sampling, initialization)"),
    Setting("out", "run", None, Str(), "output folder [default: runs/<algorithm>-seed<seed>]", metavar="DIR"),
    Setting("dtype", "run", "float32", Choice(("float32", "float64")), "floating-point precision"),
    Setting("device", "run", "cpu", Str(), "cpu or cuda[:i]"),
    Setting("threads", "run", "auto", Either("auto", Int(1)), "intra-op threads (auto: 1)"),
    Setting("checkpoint_every", "run", 0, Int(0), "write a checkpoint every N iterations (0: never; see --resume)"),
    Setting("tensorboard", "run", None, PathValue(must_exist=False, folder=True),
            "also write every logged metric as TensorBoard scalars, to DIR/<run folder name> (needs "
            "pip install 'proxgt[tensorboard]')", metavar="DIR"),
    # ------------------------------------------------------------------ distributed
    Setting("timeout_s", "distributed", 120.0, Float(0.0, low_open=True),
            "seconds a distributed process waits for a peer before failing", flag="--timeout"),
    Setting("on_failure", "distributed", "abort", Choice(("abort", "continue")),
            "when a process dies or stops answering: abort the run, or continue on the surviving graph "
            "(docs/fault-tolerance.md)"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
#: settings a resumed run may change; every other one comes from its checkpoint (a larger ``iters`` extends a
#: finished run: proxgt.executors.driver.plan_resume)
RESUMABLE: tuple[str, ...] = ("iters", "checkpoint_every", "timeout_s", "on_failure", "tensorboard")
#: settings that hold a path, recorded absolute in a run's config.toml
PATH_SETTINGS: tuple[str, ...] = tuple(s.name for s in SETTINGS if isinstance(s.constraint, PathValue))
#: settings that hold a distribution or the path of a file (recorded absolute when they name a file)
SPEC_OR_PATH_SETTINGS: tuple[str, ...] = tuple(s.name for s in SETTINGS if isinstance(s.constraint, _ClockSpec))


def reference_markdown() -> str:
    """The settings reference (docs/settings.md), generated from the table (one Markdown table per section)."""
    lines = []
    for section, what in SECTIONS.items():
        lines += [f"**`[{section}]`**: {what}", "", "| setting | flag | default | accepts | meaning |",
                  "|---|---|---|---|---|"]
        for s in SETTINGS:
            if s.section != section:
                continue
            default = "-" if s.default is None else f"`{s.default}`"
            accepts = s.constraint.describe().replace("|", "\\|")
            lines.append(f"| `{s.name}` | `{s.cli_flag}` | {default} | {accepts} | {s.help.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
