"""A cost model for a pilot: turn a run's counted work into modeled wall time and bytes.

Every logged row already counts, per node, the component gradients computed (``ifo_per_node``), the gossip
rounds (``comm_rounds``) and the bytes sent (``bytes_per_node``). With three numbers describing the deployment,

* ``latency_s``: time a gossip round costs before any byte moves (one network round trip between sites),
* ``bandwidth_Bps``: bytes per second a node can send (its uplink, shared by its messages to all neighbours),
* ``sample_s``: seconds for one component gradient at a node (given, or :func:`measure_sample_time`),

the modeled time of a (synchronous) run is::

    modeled_s = ifo_per_node * sample_s + comm_rounds * latency_s + bytes_per_node / bandwidth_Bps

Simplifications, stated: nodes compute at the same speed; computation and communication do not overlap; the
byte term uses the mean degree (on irregular graphs the highest-degree node sends more and is slower).

Example::

    >>> CostModel(latency_s=0.01, bandwidth_Bps=1e6, sample_s=1e-5).time(1000, 10, 2e6)
    2.11

Unreliable networks (:class:`NetworkModel`, used by ``proxgt plan --link-failure P --straggler SPEC``)
------------------------------------------------------------------------------------------------------------
The counted work above is that of a reliable, evenly fast network. Two effects are modeled on top of it, on the
run's own graph, by seeded Monte Carlo (:meth:`NetworkModel.on_graph` gives a :class:`NetworkEffect`):

**Link failures.** Each edge is down independently with probability ``p`` in each gossip round. A round mixes
with W_t, the Metropolis matrix of the edges that are up (W_ij = 1 / (1 + max(d_i, d_j)) with the degrees
counted in the surviving subgraph, computed locally; with lazy Metropolis weights, (I + W_t) / 2): symmetric and
doubly stochastic, so W_t keeps the mean and maps the disagreement space {x : 1^T x = 0} into itself. For such
x, E||W_t x||^2 = x^T E[W_t^2] x <= lambda_p^2 ||x||^2 with::

    lambda_p = sqrt(largest eigenvalue of E[W_t^2] - J),   J = 11^T / n

(E[W_t^2] has eigenvector 1 with eigenvalue 1; subtracting J keeps its other eigenvalues). The rounds are
independent, so by the tower property K rounds shrink the mean-square disagreement by at least lambda_p^(2K):
lambda_p is a per-round root-mean-square contraction factor. E[W_t^2] is estimated from ``samples`` sampled
rounds (:func:`failure_contraction`); at p = 0 it is W^2 exactly and lambda_p = lambda = ||W - J||_2.

Rounds to reach a mixing accuracy ``eps`` are R(lam) = max(1, ln eps / ln lam) (one round when lam <= eps,
lam = 0 included), so keeping every iteration's mixing as good as on the reliable graph takes::

    round_factor = R(lambda_p) / R(lambda)   (= ln lambda / ln lambda_p when both exceed eps)

times the rounds (eps = :data:`MIX_TARGET` = 0.05, the accuracy ``proxgt plan`` calls well mixed; the
factor does not depend on eps when both lambdas exceed it). Iterations and samples to the target are assumed
unchanged (every iteration gets the extra rounds), and a failed link sends nothing, so bytes per round scale by
(1 - p): ``byte_factor = round_factor * (1 - p)``.

**Stragglers.** Each node is late by an independent delay D_i(t) in each round, drawn from a
:class:`Straggler` distribution (``none``, ``const:S``, ``exp:MEAN``, ``lognormal:MU,SIGMA``). A synchronous
round at node i ends when the messages of all its (surviving) neighbours and its own have arrived; node j sends
round t when it finished round t-1, plus its delay. So the finish times follow a max-plus recursion::

    F_i(t) = latency + max_{j in N_t[i]} (F_j(t-1) + D_j(t)),   N_t[i] = {i} and i's neighbours up in round t

and delays propagate over the graph round after round. :func:`straggler_wait` reports three waits per round:

* ``neighbour_s``: one round from a common start, E[max_{j in N[i]} D_j] averaged over nodes (the slowest
  neighbour wait; on a k-regular graph with exponential delays, MEAN * H_{k+1}): a lower bound;
* ``round_s``: the sustained growth rate of F beyond the latency, (F(T) - F(T/4)) / (3T/4) averaged over
  nodes (waits propagate: over many rounds each node waits for slow nodes several hops away): **the model's
  per-round wait**;
* ``barrier_s``: E[max over all nodes of D] (what a global barrier each round would cost): an upper bound.

The expected time of a run that counted ``ifo`` samples, ``rounds`` rounds and ``bytes`` bytes per node is::

    expected_s = ifo * sample_s + R' * (latency_s + round_s) + B' / bandwidth_Bps,
    R' = rounds * round_factor,  B' = bytes * byte_factor

and the straggler-and-failure overhead is expected_s / modeled_s. With p = 0 and no stragglers, R' = rounds,
B' = bytes, round_s = 0, and expected_s equals modeled_s exactly.

Ignored, stated: asynchrony (no node runs ahead of a round; a late node delays its neighbours); correlated
failures (edges fail independently, rounds are independent; a site that goes away is not a link failure);
detecting a failure (a link known to be down costs no timeout); the effect of failures on Chebyshev/fastmix
acceleration (their rounds are scaled by the plain-gossip factor above); delays are per round and node, not
proportional to the bytes sent.
"""

from proxgt.costmodel.model import DEFAULT_BANDWIDTH_BPS, DEFAULT_LATENCY_S, CostModel, measure_sample_time
from proxgt.costmodel.network import (
    MIX_TARGET,
    STRAGGLER_SPECS,
    NetworkEffect,
    NetworkModel,
    Straggler,
    StragglerWait,
    failure_contraction,
    round_factor,
    straggler_wait,
)
from proxgt.costmodel.planning import Candidate, candidate_from_runs, candidate_rounds, plan_rounds, recommend

__all__ = [
    "CostModel",
    "Candidate",
    "measure_sample_time",
    "candidate_from_runs",
    "candidate_rounds",
    "recommend",
    "plan_rounds",
    "DEFAULT_LATENCY_S",
    "DEFAULT_BANDWIDTH_BPS",
    "MIX_TARGET",
    "Straggler",
    "STRAGGLER_SPECS",
    "NetworkModel",
    "NetworkEffect",
    "StragglerWait",
    "failure_contraction",
    "round_factor",
    "straggler_wait",
]

