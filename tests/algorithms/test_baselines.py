"""Baselines: each matches a reference loop written here, converges on a small problem, validates input."""

from __future__ import annotations

import math

import pytest
import torch

from proxgt._validation import ProxGTValueError
from proxgt.algorithms.baselines import Schedule
from proxgt.executors.simulation import run_simulation
from proxgt.mixing import Mixer, SimulatedCommunicator, mixing_matrix
from proxgt.problems.oracle import GradientOracle
from proxgt.registry import ALGORITHMS, ASYNC_ONLY
from proxgt.settings import RunConfig
from proxgt.training import build_run

BASELINES = [name for name in ALGORITHMS.names() if not name.startswith("proxgt-")]
LAM = 0.02  # l1 strength large enough that the prox matters
STEPS = 6


def _setup(algorithm: str, nodes: int = 4, **kw):
    cfg = RunConfig(**{
        "algorithm": algorithm, "data": "breast_cancer", "nodes": nodes,
        "topology": "ring" if nodes > 1 else "complete", "reg": "l1", "reg_strength": LAM, "dtype": "float64",
        "mixing": "chebyshev", "rounds": 2 if nodes > 1 else 1, "iters": STEPS, **kw,
    })
    b = build_run(cfg)
    ids = list(range(nodes))

    def oracle():
        return GradientOracle(b.problem, b.node_data.shard(ids), cfg.seed, dtype=torch.float64)

    comm = SimulatedCommunicator(b.topology.W, b.topology.degrees)
    mixer = Mixer(comm, cfg.mixing, b.rounds, lam=b.topology.lam)
    M = mixing_matrix(b.topology.W, cfg.mixing, b.rounds)
    x0 = b.x0.to(torch.float64).unsqueeze(0).repeat(nodes, 1)
    return b, oracle, mixer, M, x0


def _soft(Z: torch.Tensor, a: float) -> torch.Tensor:
    return torch.sign(Z) * torch.clamp(Z.abs() - a * LAM, min=0.0)


def _run_alg(b, oracle, mixer, x0):
    o = oracle()
    st = b.algorithm.init(x0, o, mixer)
    for _ in range(STEPS):
        st = b.algorithm.update(st, o, mixer)
    return st.x, o.ifo.copy()


# Reference loops: the update rules written out with explicit matrices, drawing samples in the same order.
def ref_prox_dsgd(b, o, M, X, extra):
    a, bs = b.step, b.algorithm.estimator.batch
    G = o.grad(X, o.sample(bs))
    for t in range(STEPS):
        at = a * (1 + t / 100.0) ** -0.5 if extra.get("prox-dsgd", {}).get("schedule") == "diminishing" else a
        X = _soft(M @ X - at * G, at)
        G = o.grad(X, o.sample(bs))
    return X


def ref_prox_dsgt(b, o, M, X, extra):
    # spec baselines.md section 2 (DSGT of the DEEPSTORM repo): Y_0 = M G_0; X <- M prox(M X - a Y);
    # Y <- M Y + G_new - G_old
    a, bs = b.step, b.algorithm.estimator.batch
    V = o.grad(X, o.sample(bs))
    Y = M @ V
    for t in range(STEPS):
        at = a / math.sqrt(t + 1) if extra.get("prox-dsgt", {}).get("schedule") == "diminishing" else a
        X = M @ _soft(M @ X - at * Y, at)
        V_new = o.grad(X, o.sample(bs))
        Y = M @ Y + V_new - V
        V = V_new
    return X


def ref_deepstorm(b, o, M, X, extra):
    # spec section 1: D0 exact, Y0 = M D0; beta_t = 1 - a_t+1/a_t + beta0 a_t+1^2 (beta0 = 1, k0 = 5)
    alg = b.algorithm
    D = o.full_grad(X)
    Y = M @ D
    constant = alg.name == "deepstorm"

    def a_(t):
        return b.step if constant else b.step * (5.0 / (t + 5.0)) ** (1 / 3)

    for t in range(STEPS):
        at = a_(t)
        beta = min(1.0, 1.0 - a_(t + 1) / at + a_(t + 1) ** 2)
        X_new = _soft(M @ X - at * Y, at)
        g_new, g_old = o.grad_pair(X_new, X, o.sample(alg.batch))
        if alg.name == "deepstorm-v1":
            D_new = beta * o.grad(X_new, o.sample(alg.batch)) + (1 - beta) * (D + g_new - g_old)
        else:
            D_new = g_new + (1 - beta) * (D - g_old)
        Y = M @ (Y + D_new - D)
        X, D = X_new, D_new
    return X


