"""SPPDM and DSGT (spec baselines.md sections 2, 5 and 8): iterates from the spec's equations, written here with
explicit matrices in the paper's own (graph) form, costs, settings, and, with exact gradients, convergence to
the centralized solution.

Both methods have stationary fixed points, so both are checked against centralized proximal gradient:

* DSGT: a fixed point has Y = M Y (so Y is consensual and equals mean(G) by the tracking invariant), X
  consensual (M contracts disagreement, the prox is non-expansive) and x = prox(x - a mean_i grad f_i(x)).
* SPPDM: a fixed point has L X = 0 (dual update), so X is consensual, S = Z = X, and 0 in g_i + Lam_i +
  subdiff h(x) with sum_i Lam_i = 0 (Lam moves in the range of the Laplacian), so x is stationary.
"""

from __future__ import annotations

import math

import pytest
import torch

import proxgt
from proxgt._validation import ProxGTValueError
from proxgt.mixing import Mixer, SimulatedCommunicator, mixing_matrix
from proxgt.problems.oracle import GradientOracle
from proxgt.settings import RunConfig
from proxgt.training import build_run

from .deterministic import PROBLEM, centralized_solution

LAM = 0.02
ITERS = 4


def _build(algorithm: str, batch, extra=None, mixing: str = "plain", rounds: int = 1):
    cfg = RunConfig(algorithm=algorithm, data="breast_cancer", nodes=4, topology="ring", reg="l1", reg_strength=LAM,
                    dtype="float64", mixing=mixing, rounds=rounds, iters=ITERS, batch=batch, extra=extra or {})
    b = build_run(cfg)
    ids = list(range(4))

    def oracle():
        return GradientOracle(b.problem, b.node_data.shard(ids), cfg.seed, dtype=torch.float64,
                              full_batch=batch == "full")

    mixer = Mixer(SimulatedCommunicator(b.topology.W, b.topology.degrees), mixing, rounds, lam=b.topology.lam)
    M = torch.as_tensor(mixing_matrix(b.topology.W, mixing, rounds), dtype=torch.float64)
    x0 = b.x0.to(torch.float64).unsqueeze(0).repeat(4, 1)
    # a non-consensual start, so the mixing terms matter from the first step
    x0 = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return b, oracle, mixer, M, x0


def _iterates(b, oracle, mixer, x0):
    o = oracle()
    st = b.algorithm.init(x0, o, mixer)
    out = []
    for _ in range(ITERS):
        st = b.algorithm.update(st, o, mixer)
        out.append(st.x.clone())
    return out, o.ifo.copy()


def _soft(V, tau):
    return torch.sign(V) * torch.clamp(V.abs() - tau, min=0.0)


def _grad(o, X, bs):
    return o.grad(X, None) if o.full_batch else o.grad(X, o.sample(bs))


# ---------------------------------------------------------------------------------------------- SPPDM
def _sppdm_expected(o, M, X0, step, bs, c_a=0.3, kappa_a=0.01, alpha_a=0.3, beta=0.9, momentum="nesterov",
                    eta_const=0.8):
    """Spec section 5 with the graph read off M: adjacency M (self-loops), degrees 1, L = I - M, Q = D + A = I + M;
    phi = gamma + 2 c + kappa = 1/step; unscaled gradients; threshold lambda / phi; exact initial gradient."""
    n = X0.shape[0]
    eye = torch.eye(n, dtype=X0.dtype)
    L, Q = eye - M, eye + M
    c, kappa, alpha = c_a / step, kappa_a / step, alpha_a / step
    phi = 1.0 / step
    gamma = phi - 2 * c - kappa
    g0 = o.full_grad(X0)
    # initial step: X1 = S_{lam/phi}([(gamma + c d + kappa) x0 + c sum_j a_ij x0_j - g0] / phi), d = 1, A = M
    X = _soft(((gamma + c + kappa) * X0 + c * (M @ X0) - g0) / phi, LAM / phi)
    X_prev, Lam, Z, theta_old = X0.clone(), torch.zeros_like(X0), X0.clone(), 1.0
    out, etas = [X], []
    for _ in range(ITERS - 1):
        theta = (1 + math.sqrt(1 + 4 * theta_old**2)) / 2
        eta = {"nesterov": (theta_old - 1) / theta, "none": 0.0, "constant": eta_const}[momentum]
        theta_old = theta
        etas.append(eta)
        Lam = Lam + alpha * (L @ X)  # dual first, at the current X
        S = X + eta * (X - X_prev)  # extrapolation
        g = _grad(o, S, bs)  # gradient at the extrapolated point
        X_new = _soft((gamma * S + c * (Q @ X) + kappa * Z - g - Lam) / phi, LAM / phi)  # Q X = d x + sum a x
        Z = Z + beta * (X_new - Z)
        X_prev, X = X, X_new
        out.append(X)
    return out, etas


