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

**Consensus step** (``consensus_step = auto``): gamma = min(1, delta) with delta the contraction the gossip
sees (:meth:`~proxgt.compression.operators.Compressor.gossip_contraction`: the declared delta, or
1/(1 + omega)). CHOCO-gossip's analyses take gamma proportional to delta (times a factor of the graph that is
far too small in practice); the factor 1 is what the rand-k operator, whose variance bound is tight, needs: in
pure gossip on rings, a complete graph and a star, rand-k diverged at gamma = 2 delta and converged at delta,
while every other operator converged at delta too (docs/compression.md).

**Changing graphs** (link failures, node dropout, one-peer-exponential, random matching):
:class:`LinkCompressedMixer` keeps one public copy per *directed link* instead of one per node, and a copy
advances only with a message that went through (below).

The payload that travels is the compressor's encoded uint8 row (:mod:`proxgt.compression.operators`); the
communicator's ``share`` sends it and counts its real width, so the bytes counted equal the bytes on the wire.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import numpy as np
import torch

from proxgt.compression.operators import Compressor, make_compressor
from proxgt.errors import ProxGTValueError
from proxgt.mixing.asynchrony import async_network
from proxgt.mixing.communicator import PayloadGossip
from proxgt.mixing.dynamic import DynamicCommunicator
from proxgt.mixing.mixer import Mixer
from proxgt.mixing.running_sums import messages_may_miss, running_sum_mixer
from proxgt.registry import TIME_VARYING, TOPOLOGIES

