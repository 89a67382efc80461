"""Gossip under lost messages: running sums keep gradient tracking exact, and no loss is the synchronous run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.executors.resuming import stopped_and_resumed

from proxgt._state import map_state
from proxgt.cli import main
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.mixing.running_sums import MessageLoss, RunningSumMixer, running_sum_mixer
from proxgt.settings import RunConfig
from proxgt.training import build_run, train

FAST = {"data": "breast_cancer", "nodes": 6, "topology": "ring", "iters": 30, "log_every": 5, "dtype": "float64",
        "algorithm": "proxgt-sr-e", "batch": 4, "rounds": 2, "mixing": "plain"}


def _run(spec, mixer_of):
    """(final state, states after every logged iteration, the mixer) of ``spec`` with the mixer ``mixer_of``."""
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(comm.node_ids))
    mixer = mixer_of(comm, spec)
    logged = []

    def keep(state, wall):
        if state.t % spec.settings.log_every == 0:
            logged.append((state, mixer.in_flight_sum("y") if isinstance(mixer, RunningSumMixer) else None))

    state, _ = train(spec, comm, oracle, after_iteration=keep, mixer=mixer)
    return state, logged, mixer


def _running_sums(p, tracked=("y",)):
    return lambda comm, spec: running_sum_mixer(comm, spec, p=p, tracked=tracked)


@pytest.mark.parametrize("algorithm", ["proxgt-sr-e", "proxgt-sa", "dproxsgt"])
def test_no_loss_gives_the_synchronous_iterates_exactly(algorithm):
    spec = build_run(RunConfig(**dict(FAST, algorithm=algorithm)))
    # the synchronous rounds one by one (fused=False), as the running sums run them: equal bit for bit
    sync, _, _ = _run(spec, lambda comm, s: Mixer(comm, "plain", s.rounds, lam=s.topology.lam, fused=False))
    lossless, _, mixer = _run(build_run(RunConfig(**dict(FAST, algorithm=algorithm))), _running_sums(0.0))
    assert map_state(lambda a, b: torch.tensor(torch.equal(a, b)), sync, lossless) == map_state(
        lambda a: torch.tensor(True), sync)  # every tensor equal, the estimator's state's too
    assert sync.t == lossless.t
    assert not mixer.in_flight


def _invariant_gap(logged) -> float:
    """Largest |sum_i y_i + in-flight mass - sum_i v_i| over the logged states, relative to |sum_i v_i|."""
    gaps = []
    for state, flying in logged:
        total = state.y.sum(0) + (flying if flying is not None else 0.0)
        gaps.append(float((total - state.v.sum(0)).abs().max() / state.v.sum(0).abs().max()))
    return max(gaps)


def test_the_tracking_invariant_holds_at_every_logged_point_under_loss():
    spec = build_run(RunConfig(**FAST))
    _, logged, mixer = _run(spec, _running_sums(0.3))
    assert any(flying is not None for _, flying in logged)  # mass was in flight at some logged point
    assert _invariant_gap(logged) < 1e-12
    # the same losses without running sums (the tracker mixed like an iterate) lose mass for good
    _, naive, _ = _run(build_run(RunConfig(**FAST)), _running_sums(0.3, tracked=()))
    assert _invariant_gap(naive) > 1e-3


def test_the_loss_pattern_is_seeded():
    a, b, c = MessageLoss(0.3, 50, seed=1), MessageLoss(0.3, 50, seed=1), MessageLoss(0.3, 50, seed=2)
    assert np.array_equal(a.lost(7), b.lost(7)) and not np.array_equal(a.lost(7), c.lost(7))
    assert not np.array_equal(a.lost(7), a.lost(8)) and 0.15 < a.lost(3).mean() < 0.45
    assert not MessageLoss(0.0, 50).lost(3).any()


def test_iterates_use_the_newest_value_received():
    """Path 0 - 1 - 2 with weights 1/2 on each link: a lost message is replaced by the last value received."""
    W = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]], dtype=torch.float64)
    comm = SimulatedCommunicator(W, [1, 2, 1])

    class LoseFirstRoundOneToZero(MessageLoss):
        def lost(self, r):
            out = np.zeros((2, 2), dtype=bool)
            out[1, 0] = r == 1  # link (0, 1), direction 1 -> 0, in the second round
            return out

    mixer = RunningSumMixer(comm, np.array([[0, 1], [1, 2]]), np.array([0.5, 0.5]), 1,
                            LoseFirstRoundOneToZero(0.5, 2), tracked=("y",))
    x1 = mixer(torch.tensor([[0.0], [2.0], [4.0]]), key="x")
    assert x1.flatten().tolist() == [1.0, 2.0, 3.0]
    x2 = mixer(torch.tensor([[10.0], [20.0], [30.0]]), key="x")  # node 0 misses node 1's 20 and uses its 2.0
    assert x2.flatten().tolist() == [0.5 * 10 + 0.5 * 2.0, 20.0, 25.0]
    comm.counter.rounds = 1  # the same loss for a tracker: the mass waits on the link and arrives next round
    y = mixer(torch.tensor([[10.0], [20.0], [30.0]]), key="y")
    assert y.flatten().tolist() == [5.0, 20.0, 25.0] and mixer.in_flight_sum("y").item() == 10.0
    y = mixer(y, key="y")  # round 2: nothing lost; node 0 gets node 1's 10 + the 10 in flight
    assert y.flatten().tolist() == [2.5 + 10.0 + 10.0, 2.5 + 12.5, 12.5 + 10.0]
    assert y.sum().item() == 60.0 and not mixer.in_flight


def test_resume_continues_a_lossy_run(tmp_path, monkeypatch):
    cfg = dict(FAST, iters=16, message_loss=0.3, log_every=4)
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=8, every=8)
    assert resumed.x.equal(ref.x)
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in resumed.rows] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in ref.rows]


def test_a_lossy_run_still_converges():
    rows = run_simulation(dict(FAST, iters=60, message_loss=0.2, batch="full", log_every=60)).rows
    assert rows[-1]["grad_mapping_sq"] < 0.01 * rows[0]["grad_mapping_sq"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--mixing", "chebyshev"], "message_loss needs mixing = 'plain'"),
    (["--mixing", "plain", "--compress", "topk:0.1"], "does not combine with compressed gossip"),
    (["--mixing", "plain", "--link-failure", "0.1"], "does not combine with link_failure"),
    (["--mixing", "plain", "--algorithm", "prox-dsgt"], "does not name the quantities it mixes"),
    (["--mixing", "plain", "--message-loss", "1.5"], "'message_loss' setting must be"),
])
def test_what_message_loss_cannot_honour_is_a_one_line_error(flags, message, capsys, tmp_path):
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--message-loss", "0.2", *flags,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err


def test_the_distributed_executor_refuses_message_loss(tmp_path, capsys):
    code = main(["launch", "--nprocs", "2", "--data", "breast_cancer", "--nodes", "4", "--mixing", "plain",
                 "--message-loss", "0.1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "message_loss (--message-loss) simulates lost messages" in err and "\n" not in err


def _slow(tmp_path, factor=10.0, s=1e-4):
    f = tmp_path / "speeds.csv"
    f.write_text("".join(f"{i},{factor * s if i == 2 else s}\n" for i in range(FAST["nodes"])))
    return str(f)


def test_a_round_deadline_keeps_tracking_exact_and_saves_time(tmp_path):
    clock = {"node_speed": _slow(tmp_path), "link_latency": 0.002, "rounds": 1}
    spec = build_run(RunConfig(**dict(FAST, **clock, round_deadline=0.01)))
    _, logged, mixer = _run(spec, running_sum_mixer)
    assert mixer.late is not None and any(flying is not None for _, flying in logged)
    assert _invariant_gap(logged) < 1e-12
    waiting = run_simulation(dict(FAST, **clock)).rows[-1]
    cut = run_simulation(dict(FAST, **clock, round_deadline=0.01)).rows[-1]
    assert cut["sim_time_s"] < waiting["sim_time_s"]
    assert cut["grad_mapping_sq"] < 0.05 * run_simulation(dict(FAST, **clock)).rows[0]["grad_mapping_sq"]


def test_a_deadline_no_message_misses_is_the_synchronous_run(tmp_path):
    clock = {"node_speed": _slow(tmp_path), "link_latency": 0.002, "rounds": 1}
    a = run_simulation(dict(FAST, **clock))
    b = run_simulation(dict(FAST, **clock, round_deadline=10.0))
    assert b.x.equal(a.x) and [r["sim_time_s"] for r in b.rows] == [r["sim_time_s"] for r in a.rows]


def test_resume_continues_a_run_with_late_messages(tmp_path, monkeypatch):
    cfg = dict(FAST, iters=16, log_every=4, rounds=1, node_speed=_slow(tmp_path), link_latency="exp:0.002",
               round_deadline=0.003)
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=8, every=8)
    assert resumed.x.equal(ref.x)


@pytest.mark.parametrize(("flags", "message"), [
    ([], "round_deadline (--round-deadline) needs the virtual clock"),
    (["--link-latency", "0.01", "--mixing", "chebyshev"], "round_deadline needs mixing = 'plain'"),
    (["--link-latency", "0.01", "--async", "--rounds", "1"], "--async does not combine with"),
    (["--link-latency", "0.01", "--round-deadline", "-1"], "'round_deadline' setting must be"),
])
def test_what_a_round_deadline_cannot_honour_is_a_one_line_error(flags, message, capsys, tmp_path):
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--round-deadline", "0.01", *flags,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
