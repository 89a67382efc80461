"""``proxgt run``: one configuration, all nodes simulated in this process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from proxgt._validation import ProxGTValueError
from proxgt.config import RunConfig, load_config_file

__all__ = ["register", "add_run_flags", "config_from_args", "resume_overrides", "number_or"]


def number_or(word: str, cast: type = float, what: str = "a number") -> Any:
    """An argparse type accepting ``word`` or a number converted by ``cast`` (e.g. ``--step auto``)."""

    def parse(text: str) -> Any:
        if text == word:
            return text
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or {word!r}, got {text!r}") from None

    return parse


_int_or_auto = number_or("auto", int, "an integer")
_float_or_auto = number_or("auto", float, "a number")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# flag -> (config field, type, help)
RUN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--algorithm", "algorithm", str, "proxgt-sa | proxgt-sr-o | proxgt-sr-e | prox-dsgd | prox-dsgt | deepstorm | "
     "deepstorm-diminishing | prox-dasa-gt | sppdm | central-prox-sgd | central-proxsarah"),
    ("--problem", "problem", str, "logistic | softmax | least_squares | mlp | lenet"),
    ("--data", "data", str, "a9a-synthetic | breast_cancer | digits | iris | wine | fashion-mnist | PATH"),
    ("--data-dir", "data_dir", str, "folder holding a named data set's files"),
    ("--test-fraction", "test_fraction", float, "held-out share when the data has no test split"),
    ("--split", "split", str, "iid | sorted | dirichlet | shards"),
    ("--alpha", "alpha", float, "Dirichlet concentration for --split dirichlet"),
    ("--nodes", "nodes", int, "number of nodes n"),
    ("--topology", "topology", str, "ring | path | star | complete | grid | torus | hypercube | exponential | "
     "erdos_renyi | random_geometric | file"),
    ("--topology-p", "topology_p", float, "edge probability for erdos_renyi"),
    ("--topology-radius", "topology_radius", float, "radius for random_geometric"),
    ("--edge-file", "edge_file", str, "edge list for --topology file"),
    ("--weights", "weights", str, "metropolis | max_degree | lazy_metropolis"),
    ("--mixing", "mixing", str, "plain | chebyshev | fastmix"),
    ("--rounds", "rounds", _int_or_auto, "gossip rounds K per mixing, or auto (smallest K with ||M_K-J|| <= target)"),
    ("--mix-target", "mix_target", float, "target ||M_K - J|| for --rounds auto (default 0.2)"),
    ("--order", "order", str, "prox-mix (default) | mix-prox"),
    ("--step", "step", _float_or_auto, "step a, or auto (1/L where L is known)"),
    ("--batch", "batch", int, "minibatch b per node"),
    ("--big-batch", "big_batch", int, "large batch B (SR-O refresh)"),
    ("--period", "period", int, "refresh period q (SR-O, SR-E)"),
    ("--reg", "reg", str, "none | l1 | l2sq | elastic_net | group_lasso | nonneg | box | l2_ball | l1_ball"),
    ("--reg-strength", "reg_strength", float, "regularization strength (or radius for balls)"),
    ("--rho", "rho", float, "non-convex penalty weight of the logistic problem"),
    ("--iters", "iters", int, "iterations T"),
    ("--log-every", "log_every", int, "log metrics every this many iterations"),
    ("--seed", "seed", int, "random seed"),
    ("--dtype", "dtype", str, "float32 | float64"),
    ("--device", "device", str, "cpu | cuda"),
    ("--checkpoint-every", "checkpoint_every", int, "write a checkpoint every N iterations (0: never; see --resume)"),
    ("--timeout", "timeout_s", float, "seconds a distributed process waits for a peer before failing (default 120)"),
    ("--hidden", "hidden", int, "hidden width of --problem mlp (default 256)"),
    ("--activation", "activation", str, "relu | tanh, for --problem mlp and lenet"),
    ("--reg-bias", "reg_bias", _bool, "true | false: also regularize network biases (default false)"),
    ("--nn-grad", "nn_grad", str, "auto | grouped | vmap: how network gradients are batched over nodes"),
    ("--metrics-samples", "metrics_samples", int, "networks: training metrics on a fixed subsample of this many "
     "samples per node (default: all)"),
]

# Settings a resumed run may change; every other setting comes from the checkpoint.
RESUME_OVERRIDABLE = ("checkpoint_every", "timeout_s")


def add_run_flags(p: argparse.ArgumentParser, *, with_out: bool = True) -> None:
    p.add_argument("-c", "--config", help="TOML file with settings (flags override it)")
    for flag, dest, typ, help_text in RUN_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_text)
    if with_out:
        p.add_argument("--out", dest="out", default=None, help="output folder (default runs/<algorithm>-<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = load_config_file(args.config)
        base.pop("meta", None)
    cfg = RunConfig.from_dict(base, source=args.config or "config")
    overrides = {dest: getattr(args, dest, None) for _, dest, _, _ in RUN_FLAGS}
    overrides["out"] = getattr(args, "out", None)
    return cfg.merged(overrides)


def resume_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """With ``--resume DIR``: the settings a resumed run may change; any other setting is an error."""
    given = [flag for flag, dest, _, _ in RUN_FLAGS if getattr(args, dest, None) is not None
             and dest not in RESUME_OVERRIDABLE]
    if getattr(args, "config", None):
        given.insert(0, "--config")
    if getattr(args, "out", None):
        given.append("--out")
    if given:
        raise ProxGTValueError(
            f"--resume continues a run with the settings of its checkpoint; drop {', '.join(given)} "
            "(only --checkpoint-every and --timeout may change)"
        )
    return {dest: getattr(args, dest) for dest in RESUME_OVERRIDABLE if getattr(args, dest, None) is not None}


def _handle(args: argparse.Namespace) -> int:
    from proxgt.executors.simulation import run_simulation

    progress = sys.stderr.isatty() and not args.no_progress
    if getattr(args, "resume", None):
        overrides = resume_overrides(args)
        hist = run_simulation(None, resume=args.resume, progress=progress, overrides=overrides)
        cfg = RunConfig(algorithm=hist.config["algorithm"], out=args.resume)
    else:
        cfg = config_from_args(args)
        if not cfg.out:
            cfg.out = f"runs/{cfg.algorithm}-seed{cfg.seed}"
        hist = run_simulation(cfg, progress=progress)
    last = hist.rows[-1]
    parts = [f"{k}={last[k]:.4g}" for k in ("grad_mapping_sq", "consensus", "objective") if k in last]
    for k in ("test_accuracy", "density"):
        if k in last:
            parts.append(f"{k}={last[k]:.4f}")
    print(f"{cfg.algorithm}: {int(last['iter'])} iterations, ifo/node={last['ifo_per_node']:.0f}, "
          f"rounds={int(last['comm_rounds'])}; " + ", ".join(parts))
    print(f"wrote {cfg.out}/{{config.toml,metrics.csv,final.npz,summary.json}}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one configuration (all nodes simulated in this process)")
    add_run_flags(p)
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in folder DIR from its newest checkpoint (settings from the checkpoint)")
    p.set_defaults(handler=_handle)