def ref_prox_dasa_gt(b, o, M, X, extra):
    # spec section 6, paper form: z averages the tracked gradient (GT) or the raw one (prox-dasa); X and U
    # are mixed together, then Z; gradients at the old point; Z0 = 0, U0 = V0 (GT only)
    g, n, bs = b.step, X.shape[0], b.algorithm.estimator.batch
    gt = b.algorithm.name == "prox-dasa-gt"
    V = o.grad(X, o.sample(bs)) if gt else None
    U, Z = (V.clone() if gt else None), torch.zeros_like(X)
    for t in range(STEPS):
        a = min(math.sqrt(n / (t + 1)), 1.0)
        Y = _soft(X - g * Z, g)
        V_new = o.grad(X, o.sample(bs))
        X = M @ ((1 - a) * X + a * Y)
        if gt:
            U = M @ (U + V_new - V)
            Z = M @ ((1 - a) * Z + a * U)
        else:
            Z = M @ ((1 - a) * Z + a * V_new)
        V = V_new
    return X


def ref_dproxsgt(b, o, M, X, extra):
    # spec section 3, paper form: V_-1 = Y_-1 = 0; tracker mixed, then used; gradient at the current point
    a, bs = b.step, b.algorithm.estimator.batch
    V, Y = torch.zeros_like(X), torch.zeros_like(X)
    for _ in range(STEPS):
        V_new = o.grad(X, o.sample(bs))
        Y = M @ (Y + V_new - V)
        X = M @ _soft(X - a * Y, a)
        V = V_new
    return X


def ref_sppdm(b, o, M, X, extra):
    # spec baselines.md section 5 with L = I - M, Q = I + M (degree 1): phi = gamma + 2c + kappa = 1/a
    a, bs = b.step, b.algorithm.estimator.batch
    c, kappa, alpha, beta = 0.3 / a, 0.01 / a, 0.3 / a, 0.9
    gamma = 1.0 / a - 2 * c - kappa
    G = o.full_grad(X)
    Lam, Z, X_prev, theta_old = torch.zeros_like(X), X.clone(), X.clone(), 1.0
    X, X_prev = _soft(a * ((gamma + kappa) * X + c * (X + M @ X) - G), a), X  # the initial step
    for _ in range(STEPS - 1):
        theta = (1 + math.sqrt(1 + 4 * theta_old**2)) / 2
        eta, theta_old = (theta_old - 1) / theta, theta
        Lam = Lam + alpha * (X - M @ X)
        S = X + eta * (X - X_prev)
        G = o.grad(S, o.sample(bs))
        X_new = _soft(a * (gamma * S + c * (X + M @ X) + kappa * Z - G - Lam), a)
        Z = Z + beta * (X_new - Z)
        X_prev, X = X, X_new
    return X


def ref_central_prox_sgd(b, o, M, X, extra):
    a, bs = b.step, b.algorithm.estimator.batch
    G = o.grad(X, o.sample(bs))
    for _ in range(STEPS):
        X = _soft(X - a * G, a)
        G = o.grad(X, o.sample(bs))
    return X


def ref_central_proxsarah(b, o, M, X, extra):
    a, est = b.step, b.algorithm.estimator
    V = o.full_grad(X)
    for t in range(1, STEPS + 1):
        X_new = _soft(X - a * V, a)
        if t % est.period == 0:
            V = o.full_grad(X_new)
        else:
            gn, go = o.grad_pair(X_new, X, o.sample(est.batch))
            V = V + gn - go
        X = X_new
    return X


CASES = [
    ("prox-dsgd", ref_prox_dsgd, 4, {}),
    ("prox-dsgd", ref_prox_dsgd, 4, {"prox-dsgd": {"schedule": "diminishing"}}),
    ("prox-dsgt", ref_prox_dsgt, 4, {}),
    ("prox-dsgt", ref_prox_dsgt, 4, {"prox-dsgt": {"schedule": "diminishing"}}),
    ("deepstorm", ref_deepstorm, 4, {}),
    ("deepstorm-diminishing", ref_deepstorm, 4, {}),
    ("deepstorm-v1", ref_deepstorm, 4, {}),
    ("prox-dasa-gt", ref_prox_dasa_gt, 4, {}),
    ("prox-dasa", ref_prox_dasa_gt, 4, {}),
    ("dproxsgt", ref_dproxsgt, 4, {}),
    ("sppdm", ref_sppdm, 4, {}),
    ("central-prox-sgd", ref_central_prox_sgd, 1, {}),
    ("central-proxsarah", ref_central_proxsarah, 1, {}),
]


