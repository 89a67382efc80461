"""Availability and outage traces on the virtual clock (proxgt.mixing.traces): an off node does not compute or
send and messages to it wait; a link that is down delays what is sent on it; synchronous rounds wait for both,
asynchronous nodes do not; bad trace files are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from proxgt.cli import main
from proxgt.executors.simulation import run_simulation, simulated_communicator
from proxgt.mixing.asynchrony import async_network
from proxgt.mixing.traces import read_traces
from proxgt.settings import RunConfig
from proxgt.training import build_run, train

FAST = {"data": "breast_cancer", "nodes": 6, "topology": "ring", "iters": 24, "log_every": 4, "dtype": "float64",
        "algorithm": "proxgt-sa", "batch": 4, "rounds": 1, "mixing": "plain", "node_speed": 0.001,
        "link_latency": 0.002}
OFF = 0.5  # node 1, or the link 0-1, is off during [0, OFF)


def _file(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_intervals_pause_compute_and_delay_messages(tmp_path):
    av = _file(tmp_path, "a.csv", "node,start_s,end_s\n1,1.0,2.0\n1,1.5,3.0\n2,5,6\n")
    lo = _file(tmp_path, "l.csv", "2,1,0.0,4.0  # either orientation\n")
    tr = read_traces(av, lo, 3, np.array([[0, 1], [1, 2]]))
    assert tr is not None and tr.node_off[1] == ((1.0, 3.0),)  # overlapping intervals merge
    assert tr.compute_end(1, 0.5, 1.0) == 3.5  # 0.5 s before the pause, 0.5 s after it
    assert tr.compute_end(1, 1.2, 0.1) == pytest.approx(3.1)  # off at the start: begins when back
    assert tr.compute_end(0, 1.2, 0.1) == pytest.approx(1.3)
    assert tr.arrival(0, 1, 0, 0.7, 0.5) == 3.0  # arrives at 1.2 while node 1 is off: delivered when it is back
    assert tr.arrival(2, 1, 1, 0.0, 0.5) == 4.5  # the link 1-2 is down until 4: leaves then
    assert tr.arrival(1, 2, 1, 4.8, 0.5) == 6.0  # node 2 is off during [5, 6)


@pytest.mark.parametrize("trace", ["availability", "link_outages"])
def test_a_synchronous_round_waits_and_the_iterates_do_not_change(tmp_path, trace):
    text = f"1,0,{OFF}\n" if trace == "availability" else f"0,1,0,{OFF}\n"
    base = run_simulation(dict(FAST))
    traced = run_simulation(dict(FAST, **{trace: _file(tmp_path, "t.csv", text)}))
    assert traced.x.equal(base.x)
    if trace == "availability":  # node 1 starts at OFF; every round after waits for it, directly or through others
        assert traced.rows[-1]["sim_time_s"] == pytest.approx(base.rows[-1]["sim_time_s"] + OFF)
    else:  # the first round's messages on 0-1 leave at OFF
        assert traced.rows[1]["sim_time_s"] >= OFF + FAST["link_latency"] > base.rows[-1]["sim_time_s"]


def _drive_async(cfg):
    spec = build_run(RunConfig(**cfg))
    comm = simulated_communicator(spec)
    oracle = spec.make_oracle(list(comm.node_ids))
    net = async_network(comm, spec)
    ticks, sent = [], []
    choose, exchange = net.next_active, net._exchange

    def next_active():
        active = choose()
        ticks.append((active.copy(), net.time.copy()))
        return active

    def record(pending, payload, links, sending, stamps=None):  # the messages sent on link 0-1, both ways
        out = exchange(pending, payload, links, sending, stamps)
        sent.extend((float(net.time[net.src[d]]), m.arrives) for d, _, _, m in out if m is not None and d % net.E == 0)
        return out

    net.next_active, net._exchange = next_active, record
    train(spec, comm, oracle, mixer=net)
    return ticks, sent


def test_an_off_node_does_not_compute_asynchronously_and_the_others_go_on(tmp_path):
    ticks, _ = _drive_async(dict(FAST, availability=_file(tmp_path, "a.csv", f"1,0,{OFF}\n"), asynchronous=True,
                                 max_staleness=2))
    assert all(t[1] >= OFF for active, t in ticks if active[1])  # node 1 runs only once it is back
    assert any(active[3] and t[3] < OFF for active, t in ticks)  # far nodes did not wait for it


def test_async_messages_on_a_link_that_is_down_leave_when_it_is_up(tmp_path):
    _, sent = _drive_async(dict(FAST, link_outages=_file(tmp_path, "l.csv", f"0,1,0,{OFF}\n"), asynchronous=True))
    early = [arrives for at, arrives in sent if at < OFF]
    assert early and min(early) >= OFF + FAST["link_latency"] - 1e-12
    assert any(at >= OFF and arrives == pytest.approx(at + FAST["link_latency"]) for at, arrives in sent)


@pytest.mark.parametrize(("flag", "text", "message"), [
    ("--availability", "7,0,1\n", "node 7 is outside 0..3"),
    ("--availability", "1,-1,2\n", "0 <= START_S < END_S"),
    ("--availability", "1,3,2\n", "0 <= START_S < END_S"),
    ("--availability", "1,0\n", "expected NODE,START_S,END_S"),
    ("--availability", "1,0,x\n", "must be numbers"),
    ("--link-outages", "0,2,0,1\n", "0-2 is not a link of the graph"),
    ("--link-outages", "0,1,2,2\n", "0 <= START_S < END_S"),
])
def test_bad_trace_files_are_one_line_errors(tmp_path, capsys, flag, text, message):
    f = _file(tmp_path, "t.csv", text)
    code = main(["run", "--data", "breast_cancer", "--nodes", "4", "--iters", "2", flag, f,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err


@pytest.mark.parametrize("command", [["launch", "--nprocs", "2", "--out", "o"], ["plan", "--target", "1e-3"]])
def test_traces_are_refused_where_they_cannot_be_honoured(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    code = main([*command, "--data", "breast_cancer", "--nodes", "4", "--availability",
                 _file(tmp_path, "a.csv", "1,0,1\n")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "availability" in err and "\n" not in err, err
