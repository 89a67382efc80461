"""Whether and how a run is made differentially private: the policy beside the run builder, over the pure
mechanism of :mod:`proxgt.privacy`.

Whose randomness: in one process (``proxgt run``) a node's Poisson samples and noise derive from the run's seed,
so the same seed gives the same run. Across processes or sites every party knows that seed and could regenerate
(and subtract) another's noise, so there each process draws a seed of its own from the operating system's secure
randomness (``dp_secure_noise``, always on for ``proxgt launch`` workers; :func:`secure_seed`,
:func:`site_noise_seed`); it is never derived from the shared seed and never written to a shared file (the
generators' states go into that process's own checkpoint file, mode 0600, so that a resume repeats the run
exactly). See docs/security.md.

A run can be made private when every local gradient it computes is a fresh minibatch gradient (its declared
:attr:`~proxgt.algorithms.base.Capabilities.oracle_calls`), its problem offers per-sample gradients
(:attr:`~proxgt.problems.base.Problem.per_sample_gradients`) and it draws minibatches (not ``batch = full``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxgt._io import atomic_write_bytes
from proxgt.algorithms.base import Capabilities
from proxgt.errors import ProxGTValueError
from proxgt.privacy.mechanism import PrivacyMechanism
from proxgt.registry import DATA_SMOOTHNESS, PROBLEMS
from proxgt.settings import RunConfig

__all__ = ["privacy_from_settings", "not_private_message", "dp_requested", "secure_seed", "site_noise_seed",
           "private_across_processes", "NOISE_SEED_FILE", "AUTO_STEP_ACROSS_PROCESSES"]

#: the refusal of ``step = auto`` under DP across processes for a problem whose smoothness comes from its data
AUTO_STEP_ACROSS_PROCESSES = (
    "step = auto needs the smoothness bound of every process's data (a power iteration summed over processes), "
    "which differential privacy across processes keeps inside each process: give step (--step; a 'proxgt run' "
    "of the same settings records its auto step in config.toml)")
#: a site's own noise seed in its run folder (:func:`site_noise_seed`)
NOISE_SEED_FILE = "dp_noise_seed"


def dp_requested(cfg: Any) -> bool:
    """Whether the settings ask for differential privacy (``dp_clip`` given and ``dp_epsilon`` not off)."""
    return cfg.dp_clip is not None and cfg.dp_epsilon != "off"


def private_across_processes(cfg: RunConfig, *, metrics_stay_local: bool = False) -> RunConfig:
    """``cfg`` for processes or sites that do not trust each other with their data: under DP every process draws
    its noise and samples from a secret seed of its own (``dp_secure_noise`` on; every process knows the run's
    seed); ``dp_secure_noise = false`` is refused with one line, and so is ``step = auto`` where the problem's
    smoothness comes from its data (every process's raw rows would enter a power iteration). Per-site results
    (``local_test_fraction``) are refused too unless ``metrics_stay_local`` (a site runtime, whose per-node table
    never leaves the site): a launch would send each node's metrics on its raw local data to rank 0
    (docs/security.md)."""
    if not dp_requested(cfg):
        return cfg
    if cfg.dp_secure_noise is False:
        raise ProxGTValueError("dp_secure_noise = false is not available across processes: every process knows the "
                               "run's seed and could regenerate another's noise; drop it (each process draws its "
                               "noise from secure randomness)")
    if cfg.step == "auto" and DATA_SMOOTHNESS in PROBLEMS.traits(cfg.problem):
        raise ProxGTValueError(AUTO_STEP_ACROSS_PROCESSES)
    if cfg.local_test_fraction is not None and not metrics_stay_local:
        raise ProxGTValueError("local_test_fraction (per-site results) is not available with differential privacy "
                               "across processes: each node's metrics on its raw local data would be sent to rank 0")
    return cfg.replace(dp_secure_noise=True)


def secure_seed() -> int:
    """A 128-bit seed from the operating system's secure randomness (``secrets``): nothing another process can
    derive from the run's settings."""
    return secrets.randbits(128)


def site_noise_seed(run_dir: str | Path, *, resume: bool = False) -> int:
    """This site's DP noise seed, kept in its own run folder (``run_dir/dp_noise_seed``, mode 0600).

    A fresh start draws a new one (:func:`secure_seed`) and replaces any file left by an earlier run: two runs
    that drew the same noise would reveal the difference of their gradients. ``resume=True`` reads the one the
    run started with (a one-line error when it is missing or unreadable), so that a resumed site draws exactly
    the noise it would have drawn. The file never leaves the site; it is not part of any shared file.
    """
    path = Path(run_dir) / NOISE_SEED_FILE
    if resume:
        try:
            text = path.read_text().strip()
            return int(text, 16)
        except (OSError, ValueError):
            raise ProxGTValueError(f"cannot resume the differentially private run in {run_dir}: its noise seed "
                                   f"{path} is missing or unreadable (start the run over instead)") from None
    seed = secure_seed()
    atomic_write_bytes(path, f"{seed:032x}\n".encode(), private=True)
    return seed


def not_private_message(name: str, capabilities: Capabilities) -> str | None:
    """The one-line refusal of DP for the algorithm ``name``, or None when DP covers it."""
    reason = capabilities.not_private_reason()
    if reason is None:
        return None
    return (f"differential privacy is not available with {name}: {reason}; use a method whose every local "
            "gradient is a fresh minibatch gradient (e.g. proxgt-sa, prox-dsgt, dproxsgt, prox-dsgd)")


def privacy_from_settings(cfg: Any, *, algorithm: Any, problem: Any, local_sizes: Sequence[int],
                          iters: int) -> tuple[PrivacyMechanism | None, dict[str, Any]]:
    """The run's mechanism (None when DP is off) and the values it resolved (``dp_noise`` solved from
    ``dp_epsilon``). Raises a one-line ProxGTValueError for an inconsistent combination.

    ``dp_epsilon`` is solved for the worst node (the smallest m_i, hence the largest q_i = b / m_i) over
    ``iters + 1`` releases: the initial gradient V_0 and one minibatch gradient per iteration.
    """
    clip, noise, target = cfg.dp_clip, cfg.dp_noise, cfg.dp_epsilon
    if target == "off":
        return None, {}
    if clip is None:
        given = [f for f, v in (("dp_noise", noise), ("dp_epsilon", target)) if v is not None]
        if given:
            raise ProxGTValueError(f"{given[0]} (--{given[0].replace('_', '-')}) needs dp_clip (--dp-clip): "
                                   "differential privacy clips each per-sample gradient to norm C first")
        return None, {}
    if (noise is None) == (target is None):
        raise ProxGTValueError("with dp_clip give exactly one of dp_noise (--dp-noise SIGMA) and dp_epsilon "
                               "(--dp-epsilon TARGET, which solves sigma)" + ("; got both" if noise else ""))
    if cfg.batch == "full":
        raise ProxGTValueError("differential privacy needs a minibatch (Poisson subsampling): batch = full is not "
                               "available with dp_clip")
    caps: Capabilities = algorithm.capabilities
    reason = not_private_message(cfg.algorithm, caps)
    if reason:
        raise ProxGTValueError(reason)
    if not problem.per_sample_gradients:
        raise ProxGTValueError(f"differential privacy needs per-sample gradients, which problem {cfg.problem!r} "
                               "does not provide")
    if caps.batch_per_iter is None:
        raise ProxGTValueError(f"differential privacy needs a minibatch method; {cfg.algorithm} reads all local data "
                               "every iteration")
    batch = int(caps.batch_per_iter)
    smallest = min(int(m) for m in local_sizes)
    if batch > smallest:
        raise ProxGTValueError(
            f"differential privacy samples each record with probability b / m; batch {batch} exceeds the smallest "
            f"node's {smallest} samples: use a batch <= {smallest}"
        )
    resolved: dict[str, Any] = {}
    if target is not None:
        from proxgt.privacy.accountant import noise_for_epsilon

        noise = noise_for_epsilon(float(target), float(cfg.dp_delta), batch / smallest, int(iters) + 1)
        if not math.isfinite(noise) or noise <= 0:
            raise ProxGTValueError(f"dp_epsilon {target:g}: the accountant found no usable noise multiplier")
        resolved["dp_noise"] = noise
    mech = PrivacyMechanism(float(clip), float(noise), float(cfg.dp_delta), tuple(int(m) for m in local_sizes))
    return mech, resolved
