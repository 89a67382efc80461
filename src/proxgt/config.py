"""The typed run configuration shared by the Python API, the CLI and TOML files.

A :class:`RunConfig` is filled from a TOML file and/or flags (flags win), validated in one place against a
table of constraints, and written back, resolved (auto values replaced by what was used), as ``config.toml``
next to the run's outputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from proxgt._validation import ProxGTValueError

__all__ = ["RunConfig", "ALGORITHMS", "PROBLEMS", "load_config_file"]

# Algorithm names the runner knows, mapped to how they are built (see proxgt.runner.build_algorithm).
ALGORITHMS: dict[str, str] = {
    "proxgt-sa": "sa",
    "proxgt-sr-o": "sr-o",
    "proxgt-sr-e": "sr-e",
}
PROBLEMS: tuple[str, ...] = ("logistic", "softmax", "least_squares")


@dataclass
class RunConfig:
    """Everything that defines a run. ``"auto"`` values are resolved at build time and recorded."""

    algorithm: str = "proxgt-sa"
    problem: str = "logistic"
    data: str = "a9a-synthetic"
    data_dir: str | None = None
    test_fraction: float = 0.2
    split: str = "iid"
    alpha: float = 0.5
    nodes: int = 16
    topology: str = "ring"
    topology_p: float | None = None
    topology_radius: float | None = None
    edge_file: str | None = None
    weights: str = "metropolis"
    mixing: str = "chebyshev"
    rounds: int | str = "auto"
    mix_target: float = 0.2
    order: str = "prox-mix"
    step: float | str = "auto"
    batch: int | None = None
    big_batch: int | None = None
    period: int | None = None
    reg: str = "l1"
    reg_strength: float = 1e-4
    rho: float = 1e-3
    iters: int = 500
    log_every: int = 10
    seed: int = 0
    out: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | str = "auto"
    # --- neural-network problems (proxgt.problems.nn)
    hidden: int = 256
    reg_bias: bool = False
    activation: str = "relu"
    nn_grad: str = "auto"
    metrics_samples: int | None = None
    # --- checkpointing and distributed execution (proxgt.executors)
    checkpoint_every: int = 0
    timeout_s: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a mapping; keys may use '-' or '_'. Unknown keys are an error naming the source."""
        known = set(cls.field_names())
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = dict(values.get("extra", {}) or {})
        for key, val in values.items():
            if key == "extra":
                continue
            name = key.replace("-", "_")
            if name not in known:
                raise ProxGTValueError(
                    f"unknown setting '{key}' in {source}; known settings: {', '.join(sorted(known))}"
                )
            kwargs[name] = val
        cfg = cls(**kwargs)
        cfg.extra = extra
        return cfg

    def merged(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with the given (already parsed) values replaced; None values are ignored."""
        data = self.to_dict()
        data.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None})
        return RunConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d.get("extra"):
            d.pop("extra", None)
        return d

    # ------------------------------------------------------------------ validation
    def validate(self) -> RunConfig:
        """Check every setting; raise ProxGTValueError with a one-line message on the first bad one."""
        known_algorithms = available_algorithms()
        if self.algorithm not in known_algorithms:
            raise ProxGTValueError(
                f"unknown algorithm {self.algorithm!r}; choose one of: {', '.join(sorted(known_algorithms))}"
            )
        problems = available_problems()
        if self.problem not in problems:
            raise ProxGTValueError(f"unknown problem {self.problem!r}; choose one of: {', '.join(problems)}")
        _int(self, "nodes", 1)
        _int(self, "iters", 1)
        _int(self, "log_every", 1)
        _int(self, "seed", 0)
        for name in ("batch", "big_batch", "period"):
            if getattr(self, name) is not None:
                _int(self, name, 1)
        if self.threads != "auto":
            _int(self, "threads", 1)
        if self.rounds != "auto":
            _int(self, "rounds", 1)
        if self.step != "auto":
            _float(self, "step", positive=True)
        _float(self, "reg_strength")
        _float(self, "rho")
        _float(self, "alpha", positive=True)
        if not (isinstance(self.test_fraction, int | float) and 0.0 <= self.test_fraction < 1.0):
            raise ProxGTValueError(f"test_fraction must be in [0, 1). Got {self.test_fraction!r} instead.")
        if not (isinstance(self.mix_target, int | float) and 0.0 < self.mix_target < 1.0):
            raise ProxGTValueError(f"mix_target must be in (0, 1). Got {self.mix_target!r} instead.")
        _choice(self, "mixing", ("plain", "chebyshev", "fastmix"))
        _choice(self, "order", ("prox-mix", "mix-prox"))
        _choice(self, "dtype", ("float32", "float64"))
        if not (self.device == "cpu" or str(self.device).startswith("cuda")):
            raise ProxGTValueError(f"The 'device' setting must be 'cpu' or 'cuda[:i]'. Got {self.device!r} instead.")
        if str(self.device).startswith("cuda"):
            _check_cuda(str(self.device))
        return self


def _check_cuda(device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ProxGTValueError(
            f"device {device!r} requested but no CUDA GPU is available here (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --device cpu"
        )
    try:
        index = torch.device(device).index
    except RuntimeError:
        raise ProxGTValueError(f"The 'device' setting must be 'cpu' or 'cuda[:i]'. Got {device!r} instead.") from None
    if index is not None and index >= torch.cuda.device_count():
        raise ProxGTValueError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")


def _int(cfg: RunConfig, name: str, low: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v) or v < low:
        raise ProxGTValueError(f"The '{name}' setting must be an int >= {low}. Got {v!r} instead.")
    setattr(cfg, name, int(v))


def _float(cfg: RunConfig, name: str, positive: bool = False) -> None:
    v = getattr(cfg, name)
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > 0 if positive else v >= 0)
    if not ok:
        rel = "> 0" if positive else ">= 0"
        raise ProxGTValueError(f"The '{name}' setting must be a finite number {rel}. Got {v!r} instead.")
    setattr(cfg, name, float(v))


def _choice(cfg: RunConfig, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in choices:
        raise ProxGTValueError(f"The '{name}' setting must be one of {', '.join(choices)}. Got {v!r} instead.")


def available_algorithms() -> list[str]:
    """Names the runner can build (ProxGT instances plus any registered baselines)."""
    from proxgt.runner import ALGORITHM_BUILDERS

    return list(ALGORITHM_BUILDERS)


def available_problems() -> list[str]:
    from proxgt.runner import PROBLEM_BUILDERS

    return list(PROBLEM_BUILDERS)


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or invalid TOML is a one-line ProxGTValueError."""
    p = Path(path)
    if not p.is_file():
        raise ProxGTValueError(f"{what} not found: {p}")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProxGTValueError(f"{p}: invalid TOML: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file into a flat mapping (a ``[run]`` table, if present, is used as the root)."""
    data = read_toml(path)
    if "run" in data and isinstance(data["run"], dict):
        data = data["run"]
    return data
