"""Differential privacy per node: per-sample gradients, clipping and noise, Poisson subsampling, accounting against
a direct call of Opacus's accountant, refusals and one-line errors for bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt.cli import main
from proxgt.data import NodeData
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation
from proxgt.privacy import PoissonBatch, PrivacyMechanism, clip_and_noise, poisson_sample
from proxgt.problems.linear import LeastSquares, LogisticRegression, SoftmaxRegression
from proxgt.problems.nn import MLP, LeNet5, TorchModelProblem
from proxgt.problems.oracle import GradientOracle
from proxgt.training import build_run

FAST = {"data": "breast_cancer", "nodes": 4, "iters": 12, "log_every": 4, "batch": 16}


def _problems():
    g = torch.Generator().manual_seed(0)
    p = 6
    yield LogisticRegression(p, rho=0.1), torch.randn(3, p, generator=g, dtype=torch.float64), \
        torch.randn(3, 5, p, generator=g, dtype=torch.float64), torch.randint(2, (3, 5), generator=g)
    yield SoftmaxRegression(p, 4), torch.randn(3, p * 4, generator=g, dtype=torch.float64), \
        torch.randn(3, 5, p, generator=g, dtype=torch.float64), torch.randint(4, (3, 5), generator=g)
    yield LeastSquares(p), torch.randn(3, p, generator=g, dtype=torch.float64), \
        torch.randn(3, 5, p, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    mlp = TorchModelProblem(MLP(16, 3, hidden=5))
    yield mlp, mlp.init_params(g).double().repeat(3, 1) + 0.1 * torch.randn(3, mlp.dim, generator=g).double(), \
        torch.randn(3, 5, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(3, (3, 5), generator=g)
    lenet = TorchModelProblem(LeNet5((1, 12, 12), 3), input_shape=(1, 12, 12))
    yield lenet, lenet.init_params(g).double().repeat(2, 1), torch.randn(2, 3, 144, generator=g, dtype=torch.float64), \
        torch.randint(3, (2, 3), generator=g)


@pytest.mark.parametrize("case", list(range(5)))
def test_per_sample_grads_match_single_sample_autograd(case):
    prob, X, feats, labels = list(_problems())[case]
    if isinstance(prob, TorchModelProblem):
        prob.model.double()
    per = prob.per_sample_grads(X, feats, labels)
    k, b = labels.shape
    assert per.shape == (k, b, X.shape[1])
    for i in range(k):
        for j in range(b):
            Xi = X[i : i + 1].clone().requires_grad_(True)
            one = torch.ones((1, 1), dtype=X.dtype)
            # autograd of the single sample's loss (no smooth penalty) through the problem's own loss
            loss = prob.loss_grad(Xi, feats[i : i + 1, j : j + 1], labels[i : i + 1, j : j + 1], one,
                                  with_penalty=False)[1]
            torch.testing.assert_close(per[i, j], loss[0], rtol=1e-8, atol=1e-10)


def test_clipping_bounds_each_sample_and_keeps_its_direction():
    g = torch.Generator().manual_seed(1)
    per = torch.randn(2, 6, 10, generator=g, dtype=torch.float64) * torch.tensor([0.1, 0.5, 1, 2, 5, 50]).view(
        1, 6, 1).double()
    C = 1.0
    for j in range(6):
        mask = torch.zeros(2, 6, dtype=torch.float64)
        mask[:, j] = 1.0
        out = clip_and_noise(per, mask, C, 0.0, 1, [])
        norm = per[:, j].norm(dim=1)
        torch.testing.assert_close(out.norm(dim=1), torch.clamp(norm, max=C))
        cos = (out * per[:, j]).sum(1) / (out.norm(dim=1) * norm)
        torch.testing.assert_close(cos, torch.ones(2, dtype=torch.float64))
    # the sum over all samples is at most b C in norm, whatever the raw gradients
    out = clip_and_noise(per * 1e6, torch.ones(2, 6, dtype=torch.float64), C, 0.0, 6, [])
    assert bool((out.norm(dim=1) <= C * (1 + 1e-12)).all())


def test_noise_has_std_sigma_c_over_b_and_follows_the_node_generators():
    per = torch.zeros(2, 3, 20000, dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.float64)
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    out = clip_and_noise(per, mask, 2.0, 1.5, 4, gens)
    assert abs(float(out.std()) - 1.5 * 2.0 / 4) < 0.02
    again = clip_and_noise(per, mask, 2.0, 1.5, 4, [torch.Generator().manual_seed(s) for s in (5, 6)])
    torch.testing.assert_close(out, again)


def _oracle(problem, privacy, *, m=(40, 60, 50), p=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    mmax = max(m)
    X = torch.randn(len(m), mmax, p, generator=g)
    y = torch.randint(2, (len(m), mmax), generator=g)
    data = NodeData(X, y, torch.tensor(m), 2, tuple(range(len(m))))
    return GradientOracle(problem, data, seed, dtype=torch.float64, privacy=privacy)


def test_poisson_sampler_rate_counts_and_determinism():
    prob = LogisticRegression(6)
    mech = PrivacyMechanism(1.0, 1.0, 1e-5, (40, 60, 50))
    oracle = _oracle(prob, mech)
    sizes = []
    for _ in range(300):
        batch = oracle.sample(10)
        assert isinstance(batch, PoissonBatch) and batch.expected == 10
        sizes.append(batch.mask.sum(1).numpy())
        kept = batch.idx[batch.mask > 0]
        assert int(kept.max()) < 60
    sizes = np.array(sizes)
    np.testing.assert_allclose(sizes.mean(0), [10, 10, 10], rtol=0.1)
    assert sizes.std() > 0  # variable batch sizes
    a = poisson_sample([torch.Generator().manual_seed(1)], [50], 7)
    b = poisson_sample([torch.Generator().manual_seed(1)], [50], 7)
    assert torch.equal(a.idx, b.idx) and torch.equal(a.mask, b.mask)
    with pytest.raises(ProxGTValueError, match="exceeds"):
        poisson_sample([torch.Generator()], [5], 7)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_no_noise_huge_clip_equals_plain_minibatch_gradient_on_the_same_samples(kind):
    if kind == "logistic":
        prob = LogisticRegression(6, rho=0.3)  # the smooth penalty is added once, outside the noisy sum
        X = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    else:
        prob = TorchModelProblem(MLP(6, 2, hidden=4))
        prob.model.double()
        X = prob.init_params(torch.Generator().manual_seed(2)).double().repeat(3, 1)
    oracle = _oracle(prob, PrivacyMechanism(1e12, 0.0, 1e-5, (40, 60, 50)))
    batch = oracle.sample(12)
    dp = oracle.grad(X, batch)
    feats, labels, _ = oracle._batch(batch.idx)
    plain = prob.loss_grad(X, feats, labels, batch.mask / batch.expected)[1]
    torch.testing.assert_close(dp, plain, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(oracle.ifo, batch.mask.sum(1).numpy().astype(np.int64))
    assert oracle.dp_releases == {12: 1}


def test_private_oracle_refuses_full_gradients_and_pairs():
    oracle = _oracle(LogisticRegression(6), PrivacyMechanism(1.0, 1.0, 1e-5, (40, 60, 50)))
    X = torch.zeros(3, 6, dtype=torch.float64)
    with pytest.raises(ProxGTValueError, match="full local gradients"):
        oracle.full_grad(X)
    with pytest.raises(ProxGTValueError, match="gradient differences"):
        oracle.grad_pair(X, X, oracle.sample(4))


def _direct_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta=delta)


def test_reported_epsilon_equals_opacus_rdp_accountant(tmp_path):
    hist = run_simulation({**FAST, "dp_clip": 0.5, "dp_noise": 1.3, "dp_delta": 1e-4}, out=tmp_path / "r")
    sizes = hist.config["meta"]["local_sizes"]
    q = 16 / min(sizes)
    eps = hist.column("epsilon")
    iters = hist.column("iter")
    # V_0 is a release, then one per iteration: iteration t has spent t + 1
    for t, e in zip(iters, eps, strict=True):
        assert e == pytest.approx(_direct_epsilon(1.3, q, int(t) + 1, 1e-4), rel=1e-12)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epsilon"] == pytest.approx(_direct_epsilon(1.3, q, 13, 1e-4), rel=1e-12)
    assert summary["dp_noise"] == 1.3 and summary["dp_clip"] == 0.5


def test_per_node_epsilons_follow_each_nodes_rate_and_the_maximum_is_reported():
    mech = PrivacyMechanism(1.0, 1.1, 1e-5, (100, 50, 100, 80))
    per_node = mech.node_epsilons({8: 30})
    for m, e in zip((100, 50, 100, 80), per_node, strict=True):
        assert e == pytest.approx(_direct_epsilon(1.1, 8 / m, 30, 1e-5), rel=1e-12)
    assert mech.epsilon({8: 30}) == max(per_node) == per_node[1]


def test_dp_epsilon_solves_sigma_with_opacus_and_the_run_stays_within_it(tmp_path):
    from opacus.accountants.utils import get_noise_multiplier

    hist = run_simulation({**FAST, "dp_clip": 1.0, "dp_epsilon": 3.0}, out=tmp_path / "r")
    sizes = hist.config["meta"]["local_sizes"]
    sigma = get_noise_multiplier(target_epsilon=3.0, target_delta=1e-5, sample_rate=16 / min(sizes), steps=13,
                                 accountant="rdp", epsilon_tolerance=0.01)
    assert hist.config["dp_noise"] == pytest.approx(sigma, rel=1e-12)
    final = hist.column("epsilon")[-1]
    assert 3.0 - 0.0101 <= final <= 3.0  # get_noise_multiplier stops within 0.01 below the target


def test_same_seed_same_private_run():
    a = run_simulation({**FAST, "dp_clip": 1.0, "dp_noise": 1.0})
    b = run_simulation({**FAST, "dp_clip": 1.0, "dp_noise": 1.0})
    c = run_simulation({**FAST, "dp_clip": 1.0, "dp_noise": 1.0, "seed": 1})
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    plain = run_simulation({**FAST})
    assert "epsilon" not in plain.columns and "epsilon" not in plain.summary


@pytest.mark.parametrize("settings, message", [
    ({"algorithm": "proxgt-sr-e"}, "not available with proxgt-sr-e: it uses gradient differences at two points"),
    ({"algorithm": "proxgt-sr-o"}, "not available with proxgt-sr-o: it uses gradient differences at two points"),
    ({"algorithm": "deepstorm"}, "not available with deepstorm"),
    ({"algorithm": "sppdm"}, "not available with sppdm"),
    ({"batch": "full"}, "batch = full"),
    ({"batch": 500}, "exceeds the smallest node"),
    ({"dp_epsilon": 2.0}, "exactly one of dp_noise"),
])
@pytest.mark.filterwarnings("ignore:batch 500 is larger")
def test_refusals_are_one_line(settings, message):
    cfg = {**FAST, "dp_clip": 1.0, "dp_noise": 1.0, **settings}
    with pytest.raises(ProxGTValueError, match=message) as info:
        build_run(cfg)
    assert "\n" not in str(info.value)


def test_noise_without_clip_and_epsilon_off():
    with pytest.raises(ProxGTValueError, match="needs dp_clip"):
        build_run({**FAST, "dp_noise": 1.0})
    assert build_run({**FAST, "dp_clip": 1.0, "dp_epsilon": "off"}).privacy is None
    assert build_run({**FAST, "dp_clip": 1.0, "dp_noise": 2.0, "algorithm": "dproxsgt"}).privacy is not None


@pytest.mark.parametrize("flags, name", [
    (["--dp-clip", "0", "--dp-noise", "1"], "dp_clip"),
    (["--dp-clip", "-1", "--dp-noise", "1"], "dp_clip"),
    (["--dp-clip", "1", "--dp-noise", "0"], "dp_noise"),
    (["--dp-clip", "1", "--dp-noise", "-2"], "dp_noise"),
    (["--dp-clip", "1", "--dp-noise", "1", "--dp-delta", "1"], "dp_delta"),
    (["--dp-clip", "1", "--dp-noise", "1", "--dp-delta", "0"], "dp_delta"),
    (["--dp-clip", "1", "--dp-epsilon", "0"], "dp_epsilon"),
    (["--dp-clip", "1", "--dp-noise", "1", "--dp-epsilon", "2"], "exactly one of"),
    (["--dp-clip", "1", "--dp-noise", "1", "--algorithm", "proxgt-sr-e"], "gradient differences"),
])
def test_cli_bad_privacy_input_exits_2_with_one_line(tmp_path, capsys, flags, name):
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "5", "--no-progress", "--out",
                 str(tmp_path / "r"), *flags])
    _, err = capsys.readouterr()
    assert code == 2 and name in err and err.count("\n") == 1, err


def test_runs_without_privacy_never_import_opacus(tmp_path):
    code = (
        "import sys\n"
        "from proxgt.cli import main\n"
        f"assert main(['run', '--data', 'breast_cancer', '--nodes', '2', '--iters', '3', '--no-progress', "
        f"'--out', {str(tmp_path / 'r')!r}]) == 0\n"
        "assert not any(m.split('.')[0] == 'opacus' for m in sys.modules), 'opacus imported'\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert math.isfinite(json.loads((tmp_path / "r" / "summary.json").read_text())["final"]["objective"])


@pytest.mark.parametrize("clip", [1e9, 0.5, 0.02])
def test_mlp_clipped_sum_without_materializing_equals_clipping_per_sample_grads(clip):
    from proxgt.problems.per_sample import clip_weights

    g = torch.Generator().manual_seed(4)
    prob = TorchModelProblem(MLP(12, 3, hidden=[7, 5], activation="tanh"))
    prob.model.double()
    X = prob.init_params(g).double().repeat(3, 1) + 0.2 * torch.randn(3, prob.dim, generator=g).double()
    feats, labels = torch.randn(3, 6, 12, generator=g, dtype=torch.float64), torch.randint(3, (3, 6), generator=g)
    mask = (torch.rand(3, 6, generator=g) < 0.7).double()
    per = prob.per_sample_grads(X, feats, labels)
    want = torch.einsum("kb,kbd->kd", clip_weights(per.norm(dim=2), clip, mask), per)
    torch.testing.assert_close(prob.clipped_grad_sum(X, feats, labels, mask, clip), want, rtol=1e-10, atol=1e-12)


def test_private_oracle_adds_noise_of_std_sigma_c_over_b_to_the_clipped_sum():
    prob = LeastSquares(3000)
    oracle = _oracle(prob, PrivacyMechanism(0.5, 2.0, 1e-5, (40, 60, 50)), p=3000)
    X = torch.randn(3, 3000, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    batch = oracle.sample(8)
    v = oracle.grad(X, batch)
    feats, labels, _ = oracle._batch(batch.idx)
    noise = v - prob.clipped_grad_sum(X, feats, labels, batch.mask, 0.5) / 8
    for row in noise:  # per node: 3000 draws of N(0, (sigma C / b)^2)
        assert abs(float(row.std()) / (2.0 * 0.5 / 8) - 1) < 0.1


def test_checkpointed_oracle_resumes_the_same_samples_noise_and_releases():
    oracle = _oracle(LogisticRegression(6), PrivacyMechanism(1.0, 1.0, 1e-5, (40, 60, 50)))
    X = torch.zeros(3, 6, dtype=torch.float64)
    oracle.grad(X, oracle.sample(5))
    state = oracle.state_dict()
    first = oracle.grad(X, oracle.sample(5))
    eps = oracle.epsilon()
    fresh = _oracle(LogisticRegression(6), PrivacyMechanism(1.0, 1.0, 1e-5, (40, 60, 50)))
    fresh.load_state_dict(state)
    assert fresh.dp_releases == {5: 1}
    torch.testing.assert_close(fresh.grad(X, fresh.sample(5)), first, rtol=0, atol=0)
    assert fresh.epsilon() == eps and oracle.dp_releases == {5: 2}
