"""A lost site that comes back with its checkpoint rejoins (proxgt site --rejoin): the sites agree on the switch
iteration, the rejoining site jumps there from its checkpoint, every site re-weights the graph of the sites
present and re-initializes; refused rejoins (another key, other settings, no checkpoint, the others finished) are
one-line errors and the others go on.

Sites run as threads of the test process. No test depends on timing: a site stops at a fixed iteration
(``fault_hook``), and the others, until the rejoined site has run an iteration with them, wait at a fixed iteration
for the refused attempts to end, then run slowly enough (a short sleep per iteration, over many iterations) to
outlast a rejoin many times over."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxgt._io import read_metrics_csv  # noqa: E402
from proxgt.cli.main import main  # noqa: E402
from proxgt.errors import ProxGTValueError  # noqa: E402
from proxgt.executors.site.executor import run_site  # noqa: E402
from proxgt.executors.site.transport import SiteLost  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sites import data_file, free_ports, keys, pilot_text, shards  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:site .* refused a connection attempt"),
              pytest.mark.filterwarnings("ignore:site .*'s settings differ")]

SITES = {"a": 1, "b": 2, "c": 1}
EDGES = [["a", "b"], ["b", "c"]]
ITERS = 100  # the survivors' slow iterations outlast a rejoin many times over (module docstring)
CONSENSUS = 1e-3  # every node's final row is this close (relative) to the nodes' mean: exact consensus, to float32


def _setup(tmp_path: Path, **kw: Any) -> tuple[Path, dict[str, Path], list[int]]:
    public = keys(tmp_path / "keys", list(SITES))
    ports = free_ports(len(SITES))
    pilot = tmp_path / "pilot.toml"
    # full batches: deterministic gradients, so that the nodes reach exact consensus after the last regroup
    pilot.write_text(pilot_text(SITES, EDGES, public, ports=ports, deadline=0.5, timeout=30.0, **kw)
                     .replace("batch = 4", 'batch = "full"'))
    return pilot, shards(pilot, data_file(tmp_path), tmp_path), ports


def _start(results: dict[str, Any], label: str, pilot: Path, site: str, key: Path, data: Path, out: Path,
           **kw: Any) -> threading.Thread:
    def go() -> None:
        try:
            results[label] = run_site(pilot, site, key, str(data), out=str(out), **kw)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results[label] = exc

    th = threading.Thread(target=go, name=label)
    th.start()
    return th


def _stop_at(t_stop: int):
    def hook(rank: int, t: int) -> None:
        if t == t_stop:
            raise RuntimeError(f"site stops at iteration {t}")
    return hook


def _survivor(wait_at: int, may_go: threading.Event, back: threading.Event, reached: list[int] | None = None):
    """Wait at iteration ``wait_at`` until ``may_go``; then, until ``back``, sleep a little every iteration
    (``reached``: the iterations done)."""
    def hook(rank: int, t: int) -> None:
        if reached is not None:
            reached.append(t)
        if t == wait_at:
            assert may_go.wait(120)
        if not back.is_set():
            time.sleep(0.025)
    return hook


def _rejoined(back: threading.Event, stop_after: int | None = None):
    """Set ``back`` once the rejoined site ran an iteration with the others; stop it ``stop_after`` later."""
    first: list[int] = []

    def hook(rank: int, t: int) -> None:
        first.append(t)
        back.set()
        if stop_after is not None and t == first[0] + stop_after:
            raise RuntimeError(f"site stops again at iteration {t}")
    return hook


def _summary(res: Any) -> dict[str, Any]:
    assert not isinstance(res, BaseException), res
    return res.summary["site"]


def _assert_consensus(results: dict[str, Any], labels: list[str]) -> None:
    rows = np.concatenate([results[k].x.numpy() for k in labels])
    assert rows.shape[0] == sum(SITES.values()) and np.isfinite(rows).all()
    mean = rows.mean(axis=0)
    assert np.abs(rows - mean).max() <= CONSENSUS * np.abs(mean).max(), np.abs(rows - mean).max()


def test_refused_rejoins_then_a_rejoin_from_the_checkpoint(tmp_path, recwarn):
    """c stops at iteration 6 (checkpoint at 5). A restart with another key is refused in the TLS handshake (it gives
    up after --start-timeout), one with other settings is refused naming the setting (on both ends), one without
    --rejoin is told to use it; a and b go on. Then c rejoins from its checkpoint: everyone records it at the same
    iteration T, c's metrics continue its checkpoint's rows, and the final rows of all four nodes agree."""
    pilot, data, ports = _setup(tmp_path, iters=ITERS, extra="checkpoint_every = 5")
    out = tmp_path / "out"
    res: dict[str, Any] = {}
    may_go, back = threading.Event(), threading.Event()
    survivors = [_start(res, s, pilot, s, tmp_path / "keys" / f"{s}.key_secret", data[s], out / s,
                        fault_hook=_survivor(20, may_go, back)) for s in ("a", "b")]
    c_key = tmp_path / "keys" / "c.key_secret"
    _start(res, "c1", pilot, "c", c_key, data["c"], out / "c", fault_hook=_stop_at(6)).join(120)
    assert isinstance(res["c1"], RuntimeError), res["c1"]
    first_rows = read_metrics_csv(out / "c" / "metrics.csv")[1]
    assert [r["iter"] for r in first_rows] == [0, 5]

    # another key for c (a new pilot file for c alone): a and b refuse it during the TLS handshake
    new_public = keys(tmp_path / "newkeys", ["c"])["c"]
    other_key = tmp_path / "other-key.toml"
    other_key.write_text(pilot.read_text().replace(keys(tmp_path / "keys", ["c"])["c"], new_public))
    _start(res, "wrong key", other_key, "c", tmp_path / "newkeys" / "c.key_secret", data["c"], out / "c",
           rejoin=True, start_timeout_s=1.0, site_timeout_s=1.0).join(120)
    assert isinstance(res["wrong key"], SiteLost) and "did not answer within 1 s" in str(res["wrong key"])
    may_go.set()

    other_step = tmp_path / "other-step.toml"
    other_step.write_text(pilot.read_text().replace('batch = "full"', 'batch = "full"\nstep = 0.123'))
    _start(res, "other settings", other_step, "c", c_key, data["c"], out / "c", rejoin=True).join(120)
    err = res["other settings"]
    assert isinstance(err, ProxGTValueError) and "\n" not in str(err) and "settings differ" in str(err) \
        and "step (" in str(err), err

    _start(res, "afresh", pilot, "c", c_key, data["c"], tmp_path / "afresh").join(120)  # without --rejoin
    assert isinstance(res["afresh"], SiteLost) and "restart this site with --rejoin" in str(res["afresh"])

    _start(res, "c", pilot, "c", c_key, data["c"], out / "c", rejoin=True, fault_hook=_rejoined(back)).join(120)
    for th in survivors:
        th.join(120)
    site = {s: _summary(res[s]) for s in ("a", "b", "c")}
    (joined,) = site["c"]["rejoined_sites"]
    T = joined["iteration"]
    said = {str(w.message) for w in recwarn}  # what the sites' consoles say (proxgt: warning: ...)
    for s in ("a", "b"):
        assert f"site {s}: site c rejoined at iteration {T}; the run goes on with a, b, c" in said, said
    assert f"site c: this site rejoined at iteration {T}; the run goes on with a, b, c" in said, said
    (lost,) = site["a"]["lost_sites"]
    assert lost["site"] == "c" and 6 <= lost["iteration"] <= T < ITERS and joined["site"] == "c"
    for s in ("a", "b", "c"):
        assert site[s]["rejoined_sites"] == [joined] and site[s]["lost_sites"] == [lost]
        assert res[s].rows[-1]["iter"] == ITERS
    assert site["c"]["iterations"] == ITERS - T  # it jumped from its checkpoint to T
    assert site["b"]["refused_connections"] >= 1  # the other key
    (refused,) = site["b"]["refused_rejoins"]
    assert refused["site"] == "c" and "step (" in refused["reason"]
    # metrics.csv continues the checkpoint's rows (iteration 0; 5 is the checkpoint), then from T on
    iters = [r["iter"] for r in read_metrics_csv(out / "c" / "metrics.csv")[1]]
    assert iters[:2] == [0, 5] and all(i > T for i in iters[2:]) and iters[-1] == ITERS
    assert read_metrics_csv(out / "c" / "metrics.csv")[1][:2] == first_rows
    assert json.loads((out / "c" / "summary.json").read_text())["site"]["rejoined_sites"] == [joined]
    _assert_consensus(res, ["a", "b", "c"])


def test_a_site_lost_twice_rejoins_twice(tmp_path):
    pilot, data, _ = _setup(tmp_path, iters=ITERS, extra="checkpoint_every = 2")
    out = tmp_path / "out"
    res: dict[str, Any] = {}
    may_go, back, back_again = threading.Event(), threading.Event(), threading.Event()
    may_go.set()
    survivors = [_start(res, s, pilot, s, tmp_path / "keys" / f"{s}.key_secret", data[s], out / s,
                        fault_hook=_survivor(0, may_go, back_again)) for s in ("a", "b")]
    c_key = tmp_path / "keys" / "c.key_secret"
    _start(res, "c1", pilot, "c", c_key, data["c"], out / "c", fault_hook=_stop_at(3)).join(120)
    _start(res, "c2", pilot, "c", c_key, data["c"], out / "c", rejoin=True,
           fault_hook=_rejoined(back, stop_after=4)).join(120)
    assert isinstance(res["c2"], RuntimeError) and "stops again" in str(res["c2"]), res["c2"]
    _start(res, "c", pilot, "c", c_key, data["c"], out / "c", rejoin=True, fault_hook=_rejoined(back_again)).join(120)
    for th in survivors:
        th.join(120)
    site = {s: _summary(res[s]) for s in ("a", "b", "c")}
    first, second = site["a"]["lost_sites"]
    back1, back2 = site["a"]["rejoined_sites"]
    assert [first["site"], second["site"], back1["site"], back2["site"]] == ["c"] * 4
    assert first["iteration"] <= back1["iteration"] < second["iteration"] <= back2["iteration"] < ITERS
    for s in ("b", "c"):
        assert site[s]["lost_sites"] == [first, second] and site[s]["rejoined_sites"] == [back1, back2]
    _assert_consensus(res, ["a", "b", "c"])


def test_a_site_that_stops_while_it_rejoins_does_not_hold_the_others_up(tmp_path, monkeypatch):
    """c asks to join and stops before the agreement (as if its operator pressed Ctrl-C): the others do not wait
    for it (they would stop after the site timeout, 30 s), and a later rejoin of c still works."""
    from proxgt.executors.site.executor import SiteExecutor

    agree = SiteExecutor._agree

    def stop_in_agree(self: SiteExecutor, t: int) -> Any:
        if threading.current_thread().name == "c2":
            raise KeyboardInterrupt
        return agree(self, t)

    monkeypatch.setattr(SiteExecutor, "_agree", stop_in_agree)
    pilot, data, _ = _setup(tmp_path, iters=ITERS, extra="checkpoint_every = 2")
    out = tmp_path / "out"
    res: dict[str, Any] = {}
    may_go, back = threading.Event(), threading.Event()
    may_go.set()
    reached: list[int] = []
    survivors = [_start(res, s, pilot, s, tmp_path / "keys" / f"{s}.key_secret", data[s], out / s,
                        fault_hook=_survivor(0, may_go, back, reached if s == "a" else None)) for s in ("a", "b")]
    c_key = tmp_path / "keys" / "c.key_secret"
    _start(res, "c1", pilot, "c", c_key, data["c"], out / "c", fault_hook=_stop_at(3)).join(120)
    _start(res, "c2", pilot, "c", c_key, data["c"], out / "c", rejoin=True).join(120)
    assert isinstance(res["c2"], KeyboardInterrupt), res["c2"]
    then = reached[-1]
    end = time.monotonic() + 20  # well within the site timeout (30 s) that a wait for c would take
    while reached[-1] < then + 5 and time.monotonic() < end:
        time.sleep(0.05)
    assert reached[-1] >= then + 5, "a and b wait for the site that stopped"
    _start(res, "c", pilot, "c", c_key, data["c"], out / "c", rejoin=True, fault_hook=_rejoined(back)).join(120)
    for th in survivors:
        th.join(120)
    site = {s: _summary(res[s]) for s in ("a", "b", "c")}
    assert site["a"]["rejoined_sites"][-1] == site["c"]["rejoined_sites"][-1]
    assert all(s["site"] == "c" for s in site["a"]["lost_sites"] + site["a"]["rejoined_sites"])
    assert site["a"]["train_s"] < 30  # nobody waited out the site timeout
    _assert_consensus(res, ["a", "b", "c"])


def test_a_rejoin_after_the_others_finished_gives_up_in_one_line(tmp_path, capsys):
    pilot, data, _ = _setup(tmp_path, iters=12, extra="checkpoint_every = 2")
    out = tmp_path / "out"
    res: dict[str, Any] = {}
    threads = [_start(res, s, pilot, s, tmp_path / "keys" / f"{s}.key_secret", data[s], out / s,
                      fault_hook=_stop_at(5) if s == "c" else None) for s in SITES]
    for th in threads:
        th.join(120)
    assert isinstance(res["c"], RuntimeError) and _summary(res["b"])["lost_sites"][0]["site"] == "c"
    code = main(["site", str(pilot), "--site", "c", "--key", str(tmp_path / "keys" / "c.key_secret"), "--data",
                 str(data["c"]), "--out", str(out / "c"), "--rejoin", "--start-timeout", "0.5", "--site-timeout",
                 "0.5", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "site(s) b did not answer within 0.5 s" in err, err


def test_rejoin_refusals_before_any_network(tmp_path, capsys):
    pilot, data, _ = _setup(tmp_path)
    base = ["site", str(pilot), "--site", "c", "--key", str(tmp_path / "keys" / "c.key_secret"), "--data",
            str(data["c"]), "--rejoin"]
    private = tmp_path / "private.toml"
    private.write_text(pilot.read_text().replace('batch = "full"', "batch = 4\nstep = 0.1")
                       + "[privacy]\ndp_clip = 1.0\ndp_noise = 0.5\n")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "summary.json").write_text("{}")
    for argv, message in [
        (["--out", str(tmp_path / "empty")], "--rejoin needs site c's checkpoint in its run folder"),
        (["--out", str(tmp_path / "done")], "holds a finished run of site c"),
    ]:
        assert main(base + argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    argv = [private if a == str(pilot) else a for a in base]
    assert main([str(a) for a in argv] + ["--out", str(tmp_path / "empty"), "--start-timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rejoin is not available under differential privacy" in err, err


def test_a_regroup_weighs_the_graph_of_the_sites_present_as_metropolis():
    """Drops and rejoins share one re-weighting: Metropolis on the sub-graph of the nodes present (all of them:
    the pilot's own weights, so a full rejoin restores the first graph's W)."""
    import networkx as nx
    import torch

    from proxgt.executors.site.communicator import metropolis_on
    from proxgt.topology import metropolis_weights

    edges = [(0, 1), (1, 2), (1, 3), (2, 3), (3, 4)]
    full, deg = metropolis_on(5, edges, set(range(5)))
    torch.testing.assert_close(full, metropolis_weights(nx.Graph(edges)).to(torch.float64))
    W, deg = metropolis_on(5, edges, {0, 1, 3, 4})  # node 2 out
    assert torch.equal(W, W.T) and deg.tolist() == [1, 2, 0, 2, 1]
    assert not W[2].any() and not W[:, 2].any()
    torch.testing.assert_close(W[[0, 1, 3, 4]].sum(dim=1), torch.ones(4, dtype=torch.float64))
    assert (W >= 0).all() and W[1, 3] == 1 / 3  # Metropolis: 1 / (1 + max degree)
