"""``mixing = auto`` and ``rounds = auto``: the gossip that the run's graph and compression can take safely.

The rules (docs/compression.md and docs/unreliable-networks.md give the measurements behind them):

* **Compression**: plain rounds unless the operator contracts enough for the accelerated recurrence
  (:func:`tolerates`: sqrt(1 - delta) max_k (|alpha_k| + |beta_k|) < 1, so the casts and QSGD with many
  levels keep Chebyshev, top-k, rand-k, sign and coarse QSGD get plain rounds). Chebyshev's coefficients reach
  about 2 and amplify whatever the public copies lag behind: on real a9a ``topk:0.1``, ``sign`` and
  ``qsgd:16`` (delta 0.68) diverged with it, ``qsgd:64`` (delta 0.97) and the casts did not. The rounds are
  those the uncompressed run would use, so at equal iterations the bytes shrink by exactly the payload ratio.
* **One-peer-exponential**: plain, log2(n) rounds: each round averages one bit of the node label, so log2(n)
  plain rounds average exactly (Chebyshev's coefficients would undo that).
* **Random matching, link failures, node dropout** (the round matrix changes): K is the smallest whose
  *measured* contraction on the run's own schedule reaches ``mix_target`` (:func:`measured_contraction`).
  A time-varying family uses plain rounds (its rounds are independent averaging steps; Chebyshev's
  coefficients are those of the expected matrix and carry no guarantee). A static graph with failures or
  dropout takes whichever of plain and Chebyshev (on the failure-free lambda) reaches the target in fewer
  measured rounds: Chebyshev at moderate failure rates, plain when links fail often. Node dropout is left out
  of the measurement: a node that sits an iteration out cannot be reached by any number of rounds, so rounds
  are chosen for the links (with dropout alone: the static graph's exact rule).
* **Message loss** (running sums, :mod:`proxgt.mixing.running_sums`): plain, with plain gossip's K.
* Otherwise Chebyshev with the smallest K whose exact ``||M_K - J||`` reaches ``mix_target``.

A value the user sets is kept; where it is known to be unstable (a recurrence that :func:`tolerates` refuses
for the operator) the run says so in one warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from proxgt.mixing.dynamic import DynamicCommunicator, NetworkSchedule, auto_rounds
from proxgt.mixing.mixer import Mixer, recurrence
from proxgt.mixing.spectral import rounds_within

__all__ = ["AUTO_ROUNDS_CAP", "measured_contraction", "measured_rounds", "resolve_gossip", "tolerates",
           "warn_unstable_mixing"]

#: ``rounds = auto`` never picks more rounds than this: a 10,000-node ring would need thousands of Chebyshev
#: rounds per mixing to reach the default target (hours of gossip per iteration, and float32 recurrences that
#: long lose the average); the run warns and uses the cap, and ``--rounds K`` still takes any K.
AUTO_ROUNDS_CAP = 128

#: how many iterations of the schedule, and random directions per iteration, a measured contraction averages
_PROBE_ITERATIONS, _PROBE_DIRECTIONS = 8, 4


def tolerates(kind: str, rounds: int, lam: float, delta: float) -> bool:
    """Whether compressed gossip whose public copies contract with ``delta`` can run ``kind``'s recurrence:
    sqrt(1 - delta) max_k (|alpha_k| + |beta_k|) < 1. A compressed round leaves the copies behind by at most
    sqrt(1 - delta) of the difference it sends, and the round Z_{k+1} = alpha_k (W Z_k) + beta_k Z_{k-1} carries
    that lag on with weight up to |alpha_k| + |beta_k|; plain rounds (weight 1) always pass."""
    if delta >= 1.0:
        return True
    amplification = max(abs(a) + abs(b) for a, b in recurrence(kind, rounds, lam))
    return math.sqrt(1.0 - delta) * amplification < 1.0


def warn_unstable_mixing(kind: str, compress: str) -> None:
    """One warning for a mixing kind the user set that is known to be unstable with the operator."""
    warnings.warn(
        f"mixing = '{kind}' with compress = '{compress}': these rounds amplify the lag of the public copies "
        "more than the operator's contraction removes (on a9a such runs diverged); mixing = 'plain' (the auto "
        "choice) is stable",
        stacklevel=4,
    )


def measured_contraction(network: NetworkSchedule, lam: float, kind: str, rounds: int, seed: int) -> float:
    """The root-mean-square of ||M_K z - mean(z)|| / ||z - mean(z)|| over random directions z and the first
    iterations of ``network``: K rounds of the run's own round matrices (links down, nodes out, one-peer hops).

    Nodes that sit an iteration out keep their rows, so z is zero on them and the mean is over the active nodes.
    Deterministic: the schedule is seeded and the directions come from ``seed``."""
    n = network.n
    comm = DynamicCommunicator(sp.identity(n, format="csr"), np.zeros(n, dtype=np.int64), network)
    mixer = Mixer(comm, kind, rounds, lam=lam)
    gen = torch.Generator().manual_seed(int(seed) ^ 0x5EED)
    ratios = []
    for t in range(1, _PROBE_ITERATIONS + 1):
        comm.begin_iteration(t)
        act = torch.from_numpy(np.array(network.active(t)))
        if int(act.sum()) < 2:
            continue
        z = torch.randn(n, _PROBE_DIRECTIONS, generator=gen, dtype=torch.float64) * act.unsqueeze(1)
        z[act] -= z[act].mean(dim=0)
        out = mixer(z)
        out[act] -= out[act].mean(dim=0)
        ratios.append(float(out.norm() / z.norm()))
    return float(np.sqrt(np.mean(np.square(ratios)))) if ratios else 0.0


def _smallest(reaches: Callable[[int], bool], cap: int) -> int | None:
    """The smallest K in [1, cap] with ``reaches(K)``, assuming it is monotone (doubling, then bisection)."""
    hi = 1
    while not reaches(hi):
        if hi >= cap:
            return None
        hi = min(cap, hi * 2)
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def measured_rounds(network: NetworkSchedule, lam: float, kind: str, target: float, seed: int,
                    cap: int = AUTO_ROUNDS_CAP) -> int | None:
    """The smallest K whose :func:`measured_contraction` is at most ``target``, or None above ``cap``."""
    return _smallest(lambda k: measured_contraction(network, lam, kind, k, seed) <= target, cap)


def _exact_rounds(topology: Any, network: NetworkSchedule | None, kind: str, target: float) -> int | None:
    """K from the spectrum (a static reliable graph) or log2 n (one-peer-exponential, nothing failing);
    None when the rounds must be measured on the schedule, or no K up to the cap reaches the target."""
    if network is None:
        return rounds_within(topology.spectrum, kind, target, AUTO_ROUNDS_CAP)
    reliable = network.link_failure == 0.0
    exact = auto_rounds(topology.name, topology.n) if reliable and kind == "plain" else None
    return int(exact) if exact else None


def _rounds_for(topology: Any, network: NetworkSchedule | None, kind: str, target: float, seed: int) -> int | None:
    exact = _exact_rounds(topology, network, kind, target)
    if exact is not None or network is None:
        return exact
    return measured_rounds(network, topology.lam, kind, target, seed)


def resolve_gossip(mixing: str, rounds: int | str, topology: Any, network: NetworkSchedule | None, *,
                   compress: str, delta: float, target: float, seed: int, plain_only: bool = False
                   ) -> tuple[str, int]:
    """(mixing kind, rounds) for the settings ``mixing`` and ``rounds`` (either may be ``auto``); see the
    module docstring for the rules. Node dropout is left out of the choice (:meth:`NetworkSchedule.links_only`).
    Warns where a given kind is known to be unstable, and where no K up to :data:`AUTO_ROUNDS_CAP` reaches the
    target (then the cap). ``plain_only`` (messages may be lost: running sums need plain rounds) makes ``auto``
    plain rounds with plain gossip's K."""
    network = network.links_only() if network is not None else None
    if mixing != "auto":
        kinds = [mixing]
    elif plain_only or (network is not None and network.family is not None):
        kinds = ["plain"]
    elif network is None:
        kinds = ["chebyshev"]
    else:  # a static graph with failures or dropout: whichever kind reaches the target in fewer rounds
        kinds = ["plain", "chebyshev"]
    found = [(k, _rounds_for(topology, network, k, target, seed)) for k in kinds]
    reached = [(r, i) for i, (_, r) in enumerate(found) if r is not None]
    kind, k_auto = found[min(reached)[1]] if reached else found[-1]
    k = int(rounds) if rounds != "auto" else k_auto if k_auto is not None else AUTO_ROUNDS_CAP
    if not tolerates(kind, k, topology.lam, delta):
        if mixing != "auto":
            warn_unstable_mixing(kind, compress)
            return kind, k
        kind = "plain"  # the rounds stay those of the uncompressed run: bytes shrink by the payload ratio
    if rounds != "auto":
        return kind, k
    if k_auto is None:
        warnings.warn(
            f"rounds = auto: {kind} mixing on this graph (lambda = {topology.lam:.7f}) needs more than "
            f"{AUTO_ROUNDS_CAP} rounds to reach ||M_K - J|| <= {target}; using {AUTO_ROUNDS_CAP} "
            "(give --rounds K or a larger --mix-target to choose otherwise)",
            stacklevel=3,
        )
        k_auto = AUTO_ROUNDS_CAP
    return kind, int(k_auto)
