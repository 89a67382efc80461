"""DEEPSTORM v1 and v2 against the equations of spec section 1, written out here with explicit matrices.

The reference loops below use only the run's problem (through a second oracle with the same seed, so the same
samples are drawn in the same order), the explicit mixing matrix M and soft-thresholding; the beta schedule is
the spec's ``beta_t = 1 - a_t+1 / a_t + beta0 a_t+1^2`` with ``a_t = lr / (t + k0)^(1/3)`` (lr = a k0^(1/3)).
"""

from __future__ import annotations

import pytest
import torch

import proxgt
from proxgt.mixing import Mixer, SimulatedCommunicator, mixing_matrix
from proxgt.problems.oracle import GradientOracle
from proxgt.settings import RunConfig
from proxgt.training import build_run

from .deterministic import PROBLEM, centralized_solution

LAM = 0.02
ITERS = 4


def _setup(algorithm: str, *, batch=None, extra=None, mixing="plain", rounds=1, step="auto"):
    cfg = RunConfig(algorithm=algorithm, data="breast_cancer", nodes=4, topology="ring", reg="l1", reg_strength=LAM,
                    dtype="float64", mixing=mixing, rounds=rounds, iters=ITERS, batch=batch, extra=extra or {},
                    step=step)
    b = build_run(cfg)

    def oracle():
        return GradientOracle(b.problem, b.node_data.shard([0, 1, 2, 3]), cfg.seed, dtype=torch.float64,
                              full_batch=b.full_batch)

    comm = SimulatedCommunicator(b.topology.W, b.topology.degrees)
    mixer = Mixer(comm, cfg.mixing, b.rounds, lam=b.topology.lam)
    M = mixing_matrix(b.topology.W, cfg.mixing, b.rounds)
    # different points per node, as in the authors' experiments (exercises the consensus terms from t = 0)
    g = torch.Generator().manual_seed(1)
    x0 = b.x0.to(torch.float64).unsqueeze(0) + 0.1 * torch.randn(4, b.x0.numel(), generator=g, dtype=torch.float64)
    return b, oracle, mixer, comm, M, x0


def _soft(V: torch.Tensor, a: float, lam: float = LAM) -> torch.Tensor:
    return torch.sign(V) * torch.clamp(V.abs() - a * lam, min=0.0)


def _reference(o, M, X, *, version, step, beta0, k0, diminishing, batch, scale=1.0, lam=LAM):
    """Spec section 1, paper form: D0 exact local gradient, Y0 = M D0; gossip, prox; estimator; track.
    ``scale`` = 1/N and ``lam`` give the authors' code units (section 0: gradients of (1/N) x the loss)."""
    lr = step * k0 ** (1 / 3)

    def alpha(t):
        return lr / (t + k0) ** (1 / 3) if diminishing else step

    def G(Z, idx):  # row i: batch-mean gradient of f_i at z_i (exact local gradient when idx is None)
        return scale * (o.full_loss_grad(Z)[1] if idx is None else o.problem.loss_grad(Z, *o._batch(idx))[1])

    D = G(X, None)
    Y = M @ D
    iterates = []
    for t in range(ITERS):
        a_t, a_next = alpha(t), alpha(t + 1)
        beta = min(1.0, 1.0 - a_next / a_t + beta0 * a_next**2)
        X_new = _soft(M @ X - a_t * Y, a_t, lam)
        B = o.sample(batch)
        if version == 2:
            D_new = G(X_new, B) + (1.0 - beta) * (D - G(X, B))
        else:
            B2 = o.sample(batch)  # independent of B, drawn after it
            D_new = beta * G(X_new, B2) + (1.0 - beta) * (D + G(X_new, B) - G(X, B))
        Y = M @ (Y + D_new - D)
        X, D = X_new, D_new
        iterates.append(X.clone())
    return iterates


