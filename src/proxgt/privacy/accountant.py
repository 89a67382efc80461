"""Privacy accounting through Opacus's RDP accountant (a maintained library; nothing here is hand-derived).

A DP run releases, at every node and every gradient step, one noisy clipped minibatch sum drawn by Poisson
subsampling with rate q_i = b / m_i (b the expected batch, m_i the node's number of samples) and noise
multiplier sigma. That is exactly the subsampled Gaussian mechanism Opacus's ``RDPAccountant`` composes
(``history`` entries ``(noise_multiplier, sample_rate, num_steps)``), so the epsilon reported here is what
``RDPAccountant`` computes for the run's (sigma, q, steps) at ``delta``.

Opacus is imported inside the functions, so runs without differential privacy never import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from proxgt.errors import ProxGTValueError

__all__ = ["epsilon_spent", "node_epsilons", "noise_for_epsilon"]


def _opacus_accountants():
    try:
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError:  # pragma: no cover - opacus is a declared dependency
        raise ProxGTValueError(
            "differential privacy needs the opacus package for its privacy accountant: pip install opacus"
        ) from None
    return RDPAccountant, get_noise_multiplier


def epsilon_spent(history: Iterable[tuple[float, float, int]], delta: float) -> float:
    """Epsilon at ``delta`` after the releases ``history`` = [(noise multiplier, sample rate, steps), ...], by
    Opacus's ``RDPAccountant`` (0 when nothing was released)."""
    RDPAccountant, _ = _opacus_accountants()
    acc = RDPAccountant()
    acc.history = [(float(s), float(q), int(t)) for s, q, t in history if int(t) > 0]
    if not acc.history:
        return 0.0
    return float(acc.get_epsilon(delta=float(delta)))


def node_epsilons(noise: float, releases: dict[int, int], local_sizes: Sequence[int], delta: float) -> list[float]:
    """Per-node epsilon at ``delta``: node i released ``releases[b]`` noisy sums of expected batch b, each with
    sampling rate b / m_i (``local_sizes[i]`` = m_i) and noise multiplier ``noise``. Nodes of equal size share
    one accountant call."""
    cache: dict[int, float] = {}
    out = []
    for m in local_sizes:
        m = int(m)
        if m not in cache:
            cache[m] = epsilon_spent(((noise, b / m, t) for b, t in sorted(releases.items())), delta)
        out.append(cache[m])
    return out


def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier sigma for which ``steps`` releases at ``sample_rate`` spend at most
    ``target_epsilon`` at ``delta`` (Opacus's ``get_noise_multiplier`` with the RDP accountant, to 0.01 in
    epsilon)."""
    _, get_noise_multiplier = _opacus_accountants()
    try:
        return float(get_noise_multiplier(target_epsilon=float(target_epsilon), target_delta=float(delta),
                                          sample_rate=float(sample_rate), steps=int(steps), accountant="rdp",
                                          epsilon_tolerance=0.01))
    except ValueError as exc:
        raise ProxGTValueError(
            f"cannot reach dp_epsilon {target_epsilon:g} at dp_delta {delta:g} with sampling rate "
            f"{sample_rate:.4g} over {steps} steps ({str(exc).splitlines()[0]})"
        ) from None
