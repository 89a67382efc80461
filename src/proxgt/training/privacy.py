"""Whether and how a run is made differentially private: the policy beside the run builder, over the pure
mechanism of :mod:`proxgt.privacy`.

A run can be made private when every local gradient it computes is a fresh minibatch gradient (its declared
:attr:`~proxgt.algorithms.base.Capabilities.oracle_calls`), its problem offers per-sample gradients
(:attr:`~proxgt.problems.base.Problem.per_sample_gradients`) and it draws minibatches (not ``batch = full``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from proxgt.algorithms.base import Capabilities
from proxgt.errors import ProxGTValueError
from proxgt.privacy.mechanism import PrivacyMechanism

__all__ = ["privacy_from_settings", "not_private_message"]


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
