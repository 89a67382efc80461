"""Building a run from settings: every user-settable input reaches the objects, derived values go to the
resolved config only, and bad combinations are one-line errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import proxgt
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import simulated_communicator
from proxgt.prox import Box, GroupLasso, L1Ball, L2Ball
from proxgt.registry import ALGORITHMS, ASYNC_ONLY
from proxgt.settings import RunConfig
from proxgt.training import build_run, train

SMALL = {"data": "breast_cancer", "nodes": 4, "topology": "ring", "iters": 20, "log_every": 10}


def test_resolved_values_do_not_touch_the_given_settings():
    cfg = RunConfig(**SMALL, algorithm="proxgt-sr-e")
    spec = build_run(cfg)
    assert cfg.step == "auto" and cfg.rounds == "auto" and cfg.batch is None
    assert spec.settings.step == "auto"
    assert isinstance(spec.resolved.step, float) and isinstance(spec.resolved.rounds, int)
    assert spec.resolved.batch == spec.algorithm.estimator.batch and spec.resolved.period > 0


def _final_x(spec, stream_seed: int | None):
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(comm.node_ids)
    if stream_seed is not None:  # other per-node sample streams
        oracle.generators = [torch.Generator().manual_seed(stream_seed + i) for i in range(oracle.k)]
    state, _ = train(spec, comm, oracle)
    return state.x, oracle


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_batch_full_is_deterministic_for_every_algorithm(algorithm):
    nodes = 1 if algorithm.startswith("central-") else 4
    cfg = RunConfig(**{**SMALL, "nodes": nodes, "topology": "complete" if nodes == 1 else "ring", "iters": 6,
                       "log_every": 6}, algorithm=algorithm, batch="full", dtype="float64",
                    asynchronous=ASYNC_ONLY in ALGORITHMS.traits(algorithm))
    spec = build_run(cfg)
    x_a, oracle = _final_x(spec, None)
    x_b, _ = _final_x(spec, 1234)  # nothing is sampled, so other sample streams change nothing
    assert torch.equal(x_a, x_b)
    counts = oracle.counts.numpy()
    assert (oracle.ifo % counts == 0).all() and (oracle.ifo > 0).all()  # only whole shards were evaluated
    x_c, _ = _final_x(build_run(cfg.replace(batch=8)), 1234)
    assert not torch.equal(x_a, x_c)  # the check can fail: minibatches do depend on the streams


def test_batch_full_proxgt_is_deterministic_proximal_gradient_tracking():
    """With exact local gradients ProxGT-SA and ProxGT-SR-E take identical iterates (SARAH differences of exact
    gradients telescope to the exact gradient)."""
    base = {**SMALL, "batch": "full", "iters": 15, "log_every": 15, "dtype": "float64"}
    sa = proxgt.run({**base, "algorithm": "proxgt-sa"})
    sre = proxgt.run({**base, "algorithm": "proxgt-sr-e"})
    assert torch.allclose(sa.x, sre.x, atol=1e-10, rtol=0)


def test_epochs_set_the_iterations_from_the_local_data():
    spec = build_run(RunConfig(**SMALL, algorithm="proxgt-sa", batch=16, epochs=2.0))
    m = round(spec.node_data.total / spec.node_data.n_nodes)
    assert spec.iters == math.ceil(2.0 * m / 16) and spec.settings.iters == 20
    full = build_run(RunConfig(**SMALL, batch="full", epochs=3))
    assert full.iters == 3


def test_init_file_one_point_or_one_row_per_node(tmp_path):
    d = 30  # breast_cancer features
    np.savez(tmp_path / "one.npz", x=np.full(d, 0.5))
    np.savez(tmp_path / "rows.npz", x=np.arange(4 * d, dtype=float).reshape(4, d) / 100)
    spec = build_run(RunConfig(**SMALL, init=str(tmp_path / "one.npz")))
    assert torch.equal(spec.initial_rows([0, 1]), torch.full((2, d), 0.5))
    spec = build_run(RunConfig(**SMALL, init=str(tmp_path / "rows.npz")))
    assert torch.allclose(spec.initial_rows([2]).double(), torch.arange(2 * d, 3 * d, dtype=torch.float64)[None] / 100)
    np.savez(tmp_path / "bad.npz", x=np.zeros(d + 1))
    with pytest.raises(ProxGTValueError, match=r"x has shape \(31,\); expected \(30,\) .* or \(4, 30\)"):
        build_run(RunConfig(**SMALL, init=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "nox.npz", y=np.zeros(d))
    with pytest.raises(ProxGTValueError, match="has no array 'x'"):
        build_run(RunConfig(**SMALL, init=str(tmp_path / "nox.npz")))


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".txt"])
def test_weights_file_is_the_mixing_matrix(tmp_path, suffix):
    W = np.array([[0.5, 0.25, 0, 0.25], [0.25, 0.5, 0.25, 0], [0, 0.25, 0.5, 0.25], [0.25, 0, 0.25, 0.5]])
    path = tmp_path / f"W{suffix}"
    if suffix == ".npy":
        np.save(path, W)
    else:
        np.savetxt(path, W, delimiter="," if suffix == ".csv" else " ")
    spec = build_run(RunConfig(**SMALL, weights_file=str(path)))
    assert np.allclose(spec.topology.W.numpy(), W) and spec.resolved.weights == "user"
    assert spec.settings.weights == "metropolis"  # what the user gave stays as given


def test_weights_file_is_validated_against_the_graph(tmp_path):
    path = tmp_path / "W.npy"
    np.save(path, np.full((4, 4), 0.25))  # complete-graph weights on a ring: off-graph entries
    with pytest.raises(ProxGTValueError):
        build_run(RunConfig(**SMALL, weights_file=str(path)))


def test_regularizer_parameters_reach_the_regularizer(tmp_path):
    assert build_run(RunConfig(**SMALL, reg="l2_ball", reg_radius=2.0)).regularizer == L2Ball(2.0)
    assert build_run(RunConfig(**SMALL, reg="l1_ball", reg_radius=3.0)).regularizer == L1Ball(3.0)
    box = build_run(RunConfig(**SMALL, reg="box", box_lower=-1.0, box_upper=2.0)).regularizer
    assert isinstance(box, Box) and float(box.lower) == -1.0 and float(box.upper) == 2.0
    gl = build_run(RunConfig(**SMALL, reg="group_lasso", group_size=5)).regularizer
    assert isinstance(gl, GroupLasso)
    groups = tmp_path / "groups.txt"
    groups.write_text(" ".join(str(i // 10) for i in range(30)))
    gl2 = build_run(RunConfig(**SMALL, reg="group_lasso", groups=str(groups))).regularizer
    assert isinstance(gl2, GroupLasso)
    x = torch.randn(2, 30)
    assert torch.allclose(gl2.value(x), build_run(RunConfig(**SMALL, reg="group_lasso", group_size=10))
                          .regularizer.value(x))


def test_regularizer_parameter_for_another_regularizer_is_named():
    with pytest.raises(ProxGTValueError, match=r"reg_radius \(--reg-radius\) is a parameter of l2_ball and l1_ball, "
                                               r"not of reg = 'l1'"):
        build_run(RunConfig(**SMALL, reg="l1", reg_radius=1.0))
    with pytest.raises(ProxGTValueError, match=r"reg = 'box' needs box_lower \(--box-lower\) and box_upper"):
        build_run(RunConfig(**SMALL, reg="box"))


def test_batch_larger_than_local_data_says_what_happens():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_run(RunConfig(**SMALL, batch=500))
    msgs = [str(w.message) for w in caught]
    assert any("larger than the smallest node's local data" in m and "with replacement" in m
               and "batch = full" in m for m in msgs), msgs


def test_auto_rounds_are_capped_with_a_warning_naming_the_cap():
    from proxgt.mixing.auto import AUTO_ROUNDS_CAP

    # plain gossip on a 100-node ring needs ~1,200 rounds for ||W^K - J|| <= 0.2
    with pytest.warns(UserWarning, match=f"using {AUTO_ROUNDS_CAP}"):
        spec = build_run({"data": "breast_cancer", "nodes": 100, "topology": "ring", "mixing": "plain", "batch": 4})
    assert spec.rounds == AUTO_ROUNDS_CAP
    # below the cap auto is unchanged: the smallest K that reaches the target
    small = build_run({"data": "breast_cancer", "nodes": 16, "topology": "ring", "mixing": "chebyshev", "batch": 4})
    assert 1 < small.rounds < AUTO_ROUNDS_CAP