__all__ = ["CompressedMixer", "LinkCompressedMixer", "check_compressed_run", "check_launchable", "consensus_step_for",
           "make_mixer", "uses_compressed_gossip"]


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
        Zf = Z.reshape(Z.shape[0], -1)
        H = self.public.get(key)
        if H is not None and (H.device != Zf.device or H.dtype != Zf.dtype):  # loaded from a checkpoint
            H = H.to(device=Zf.device, dtype=Zf.dtype)
        prev = Zf
        for alpha, beta in self.schedule:
            nxt, H = self._round(Zf, H, key)
            if alpha != 1.0:
                nxt = nxt * alpha
            if beta != 0.0:
                nxt = nxt + beta * prev
            prev, Zf = Zf, nxt
        if H is not None:  # None only for a schedule of no rounds
            self.public[key] = H
        return Zf.reshape(Z.shape)

    def _round(self, Zf: torch.Tensor, H: torch.Tensor | None, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One compressed round: (the stand-in for the local rows of W Z, the public copies after it)."""
        k, d = Zf.shape
        own = H[:k] if H is not None else torch.zeros_like(Zf)
        shared = self.comm.share(self.compressor.encode(Zf - own, self._gens(key)))
        Q = self.compressor.decode(shared, d, Zf.dtype)
        if self.scale(d) != 1.0:
            Q = Q * self.scale(d)
        H = Q if H is None else H + Q
        return Zf + self.gamma * (self.comm.mix_shared(H) - H[:k]), H


class LinkCompressedMixer(CompressedMixer):
    """Compressed gossip on a changing graph: one public copy per directed link, advanced only by a message that
    went through.

    On a link (i, j) of the run's union graph, node i keeps ``S_ij``, its record of what j knows of i, and j
    keeps ``R_ij``, what it knows of i (both start at 0). One round, with this round's up links and weights::

        Q_ij  = C(z_i - S_ij)                   i encodes its row against its record for j, for each up link
        S_ij += Q_ij,  R_ij += Q_ij             both ends advance, only when the link carried the message
        z_i  += gamma sum_j w_ij (R_ji - S_ij)  over the up links of i: what i knows of j minus what j knows of i

    A link is up or down for both directions at once and both ends see the same up links, so ``S_ij = R_ij``
    after any pattern of dropped links and sitting-out nodes (a node that sits out has no up link). Then the
    terms of an up link, ``w (R_ji - S_ij)`` at i and ``w (R_ij - S_ji)`` at j, cancel, and the node average
    is preserved exactly (to float rounding): gradient tracking keeps mean(Y) = mean(V). On a static reliable
    graph every copy of node i equals the one public copy of :class:`CompressedMixer`, and with a
    deterministic operator the two mixers compute the same rounds. Each message is encoded for its link, so
    the bytes counted are the payload's on each up link, as before.

    Args:
        comm: the simulation's :class:`~proxgt.mixing.dynamic.DynamicCommunicator`.
        compressor, gamma, seed, schedule: as for :class:`CompressedMixer`.
        links: (E, 2) the union graph's undirected links (i < j, sorted): the links any round may use.

    The copies of a key are stored as ``public[key]``, a (2, 2E, d) tensor: ``[0]`` the senders' records S,
    ``[1]`` the receivers' copies R, link e = (a, b) as a -> b at row e and b -> a at row E + e.
    """

    def __init__(self, comm: DynamicCommunicator, compressor: Compressor, gamma: float, links: np.ndarray, *,
                 seed: int = 0, schedule: list[tuple[float, float]] | None = None):
        super().__init__(comm, compressor, gamma, seed=seed, schedule=schedule)
        self.comm: DynamicCommunicator = comm
        e = np.asarray(links, dtype=np.int64).reshape(-1, 2)
        self.links = e
        self._keys = e[:, 0] * comm.n_nodes + e[:, 1]  # sorted: the search key of a link

    def consistent(self, key: str) -> bool:
        """Whether every sender's record equals its receiver's copy for ``key`` (bit for bit)."""
        H = self.public.get(key)
        return H is None or bool(torch.equal(H[0], H[1]))

    def _up(self, edges: np.ndarray) -> np.ndarray:
        """The union-graph index of each up link of a round."""
        keys = edges[:, 0] * self.comm.n_nodes + edges[:, 1]
        idx: np.ndarray = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        if (self._keys[idx] != keys).any():  # the schedule and the union graph disagree: a bug, not bad input
            raise RuntimeError("a gossip round used a link outside the run's graph")
        return idx

    def _round(self, Zf: torch.Tensor, H: torch.Tensor | None, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One round over the links up in it (the class docstring's three lines)."""
        d = Zf.shape[1]
        E = self.links.shape[0]
        rw = self.comm.next_round(self.compressor.payload_bytes(d, Zf.dtype), 1)
        H = Zf.new_zeros((2, 2 * E, d)) if H is None else H.clone()
        nxt = Zf.clone()
        if not rw.edges.size:
            return nxt, H
        up = self._up(rw.edges)
        k = up.size
        a = torch.as_tensor(self.links[up, 0], device=Zf.device)
        b = torch.as_tensor(self.links[up, 1], device=Zf.device)
        rows = torch.as_tensor(np.concatenate([up, up + E]), device=Zf.device)  # a -> b, then b -> a
        senders = torch.cat([a, b])
        gens = self._gens(key)
        payload = self.compressor.encode(Zf.index_select(0, senders) - H[0].index_select(0, rows),
                                         None if gens is None else [gens[i] for i in senders.tolist()])
        Q = self.compressor.decode(payload, d, Zf.dtype)
        if self.scale(d) != 1.0:
            Q = Q * self.scale(d)
        H[0].index_add_(0, rows, Q)  # the senders' records: the message went through
        H[1].index_add_(0, rows, Q)  # the receivers' copies: the same decoded rows
        w = torch.as_tensor(rw.w, dtype=Zf.dtype, device=Zf.device).unsqueeze(1) * self.gamma
        # at a: what a knows of b (R[b -> a]) minus what b knows of a (S[a -> b]); at b the mirror image
        nxt.index_add_(0, a, w * (H[1, rows[k:]] - H[0, rows[:k]]))
        nxt.index_add_(0, b, w * (H[1, rows[:k]] - H[0, rows[k:]]))
        return nxt, H


def uses_compressed_gossip(cfg: Any, algorithm: Any) -> bool:
    """Whether a run mixes with :class:`CompressedMixer`: ``compress`` is set, or the algorithm is defined with
    compressed gossip (CDProxSGT, whose ``none`` form is DProxSGT run through public copies)."""
    return bool(cfg.compress != "none" or algorithm.capabilities.compressed_gossip)


def consensus_step_for(cfg: Any, dim: int) -> float:
    """gamma: the setting, or for ``auto`` min(1, delta) with delta the gossip contraction of the operator on
    vectors of length ``dim`` (1 for ``none``; see the module docstring)."""
    if cfg.consensus_step != "auto":
        return float(cfg.consensus_step)
    return min(1.0, make_compressor(cfg.compress).gossip_contraction(int(dim)))


def check_compressed_run(cfg: Any, algorithm: Any, dim: int) -> tuple[float | None, float]:
    """One-line errors for settings compressed gossip cannot honour. Returns (gamma, delta): gamma is None
    without compressed gossip; delta is the operator's gossip contraction (1 without compression)."""
    if not uses_compressed_gossip(cfg, algorithm):
        if cfg.consensus_step != "auto":
            raise ProxGTValueError("consensus_step (--consensus-step) is the step of compressed gossip; "
                                   "set compress (--compress) too, or drop it")
        return None, 1.0
    name = cfg.algorithm
    if not algorithm.capabilities.compressible:
        raise ProxGTValueError(f"algorithm {name!r} does not name what it mixes (Capabilities.gossip_keys), so it "
                               "cannot run with compressed gossip (--compress); use proxgt-sa, proxgt-sr-o, "
                               "proxgt-sr-e, dproxsgt or cdproxsgt")
    if cfg.on_failure != "abort":
        raise ProxGTValueError("compressed gossip cannot continue on a shrunken graph (the public copies of a "
                               "lost node are gone); use on_failure = abort with --compress")
    return consensus_step_for(cfg, dim), make_compressor(cfg.compress).gossip_contraction(int(dim))


#: per-link public copies above this many bytes per mixed quantity: a warning that says how much (random matching
#: keeps copies for every pair of nodes)
_LINK_COPIES_WARN_BYTES = 2**30

_NOT_IN_LAUNCH = ("compressed gossip on a changing graph (link_failure, node_dropout, a time-varying topology) runs "
                  "in the simulation (proxgt run), not yet with proxgt launch")


def check_launchable(cfg: Any) -> None:
    """Refuse, before any worker starts, what the distributed executor cannot run: ``compress`` together with a
    changing graph (the per-link public copies of :class:`LinkCompressedMixer` exist in the simulation only)."""
    changing = cfg.link_failure or cfg.node_dropout or TIME_VARYING in TOPOLOGIES.traits(cfg.topology)
    if cfg.compress != "none" and changing:
        raise ProxGTValueError(_NOT_IN_LAUNCH)


def make_mixer(comm: Any, spec: Any) -> Any:
    """The run's mixing operator: :class:`CompressedMixer` when the run uses compressed gossip
    (:class:`LinkCompressedMixer` on a changing graph), :class:`~proxgt.mixing.running_sums.RunningSumMixer` when
    messages may be lost, :class:`~proxgt.mixing.asynchrony.AsyncNetwork` for an asynchronous run, else
    :class:`Mixer` with the run's kind and rounds."""
    if spec.settings.asynchronous:  # nodes on their own clocks (proxgt.mixing.asynchrony)
        return async_network(comm, spec)
    if messages_may_miss(spec.settings):  # lost or late messages: running sums (proxgt.mixing.running_sums)
        return running_sum_mixer(comm, spec)
    kind = spec.resolved.mixing
    if not uses_compressed_gossip(spec.settings, spec.algorithm):
        return Mixer(comm, kind, spec.rounds, lam=spec.topology.lam)
    recurrence = Mixer(comm, kind, spec.rounds, lam=spec.topology.lam).schedule
    compressor = make_compressor(spec.settings.compress)
    gamma = float(spec.resolved.consensus_step)
    if spec.network is None:
        return CompressedMixer(comm, compressor, gamma, seed=spec.settings.seed, schedule=recurrence)
    if not isinstance(comm, DynamicCommunicator):
        raise ProxGTValueError(_NOT_IN_LAUNCH)
    size = 4 * len(spec.topology.edges) * int(spec.problem.dim) * torch.empty((), dtype=spec.dtype).element_size()
    if size > _LINK_COPIES_WARN_BYTES:  # two copies per directed link and mixed quantity
        warnings.warn(f"compressed gossip on this changing graph keeps {size / 2**30:.1f} GiB of public copies per "
                      f"mixed quantity (two per directed link of its {len(spec.topology.edges)} links); a sparser "
                      "graph (e.g. one-peer-exponential instead of random-matching) needs fewer", stacklevel=2)
    return LinkCompressedMixer(comm, compressor, gamma, spec.topology.edges, seed=spec.settings.seed,
                               schedule=recurrence)
