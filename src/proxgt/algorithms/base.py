"""What every algorithm is (the :class:`Algorithm` protocol) and what it declares it can do (:class:`Capabilities`).

The run builder never probes an algorithm for attributes: it reads ``algorithm.capabilities`` to validate the
settings (compressed gossip, differential privacy, changing graphs), to resolve ``auto`` values, to turn
``epochs`` into iterations and to word its error messages. A new method, in the library or in a user's
package, is one class with ``init``, ``update`` and ``capabilities``, plus one registration line::

    @dataclass(frozen=True)
    class MyMethod:
        regularizer: Regularizer
        step: float
        batch: int = 32
        name: str = "my-method"

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(oracle_calls=frozenset({MINIBATCH}), batch_per_iter=self.batch,
                                gossip_keys=("x",))

        def init(self, x0, oracle, mix): ...
        def update(self, state, oracle, mix): ...

This is optax's idea of declaring extra needs in the type (``GradientTransformationExtraArgs``) rather than
discovering them at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from proxgt.problems.oracle import FULL, MINIBATCH, ORACLE_CALLS, PAIR

__all__ = ["Algorithm", "Capabilities", "MINIBATCH", "PAIR", "FULL", "ORACLE_CALLS"]

_WHY_NOT_PRIVATE = {
    PAIR: "it uses gradient differences at two points on the same samples, whose sensitivity the per-sample "
          "clipping does not bound",
    FULL: "it uses exact full local gradients, which no subsampling makes private",
}


@dataclass(frozen=True)
class Capabilities:
    """What an algorithm needs from the oracle and the network, and which run features it combines with.

    Attributes:
        oracle_calls: the kinds of local gradient it asks for, initialization included (:data:`MINIBATCH`,
            :data:`PAIR`, :data:`FULL`).
        batch_per_iter: fresh samples drawn per node per iteration (what ``epochs`` counts); None when an
            iteration reads all local data.
        gossip_keys: the quantities it mixes, each under its own ``key`` of ``mix(Z, key=...)``. Compressed
            gossip keeps a public copy per key, so only an algorithm that names every mixed quantity can be
            compressed; empty: it cannot.
        tracked_keys: the gossip keys whose network sum it relies on (gradient trackers: sum_i y_i = sum_i v_i).
            When messages can be lost (``message_loss``) these go by running sums, which keep that sum exact;
            the other keys use the newest value received from each neighbour (:mod:`proxgt.mixing.running_sums`).
        compressed_gossip: it is defined with compressed gossip (its mixer is always compressed, e.g. CDProxSGT).
        changing_graph: it stays correct when W changes from round to round (time-varying graphs, link
            failures, node dropout): everything it mixes is averaged, never divided by a fixed W.
        asynchronous: it can run without a global barrier (nodes on their own clocks).
        pairwise_keys: the gossip keys it averages with one random neighbour per iteration (randomized pairwise
            gossip, as AD-PSGD) instead of with W; such a method runs asynchronously only
            (:mod:`proxgt.mixing.pairwise`).
        sum_push_keys: the tracked keys it uses as the tracker mass itself (sum-push, as ASY-SONATA) rather than
            as a push-sum ratio: on the asynchronous network their shares go out at every mixing and no weight
            divides them (:mod:`proxgt.mixing.asynchrony`); synchronous runs mix them as any tracker.
        sizes: the estimator sizes it resolved (``batch``, ``big_batch``, ``period``), recorded in the run's
            resolved settings.
        recursion_ratio: q / b of the undamped gradient-difference recursion of its estimator (SARAH), 0 for none;
            the run warns when it exceeds what the problem declares stable (``Problem.recursion_ratio``).
    """

    oracle_calls: frozenset[str]
    batch_per_iter: int | None
    gossip_keys: tuple[str, ...] = ()
    tracked_keys: tuple[str, ...] = ()
    compressed_gossip: bool = False
    changing_graph: bool = True
    asynchronous: bool = False
    pairwise_keys: tuple[str, ...] = ()
    sum_push_keys: tuple[str, ...] = ()
    sizes: Mapping[str, int] = field(default_factory=dict)
    recursion_ratio: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.oracle_calls) - set(ORACLE_CALLS)
        if unknown or not self.oracle_calls:
            raise ValueError(f"oracle_calls must be a non-empty subset of {ORACLE_CALLS}; got {set(self.oracle_calls)}")
        if not set(self.tracked_keys) <= set(self.gossip_keys):
            raise ValueError(f"tracked_keys {self.tracked_keys} must be among the gossip_keys {self.gossip_keys}")
        if not set(self.pairwise_keys) <= set(self.gossip_keys) - set(self.tracked_keys):
            raise ValueError(f"pairwise_keys {self.pairwise_keys} must be untracked gossip_keys {self.gossip_keys}")
        if not set(self.sum_push_keys) <= set(self.tracked_keys):
            raise ValueError(f"sum_push_keys {self.sum_push_keys} must be among the tracked_keys {self.tracked_keys}")
        if self.pairwise_keys and not self.asynchronous:
            raise ValueError("pairwise_keys are averaged on the asynchronous network: declare asynchronous=True")
        if self.compressed_gossip and not self.gossip_keys:
            raise ValueError("an algorithm defined with compressed gossip must name its gossip_keys")

    @property
    def compressible(self) -> bool:
        """Whether its gossip can go through compressed gossip (every mixed quantity has a key)."""
        return bool(self.gossip_keys)

    @property
    def private(self) -> bool:
        """Whether differential privacy covers it: every local gradient is a fresh minibatch gradient."""
        return self.not_private_reason() is None

    def not_private_reason(self) -> str | None:
        """Why the per-node Gaussian mechanism cannot make it private, or None."""
        for call in (PAIR, FULL):
            if call in self.oracle_calls:
                return _WHY_NOT_PRIVATE[call]
        return None


State = TypeVar("State")


@runtime_checkable
class Algorithm(Protocol[State]):
    """A decentralized algorithm over node-stacked rows: two pure functions over an explicit state (a
    NamedTuple of tensors and ints with an ``x`` field for the iterates and a counter ``t``), and its
    declared :class:`Capabilities`.

    ``mix(Z, key=None)`` is the executor's K-round mixing; ``oracle`` gives (and counts) the local gradients.
    """

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    def init(self, x0: torch.Tensor, oracle: Any, mix: Callable[..., torch.Tensor]) -> State: ...

    def update(self, state: State, oracle: Any, mix: Callable[..., torch.Tensor]) -> State: ...