@pytest.mark.parametrize(("name", "ref", "nodes", "extra"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_reference_loop(name, ref, nodes, extra):
    # period 4 makes ProxSARAH refresh inside the 6 steps
    b, oracle, mixer, M, x0 = _setup(name, nodes, extra=extra, period=4 if name == "central-proxsarah" else None)
    X_alg, _ = _run_alg(b, oracle, mixer, x0)
    X_ref = ref(b, oracle(), M, x0.clone(), extra)
    assert torch.allclose(X_alg, X_ref, atol=1e-12, rtol=1e-10), (X_alg - X_ref).abs().max()
    assert not torch.allclose(X_alg, x0)


def _topk_rows(Z: torch.Tensor, ratio: float) -> torch.Tensor:
    """Top-k by magnitude in each row, k = max(1, floor(ratio d)), written out with a sort."""
    k = max(1, math.floor(ratio * Z.shape[1]))
    keep = Z.abs().argsort(dim=1, descending=True, stable=True)[:, :k]
    return torch.zeros_like(Z).scatter(1, keep, Z.gather(1, keep))


def ref_cdproxsgt(b, o, W, X, ratio, gamma):
    # spec baselines.md section 4: DProxSGT's update with each mixing replaced by one CHOCO round on public
    # copies (Y_hat, X_hat start at 0): Q = C(Z - H); H += Q; Z <- Z + gamma (W - I) H
    a, bs = b.step, b.algorithm.estimator.batch
    V, Y = torch.zeros_like(X), torch.zeros_like(X)
    Yh, Xh = torch.zeros_like(X), torch.zeros_like(X)
    for _ in range(STEPS):
        V_new = o.grad(X, o.sample(bs))
        Y_half = Y + V_new - V
        Yh = Yh + _topk_rows(Y_half - Yh, ratio)
        Y = Y_half + gamma * (W @ Yh - Yh)
        X_half = _soft(X - a * Y, a)
        Xh = Xh + _topk_rows(X_half - Xh, ratio)
        X = X_half + gamma * (W @ Xh - Xh)
        V = V_new
    return X


def test_cdproxsgt_matches_reference_loop():
    from proxgt.mixing.compressed import make_mixer

    b, oracle, _, _, x0 = _setup("cdproxsgt", 4, compress="topk:0.3", consensus_step=0.6, mixing="plain", rounds=1)
    mixer = make_mixer(SimulatedCommunicator(b.topology.W, b.topology.degrees), b)
    X_alg, _ = _run_alg(b, oracle, mixer, x0)
    W = torch.as_tensor(b.topology.W, dtype=torch.float64)
    X_ref = ref_cdproxsgt(b, oracle(), W, x0.clone(), 0.3, 0.6)
    assert torch.allclose(X_alg, X_ref, atol=1e-12, rtol=1e-10), (X_alg - X_ref).abs().max()
    # compression changes the iterates: the same loop with exact gossip ends elsewhere
    assert not torch.allclose(X_alg, ref_cdproxsgt(b, oracle(), W, x0.clone(), 1.0, 1.0), atol=1e-6)


def test_every_registered_baseline_has_a_reference():
    # cdproxsgt has its own reference test above (it needs the compressed mixer), prox-adpsgd in test_adpsgd.py
    # (it runs on the asynchronous network), asy-sonata in test_asysonata.py (its sum-push mixes there)
    assert set(BASELINES) == {c[0] for c in CASES} | {"cdproxsgt", "prox-adpsgd", "asy-sonata"}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_converges_on_breast_cancer(name):
    nodes = 1 if name.startswith("central-") else 4
    cfg = RunConfig(algorithm=name, data="breast_cancer", nodes=nodes, topology="ring" if nodes > 1 else "complete",
                    iters=150, log_every=150, batch=64 if nodes == 1 else 16,
                    asynchronous=ASYNC_ONLY in ALGORITHMS.traits(name))
    h = run_simulation(cfg)
    first, last = h.rows[0]["grad_mapping_sq"], h.rows[-1]["grad_mapping_sq"]
    assert last < first / 300, (first, last)
    assert h.rows[-1]["consensus"] < 1e-2


def test_tracking_invariant_deepstorm_and_dasa():
    for name, field_v, field_y in (("deepstorm", "d", "y"), ("prox-dasa-gt", "v", "u"), ("prox-dsgt", "v", "y")):
        b, oracle, mixer, _, x0 = _setup(name, 4)
        o = oracle()
        st = b.algorithm.init(x0, o, mixer)
        for _ in range(4):
            st = b.algorithm.update(st, o, mixer)
            v, y = getattr(st, field_v), getattr(st, field_y)
            assert torch.allclose(v.mean(0), y.mean(0), atol=1e-12)


def test_central_needs_one_node_and_bad_extra_is_one_line():
    with pytest.raises(ProxGTValueError, match="nodes = 1"):
        build_run(RunConfig(algorithm="central-prox-sgd", data="breast_cancer", nodes=4))
    with pytest.raises(ProxGTValueError, match="unknown setting extra.deepstorm.gamma"):
        build_run(RunConfig(algorithm="deepstorm", data="breast_cancer", nodes=4, extra={"deepstorm": {"gamma": 1}}))
    with pytest.raises(ProxGTValueError, match="beta"):
        build_run(RunConfig(algorithm="deepstorm", data="breast_cancer", nodes=4, extra={"deepstorm": {"beta": 0.0}}))
    with pytest.raises(ProxGTValueError, match="must be a float"):
        build_run(RunConfig(algorithm="sppdm", data="breast_cancer", nodes=4, extra={"sppdm": {"omega": "x"}}))


def test_schedule():
    assert Schedule("constant", 2.0)(100) == 2.0
    assert Schedule("diminishing", 1.0, power=0.5, t0=1.0)(3) == pytest.approx(0.5)
    with pytest.raises(ProxGTValueError):
        Schedule("sometimes", 1.0)