@pytest.mark.parametrize(("batch", "extra"), [
    ("full", {}),
    (5, {}),
    (5, {"momentum": "constant", "eta": 0.5, "penalty": 0.25, "dual": 0.1, "smoothing": 0.05, "omega": 0.5}),
    (5, {"momentum": "none"}),
])
def test_sppdm_iterates_follow_the_spec(batch, extra):
    b, oracle, mixer, M, x0 = _build("sppdm", batch, {"sppdm": extra})
    got, ifo = _iterates(b, oracle, mixer, x0)
    keys = {"penalty": "c_a", "smoothing": "kappa_a", "dual": "alpha_a", "omega": "beta", "momentum": "momentum",
            "eta": "eta_const"}
    o = oracle()
    want, etas = _sppdm_expected(o, M, x0.clone(), b.step, 5, **{keys[k]: v for k, v in extra.items()})
    for t, (x_got, x_want) in enumerate(zip(got, want, strict=True)):
        assert torch.allclose(x_got, x_want, atol=1e-12, rtol=1e-10), (t, (x_got - x_want).abs().max())
    assert not torch.allclose(got[-1], got[-2])
    assert (ifo == o.ifo).all()  # the same gradients were paid for
    if not extra:
        assert etas == pytest.approx([0.0, (1.618034 - 1) / 2.193527, 0.434], abs=1e-3)


def test_sppdm_nesterov_weights_match_the_spec_values():
    theta, etas = 1.0, []
    for _ in range(4):
        new = (1 + math.sqrt(1 + 4 * theta**2)) / 2
        etas.append((theta - 1) / new)
        theta = new
    assert etas == pytest.approx([0.0, 0.282, 0.434, 0.531], abs=1e-3)


def test_sppdm_costs_per_spec_section_8():
    # init: m gradients (exact local gradient); the initial step: 1 mixing, no gradient; then b + 1 mixing
    cfg = {"algorithm": "sppdm", "data": "breast_cancer", "nodes": 4, "topology": "ring", "mixing": "plain",
           "rounds": 1, "batch": 8, "iters": 5, "log_every": 1}
    h = proxgt.run(cfg)
    m = h.rows[0]["ifo_per_node"]
    assert m == pytest.approx(build_run(RunConfig(**cfg)).node_data.total / 4)  # the mean local size
    assert [r["ifo_per_node"] - m for r in h.rows] == [0, 0, 8, 16, 24, 32]
    assert [r["comm_rounds"] for r in h.rows] == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------- DSGT
def _dsgt_expected(o, M, X, step, bs, diminishing=False):
    """Spec section 2: G0 = G(X0), Y0 = W G0; P = S(W X - eta Y); X+ = W P; G+ = G(X+); Y+ = W Y + G+ - G."""
    G = _grad(o, X, bs)
    Y = M @ G
    out = []
    for t in range(ITERS):
        eta = step / math.sqrt(t + 1) if diminishing else step
        P = _soft(M @ X - eta * Y, eta * LAM)
        X = M @ P
        G_new = _grad(o, X, bs)
        Y = M @ Y + G_new - G
        G = G_new
        out.append(X)
    return out


@pytest.mark.parametrize(("batch", "schedule", "mixing", "rounds"), [
    ("full", "constant", "plain", 1),
    (5, "constant", "plain", 1),
    (5, "diminishing", "plain", 1),
    (5, "constant", "chebyshev", 2),
])
def test_dsgt_iterates_follow_the_spec(batch, schedule, mixing, rounds):
    b, oracle, mixer, M, x0 = _build("prox-dsgt", batch, {"prox-dsgt": {"schedule": schedule}}, mixing, rounds)
    got, ifo = _iterates(b, oracle, mixer, x0)
    o = oracle()
    want = _dsgt_expected(o, M, x0.clone(), b.step, 5, diminishing=schedule == "diminishing")
    for t, (x_got, x_want) in enumerate(zip(got, want, strict=True)):
        assert torch.allclose(x_got, x_want, atol=1e-12, rtol=1e-10), (t, (x_got - x_want).abs().max())
    assert (ifo == o.ifo).all()


