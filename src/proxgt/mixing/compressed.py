"""Error-compensated compressed gossip (CHOCO-gossip, as in CDProxSGT), a drop-in for :class:`Mixer`.

Every mixed quantity (``key``: the iterate ``"x"``, the tracker ``"y"``) has a *public copy* H: row j is what
every neighbour of node j knows of node j's value (all copies start at 0). One compressed round is::

    Q = C(Z - H)              node i encodes row i of Z - H and sends only that payload to its neighbours
    H <- H + Q                every holder of a copy of row j adds the same decoded Q_j
    Z <- Z + gamma (W - I) H  local: a weighted sum of the copies a node holds

An unbiased operator with variance factor omega enters as C/(1 + omega) (CHOCO's rescaling: the public copy
then contracts towards Z, delta = 1/(1 + omega); unscaled, QSGD with 4 levels on a9a, omega = 2.8, makes the
copies diverge). CDProxSGT's code does not rescale QSGD.

Because W is doubly stochastic, (W - I) has zero column sums, so the node average of Z is preserved exactly
whatever the compression error: gradient tracking keeps mean(Y) = mean(V) (up to float rounding). With
``none`` and gamma = 1 the round is Z -> W Z, i.e. the uncompressed algorithm.

Several rounds: a mixing call runs the run's K-round recurrence (:class:`Mixer`: plain, Chebyshev or fastmix,
``Z_k+1 = alpha_k W Z_k + beta_k Z_k-1``) with every product ``W Z_k`` replaced by one compressed round on the
same public copies. Each compressed round preserves the average and alpha_k + beta_k = 1, so the call does
too; with ``none`` and gamma = 1 the call is exactly M_K. (Accelerated recurrences amplify whatever the
public copies lag behind, so with lossy operators plain rounds are the safe choice.)

The payload that travels is the compressor's encoded uint8 row (:mod:`proxgt.compression.operators`); the
communicator's ``share`` sends it and counts its real width, so the bytes counted equal the bytes on the wire.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from proxgt.errors import ProxGTValueError
from proxgt.mixing.communicator import PayloadGossip
from proxgt.mixing.mixer import Mixer
from proxgt.mixing.running_sums import running_sum_mixer
from proxgt.registry import TIME_VARYING, TOPOLOGIES

__all__ = ["CompressedMixer", "DEFAULT_CONSENSUS_STEP", "check_compressed_run", "consensus_step_for",
           "make_mixer", "uses_compressed_gossip"]

#: consensus step gamma for ``consensus_step = auto`` with an operator other than ``none`` (the CDProxSGT
#: authors' default, Top40 with gamma = 0.8, is too large for sparser operators; see docs/compression.md);
#: top-k and rand-k at ratio r use min(0.5, 5 r): on a9a, topk:0.1 diverged at 0.7 and topk:0.01 at 0.1
DEFAULT_CONSENSUS_STEP = 0.5


def _node_generator(seed: int, node: int, key: str) -> torch.Generator:
    """A generator of its own per (run seed, global node id, mixed quantity): a node draws the same numbers
    whichever process hosts it, and no two nodes or quantities share a stream."""
    state = np.random.SeedSequence([int(seed), 0xC0117, int(node), zlib.crc32(key.encode())]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class CompressedMixer:
    """``mix(Z, key)`` with compressed, error-compensated gossip over a communicator with ``share`` and
    ``mix_shared`` (the simulated and the distributed one).

    Args:
        comm: the communicator of this process's rows.
        compressor: a :class:`~proxgt.compression.operators.Compressor`.
        gamma: the consensus step in (0, 1].
        rounds: compressed rounds per call (plain rounds), unless ``schedule`` is given.
        schedule: the (alpha_k, beta_k) of each round of the run's mixing recurrence (see the module docstring).
        seed: the run seed (the random operators' per-node generators derive from it).
    """

    def __init__(self, comm: PayloadGossip, compressor: Any, gamma: float, rounds: int = 1, *, seed: int = 0,
                 schedule: list[tuple[float, float]] | None = None):
        if not 0.0 < gamma <= 1.0:
            raise ProxGTValueError(f"the consensus step must be in (0, 1]; got {gamma}")
        self.comm = comm
        self.compressor = compressor
        self.gamma = float(gamma)
        self.schedule = list(schedule) if schedule is not None else [(1.0, 0.0)] * int(rounds)
        self.rounds = len(self.schedule)
        self.seed = int(seed)
        # What each node holds of its neighbours: the public copies (key -> (local + received rows, d)) and the
        # random operators' generators; state_dict / load_state_dict carry them through a checkpoint.
        self.public: dict[str, torch.Tensor] = {}
        self._scales: dict[int, float] = {}
        self._generators: dict[str, list[torch.Generator]] = {}
        self._loaded: dict[str, list[torch.Tensor]] = {}  # generator states from a checkpoint, until first used

    def state_dict(self) -> dict[str, Any]:
        """The public copies and the generator states (plain tensors, on the CPU), for checkpoints."""
        gens = {k: [g.get_state() for g in v] for k, v in self._generators.items()}
        gens.update({k: list(v) for k, v in self._loaded.items() if k not in gens})
        return {"public": {k: v.detach().to("cpu") for k, v in self.public.items()}, "generators": gens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state_dict` back, before the first call: the run goes on exactly as it would have."""
        self.public = dict(state["public"])
        self._generators = {}
        self._loaded = {k: list(v) for k, v in state["generators"].items()}

    def _gens(self, key: str) -> list[torch.Generator] | None:
        if not self.compressor.random:
            return None
        if key not in self._generators:
            gens = [_node_generator(self.seed, i, key) for i in self.comm.node_ids]
            for g, st in zip(gens, self._loaded.pop(key, []), strict=False):
                g.set_state(st)
            self._generators[key] = gens
        return self._generators[key]

    def scale(self, d: int) -> float:
        """The factor applied to decoded differences: 1/(1 + omega) for an unbiased operator (CHOCO's rescaling,
        which makes it contractive with delta = 1/(1 + omega)), 1 for a contractive one."""
        if d not in self._scales:
            c = self.compressor
            self._scales[d] = 1.0 / (1.0 + c.constant(d)) if c.unbiased else 1.0
        return self._scales[d]

    def __call__(self, Z: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """``rounds`` compressed rounds on ``Z`` (left unmodified) with the public copies of ``key``."""
        if key is None:
            raise ProxGTValueError("compressed gossip needs to know which quantity it mixes (mix(Z, key=...)); "
                                   "this algorithm does not say, so it cannot run with --compress")
        k = Z.shape[0]
        Zf = Z.reshape(k, -1)
        d = Zf.shape[1]
        H = self.public.get(key)
        if H is not None and (H.device != Zf.device or H.dtype != Zf.dtype):  # loaded from a checkpoint
            H = H.to(device=Zf.device, dtype=Zf.dtype)
        prev = Zf
        for alpha, beta in self.schedule:
            own = H[:k] if H is not None else torch.zeros_like(Zf)
            shared = self.comm.share(self.compressor.encode(Zf - own, self._gens(key)))
            Q = self.compressor.decode(shared, d, Zf.dtype)
            if self.scale(d) != 1.0:
                Q = Q * self.scale(d)
            H = Q if H is None else H + Q
            nxt = Zf + self.gamma * (self.comm.mix_shared(H) - H[:k])  # the compressed stand-in for (W Z)_local
            if alpha != 1.0:
                nxt = nxt * alpha
            if beta != 0.0:
                nxt = nxt + beta * prev
            prev, Zf = Zf, nxt
        if H is not None:  # None only for a schedule of no rounds
            self.public[key] = H
        return Zf.reshape(Z.shape)


def uses_compressed_gossip(cfg: Any, algorithm: Any) -> bool:
    """Whether a run mixes with :class:`CompressedMixer`: ``compress`` is set, or the algorithm is defined with
    compressed gossip (CDProxSGT, whose ``none`` form is DProxSGT run through public copies)."""
    return cfg.compress != "none" or algorithm.capabilities.compressed_gossip


def consensus_step_for(cfg: Any) -> float:
    """gamma: the setting, or for ``auto``: 1 with ``compress = none``, min(0.5, 5 r) for top-k and rand-k at
    ratio r, :data:`DEFAULT_CONSENSUS_STEP` for the other operators."""
    if cfg.consensus_step != "auto":
        return float(cfg.consensus_step)
    from proxgt.compression.spec import parse_compress

    name, arg = parse_compress(cfg.compress)
    if name == "none":
        return 1.0
    if name in ("topk", "randk") and arg is not None:
        return min(DEFAULT_CONSENSUS_STEP, 5.0 * float(arg))
    return DEFAULT_CONSENSUS_STEP


def check_compressed_run(cfg: Any, algorithm: Any) -> float | None:
    """One-line errors for settings compressed gossip cannot honour; returns gamma, or None without it."""
    if not uses_compressed_gossip(cfg, algorithm):
        if cfg.consensus_step != "auto":
            raise ProxGTValueError("consensus_step (--consensus-step) is the step of compressed gossip; "
                                   "set compress (--compress) too, or drop it")
        return None
    name = cfg.algorithm
    if not algorithm.capabilities.compressible:
        raise ProxGTValueError(f"algorithm {name!r} does not name what it mixes (Capabilities.gossip_keys), so it "
                               "cannot run with compressed gossip (--compress); use proxgt-sa, proxgt-sr-o, "
                               "proxgt-sr-e, dproxsgt or cdproxsgt")
    if cfg.link_failure or cfg.node_dropout or TIME_VARYING in TOPOLOGIES.traits(cfg.topology):
        raise ProxGTValueError("compressed gossip runs on a fixed, reliable graph; drop --compress, or "
                               "--link-failure/--node-dropout and time-varying topologies")
    if cfg.on_failure != "abort":
        raise ProxGTValueError("compressed gossip cannot continue on a shrunken graph (the public copies of a "
                               "lost node are gone); use on_failure = abort with --compress")
    return consensus_step_for(cfg)


def make_mixer(comm: Any, spec: Any) -> Any:
    """The run's mixing operator: :class:`CompressedMixer` when the run uses compressed gossip,
    :class:`~proxgt.mixing.running_sums.RunningSumMixer` when messages may be lost, else :class:`Mixer` with the
    run's kind and rounds."""
    if float(spec.settings.message_loss or 0.0) > 0.0:  # lost messages: running sums (proxgt.mixing.running_sums)
        return running_sum_mixer(comm, spec)
    if not uses_compressed_gossip(spec.settings, spec.algorithm):
        return Mixer(comm, spec.settings.mixing, spec.rounds, lam=spec.topology.lam)
    from proxgt.compression.operators import make_compressor

    recurrence = Mixer(comm, spec.settings.mixing, spec.rounds, lam=spec.topology.lam).schedule
    return CompressedMixer(comm, make_compressor(spec.settings.compress), consensus_step_for(spec.resolved),
                           seed=spec.settings.seed, schedule=recurrence)
