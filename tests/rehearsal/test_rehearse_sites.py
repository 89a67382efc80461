"""`proxgt rehearse` with the real `proxgt site`: a rehearsal with a cut and a slow link replays exactly in the
simulator; an intruder changes nothing and gets nothing in; a captured link carries no plaintext iterate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from proxgt import run
from proxgt.cli.main import main
from proxgt.rehearsal import RehearsalOptions, rehearse
from proxgt.rehearsal._capture import capture_streams
from proxgt.settings.config import load_config_file

from ..executors.launching import tiny_classification
from .test_rehearse_parts import namespaces

PILOT = """
[pilot]
name = "tri"
round_deadline_s = {deadline}
site_timeout_s = 60.0
[[site]]
name = "a"
address = "tcp://127.0.0.1:7301"
[[site]]
name = "b"
address = "tcp://127.0.0.1:7302"
[[site]]
name = "c"
address = "tcp://127.0.0.1:7303"
[links]
edges = [["a", "b"], ["b", "c"]]
[data]
test_fraction = 0.0
[mixing]
mixing = "plain"
rounds = 1
[algorithm]
algorithm = "proxgt-sa"
step = 0.5
batch = 8
[problem]
problem = "logistic"
[run]
iters = {iters}
log_every = 50
seed = 1
{extra}
"""


def _pilot(folder: Path, deadline: float, iters: int, extra: str = "") -> Path:
    path = folder / "tri.toml"
    path.write_text(PILOT.format(deadline=deadline, iters=iters, extra=extra))
    return path


def _finals(out: Path) -> np.ndarray:
    """The sites' final rows, in node order."""
    return np.concatenate([np.load(out / "sites" / s / "final.npz")["x"] for s in "abc"])


def _replayed(out: Path) -> np.ndarray:
    """The final rows of the simulator replaying the rehearsal's link trace (OUT/replay.toml)."""
    cfg = load_config_file(out / "replay.toml")
    run(cfg, out=out / "replay")
    return np.load(out / "replay" / "final.npz")["x"]


def test_a_rehearsal_with_a_cut_and_a_slow_link_replays_exactly(tmp_path, capsys):
    """Whenever the cut falls (and whichever messages were late), the sites' iterates are the simulator's on the
    recorded trace; in namespaces where this user may create them (all removed afterwards), else on loopback."""
    data = tiny_classification(tmp_path, rows=600, cols=20)
    pilot = _pilot(tmp_path, deadline=0.25, iters=150)
    out = tmp_path / "out"
    code = main(["rehearse", str(pilot), "--data", data, "--out", str(out), "--cut", "a-b@0.1:1.1",
                 "--rate", "b-c=1mbit", "--timeout", "300"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    table = [ln.split("|") for ln in printed.out.splitlines() if ln.startswith("| ")]
    assert [c.strip() for c in table[0][1:10]] == ["site", "exit", "iterations", "bytes sent", "waiting s", "late",
                                                   "lost", "refused", "neighbour gap"]
    assert all(0 <= float(r[9]) < 0.1 for r in table[1:])  # the sites' rows end close to their neighbours
    assert [(r[1].strip(), r[2].strip(), r[3].strip()) for r in table[1:]] == [(s, "0", "150") for s in "abc"]
    assert "final models: the sites' rows are within " in printed.out
    assert f"replay in the simulator: proxgt run -c {out / 'replay.toml'}" in printed.out
    report = json.loads((out / "rehearsal.json").read_text())
    assert report["cuts"] == ["a-b@0.1:1.1"] and report["rates"] == ["b-c=1mbit"]
    np.testing.assert_allclose(_finals(out), _replayed(out), rtol=0, atol=1e-5)
    if report["mode"] == "namespaces":
        assert "tcp://10.77.0.2:7302" in (out / "pilot.toml").read_text()
        made = (out / "namespaces.txt").read_text().split()
        assert len(made) == 3 and not set(made) & namespaces()  # all removed


def test_an_intruder_changes_nothing_and_a_link_carries_no_plaintext(tmp_path):
    """With an intruder (on loopback) the sites refuse its attempts and end with the simulator's results, as a
    rehearsal without it does (its late messages aside, see the test above); the bytes recorded on link b-c hold
    no copy of the iterates the sites sent there (their initial rows, which every node sends in round 0)."""
    data = tiny_classification(tmp_path, rows=600, cols=20)
    x0 = np.random.default_rng(7).standard_normal((3, 20))  # one initial row per node
    np.savez(tmp_path / "x0.npz", x=x0)
    pilot = _pilot(tmp_path, deadline=60.0, iters=60, extra=f'init = "{tmp_path / "x0.npz"}"')
    out = tmp_path / "out"
    result = rehearse(RehearsalOptions(pilot=pilot, data=data, loopback=True, timeout=300.0, out=out,
                                       intruder=True, capture=["b-c"]), say=lambda s: None)
    assert result.ok, [o.last_error() for o in result.sites]
    assert result.intruder["accepted"] == 0 and result.intruder["attempts"] > 0
    assert sum(o.summary["site"]["refused_connections"] for o in result.sites) > 0
    assert all(o.summary["site"]["messages_late"] == 0 for o in result.sites)
    np.testing.assert_allclose(_finals(out), _replayed(out), rtol=0, atol=1e-5)

    rows = [r.astype(np.float32).tobytes() for r in x0]
    streams = capture_streams(out / "capture" / "b-c")
    assert sum(len(s) for s in streams) > 10_000  # the link's traffic was recorded
    assert not any(r in s for r in rows for s in streams)
