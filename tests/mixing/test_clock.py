"""The simulator's virtual clock: hand-computed times, a slow node on a ring, seeding, resume and bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.executors.resuming import stopped_and_resumed

from proxgt.cli import main
from proxgt.delays import Delay
from proxgt.errors import ProxGTValueError
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing.clock import ClockProfile, DelayTable, VirtualClock, refuse_on_real_time
from proxgt.settings import RunConfig
from proxgt.training import build_run

FAST = {"data": "breast_cancer", "nodes": 6, "topology": "ring", "iters": 12, "log_every": 4, "dtype": "float64",
        "algorithm": "proxgt-sa", "batch": 4, "rounds": 2, "mixing": "plain"}


def _const(*values: float) -> DelayTable:
    return DelayTable.of([Delay("const", (v,)) for v in values])


class _Work:
    def __init__(self, n: int):
        self.ifo = np.zeros(n, dtype=np.int64)


def _path_clock(bandwidth: tuple[float, float] = (1e300, 1e300),
                deadline: float | None = None) -> tuple[VirtualClock, _Work]:
    """Path 0 - 1 - 2: 1, 2 and 3 s per gradient; links 0-1 take 0.5 s, 1-2 take 0.25 s."""
    profile = ClockProfile(3, np.array([[0, 1], [1, 2]]), _const(1.0, 2.0, 3.0), _const(0.5, 0.25),
                           _const(*bandwidth), deadline=deadline)
    clock, work = VirtualClock(profile), _Work(3)
    clock.follow(work)
    return clock, work


def test_hand_computed_times_on_a_path():
    clock, work = _path_clock()
    work.ifo += 1  # one gradient each: done at 1, 2, 3 s
    clock.exchange(0)
    # node 0 waits for node 1 (2 + 0.5); node 1 for node 2 (3 + 0.25); node 2 for nobody later than itself
    assert clock.time.tolist() == [2.5, 3.25, 3.0]
    clock.exchange(0)
    # node 2's lateness reaches node 0 one round later, through node 1 (3.25 + 0.5)
    assert clock.time.tolist() == [3.75, 3.25, 3.5]
    work.ifo += 2  # two more gradients, charged when the time is read
    assert clock.now() == 3.5 + 6.0
    assert clock.time.tolist() == [5.75, 7.25, 9.5]


def test_a_round_deadline_cuts_the_wait_and_marks_late_messages():
    clock, work = _path_clock(deadline=1.0)
    work.ifo += 1  # compute ends at 1, 2, 3 s; each node waits until 1 s past its own end at the latest
    clock.exchange(0)
    # node 0: node 1's message (2.5) is late past 2; node 1: node 2's (3.25) is late past 3, node 0's (1.5) not
    assert clock.time.tolist() == [2.0, 3.0, 3.0]
    assert clock.late.tolist() == [[False, False], [True, True]]  # row 0: 0->1, 1->2; row 1: 1->0, 2->1


def test_message_size_over_bandwidth_and_links_down():
    clock, _ = _path_clock(bandwidth=(100.0, 1e300))
    clock.exchange(50)  # 50 bytes at 100 B/s on link 0-1: 0.5 s more than its latency
    assert clock.time.tolist() == [1.0, 1.0, 0.25]
    clock.exchange(0, edges=np.array([[1, 2]]))  # link 0-1 down: nodes 0 and 1 do not wait for each other
    assert clock.time.tolist() == [1.0, 1.0, 1.25]


def test_one_slow_node_slows_a_synchronous_ring_by_the_predicted_amount(tmp_path):
    """Every path through the max-plus recursion may sit on the slow node whenever it computes and hop between
    rounds (2 rounds between computes, an even number, so it can hop away and back): the slow node adds
    (10 - 1) * s per gradient it computes, and nothing else changes."""
    s, lat = 1e-3, 0.02
    homogeneous = run_simulation(dict(FAST, node_speed=s, link_latency=lat))
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("node,seconds_per_gradient\n" + "".join(
        f"{i},{10 * s if i == 3 else s}\n" for i in range(FAST["nodes"])))
    slow = run_simulation(dict(FAST, node_speed=str(speeds), link_latency=lat))
    for h, w in zip(homogeneous.rows, slow.rows, strict=True):
        gradients = h["ifo_per_node"]
        assert h["sim_time_s"] == pytest.approx(gradients * s + h["comm_rounds"] * lat, rel=1e-12)
        assert w["sim_time_s"] - h["sim_time_s"] == pytest.approx(9 * s * gradients, rel=1e-12)


def test_times_are_seeded():
    cfg = dict(FAST, node_speed="exp:0.001", link_latency="lognormal:-5,1", link_bandwidth="exp:1e5")
    a = [r["sim_time_s"] for r in run_simulation(dict(cfg)).rows]
    b = [r["sim_time_s"] for r in run_simulation(dict(cfg)).rows]
    c = [r["sim_time_s"] for r in run_simulation(dict(cfg, seed=1)).rows]
    assert a == b and a != c
    assert all(x < y for x, y in zip(a, a[1:], strict=False))


def test_no_clock_setting_no_column_and_the_iterates_do_not_change():
    plain = run_simulation(dict(FAST))
    timed = run_simulation(dict(FAST, link_latency="exp:0.01", node_speed="lognormal:-7,1"))
    assert "sim_time_s" not in plain.columns and "sim_time_s" in timed.columns
    assert plain.x.equal(timed.x)


def test_a_link_failure_run_follows_the_rounds_links(tmp_path):
    cfg = dict(FAST, link_latency=0.01, link_failure=0.3)
    spec = build_run(RunConfig(**cfg))
    assert simulated_communicator(spec).clock is not None
    rows = run_simulation(cfg).rows
    # a round waits at most one latency, and some nodes had no link up in some rounds
    assert 0 < rows[-1]["sim_time_s"] <= rows[-1]["comm_rounds"] * 0.01 + 1e-12


def test_resume_continues_the_times(tmp_path, monkeypatch):
    cfg = dict(FAST, iters=16, node_speed="exp:0.001", link_latency="exp:0.01")
    ref, resumed = stopped_and_resumed(cfg, tmp_path / "run", monkeypatch, stop_at=8, every=8)
    assert [r["sim_time_s"] for r in resumed.rows] == [r["sim_time_s"] for r in ref.rows]


def test_link_file_with_a_default_row(tmp_path):
    f = tmp_path / "links.csv"
    f.write_text("i,j,latency\n0,1,0.5\n*,*,0\n")
    spec = build_run(RunConfig(**dict(FAST, link_latency=str(f))))
    lat = spec.clock.latency.a
    assert lat[0] == 0.5 and lat.sum() == 0.5 and spec.clock.edges[0].tolist() == [0, 1]
    assert math.isinf(spec.clock.bandwidth.a[0])


def _one_line_error(argv: list[str], capsys, command: str = "run") -> str:
    code = main([command, *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("flags", "message"), [
    (["--link-latency", "const:-1"], "'link_latency' setting must be"),
    (["--link-latency", "-0.5"], "'link_latency' setting must be"),
    (["--link-bandwidth", "0"], "'link_bandwidth' setting must be"),
    (["--node-speed", "gamma:1"], "'node_speed' setting must be"),
    (["--node-speed", "missing.csv"], "names a file that does not exist"),
])
def test_bad_specifications_are_one_line_errors(flags, message, capsys):
    assert message in _one_line_error(["--data", "breast_cancer", "--nodes", "4", *flags], capsys)


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    three = tmp_path / "three.csv"
    three.write_text("0,1e-3\n1,1e-3\n2,1e-2\n")
    err = _one_line_error(["--data", "breast_cancer", "--nodes", "4", "--node-speed", str(three)], capsys)
    assert "gives 3 nodes; the run has 4 nodes" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1e-3\n1,-1\n")
    assert "line 2" in _one_line_error(["--data", "breast_cancer", "--nodes", "2", "--node-speed", str(bad)], capsys)
    links = tmp_path / "links.csv"
    links.write_text("0,2,0.1\n")  # not a link of a 4-node ring
    err = _one_line_error(["--data", "breast_cancer", "--nodes", "4", "--link-latency", str(links)], capsys)
    assert "0-2 is not a link of the graph" in err
    partial = tmp_path / "partial.csv"
    partial.write_text("0,1,0.1\n")
    err = _one_line_error(["--data", "breast_cancer", "--nodes", "4", "--link-latency", str(partial)], capsys)
    assert "gives no value for link 0-3 and 2 other links" in err


def test_the_distributed_executor_refuses_clock_settings(tmp_path, capsys):
    err = _one_line_error(["--nprocs", "2", "--data", "breast_cancer", "--nodes", "4", "--link-latency", "0.1",
                           "--out", str(tmp_path / "o")], capsys, command="launch")
    assert "runs on real time" in err and not (tmp_path / "o").exists()
    spec = build_run(RunConfig(**dict(FAST, node_speed=0.1)))
    with pytest.raises(ProxGTValueError, match=r"clock settings \(node_speed \(--node-speed\)\)"):
        refuse_on_real_time(spec.settings)


def test_doctests():
    import doctest
    import importlib

    for mod in ("proxgt.mixing.clock", "proxgt.delays"):
        assert doctest.testmod(importlib.import_module(mod)).failed == 0, mod
