"""Every problem on ``device = cuda``: the same iterates as on the CPU (float64), and no read-back from the GPU
between logged iterations (torch's sync debug mode turns one into an error). The CUDA tests skip without a GPU;
bench/gpu_check.sh runs them on a GPU machine. The device-side divergence record runs everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from proxgt.errors import DivergenceError
from proxgt.executors.simulation import run_simulation
from proxgt.training.loop import _DeviceDivergence

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh runs these)")

PROBLEMS = {  # problem -> (feature shape, labels: number of classes or 0 for real values, extra settings)
    "logistic": ((20,), 2, {}),
    "softmax": ((20,), 3, {}),
    "least_squares": ((20,), 0, {}),
    "mlp": ((20,), 3, {"hidden": 16}),
    "lenet": ((1, 16, 16), 3, {}),
}


def _data(tmp_path, problem: str) -> str:
    shape, classes, _ = PROBLEMS[problem]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, *shape)).astype(np.float32)
    score = X.reshape(240, -1)[:, :3] @ np.array([1.0, -1.0, 0.5])
    y = score if classes == 0 else np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    path = tmp_path / f"{problem}.npz"
    np.savez(path, X=X, y=y)
    return str(path)


def _cfg(tmp_path, problem: str, device: str, **kw) -> dict:
    return {"problem": problem, "data": _data(tmp_path, problem), "nodes": 4, "topology": "ring", "iters": 12,
            "log_every": 4, "batch": 8, "seed": 1, "dtype": "float64", "device": device,
            "algorithm": "proxgt-sr-o", "reg": "l1", "reg_strength": 1e-3, **PROBLEMS[problem][2], **kw}


def test_the_device_record_names_the_first_bad_iteration_and_node():
    x = torch.zeros(3, 4)
    rec = _DeviceDivergence(x)
    rec.record(1, x)
    rec.check([10, 11, 12], 0.1)  # nothing bad yet
    bad = x.clone()
    bad[2, 1] = float("nan")
    rec.record(2, bad)
    worse = bad.clone()
    worse[0, 0] = float("inf")
    rec.record(3, worse)  # later and on another row: the first one is kept
    with pytest.raises(DivergenceError, match="at iteration 2 on node 12"):
        rec.check([10, 11, 12], 0.1)


@cuda
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_every_problem_runs_on_cuda_with_the_cpu_iterates(tmp_path, problem):
    on_gpu = run_simulation(_cfg(tmp_path, problem, "cuda"))
    on_cpu = run_simulation(_cfg(tmp_path, problem, "cpu"))
    x_g, x_c = on_gpu.x.double().numpy(), on_cpu.x.double().numpy()
    assert np.isfinite(x_g).all() and not np.array_equal(x_c, 0 * x_c)
    np.testing.assert_allclose(x_g, x_c, rtol=1e-6, atol=1e-8 * max(1.0, float(np.abs(x_c).max())))
    assert [r["iter"] for r in on_gpu.rows] == [r["iter"] for r in on_cpu.rows]


@cuda
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_no_read_back_from_the_gpu_between_logged_iterations(tmp_path, problem):
    cfg = _cfg(tmp_path, problem, "cuda", iters=9, log_every=3)
    log_every, iters = cfg["log_every"], cfg["iters"]
    checked: list[int] = []

    def strict_until_the_next_log(rank: int, t: int) -> None:
        # runs after iteration t (and its metrics): iteration t + 1 must not synchronize unless it is logged
        strict = (t + 1) % log_every != 0 and t + 1 < iters
        torch.cuda.set_sync_debug_mode("error" if strict else "default")
        if strict:
            checked.append(t + 1)

    try:
        run_simulation(cfg, fault_hook=strict_until_the_next_log)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert checked == [1, 2, 4, 5, 7, 8]


@cuda
def test_divergence_on_cuda_is_reported_at_the_iteration_and_node_of_the_cpu_run(tmp_path):
    messages = []
    for device in ("cpu", "cuda"):  # iterates grow about 1e6-fold per iteration: both overflow at the same one
        cfg = _cfg(tmp_path, "least_squares", device, step=1e6, iters=40, log_every=20, reg="none", dtype="float32")
        with pytest.raises(DivergenceError, match=r"iteration \d+ on node \d") as info:
            run_simulation(cfg)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def _pairs_suite(tmp_path, device: str) -> str:
    """A suite file in the shape of the LeNet-5 run that failed once on an H100 (2026-11-26, "Input type
    (torch.FloatTensor) and weight type (torch.cuda.FloatTensor)" in the grouped forward pass; its cause, the
    sample time of a suite without ``sample_s`` measured with a CPU oracle, is tested below, and this suite gives
    ``sample_s``): LeNet-5, 5 nodes, the ``pairs`` split of 10 classes, a metrics subsample below the shard size,
    a held-out test set, float32, ProxGT-SA and -SR-E, cells in worker processes."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 1, 16, 16)).astype(np.float32)
    y = np.repeat(np.arange(10), 40)
    data = tmp_path / "pairs.npz"
    np.savez(data, X=X, y=y)
    suite = tmp_path / "pairs.toml"
    suite.write_text(f'''[suite]
name = "pairs-{device}"
out = "{tmp_path / ('runs-' + device)}"
target = 1.0
[suite.cost]
sample_s = 1e-6
[base]
problem = "lenet"
data = "{data}"
nodes = 5
split = "pairs"
metrics_samples = 10
iters = 6
log_every = 3
batch = 4
device = "{device}"
[grid]
algorithm = ["proxgt-sa", "proxgt-sr-e"]
''')
    return str(suite)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_lenet_pairs_split_with_a_metrics_subsample_in_suite_workers(tmp_path, device):
    from proxgt.suites import load_suite, run_suite

    suite = load_suite(_pairs_suite(tmp_path, device))
    result = run_suite(suite, jobs=2)
    assert not result.failed, result.failed
    for cell in suite.cells:
        rows = (suite.folder(cell) / "metrics.csv").read_text().splitlines()
        assert len(rows) == 4 and "test_accuracy" in rows[0]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
@pytest.mark.parametrize("problem", ["mlp", "lenet"])
def test_a_suite_cost_model_measures_the_sample_time_on_the_runs_device(tmp_path, problem, device):
    """A suite without ``sample_s`` measures it on its first cell's problem: on that cell's device (an oracle on
    the CPU beside cuda iterates was LeNet-5's "Input type (torch.FloatTensor) and weight type
    (torch.cuda.FloatTensor)" of the device run of 2026-11-26)."""
    from proxgt.costmodel import measure_sample_time
    from proxgt.settings import RunConfig

    cfg = RunConfig.from_dict(_cfg(tmp_path, problem, device))
    seconds = measure_sample_time(cfg, batch=8, repeats=2)
    assert 0 < seconds < 1
