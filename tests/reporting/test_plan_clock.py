"""proxgt plan against the virtual clock: the predicted time to the target from the clock's specifications is
compared with the simulated sim_time_s of the very runs it plans."""

from __future__ import annotations

import math

import pytest

from proxgt.cli import main
from proxgt.costmodel import CostModel, plan_rounds
from proxgt.settings import RunConfig

_BASE = {"data": "breast_cancer", "nodes": 8, "iters": 120, "log_every": 4, "link_latency": "exp:0.002",
         "link_bandwidth": "1.25e6"}


def _slow_node_file(tmp_path) -> str:
    path = tmp_path / "speeds.csv"
    path.write_text("node,s\n" + "".join(f"{i},{1e-3 if i == 2 else 1e-4}\n" for i in range(8)))
    return str(path)


@pytest.mark.parametrize("speed", ["const:1e-4", "slow", "lognormal:-9.7,1"])
def test_predicted_time_to_target_is_within_1_3x_of_the_simulated_time(speed, tmp_path):
    speed = _slow_node_file(tmp_path) if speed == "slow" else speed
    cfg = RunConfig(**_BASE, node_speed=speed)
    cands, best = plan_rounds(cfg, CostModel(), target=1e-3, ks=[1, 4], mixings=("plain",))
    assert best is not None and all(c.reached for c in cands)
    for c in cands:
        assert math.isfinite(c.clock_s) and c.simulated_s > 0
        assert 1 / 1.3 <= c.clock_s / c.simulated_s <= 1.3, (speed, c.rounds, c.clock_s, c.simulated_s)
    assert best.time_s == best.clock_s  # the plan ranks by the clock's prediction


def test_a_slow_node_sets_the_predicted_pace(tmp_path):
    # node 2 computes 10x slower: every synchronous round waits for it, so the prediction must grow with it
    fast = plan_rounds(RunConfig(**_BASE, node_speed="const:1e-4"), CostModel(), target=1e-3, ks=[1],
                       mixings=("plain",))[0][0]
    slow = plan_rounds(RunConfig(**_BASE, node_speed=_slow_node_file(tmp_path)), CostModel(), target=1e-3, ks=[1],
                       mixings=("plain",))[0][0]
    assert slow.iters == fast.iters  # same iterates: the clock only times them
    assert slow.clock_s > 2.0 * fast.clock_s


def test_without_a_clock_nothing_is_predicted():
    cfg = RunConfig(data="breast_cancer", nodes=4, iters=20, log_every=4)
    cands, _ = plan_rounds(cfg, CostModel(), target=0.05, ks=[1], mixings=("plain",))
    assert math.isnan(cands[0].clock_s) and math.isnan(cands[0].simulated_s)


def test_plan_cli_shows_the_ratio_and_refuses_async(capsys):
    base = ["plan", "--data", "breast_cancer", "--nodes", "4", "--iters", "40", "--log-every", "4", "--ks", "1",
            "--mixings", "plain", "--target", "1e-2", "--node-speed", "exp:1e-4", "--link-latency", "0.001",
            "--no-progress"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "predicted clock s | simulated s | predicted/simulated |" in out and "predicted on the clock" in out
    assert main([*base, "--async"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "synchronous" in err[0]
