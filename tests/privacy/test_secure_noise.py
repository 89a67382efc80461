"""Differential privacy across processes and sites: noise from a seed no other party knows (dp_secure_noise),
kept in the process's own 0600 files, and raw-data metrics that stay where the data is."""

from __future__ import annotations

import stat

import pytest
import torch

from proxgt.cli import main
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation
from proxgt.metrics.evaluator import MetricsEvaluator
from proxgt.training import build_run
from proxgt.training.privacy import NOISE_SEED_FILE, private_across_processes, site_noise_seed

FAST = {"data": "breast_cancer", "nodes": 4, "iters": 8, "log_every": 4, "batch": 16, "dp_clip": 1.0,
        "dp_noise": 1.0}


def test_one_process_stays_seeded_by_default_and_secure_noise_is_fresh_every_run():
    a, b = run_simulation(dict(FAST)), run_simulation(dict(FAST))
    assert torch.equal(a.x, b.x)  # documented: the simulator's DP noise follows the seed
    c, d = run_simulation({**FAST, "dp_secure_noise": True}), run_simulation({**FAST, "dp_secure_noise": True})
    assert not torch.equal(c.x, d.x) and not torch.equal(c.x, a.x)
    off = run_simulation({**FAST, "dp_secure_noise": False})
    assert torch.equal(off.x, a.x)


def test_secure_noise_replaces_the_sample_and_noise_streams_of_every_node():
    spec = build_run({**FAST, "dp_secure_noise": True})
    seeded = build_run(dict(FAST)).make_oracle(range(4))
    for secret in (1, 2):
        oracle = spec.make_oracle(range(4), noise_seed=secret)
        again = spec.make_oracle(range(4), noise_seed=secret)
        for g, h, s in zip(oracle.generators + oracle.noise_generators, again.generators + again.noise_generators,
                           seeded.generators + seeded.noise_generators, strict=True):
            assert torch.equal(g.get_state(), h.get_state())  # the secret alone fixes the streams
            assert not torch.equal(g.get_state(), s.get_state())  # never the run seed's


def test_checkpoints_of_a_secure_noise_run_are_private_and_resume_exactly(tmp_path):
    run = run_simulation
    first = run({**FAST, "dp_secure_noise": True, "checkpoint_every": 4}, out=tmp_path / "a")
    files = list((tmp_path / "a" / "checkpoint").rglob("rank*.pt"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # two continuations of the same checkpoint draw the same noise: the generators' states are in it
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    x = [run(None, resume=tmp_path / d, overrides={"iters": 12}).x for d in ("a", "b")]
    assert torch.equal(x[0], x[1]) and not torch.equal(x[0], first.x)
    import os

    umask = os.umask(0o022)
    try:  # a seeded run's checkpoint files keep the mode an ordinary file gets
        run({**FAST, "checkpoint_every": 4}, out=tmp_path / "plain")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(next((tmp_path / "plain" / "checkpoint").rglob("rank*.pt")).stat().st_mode) == 0o644


def test_site_noise_seed_is_fresh_private_and_read_back_on_resume(tmp_path):
    a = site_noise_seed(tmp_path / "site")
    path = tmp_path / "site" / NOISE_SEED_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert site_noise_seed(tmp_path / "site", resume=True) == a
    b = site_noise_seed(tmp_path / "site")  # a fresh start never reuses the noise of an earlier run
    assert b != a and site_noise_seed(tmp_path / "site", resume=True) == b
    with pytest.raises(ProxGTValueError, match="noise seed .* is missing or unreadable"):
        site_noise_seed(tmp_path / "other", resume=True)


def test_across_processes_secure_noise_is_forced_and_refusals_are_one_line():
    from proxgt.settings import RunConfig

    cfg = RunConfig.from_dict({**FAST, "step": 0.5}).validate()
    assert private_across_processes(cfg).dp_secure_noise is True
    plain = RunConfig.from_dict({"data": "breast_cancer"}).validate()
    assert private_across_processes(plain).dp_secure_noise is None
    with pytest.raises(ProxGTValueError, match="dp_secure_noise = false is not available across processes"):
        private_across_processes(cfg.replace(dp_secure_noise=False))
    with pytest.raises(ProxGTValueError, match="local_test_fraction .* not available with differential privacy"):
        private_across_processes(cfg.replace(local_test_fraction=0.2))
    with pytest.raises(ProxGTValueError, match="step = auto needs the smoothness bound of every process's data"):
        private_across_processes(cfg.replace(problem="logistic", step="auto"))
    assert private_across_processes(cfg.replace(problem="logistic", step=0.5)).step == 0.5
    assert private_across_processes(cfg.replace(problem="mlp", step="auto")).step == "auto"  # no data in it
    kept = private_across_processes(cfg.replace(local_test_fraction=0.2), metrics_stay_local=True)
    assert kept.dp_secure_noise is True and kept.local_test_fraction == 0.2


def test_dp_secure_noise_without_dp_is_refused(tmp_path, capsys):
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "2", "--dp-secure-noise",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--dp-secure-noise chooses where" in err and len(err.strip().splitlines()) == 1, err


class _Spy:
    """The simulator's communicator, recording the shape of every tensor summed over nodes."""

    def __init__(self, comm):
        self._comm, self.summed = comm, []

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def sum_over_nodes(self, T):
        self.summed.append(tuple(T.shape))
        return self._comm.sum_over_nodes(T)


def test_raw_data_metrics_are_not_summed_over_processes_under_dp_across_processes():
    from proxgt.executors.simulation import simulated_communicator

    spec = build_run({**FAST, "dp_secure_noise": True})
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(comm.node_ids)
    X = spec.initial_rows(comm.node_ids) + 0.1
    rows = {}
    for raw_local in (False, True):
        spy = _Spy(comm)
        metrics = MetricsEvaluator(spec.problem, spec.regularizer, oracle, spy, spec.step, raw_local=raw_local)
        rows[raw_local] = metrics(X, 0, 0.0)
        d = X.shape[1]
        # the network average of the iterates is summed either way; grad f's rows only without raw_local
        assert sum(s == (X.shape[0], d) for s in spy.summed) == (1 if raw_local else 2)
        assert len(spy.summed) == (3 if raw_local else 6)  # ifo and the iterates only, or also loss and accuracy
    assert rows[True] == pytest.approx(rows[False])  # one process holds every node: nothing changes


def test_no_raw_data_product_is_summed_over_processes_at_set_up_under_dp_across_processes(tmp_path):
    import numpy as np

    from proxgt.data._shard import ShardRequest

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))

    summed = []

    def total(t):  # one process: the sum over processes is its own value
        summed.append(tuple(t.shape))
        return t

    request = ShardRequest(hosted=lambda n: list(range(n)), sum_over_processes=total)
    base = {"data": str(tmp_path / "d.npz"), "nodes": 4, "iters": 2, "batch": 16, "step": 0.5}
    build_run(base, shard=request)
    assert summed  # without DP the smoothness bound's power iteration sums over processes
    summed.clear()
    build_run({**base, "dp_clip": 1.0, "dp_noise": 1.0, "dp_secure_noise": True}, shard=request)
    assert summed == [], summed
    with pytest.raises(ProxGTValueError, match="step = auto needs the smoothness bound"):
        build_run({**base, "step": "auto", "dp_clip": 1.0, "dp_noise": 1.0, "dp_secure_noise": True},
                  shard=request)
