"""Estimators through the registry: spec defaults of from_settings, make_estimator, user registrations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.estimators import (
    ESTIMATOR_NAMES,
    Estimator,
    Minibatch,
    NoState,
    SarahFinite,
    SarahOnline,
    Storm,
    make_estimator,
)
from proxgt.problems.oracle import ORACLE_CALLS
from proxgt.registry import ESTIMATORS


@pytest.fixture
def restore_estimators():
    """Undo registrations a test makes in the global ESTIMATORS table."""
    saved = (dict(ESTIMATORS._entries), dict(ESTIMATORS._aliases), dict(ESTIMATORS._loaded))
    yield ESTIMATORS
    ESTIMATORS._entries, ESTIMATORS._aliases, ESTIMATORS._loaded = saved


def test_names_come_from_the_registry():
    assert ESTIMATOR_NAMES == ("sa", "sr-o", "sr-e")
    assert ESTIMATORS.get("sa") is Minibatch
    assert ESTIMATORS.get("sr-o") is SarahOnline
    assert ESTIMATORS.get("sr-e") is SarahFinite


@pytest.mark.parametrize("n, m", [(1, 1), (4, 10), (8, 100), (16, 300), (3, 5000), (32, 60000)])
def test_from_settings_defaults_follow_the_spec(n, m):
    assert Minibatch.from_settings(n_nodes=n, local_size=m) == Minibatch(batch=32)

    B = min(m, 256)
    b = max(1, math.ceil(math.sqrt(B)) // 2)
    assert SarahOnline.from_settings(n_nodes=n, local_size=m) == SarahOnline(
        batch=b, big_batch=B, period=math.ceil(B / b)
    )

    b = max(math.ceil(math.sqrt(m / n)), 1)
    assert SarahFinite.from_settings(n_nodes=n, local_size=m) == SarahFinite(batch=b, period=math.ceil(m / b))


def test_from_settings_known_values():
    # m = 100: B = 100, b = ceil(10) // 2 = 5, q = 20; SR-E with n = 4: b = ceil(sqrt(25)) = 5, q = 20
    assert SarahOnline.from_settings(n_nodes=4, local_size=100) == SarahOnline(batch=5, big_batch=100, period=20)
    assert SarahFinite.from_settings(n_nodes=4, local_size=100) == SarahFinite(batch=5, period=20)
    # m = 1000: B = 256, b = 16 // 2 = 8, q = 32
    assert SarahOnline.from_settings(n_nodes=1, local_size=1000) == SarahOnline(batch=8, big_batch=256, period=32)


def test_from_settings_given_values_win_and_unused_ones_are_ignored():
    assert Minibatch.from_settings(n_nodes=4, local_size=10, batch=7, big_batch=99, period=3) == Minibatch(7)
    assert SarahOnline.from_settings(n_nodes=4, local_size=100, big_batch=64) == SarahOnline(
        batch=4, big_batch=64, period=16
    )
    assert SarahOnline.from_settings(n_nodes=4, local_size=100, batch=2, big_batch=10, period=3) == SarahOnline(
        batch=2, big_batch=10, period=3
    )
    assert SarahFinite.from_settings(n_nodes=4, local_size=100, batch=10, big_batch=7) == SarahFinite(
        batch=10, period=10
    )


def test_make_estimator_uses_from_settings():
    for name, cls in (("sa", Minibatch), ("sr-o", SarahOnline), ("sr-e", SarahFinite)):
        est = make_estimator(name, n_nodes=8, local_size=500, batch=None, big_batch=None, period=None)
        assert est == cls.from_settings(n_nodes=8, local_size=500)
        assert isinstance(est, Estimator) and est.name == name
    assert make_estimator("SR-O", n_nodes=2, local_size=50).name == "sr-o"  # registry normalizes case


def test_make_estimator_unknown_name_is_one_line_value_error():
    with pytest.raises(ProxGTValueError) as info:
        make_estimator("adam", n_nodes=4, local_size=10)
    msg = str(info.value)
    assert "\n" not in msg and "'adam'" in msg and all(n in msg for n in ESTIMATOR_NAMES)


def test_bad_values_are_refused():
    with pytest.raises(ProxGTValueError, match="'batch' parameter of Minibatch"):
        make_estimator("sa", n_nodes=4, local_size=10, batch=0)
    with pytest.raises(ProxGTValueError, match="'period' parameter of SarahFinite"):
        make_estimator("sr-e", n_nodes=4, local_size=10, period=-1)


@dataclass(frozen=True)
class _Doubling:
    """A user estimator: twice the minibatch gradient (enough to tell it apart); its state counts its updates."""

    batch: int
    name: str = "mine"
    oracle_calls: ClassVar[frozenset[str]] = frozenset({"minibatch"})
    recursion_ratio: ClassVar[float] = 0.0

    @classmethod
    def from_settings(cls, *, n_nodes, local_size, batch=None, big_batch=None, period=None):
        return cls(batch=batch if batch is not None else local_size // n_nodes)

    @property
    def batch_per_iter(self):
        return self.batch

    @property
    def sizes(self):
        return {"batch": self.batch}

    def samples_per_iter(self, local_size):
        return float(self.batch)

    def init(self, oracle, X0):
        return 2 * oracle.grad(X0, oracle.sample(self.batch)), _Count(0)

    def update(self, state, oracle, X_new, X_old, V_old, t):
        return 2 * oracle.grad(X_new, oracle.sample(self.batch)), _Count(state.updates + 1)


class _Count(NamedTuple):
    updates: int


def test_registered_estimator_is_built_by_make_estimator(restore_estimators):
    restore_estimators.register("mine", _Doubling, summary="twice the minibatch gradient")
    est = make_estimator("mine", n_nodes=4, local_size=40)
    assert est == _Doubling(batch=10) and isinstance(est, Estimator)
    assert make_estimator("mine", n_nodes=4, local_size=40, batch=3) == _Doubling(batch=3)


def test_registered_estimator_drives_proxgt(restore_estimators):
    from proxgt.algorithms import ProxGT
    from proxgt.data import Dataset, split_nodes
    from proxgt.mixing import Mixer, SimulatedCommunicator
    from proxgt.problems import LeastSquares
    from proxgt.problems.oracle import GradientOracle
    from proxgt.prox import make_regularizer
    from proxgt.topology import make_topology

    restore_estimators.register("mine", _Doubling)
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(40, 3, generator=g), torch.randn(40, generator=g), 0, "toy")
    shards = split_nodes(data, 4, "iid", seed=0)
    topo = make_topology("ring", 4)
    mix = Mixer(SimulatedCommunicator(topo.W, topo.degrees), "plain", 1, lam=topo.lam)
    X0 = torch.ones(4, 3)

    alg = ProxGT(make_estimator("mine", n_nodes=4, local_size=10, batch=5), make_regularizer("l1", 0.0), step=0.1)
    oracle = GradientOracle(LeastSquares(3), shards, seed=0)
    state = alg.init(X0, oracle, mix)
    reference, _ = Minibatch(5).init(GradientOracle(LeastSquares(3), shards, seed=0), X0)  # same sample stream
    torch.testing.assert_close(state.v, 2 * reference)
    for _ in range(3):  # the algorithm carries the estimator's state from one update to the next
        state = alg.update(state, oracle, mix)
    assert state.est == _Count(3)


def _tiny_oracle(nodes: int = 2, m: int = 30):
    from proxgt.data import Dataset, split_nodes
    from proxgt.problems import LeastSquares
    from proxgt.problems.oracle import GradientOracle

    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(nodes * m, 3, generator=g), torch.randn(nodes * m, generator=g), 0, "toy")
    return GradientOracle(LeastSquares(3), split_nodes(data, nodes, "iid", seed=0), seed=0)


def _shipped(m: int) -> list:
    from proxgt.algorithms.baselines import Schedule

    return [Minibatch(5), SarahOnline(batch=3, big_batch=12, period=4), SarahFinite(batch=2, period=5),
            Storm(4, Schedule("constant", 0.1)), Storm(4, Schedule("diminishing", 0.1, t0=5.0), hybrid=True)]


@pytest.mark.parametrize("index", range(5))
def test_declared_costs_are_what_the_oracle_counts(index):
    """samples_per_iter and oracle_calls are declarations the run reads (capabilities, epochs): over whole
    periods they must equal what the oracle counts and the calls it sees."""
    m = 30
    est = _shipped(m)[index]
    oracle = _tiny_oracle(m=m)
    seen: set[str] = set()
    for call, name in (("grad", "minibatch"), ("grad_pair", "pair"), ("full_grad", "full")):
        original = getattr(oracle, call)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen.add(_name)
            return _original(*args, **kwargs)

        setattr(oracle, call, spy)
    X = torch.zeros(2, 3)
    V, state = est.init(oracle, X)
    start = oracle.ifo.copy()
    iters = 20  # a multiple of every period above
    for t in range(1, iters + 1):
        X_new = X - 0.01 * V
        V, state = est.update(state, oracle, X_new, X, V, t)
        X = X_new
    assert seen == est.oracle_calls and est.oracle_calls <= set(ORACLE_CALLS)
    assert (oracle.ifo - start).tolist() == [est.samples_per_iter(m) * iters] * 2
    assert isinstance(est, Estimator) and isinstance(est.batch, int) and est.recursion_ratio >= 0.0


def test_recursion_ratio_is_q_over_b_for_sarah_and_zero_otherwise():
    assert SarahOnline(batch=8, big_batch=256, period=32).recursion_ratio == 4.0
    assert SarahFinite(batch=31, period=242).recursion_ratio == pytest.approx(242 / 31)
    assert Minibatch(32).recursion_ratio == 0.0


def test_sizes_under_a_recursion_ratio():
    # SR-O: b = 16 (2b samples per recursion step = one SA minibatch), q = floor(ratio b), B = b q (<= m)
    assert SarahOnline.from_settings(n_nodes=8, local_size=7500, ratio=0.25) == SarahOnline(16, 64, 4)
    assert SarahOnline.from_settings(n_nodes=8, local_size=40, ratio=0.25) == SarahOnline(16, 40, 4)
    assert SarahOnline.from_settings(n_nodes=8, local_size=7500, ratio=0.01) == SarahOnline(16, 16, 1)
    # SR-E: b = ceil(sqrt(m / (2 ratio))), q = floor(ratio b): the cheapest iteration with q <= ratio b
    assert SarahFinite.from_settings(n_nodes=8, local_size=7500, ratio=0.25) == SarahFinite(123, 30)
    assert SarahFinite.from_settings(n_nodes=4, local_size=359, ratio=0.25) == SarahFinite(27, 6)
    # a size the user gives: the spec's formulas fill the rest, the ratio is not applied
    assert SarahOnline.from_settings(n_nodes=8, local_size=7500, batch=8, ratio=0.25) == SarahOnline(8, 256, 32)
    assert SarahFinite.from_settings(n_nodes=8, local_size=7500, period=10, ratio=0.25) == SarahFinite(31, 10)
    assert Minibatch.from_settings(n_nodes=8, local_size=7500, ratio=0.25) == Minibatch(32)


def test_make_estimator_passes_the_ratio_only_when_set(restore_estimators):
    restore_estimators.register("mine", _Doubling)  # its from_settings has no ratio keyword
    assert make_estimator("mine", n_nodes=4, local_size=40) == _Doubling(batch=10)
    assert make_estimator("sr-o", n_nodes=4, local_size=400, ratio=0.25) == SarahOnline(16, 64, 4)


def test_storm_is_deepstorms_recursion():
    """DEEPSTORM v2 composes the Storm estimator: one update of the algorithm's D equals the STORM formula on
    the same samples (same seed), and the algorithm's state carries the estimator's."""
    from proxgt.algorithms.baselines import DeepStorm, Schedule
    from proxgt.mixing import Mixer, SimulatedCommunicator
    from proxgt.prox import make_regularizer
    from proxgt.topology import make_topology

    topo = make_topology("ring", 2)
    mix = Mixer(SimulatedCommunicator(topo.W, topo.degrees), "plain", 1, lam=topo.lam)
    alg = DeepStorm(make_regularizer("l1", 1e-3), Schedule("constant", 0.2), beta=2.0, batch=3)
    assert alg.estimator == Storm(3, Schedule("constant", 0.2), beta=2.0)
    assert alg.estimator.oracle_calls == {"full", "pair"} and alg.estimator.samples_per_iter(30) == 6.0
    oracle, twin = _tiny_oracle(), _tiny_oracle()
    state = alg.update(alg.init(torch.ones(2, 3), oracle, mix), oracle, mix)
    assert state.est == NoState()
    X0 = torch.ones(2, 3)
    D0 = twin.full_grad(X0)
    g_new, g_old = twin.grad_pair(state.x, X0, twin.sample(3))
    beta = 2.0 * 0.2**2
    torch.testing.assert_close(state.d, g_new + (1 - beta) * (D0 - g_old))
