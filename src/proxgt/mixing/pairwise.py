"""Randomized pairwise averaging on the asynchronous network: AD-PSGD's gossip step.

In each of its iterations an active node i picks one neighbour j uniformly at random and the two replace their
models by their average, atomically::

    x_i, x_j <- (x_i + x_j) / 2

(Lian, Zhang, Zhang, Liu, "Asynchronous decentralized parallel stochastic gradient descent", ICML 2018). Each
average is a doubly stochastic pairwise matrix W_ij = I - (e_i - e_j)(e_i - e_j)^T / 2, so the network mean of the
models is kept by every averaging.

How it runs on the simulator's asynchronous network (:mod:`proxgt.mixing.asynchrony`):

* the active nodes of a tick average in node order, each with its partner's *current* model (i asks j for it and
  gets it back: a round trip on the link, charged to i's clock; j's clock is not charged, its communication
  runs beside its computation, as in the paper);
* a partner that is active in the same tick gets the average as its mixing input (and may average again with its
  own partner after that); a partner that is not active gets it written: the value replaces its model at its
  next mixing, and a second writer before then averages with the written value. The partner's gradient was
  computed at its model before the write: that is AD-PSGD's stale gradient;
* the partner of node i in its iteration k is a pure function of (seed, i, k) (:meth:`PairwiseGossip.partner_link`),
  so runs repeat exactly and resume exactly.

Bytes: each averaging is one model from i to j and one back; a mixing counts as one round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["PairwiseGossip"]

_TAG_PARTNER = 0xAD95


class PairwiseGossip:
    """The pairwise averaging of the keys an algorithm declares pairwise (module docstring).

    Args:
        n: nodes.
        src, dst: (2E,) the directed links d: src[d] -> dst[d].
        seed: the run seed.
    """

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray, seed: int):
        self.n = int(n)
        self.src, self.dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        self.out_links = [np.flatnonzero(self.src == i) for i in range(self.n)]
        self.seed = int(seed)
        #: key -> {node: the average written to it by a partner, taken at its next mixing}
        self.writes: dict[str, dict[int, torch.Tensor]] = {}

    def partner_link(self, i: int, k: int) -> int:
        """The directed link (i -> partner) of node i's averaging in its iteration k (0-based), uniform over its
        links; -1 for a node without neighbours."""
        links = self.out_links[i]
        if not len(links):
            return -1
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _TAG_PARTNER, int(i), int(k)]))
        return int(links[rng.integers(len(links))])

    def mix(self, Z: torch.Tensor, key: str, active: np.ndarray,
            iters: np.ndarray) -> tuple[torch.Tensor, list[int], np.ndarray]:
        """Average the active nodes' rows of ``Z`` pairwise: (the mixed rows, the directed links used in order,
        messages sent per node). Rows of inactive nodes come back as they are (their writes are kept)."""
        writes = self.writes.setdefault(key, {})
        out = Z.clone()
        for j in [j for j in writes if active[j]]:
            out[j] = writes.pop(j)
        used: list[int] = []
        sent = np.zeros(self.n, dtype=np.int64)
        for i in np.flatnonzero(active):
            d = self.partner_link(int(i), int(iters[i]))
            if d < 0:
                continue
            j = int(self.dst[d])
            current = out[j] if active[j] or j not in writes else writes[j]
            avg = 0.5 * (out[i] + current)
            out[i] = avg
            if active[j]:
                out[j] = avg
            else:
                writes[j] = avg.clone()
            used.append(d)
            sent[i] += 1
            sent[j] += 1
        return out, used, sent

    def state_dict(self) -> dict[str, Any]:
        return {k: [[int(j), v.detach().to("cpu")] for j, v in w.items()] for k, w in self.writes.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.writes = {k: {int(j): v for j, v in w} for k, w in state.items()}

    def to(self, device: torch.device) -> None:
        self.writes = {k: {j: v.to(device) for j, v in w.items()} for k, w in self.writes.items()}
