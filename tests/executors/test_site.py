"""The site runtime (proxgt site, proxgt keys): TLS links on loopback, results equal to the simulator's, late
messages replayed from the link trace, settings agreement, refused intruders, one-line errors."""

from __future__ import annotations

import csv
import datetime
import json
import os
import socket
import ssl
import stat
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from proxgt.cli.main import main
from proxgt.errors import ProxGTValueError  # noqa: E402
from proxgt.executors.simulation import run_simulation, simulated_communicator  # noqa: E402
from proxgt.executors.site.communicator import SiteCommunicator  # noqa: E402
from proxgt.executors.site.pilot import load_pilot, pilot_run_config  # noqa: E402
from proxgt.executors.site.transport import SiteLost, SiteTransport, load_site_key  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sites import PLACEHOLDER_KEYS, data_file, free_ports, keys, pilot_text, run_sites, shards  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)  # float32 runs; the sites sum their rows in another order than W @ Z


def _setup(tmp_path: Path, sites: dict[str, int], edges: list[list[str]], **kw) -> tuple[Path, dict[str, Path]]:
    public = keys(tmp_path / "keys", list(sites))
    pilot = tmp_path / "pilot.toml"
    pilot.write_text(pilot_text(sites, edges, public, **kw))
    return pilot, shards(pilot, data_file(tmp_path), tmp_path)


def _simulate(pilot_path: Path, tmp_path: Path, trace: Path | None = None) -> np.ndarray:
    pilot = load_pilot(pilot_path)
    cfg = pilot_run_config(pilot, data=str(tmp_path / "full.npz"), edge_file=tmp_path / "sim-edges.txt",
                           link_trace=trace)
    return run_simulation(cfg).x.numpy()


def _mixing_inputs(pilot_path: Path, tmp_path: Path, key: str) -> list[np.ndarray]:
    """The simulator's input rows of every mixing of ``key`` (one per iteration), in order."""
    from proxgt.mixing.compressed import make_mixer
    from proxgt.settings import RunConfig
    from proxgt.training import build_run
    from proxgt.training.loop import train

    pilot = load_pilot(pilot_path)
    cfg = pilot_run_config(pilot, data=str(tmp_path / "full.npz"), edge_file=tmp_path / "sim-edges.txt")
    spec = build_run(RunConfig.from_dict(cfg))
    comm = simulated_communicator(spec)
    mix = make_mixer(comm, spec)
    seen: list[np.ndarray] = []

    def recording(Z, key=None):
        if key == "x":
            seen.append(Z.detach().double().numpy().copy())
        return mix(Z, key)

    train(spec, comm, spec.make_oracle(list(comm.node_ids)), mixer=recording)
    return seen


def _site_rows(tmp_path: Path, pilot_path: Path) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    pilot = load_pilot(pilot_path)
    return {s.name: (s.node_ids, np.load(tmp_path / "out" / s.name / "final.npz")["x"]) for s in pilot.sites}