CASES = [
    # name, version, diminishing, extra, batch, mixing, rounds
    ("deepstorm", 2, False, {}, None, "plain", 1),
    ("deepstorm-diminishing", 2, True, {"deepstorm": {"beta": 3.0, "k0": 7.0}}, None, "plain", 1),
    ("deepstorm-v1", 1, True, {}, None, "plain", 1),
    ("deepstorm-v1", 1, False, {"deepstorm-v1": {"schedule": "constant", "beta": 2.0}}, None, "chebyshev", 2),
    ("deepstorm-diminishing", 2, True, {}, "full", "plain", 1),
    ("deepstorm-v1", 1, True, {}, "full", "chebyshev", 2),
]


@pytest.mark.parametrize(("name", "version", "diminishing", "extra", "batch", "mixing", "rounds"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_iterates_match_the_spec_equations(name, version, diminishing, extra, batch, mixing, rounds):
    b, oracle, mixer, comm, M, x0 = _setup(name, batch=batch, extra=extra, mixing=mixing, rounds=rounds)
    alg = b.algorithm
    table = next(iter(extra.values()), {})
    o = oracle()
    st = alg.init(x0, o, mixer)
    got = []
    for _ in range(ITERS):
        st = alg.update(st, o, mixer)
        got.append(st.x.clone())
    want = _reference(oracle(), M, x0.clone(), version=version, step=b.step, beta0=table.get("beta", 1.0),
                      k0=table.get("k0", 5.0), diminishing=diminishing, batch=alg.batch)
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        assert torch.allclose(g, w, atol=1e-12, rtol=1e-10), (t, (g - w).abs().max())
    assert not torch.allclose(got[-1], x0)
    # costs (spec section 8): m_i at init, then 2b (v2) or 3b (v1) per iteration; 1 + 2 per iteration mixings
    m = o.counts.numpy()
    per_iter = (2 if version == 2 else 3) * (m if batch == "full" else alg.batch)
    assert (o.ifo == m + ITERS * per_iter).all(), (o.ifo, m, per_iter)
    assert comm.counter.rounds == (1 + 2 * ITERS) * rounds
    # tracking: mean over nodes of Y equals that of D
    assert torch.allclose(st.y.mean(0), st.d.mean(0), atol=1e-12)


@pytest.mark.parametrize("name", ["deepstorm-diminishing", "deepstorm-v1"])
def test_conversion_from_the_authors_units(name):
    # the docstring's recipe: code (lr, k0, beta0, lambda) with (1/N)-scaled gradients == here step = lr /
    # (N k0^(1/3)), beta = N^2 beta0, reg_strength = N lambda (N = 4; lambda = LAM / 4 keeps LAM here)
    n, k0, lr, beta0_code = 4, 5.0, 0.25 * 4 * 5.0 ** (1 / 3), 0.5
    table = "deepstorm-v1" if name == "deepstorm-v1" else "deepstorm"
    b, oracle, mixer, _, M, x0 = _setup(name, extra={table: {"beta": n**2 * beta0_code, "k0": k0}},
                                        step=lr / (n * k0 ** (1 / 3)))
    o = oracle()
    st = b.algorithm.init(x0, o, mixer)
    for _ in range(ITERS):
        st = b.algorithm.update(st, o, mixer)
    want = _reference(oracle(), M, x0.clone(), version=1 if name == "deepstorm-v1" else 2, step=lr / k0 ** (1 / 3),
                      beta0=beta0_code, k0=k0, diminishing=True, batch=b.algorithm.batch, scale=1 / n, lam=LAM / n)
    assert torch.allclose(st.x, want[-1], atol=1e-12, rtol=1e-10), (st.x - want[-1]).abs().max()


def test_beta_schedule_check_values_of_the_spec():
    # spec section 1 check values, in the code's units (the formula is the same in any units):
    # a9a v1: lr 5, k0 7, beta0 0.153; a9a v2: lr 10, k0 5, beta0 0.031; MNIST: lr 10, k0 3, beta0 0.0228
    from proxgt.algorithms.baselines import Schedule
    from proxgt.algorithms.baselines.deepstorm import DeepStorm
    from proxgt.prox import make_regularizer

    def alg(lr, k0, beta0):
        return DeepStorm(make_regularizer("l1", 1e-4), Schedule("diminishing", lr / k0 ** (1 / 3), 1 / 3, k0), beta0)

    v1 = alg(5.0, 7.0, 0.153)
    assert v1.schedule(0) == pytest.approx(2.614, abs=1e-3) and v1.beta_at(0) == pytest.approx(0.9998, abs=1e-4)
    assert v1.schedule(100) == pytest.approx(1.053, abs=1e-3) and v1.beta_at(100) == pytest.approx(0.172, abs=1e-3)
    assert v1.schedule(10**4) == pytest.approx(0.232, abs=1e-3)
    assert v1.beta_at(10**4) == pytest.approx(0.0083, abs=1e-4)
    v2 = alg(10.0, 5.0, 0.031)
    assert v2.schedule(0) == pytest.approx(5.848, abs=1e-3) and v2.beta_at(0) == pytest.approx(0.9978, abs=2e-4)
    mnist = alg(10.0, 3.0, 0.0228)
    assert mnist.schedule(0) == pytest.approx(6.934, abs=1e-3) and mnist.beta_at(0) == pytest.approx(0.9963, abs=1e-4)
    # constant schedule: beta = beta0 a^2, capped at 1
    const = DeepStorm(make_regularizer("l1", 1e-4), Schedule("constant", 0.5), beta=2.0)
    assert const.beta_at(0) == const.beta_at(50) == pytest.approx(0.5)
    assert DeepStorm(make_regularizer("l1", 1e-4), Schedule("constant", 2.0), beta=2.0).beta_at(3) == 1.0


def test_settings_are_checked():
    from proxgt.errors import ProxGTValueError

    with pytest.raises(ProxGTValueError, match="unknown setting extra.deepstorm-v1.t0"):
        build_run(RunConfig(algorithm="deepstorm-v1", data="breast_cancer", nodes=4,
                            extra={"deepstorm-v1": {"t0": 3.0}}))
    with pytest.raises(ProxGTValueError, match="k0"):
        build_run(RunConfig(algorithm="deepstorm", data="breast_cancer", nodes=4, extra={"deepstorm": {"k0": 0.0}}))
    with pytest.raises(ProxGTValueError, match="schedule"):
        build_run(RunConfig(algorithm="deepstorm-v1", data="breast_cancer", nodes=4,
                            extra={"deepstorm-v1": {"schedule": "sometimes"}}))


@pytest.fixture(scope="module")
def x_star() -> torch.Tensor:
    return centralized_solution()


# With exact gradients both estimators reduce to the exact local gradient (v2: D_t+1 = grad f(X_t+1) +
# (1 - beta)(grad f(X_t) - grad f(X_t)); v1 likewise), so both versions are proximal gradient tracking with
# gossip-then-prox. A fixed point has Y = M Y, hence Y = 1 y^T with y = mean_i grad f_i(x_i) (M preserves
# the mean of Y, which equals that of D); and X = prox(M X - a 1 y^T) row-wise, so by non-expansiveness of the
# prox sum_ik ||x_i - x_k||^2 <= ||M - J||^2 sum_ik ||x_i - x_k||^2 with ||M - J|| < 1: X = 1 x^T is
# consensual, y = grad F(x) and x = prox(x - a grad F(x)), a stationary point of F + h. The fixed points are
# therefore the stationary points, and the run must reach the centralized solution.
# (The diminishing runs use a larger k0 so that the t^(-1/3) decay leaves a 1e-6 match within a few seconds.)
@pytest.mark.parametrize(("algorithm", "extra", "iters"), [
    ("deepstorm", {}, 1500),
    ("deepstorm-diminishing", {"deepstorm": {"k0": 100.0}}, 2500),
    ("deepstorm-v1", {"deepstorm-v1": {"k0": 100.0}}, 2500),
    ("deepstorm-v1", {"deepstorm-v1": {"schedule": "constant"}}, 1500),
])
def test_full_batch_reaches_the_centralized_solution(x_star, algorithm, extra, iters):
    h = proxgt.run({**PROBLEM, "algorithm": algorithm, "iters": iters, "log_every": iters, "extra": extra})
    assert float((x_star == 0).float().mean()) > 0.3
    assert torch.allclose(h.x, x_star.unsqueeze(0).expand_as(h.x), atol=1e-6, rtol=0), \
        (h.x - x_star).abs().max()