def test_dsgt_costs_per_spec_section_8():
    # init: b gradients + 1 mixing (Y0 = W G0); then b gradients and 3 mixings (X, X, Y) per iteration
    h = proxgt.run({"algorithm": "prox-dsgt", "data": "breast_cancer", "nodes": 4, "topology": "ring",
                    "mixing": "plain", "rounds": 1, "batch": 8, "iters": 4, "log_every": 1})
    assert [r["ifo_per_node"] for r in h.rows] == [8, 16, 24, 32, 40]
    assert [r["comm_rounds"] for r in h.rows] == [1, 4, 7, 10, 13]


# ---------------------------------------------------------------------------------------------- settings
def test_settings_are_validated():
    def make(alg, extra):
        return build_run(RunConfig(algorithm=alg, data="breast_cancer", nodes=4, extra={alg: extra}))

    with pytest.raises(ProxGTValueError, match="smoothing"):
        make("sppdm", {"smoothing": 0.0})  # the z-anchor must be live (kappa > 0)
    with pytest.raises(ProxGTValueError, match="penalty"):
        make("sppdm", {"penalty": 0.6})  # a gamma = 1 - 2 penalty - smoothing < 0
    with pytest.raises(ProxGTValueError, match="momentum"):
        make("sppdm", {"momentum": "heavy"})
    with pytest.raises(ProxGTValueError, match="unknown setting extra.sppdm.beta"):
        make("sppdm", {"beta": 0.5})  # the old gradient-averaging weight is gone; z-averaging is omega
    with pytest.raises(ProxGTValueError, match="schedule"):
        make("prox-dsgt", {"schedule": "sometimes"})
    alg = make("sppdm", {}).algorithm
    assert (alg.penalty, alg.smoothing, alg.dual, alg.omega, alg.momentum) == (0.3, 0.01, 0.3, 0.9, "nesterov")
    assert alg.gamma_share == pytest.approx(0.39)


# ---------------------------------------------------------------------------------------------- fixed points
@pytest.fixture(scope="module")
def x_star() -> torch.Tensor:
    return centralized_solution()


@pytest.mark.parametrize(("algorithm", "iters", "extra"), [
    ("prox-dsgt", 1500, {}),
    ("sppdm", 1000, {}),
    ("sppdm", 2500, {"momentum": "none"}),
])
def test_full_batch_reaches_the_centralized_solution(x_star, algorithm, iters, extra):
    h = proxgt.run({**PROBLEM, "algorithm": algorithm, "mixing": "plain", "rounds": 1, "iters": iters,
                    "log_every": iters, "extra": {algorithm: extra}})
    assert float((x_star == 0).float().mean()) > 0.3
    assert torch.allclose(h.x, x_star.unsqueeze(0).expand_as(h.x), atol=1e-6, rtol=0)


def test_sppdm_stays_at_the_stationary_point_in_float32():
    # The dual accumulates alpha L X; its node sum must stay 0, or x settles where mean_i Lam_i shifts the
    # gradient. Mixed in float32, every iteration added the same round-off of M X to that sum (X is at rest),
    # so the iterates drifted linearly away (here 5.9e-4, 2.4e-3, 9.4e-3 at 1k, 4k, 16k). The run's default
    # dtype (float32) and mixing (Chebyshev, auto rounds) against the float64 centralized solution.
    cfg = RunConfig(**{**PROBLEM, "rho": 0.01, "dtype": "float32", "algorithm": "sppdm"})
    x_star = centralized_solution(rho=0.01).to(torch.float64)
    b = build_run(cfg)
    ids = list(range(b.settings.nodes))
    oracle = b.make_oracle(ids)
    mixer = Mixer(SimulatedCommunicator(b.topology.W, b.topology.degrees), b.resolved.mixing, b.resolved.rounds,
                  lam=b.topology.lam)
    state = b.algorithm.init(b.initial_rows(ids), oracle, mixer)
    errors = []
    for t in range(1, 16_001):
        state = b.algorithm.update(state, oracle, mixer)
        if t in (1_000, 4_000, 16_000):
            errors.append(float((state.x.double() - x_star).norm() / (x_star.norm() * len(ids) ** 0.5)))
    assert float((x_star == 0).float().mean()) > 0.3 and b.settings.rho > 0  # l1 active, loss non-convex
    assert errors[0] < 1e-5, errors  # at float32 precision by 1k iterations
    assert errors[2] <= 1.05 * errors[0] and errors[1] <= 1.05 * errors[0], errors  # and stays there
    assert float(state.lam.mean(0).abs().max()) <= 1e-9 * float(state.lam.abs().max()), "dual's node sum left 0"