# ---------------------------------------------------------------------------------------------- keys
def test_keys_new_writes_a_private_secret_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["keys", "new", "--site", "a", "--out", str(tmp_path / "k")]) == 0
    printed = capsys.readouterr().out
    secret, public = tmp_path / "k" / "a.key_secret", tmp_path / "k" / "a.key"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(public).st_mode) & 0o077 == 0o044  # public: readable, not writable by others
    pub = load_site_key(secret).public_key
    assert f'public_key = "{pub}"' in printed
    before = secret.read_bytes()
    assert main(["keys", "new", "--site", "a", "--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert secret.read_bytes() == before
    os.chmod(secret, 0o644)
    with pytest.raises(ProxGTValueError, match="readable by others"):
        load_site_key(secret)


# ---------------------------------------------------------------------------------------------- pilot files
GOOD = pilot_text({"a": 1, "b": 2}, [["a", "b"]], PLACEHOLDER_KEYS, ports=[7001, 7002])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('edges = [["a", "b"]]', 'edges = [["a", "z"]]'), "names site 'z'"),
    (lambda t: t.replace('name = "b"', 'name = "a"'), "two sites are named 'a'"),
    (lambda t: t.replace("[run]", "[graph]\ntopology = \"ring\"\n[run]"), "may not set 'topology'"),
    (lambda t: t.replace("[run]", "[graph]\nnodes = 4\n[run]"), "may not set 'nodes'"),
    (lambda t: t.replace("[run]", "[data]\ndata = \"a9a\"\n[run]").replace("[data]\ntest_fraction = 0.0\n", ""),
     "may not set 'data'"),
    (lambda t: t.replace('edges = [["a", "b"]]', "edges = []"), "not connected"),
    (lambda t: t.replace("nodes = 2", "nodes = 0"), "nodes must be an int >= 1"),
    (lambda t: t.replace(PLACEHOLDER_KEYS["b"], "y" * 40), "looks like a CurveZMQ key of an earlier proxgt"),
    (lambda t: t.replace(PLACEHOLDER_KEYS["b"], PLACEHOLDER_KEYS["b"][:-8]), "public_key is not a certificate"),
    (lambda t: t.replace("tcp://127.0.0.1:7002", "127.0.0.1:7002"), "address tcp://HOST:PORT"),
    (lambda t: t.replace("round_deadline_s = 5.0", "round_deadline_s = -1"), "round_deadline_s must be"),
    (lambda t: t.replace("seed = 3", "seed = 3\nstepp = 0.1"), "unknown setting"),
    (lambda t: t.replace('name = "t"', 'name = "t"\ncolour = "red"'), "unknown key(s) colour"),
])
def test_bad_pilot_files_are_one_line_errors(tmp_path, capsys, edit, message):
    load_pilot_text = edit(GOOD)
    (tmp_path / "p.toml").write_text(load_pilot_text)
    (tmp_path / "k").write_text("")
    code = main(["site", str(tmp_path / "p.toml"), "--site", "a", "--key", str(tmp_path / "k"), "--data", "x.npz",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_site_cli_refusals(tmp_path, capsys):
    (tmp_path / "p.toml").write_text(GOOD.replace(f'public_key = "{PLACEHOLDER_KEYS["b"]}"\n', ""))
    key_dir = tmp_path / "keys"
    keys(key_dir, ["a"])
    base = ["site", str(tmp_path / "p.toml"), "--key", str(key_dir / "a.key_secret"), "--data", "x.npz",
            "--out", str(tmp_path / "o")]
    for argv, message in [
        (["--site", "c"], "site 'c' is not in the pilot file"),
        (["--site", "a", "--async"], "--async is not available on the site runtime yet"),
        (["--site", "a"], "is not site a's key"),  # the pilot lists another key for a
    ]:
        assert main(base + argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    pub = load_site_key(key_dir / "a.key_secret").public_key
    (tmp_path / "p.toml").write_text(GOOD.replace(PLACEHOLDER_KEYS["a"], pub)
                                     .replace(f'public_key = "{PLACEHOLDER_KEYS["b"]}"\n', ""))
    assert main(base + ["--site", "a"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "site 'b' has no public_key" in err, err


def test_the_node_graph_and_the_simulator_config_follow_from_the_pilot(tmp_path):
    text = pilot_text({"a": 2, "b": 1, "c": 2}, [["a", "b"], ["b", "c"], ["a", "c"]],
                      PLACEHOLDER_KEYS, ports=[7001, 7002, 7003])
    (tmp_path / "p.toml").write_text(text)
    pilot = load_pilot(tmp_path / "p.toml")
    # cliques {0, 1} and {3, 4}; a link [A, B] joins A's last node with B's first
    assert pilot.node_edges() == [(0, 1), (1, 2), (1, 3), (2, 3), (3, 4)]
    assert pilot.owner() == ["a", "a", "b", "c", "c"] and pilot.neighbours("b") == ["a", "c"]
    cfg = pilot_run_config(pilot, data="whole.npz", edge_file=tmp_path / "e.txt", link_trace="runs/x")
    assert (cfg["nodes"], cfg["topology"], cfg["mixing"], cfg["data"], cfg["link_trace"]) == (
        5, "file", "plain", "whole.npz", "runs/x")
    from proxgt.topology import make_topology

    assert sorted(map(tuple, make_topology("file", 5, edge_file=cfg["edge_file"]).edges)) == pilot.node_edges()
    (tmp_path / "q.toml").write_text(text.replace("[mixing]", "[mixing]\nmixing = \"chebyshev\""))
    with pytest.raises(ProxGTValueError, match="sites mix with plain rounds"):
        pilot_run_config(load_pilot(tmp_path / "q.toml"), data="w", edge_file=tmp_path / "e2.txt")


def test_a_neighbour_that_never_starts_is_one_line_exit_1(tmp_path, capsys):
    pilot, data = _setup(tmp_path, {"a": 1, "b": 1}, [["a", "b"]], timeout=0.5)
    code = main(["site", str(pilot), "--site", "a", "--key", str(tmp_path / "keys" / "a.key_secret"), "--data",
                 str(data["a"]), "--out", str(tmp_path / "out"), "--start-timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "site(s) b did not answer within 0.5 s" in err, err


# ---------------------------------------------------------------------------------------------- runs
def test_two_sites_on_loopback_equal_the_simulator(tmp_path):
    pilot, data = _setup(tmp_path, {"a": 1, "b": 2}, [["a", "b"]])
    res = run_sites({"a": pilot, "b": pilot}, tmp_path / "keys", data, tmp_path / "out")
    assert all(not isinstance(r, BaseException) for r in res.values()), res
    x = _simulate(pilot, tmp_path)
    for name, (ids, rows) in _site_rows(tmp_path, pilot).items():
        np.testing.assert_allclose(rows, x[list(ids)], **TOL)
        summary = json.loads((tmp_path / "out" / name / "summary.json").read_text())
        site = summary["site"]
        assert site["iterations"] == 12 and site["bytes_sent"] > 0 and site["messages_late"] == 0
        assert site["refused_connections"] == 0
        assert (tmp_path / "out" / name / "link_trace.csv").read_text() == "round,src,dst,status\n"
        assert (tmp_path / "out" / name / "metrics.csv").is_file()
    # network.csv: at each logged iteration, the largest ||z_j - z_i|| / ||z_i|| over a site's in-links, from the
    # rows its neighbours sent it in the first round of that iteration's mixing of x: the simulator's mixing
    # inputs give the same numbers (the link a-b joins node 0 of a and node 1 of b)
    inputs = _mixing_inputs(pilot, tmp_path, "x")
    for name, (i, j) in (("a", (0, 1)), ("b", (1, 0))):
        got = np.loadtxt(tmp_path / "out" / name / "network.csv", delimiter=",", skiprows=1)
        assert got[:, 0].tolist() == [5, 10, 12]
        rows = [inputs[int(t) - 1] for t in got[:, 0]]  # iteration t's mixing of x
        want = [float(np.linalg.norm(z[j] - z[i]) / np.linalg.norm(z[i])) for z in rows]
        np.testing.assert_allclose(got[:, 1], want, rtol=1e-4)
        summary = json.loads((tmp_path / "out" / name / "summary.json").read_text())
        assert summary["site"]["neighbour_gap"] == pytest.approx(want[-1], rel=1e-4)


def test_three_sites_with_late_messages_replay_from_the_link_trace(tmp_path):
    # site b sends every round's messages 50 ms late against a 10 ms deadline: its neighbours miss them
    pilot, data = _setup(tmp_path, {"a": 1, "b": 2, "c": 1}, [["a", "b"], ["b", "c"]], deadline=0.01)
    res = run_sites({"a": pilot, "b": pilot, "c": pilot}, tmp_path / "keys", data, tmp_path / "out",
                    b={"send_delay_s": 0.05})
    assert all(not isinstance(r, BaseException) for r in res.values()), res
    missed = sum(r.summary["site"]["messages_late"] + r.summary["site"]["messages_lost"] for r in res.values())
    assert missed > 0
    rows = _site_rows(tmp_path, pilot)
    plain = _simulate(pilot, tmp_path)
    assert any(not np.allclose(r, plain[list(ids)], **TOL) for ids, r in rows.values())  # the misses mattered
    x = _simulate(pilot, tmp_path, trace=tmp_path / "out")
    for ids, r in rows.values():
        np.testing.assert_allclose(r, x[list(ids)], **TOL)


def test_different_step_is_refused_naming_step(tmp_path):
    public = keys(tmp_path / "keys", ["a", "b"])
    ports = free_ports(2)
    pilots = {}
    for name, step in (("a", 0.1), ("b", 0.2)):
        pilots[name] = tmp_path / f"{name}.toml"
        pilots[name].write_text(pilot_text({"a": 1, "b": 1}, [["a", "b"]], public, ports=ports)
                                .replace("batch = 4", f"batch = 4\nstep = {step}"))
    data = shards(pilots["a"], data_file(tmp_path), tmp_path)
    res = run_sites(pilots, tmp_path / "keys", data, tmp_path / "out")
    for name in ("a", "b"):
        assert isinstance(res[name], ProxGTValueError), res[name]
        msg = str(res[name])
        assert "\n" not in msg and "settings differ" in msg and "step (" in msg
        assert not (tmp_path / "out" / name / "metrics.csv").exists()


def test_unknown_keys_and_plaintext_clients_are_refused_and_counted(tmp_path):
    public = keys(tmp_path / "keys", ["a", "b"])
    keys(tmp_path / "other", ["b"])  # a key pair named b that the pilot does not list
    port, port_b = free_ports(2)
    got: list[tuple[str, dict]] = []
    t = SiteTransport("a", {"b": (f"tcp://127.0.0.1:{port_b}", public["b"])},
                      load_site_key(tmp_path / "keys" / "a.key_secret"), f"tcp://127.0.0.1:{port}", site_timeout_s=5.0)
    t.run_tag = "r"
    for kind in ("hello", "round", "flood", "bye"):
        t.handlers[kind] = lambda sender, header, frames: got.append((sender, header))
    message = json.dumps({"run": "r", "kind": "hello", "sizes": []}).encode()
    framed = len(message).to_bytes(4, "little") + message
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # another key, even under a neighbour's name
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(str(tmp_path / "other" / "b.key_secret"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            try:
                with ctx.wrap_socket(raw) as conn:
                    conn.sendall(framed)
                    assert conn.recv(1) == b""  # the site hangs up (TLS 1.3 tells the client after its Finished)
            except (ssl.SSLError, OSError):
                pass
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:  # no TLS at all
            plain.sendall(framed)
            plain.settimeout(10)
            try:
                answer = plain.recv(1 << 16)  # at most a TLS alert, then the site hangs up
                assert answer == b"" or answer[:1] == b"\x15", answer
            except ConnectionResetError:
                pass
        deadline = time.monotonic() + 20
        with pytest.warns(UserWarning, match="site a refused a connection attempt"):  # said once, then counted
            while t.stats.refused_connections < 2 and time.monotonic() < deadline:
                t.pump(0.05)
        assert t.stats.refused_by == {"unknown key": 1, "no TLS or a failed handshake": 1}, t.stats
        assert t.stats.refused_connections == 2 and t.stats.bytes_received == 0
        assert got == []
        # b's own key: admitted, and named by its certificate, not by the message
        b = SiteTransport("b", {"a": (f"tcp://127.0.0.1:{port}", public["a"])},
                          load_site_key(tmp_path / "keys" / "b.key_secret"), f"tcp://127.0.0.1:{port_b}",
                          site_timeout_s=5.0)
        try:
            b.run_tag = "r"
            b.send("a", {"kind": "hello", "origin": "c"})
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                t.pump(0.05)
        finally:
            b.close()
        assert [s for s, _ in got] == ["b"]
    finally:
        t.close(linger_ms=0)


def _two_ends(a_secret: Path, b_secret: Path, b_listed: str, a_listed: str) -> tuple[SiteTransport, SiteTransport]:
    """Transports a and b on loopback, each listing the other's public key as given."""
    port_a, port_b = free_ports(2)
    a = SiteTransport("a", {"b": (f"tcp://127.0.0.1:{port_b}", b_listed)}, load_site_key(a_secret),
                      f"tcp://127.0.0.1:{port_a}", site_timeout_s=5.0)
    b = SiteTransport("b", {"a": (f"tcp://127.0.0.1:{port_a}", a_listed)}, load_site_key(b_secret),
                      f"tcp://127.0.0.1:{port_b}", site_timeout_s=5.0)
    return a, b


def test_a_neighbour_address_without_its_key_is_never_sent_to_and_is_named_once(tmp_path):
    """The process at b's address holds another key: a's links refuse it (b's certificate is pinned), a says so
    once, and nothing a sends reaches it."""
    public = keys(tmp_path / "keys", ["a", "b"])
    other = keys(tmp_path / "other", ["b", "a"])
    a, impostor = _two_ends(tmp_path / "keys" / "a.key_secret", tmp_path / "other" / "b.key_secret", public["b"],
                            other["a"])
    got: list[str] = []
    impostor.handlers["hello"] = lambda sender, header, frames: got.append(sender)
    try:
        with pytest.warns(UserWarning, match="did not prove site b's key from the pilot file \\(unknown key\\)"):
            a.send("b", {"kind": "hello"})
            deadline = time.monotonic() + 20
            while not a._warned_dial and time.monotonic() < deadline:
                a.pump(0.05)
                impostor.pump(0.0)
        with warnings.catch_warnings(record=True) as later:
            warnings.simplefilter("always")
            for _ in range(10):
                a.pump(0.1)
                impostor.pump(0.0)
        assert not [w for w in later if "did not prove" in str(w.message)]  # said once: the redials are silent
        assert impostor.stats.refused_connections >= 1  # a aborted each handshake: counted by the impostor too
        assert got == [] and impostor.stats.bytes_received == 0
    finally:
        a.close(linger_ms=0)
        impostor.close(linger_ms=0)


def _key_valid_from(folder: Path, name: str, start: datetime.datetime) -> str:
    """A site key whose certificate is valid from ``start`` only (a site whose clock is days off made it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=30))
            .sign(key, None))
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / f"{name}.key_secret"
    secret.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(secret, 0o600)
    return load_site_key(secret).public_key


def test_a_listed_key_with_a_certificate_not_yet_valid_is_refused_as_out_of_date(tmp_path):
    public = keys(tmp_path / "keys", ["a"])
    public["b"] = _key_valid_from(tmp_path / "future", "b", datetime.datetime.now(datetime.UTC)
                                  + datetime.timedelta(days=3))
    a, b = _two_ends(tmp_path / "keys" / "a.key_secret", tmp_path / "future" / "b.key_secret", public["b"],
                     public["a"])
    try:
        b.send("a", {"kind": "hello"})
        deadline = time.monotonic() + 20
        with pytest.warns(UserWarning, match="certificate out of date"):
            while not a.stats.refused_connections and time.monotonic() < deadline:
                a.pump(0.05)
        assert set(a.stats.refused_by) == {"certificate out of date (check both clocks)"}  # b dials again and again
    finally:
        a.close(linger_ms=0)
        b.close(linger_ms=0)


def test_late_messages_keep_the_trackers_sum_exact(tmp_path):
    """sum_i y_i + the mass in flight stays sum_i y_i(0) round after round, whatever is late or lost."""
    public = keys(tmp_path / "keys", ["a", "b"])
    ports = free_ports(2)
    pilot_path = tmp_path / "p.toml"
    pilot_path.write_text(pilot_text({"a": 2, "b": 1}, [["a", "b"]], public, ports=ports, deadline=0.005))
    pilot = load_pilot(pilot_path)
    from proxgt.topology import make_topology

    pilot_run_config(pilot, data="x", edge_file=tmp_path / "e.txt")
    topo = make_topology("file", pilot.n_nodes, edge_file=tmp_path / "e.txt")
    W = topo.W.to_dense() if topo.W.layout == torch.sparse_csr else topo.W
    gen = torch.Generator().manual_seed(0)
    Y0 = torch.randn(pilot.n_nodes, 3, generator=gen, dtype=torch.float64)
    out: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], int]] = {}
    both_done = threading.Barrier(2, timeout=60)  # then nothing is in a queue that a peer still needs

    def site(name: str, other: str, delay: float) -> None:
        me = pilot.site(name)
        t = SiteTransport(name, {other: (pilot.site(other).address, public[other])},
                          load_site_key(tmp_path / "keys" / f"{name}.key_secret"), me.address,
                          site_timeout_s=20.0)
        t.run_tag = "r"
        try:
            comm = SiteCommunicator(t, W, topo.degrees, me.node_ids, pilot.owner(), round_deadline_s=0.005,
                                    site_timeout_s=20.0, send_delay_s=delay)
            Y = Y0[list(me.node_ids)]
            for _ in range(25):
                Y = comm.mix_round(Y, "y", tracked=True)
            comm.finish_trace()
            out[name] = (Y, comm.running_sums("y"), comm.messages_late + comm.messages_lost)
            both_done.wait()
        finally:
            t.close(linger_ms=0)

    threads = [threading.Thread(target=site, args=("a", "b", 0.0)),
               threading.Thread(target=site, args=("b", "a", 0.02))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert set(out) == {"a", "b"}
    assert sum(v[2] for v in out.values()) > 0  # messages did miss their rounds
    total = sum(v[0].sum(dim=0) for v in out.values())
    in_flight = sum(v[1][0] - v[1][1] for v in out.values())
    torch.testing.assert_close(total + in_flight, Y0.sum(dim=0), rtol=1e-12, atol=1e-12)


def test_proxgt_site_command_line(tmp_path, capsys):
    """`proxgt site` end to end (two sites, each in a thread of this process: the command line's handler)."""
    pilot, data = _setup(tmp_path, {"a": 1, "b": 1}, [["a", "b"]])
    codes: dict[str, int] = {}

    def site(name: str) -> None:
        codes[name] = main(["site", str(pilot), "--site", name, "--key", str(tmp_path / "keys" / f"{name}.key_secret"),
                            "--data", str(data[name]), "--out", str(tmp_path / "out" / name), "--no-progress"])

    threads = [threading.Thread(target=site, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    out = capsys.readouterr().out
    assert codes == {"a": 0, "b": 0}
    for name in ("a", "b"):
        assert f"site {name}: 12 iterations, " in out and "0 refused connection attempts" in out
    x = _simulate(pilot, tmp_path)
    for ids, rows in _site_rows(tmp_path, pilot).values():
        np.testing.assert_allclose(rows, x[list(ids)], **TOL)


@pytest.mark.parametrize("how", ["silent", "crash"])
def test_a_lost_site_is_dropped_and_the_others_go_on(tmp_path, how):
    """Site c stops after iteration 3: silent (b finds it silent past the site timeout) or on an error (it tells its
    neighbour); a hears it from b. Both drop c's node at the same iteration, re-weight the surviving graph and
    finish."""
    pilot, data = _setup(tmp_path, {"a": 1, "b": 2, "c": 1}, [["a", "b"], ["b", "c"]], deadline=0.2, timeout=1.5)

    def stop(rank: int, t: int) -> None:
        if t != 3:
            return
        end = time.monotonic() + 60
        while how == "silent" and time.monotonic() < end and not all(
                (tmp_path / "out" / s / "summary.json").exists() for s in ("a", "b")):
            time.sleep(0.05)  # silent until the others are done
        raise RuntimeError("site c stops")

    with warnings.catch_warnings(record=True) as said:  # the survivors' consoles say it as it happens
        warnings.simplefilter("always")
        res = run_sites({"a": pilot, "b": pilot, "c": pilot}, tmp_path / "keys", data, tmp_path / "out",
                        c={"fault_hook": stop})
    assert isinstance(res["c"], RuntimeError)
    notices = sorted(str(w.message) for w in said if "was lost" in str(w.message))
    assert [n.split(":")[0] for n in notices] == ["site a", "site b"], notices
    assert all("site c was lost" in n and n.endswith("goes on with a, b") for n in notices), notices
    lost = {}
    for name in ("a", "b"):
        assert not isinstance(res[name], BaseException), res[name]
        site = res[name].summary["site"]
        assert site["iterations"] == 12
        (entry,) = site["lost_sites"]
        lost[name] = (entry["site"], entry["iteration"], entry["nodes"])
        assert np.isfinite(res[name].x.numpy()).all()
        assert res[name].rows[-1]["iter"] == 12
    assert lost["a"] == lost["b"] and lost["a"][0] == "c" and lost["a"][2] == [3] and 3 <= lost["a"][1] < 12
    reason = res["b"].summary["site"]["lost_sites"][0]["reason"]
    assert reason == ("silent for more than 1.5 s" if how == "silent" else "stopped: RuntimeError: site c stops")


def test_a_site_that_fails_at_the_start_stops_the_others_at_once(tmp_path):
    pilot, data = _setup(tmp_path, {"a": 1, "b": 1, "c": 1}, [["a", "b"], ["b", "c"]], timeout=60.0)
    bad = tmp_path / "bad.npz"
    with np.load(data["c"]) as z:
        np.savez(bad, X=z["X"], y=z["y"], node_counts=np.array([1, 1]))
    res = run_sites({"a": pilot, "b": pilot, "c": pilot}, tmp_path / "keys", {**data, "c": bad}, tmp_path / "out")
    assert isinstance(res["c"], ProxGTValueError) and "node_counts must be 1 int(s)" in str(res["c"])
    for name in ("a", "b"):  # a is no neighbour of c: b passes the news on
        assert isinstance(res[name], SiteLost) and str(res[name]).startswith("site c stopped: ") \
            and "node_counts" in str(res[name]), res[name]  # told, not timed out (60 s)



def test_step_auto_is_refused_under_differential_privacy(tmp_path):
    """step = auto would sum Gram products of the sites' raw rows (the smoothness bound): refused under DP, where
    nothing computed from a site's raw data leaves it (that each site's noise is its own: test_private_sites.py)."""
    public = keys(tmp_path / "keys", ["a", "b"])
    pilot = tmp_path / "p.toml"
    pilot.write_text(pilot_text({"a": 1, "b": 1}, [["a", "b"]], public,
                                extra="[privacy]\ndp_clip = 1.0\ndp_noise = 0.5\n"))
    data = shards(pilot, data_file(tmp_path), tmp_path)
    res = run_sites({"a": pilot, "b": pilot}, tmp_path / "keys", data, tmp_path / "out")
    for r in res.values():  # each site refuses before it opens a socket
        assert isinstance(r, ProxGTValueError) and "step = auto needs the smoothness bound" in str(r), r


def test_metrics_leave_a_site_only_when_the_pilot_file_says_so(tmp_path, capsys):
    """Without [pilot] share_metrics a site writes no one's metrics but its own; with it, every site writes every
    site's rows (network_metrics.csv), equal to what each wrote in its own metrics.csv. Refused under DP."""
    public = keys(tmp_path / "keys", ["a", "b"])
    data = None
    for share in (False, True):
        pilot = tmp_path / f"p-{share}.toml"
        text = pilot_text({"a": 1, "b": 2}, [["a", "b"]], public)
        pilot.write_text(text.replace("site_timeout_s", f"share_metrics = {str(share).lower()}\nsite_timeout_s", 1))
        data = data or shards(pilot, data_file(tmp_path), tmp_path)
        out = tmp_path / f"out-{share}"
        res = run_sites({"a": pilot, "b": pilot}, tmp_path / "keys", data, out)
        assert all(not isinstance(r, BaseException) for r in res.values()), res
        files = [out / s / "network_metrics.csv" for s in ("a", "b")]
        if not share:
            assert not any(f.exists() for f in files)
            continue
        assert files[0].read_text() == files[1].read_text()
        shared = list(csv.DictReader(files[0].open()))
        for s in ("a", "b"):
            own = list(csv.DictReader((out / s / "metrics.csv").open()))
            theirs = [{k: v for k, v in r.items() if k != "site"} for r in shared if r["site"] == s]
            assert [r["iter"] for r in theirs] == [r["iter"] for r in own] == ["0", "5", "10", "12"]
            for mine, sent in zip(own, theirs, strict=True):
                assert {k: float(v) for k, v in sent.items()} == pytest.approx(
                    {k: float(mine[k]) for k in sent}, rel=1e-9, nan_ok=True)
    private = tmp_path / "p-dp.toml"
    text = pilot_text({"a": 1, "b": 2}, [["a", "b"]], public, extra="[privacy]\ndp_clip = 1.0\ndp_noise = 0.5\n")
    private.write_text(text.replace("site_timeout_s", "share_metrics = true\nsite_timeout_s", 1)
                       .replace("batch = 4", "batch = 4\nstep = 0.1", 1))
    bad = tmp_path / "p-bad.toml"
    bad.write_text(pilot.read_text().replace("share_metrics = true", 'share_metrics = "yes"'))
    for path, message in ((private, "share_metrics sends every site's metrics"),
                          (bad, "share_metrics must be true or false")):
        code = main(["site", str(path), "--site", "a", "--key", str(tmp_path / "keys" / "a.key_secret"),
                     "--data", str(data["a"]), "--out", str(tmp_path / "refused")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
