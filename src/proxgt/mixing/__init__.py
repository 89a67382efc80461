"""Multi-round gossip M_K and the communicator seam between executors.

Everything an algorithm does is row-wise on node-stacked tensors (one row per node), except mixing. Mixing is
split in two layers so that the multi-round logic is written once for every executor:

* a :class:`Communicator` performs *one* gossip round, ``Z -> W Z`` restricted to the rows this process hosts,
  and counts it (rounds, messages, bytes per node). The simulator's communicator multiplies by W; the
  distributed one exchanges rows with graph neighbours (module ``communicator``).
* a :class:`Mixer` turns K rounds into the operator M_K (plain, Chebyshev-accelerated, or heavy-ball
  "fastmix"), using only ``gossip`` plus local linear combinations (module ``mixer``). Each variant preserves
  the node average exactly (its polynomial p satisfies p(1) = 1) up to float rounding.

Contraction factors ``||M_K - J||_2`` are computed exactly from the spectrum of W (``contraction``), and
``rounds_for_target`` picks the smallest K that reaches a target (module ``spectral``). Link failures, node
dropout and time-varying graphs: a seeded per-round :class:`NetworkSchedule` (module ``dynamic``).
"""

from .communicator import CommCounter, Communicator, Gossip, PayloadGossip, Scheduled, SimulatedCommunicator
from .dynamic import DynamicCommunicator, NetworkSchedule
from .mixer import MIXING_KINDS, Mixer, chebyshev_coefficients
from .spectral import contraction, mixing_matrix, mixing_polynomial, rounds_for_target

__all__ = [
    "MIXING_KINDS",
    "CommCounter",
    "Communicator",
    "Gossip",
    "PayloadGossip",
    "Scheduled",
    "SimulatedCommunicator",
    "DynamicCommunicator",
    "NetworkSchedule",
    "Mixer",
    "mixing_polynomial",
    "contraction",
    "rounds_for_target",
    "mixing_matrix",
    "chebyshev_coefficients",
]
