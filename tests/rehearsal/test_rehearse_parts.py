"""The parts of `proxgt rehearse` that need no site runtime: link options, shards, keys, loopback links, the
intruder's attempts, and the orchestration (run against a stand-in site, tests/rehearsal/stub_site.py)."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from proxgt.cli.main import main
from proxgt.data import load_npz
from proxgt.errors import ProxGTValueError
from proxgt.executors._sockets import free_ports
from proxgt.executors.site.transport import load_site_key, new_site_keys
from proxgt.rehearsal import RehearsalOptions, rehearse
from proxgt.rehearsal._intruder import attempt
from proxgt.rehearsal._keys import site_keys
from proxgt.rehearsal._links import parse_cut, parse_rate, rate_bits
from proxgt.rehearsal._netns import namespaces_unavailable
from proxgt.rehearsal._proxy import LoopbackNet
from proxgt.rehearsal._shards import write_shards
from proxgt.settings import RunConfig
from proxgt.training import build_run

from ..executors.launching import tiny_classification

STUB = [sys.executable, str(Path(__file__).with_name("stub_site.py"))]
SITES = ["a", "b-2", "c"]
EDGES = [("a", "b-2"), ("b-2", "c")]

PILOT = """
[pilot]
name = "three"
[[site]]
name = "a"
address = "tcp://127.0.0.1:7301"
[[site]]
name = "b-2"
address = "tcp://127.0.0.1:7302"
nodes = 2
[[site]]
name = "c"
address = "tcp://127.0.0.1:7303"
[links]
edges = [["a", "b-2"], ["b-2", "c"]]
[run]
iters = 5
seed = 3
"""


# ---------------------------------------------------------------------------------------------- link options
def test_link_options_are_read_and_checked():
    assert parse_rate("b-2-c=1mbit", SITES, EDGES).edge == 1  # a site name with '-' in it
    assert parse_rate("c-b-2=500kbit", SITES, EDGES).bits_per_s == 500e3
    assert rate_bits("2mbps") == 16e6
    cut = parse_cut("a-b-2@5:25", SITES, EDGES)
    assert (cut.edge, cut.start, cut.end) == (0, 5.0, 25.0)
    for bad, words in [("a-c=1mbit", "no link"), ("a-b-2=fast", "cannot read the rate"), ("a-x=1mbit", "SITE-SITE"),
                       ("a-b-2=1bit", "below 8kbit"), ("a-b-2", "SITE-SITE=RATE")]:
        with pytest.raises(ProxGTValueError, match=words):
            parse_rate(bad, SITES, EDGES)
    for bad, words in [("a-b-2@5", "START:END"), ("a-b-2@9:3", "START < END"), ("a-b-2@x:3", "START:END")]:
        with pytest.raises(ProxGTValueError, match=words):
            parse_cut(bad, SITES, EDGES)


# ---------------------------------------------------------------------------------------------- shards and keys
def test_shards_hold_the_simulators_rows(tmp_path):
    data = tiny_classification(tmp_path, rows=300, cols=6)
    cfg = RunConfig(data=data, nodes=4, topology="ring", split="dirichlet", seed=3, iters=1, batch="full")
    paths = write_shards(cfg, [[0], [1, 2], [3]], ["a", "b", "c"], tmp_path / "shards")
    sim = build_run(cfg).node_data  # what `proxgt run` gives its nodes
    for path, ids in zip(paths, [[0], [1, 2], [3]], strict=True):
        with np.load(path, allow_pickle=False) as z:
            counts = z["node_counts"]
            assert counts.tolist() == sim.counts[ids].tolist()
        rows = load_npz(path)
        start = 0
        for node, m in zip(ids, counts, strict=True):
            np.testing.assert_array_equal(rows.X[start:start + m].numpy(), sim.X[node, :m].numpy())
            np.testing.assert_array_equal(rows.y[start:start + m].numpy(), sim.y[node, :m].numpy())
            start += m


def test_throwaway_keys_are_private_and_given_keys_are_checked(tmp_path):
    _, _, pub_b = new_site_keys("b", tmp_path / "mine")
    publics, secrets = site_keys(["a", "b"], [None, pub_b], tmp_path / "keys", tmp_path / "mine")
    assert publics[1] == pub_b and secrets[1] == tmp_path / "mine" / "b.key_secret"
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(secrets[0]).st_mode) == 0o600
    assert load_site_key(secrets[0]).public_key == publics[0] != pub_b
    with pytest.raises(ProxGTValueError, match="--keys DIR"):
        site_keys(["b"], [pub_b], tmp_path / "keys2", None)
    with pytest.raises(ProxGTValueError, match="does not hold the secret"):
        site_keys(["b"], [publics[0]], tmp_path / "keys3", tmp_path / "mine")


# ---------------------------------------------------------------------------------------------- loopback links
def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    return srv, srv.getsockname()[1]


def test_a_recorded_link_shows_a_plaintext_message(tmp_path):
    """The control of the sites' encryption check (test_rehearse_sites): rows framed as a site's message but sent
    without TLS, through a recorded loopback link, are found in the recording."""
    from proxgt.rehearsal._capture import capture_streams

    row = np.random.default_rng(7).standard_normal(20).astype(np.float32)
    srv, port = _echo_server()
    net = LoopbackNet([port, port], [(0, 1)], capture={0: tmp_path / "control"})
    net.setup()
    try:
        header = b'{"kind":"round","key":"x","dtype":"<f4","shape":[1,20],"sizes":[80]}'
        with socket.create_connection(("127.0.0.1", net.peer_port(0, 1)), timeout=30) as client:
            client.sendall(len(header).to_bytes(4, "little") + header + row.tobytes())
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(30)
                got = b""
                while not got.endswith(row.tobytes()):
                    chunk = conn.recv(1 << 16)
                    assert chunk
                    got += chunk
    finally:
        srv.close()
        net.teardown()
    assert any(row.tobytes() in s for s in capture_streams(tmp_path / "control"))


def test_loopback_link_forwards_records_cuts_and_paces(tmp_path):
    srv, port = _echo_server()
    net = LoopbackNet([port, port], [(0, 1)], capture={0: tmp_path / "cap"})
    net.setup()
    try:
        payload = np.arange(4096, dtype=np.float32).tobytes()
        with socket.create_connection(("127.0.0.1", net.peer_port(0, 1)), timeout=10) as c:
            conn, _ = srv.accept()
            c.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += conn.recv(65536)
            conn.close()
        assert got == payload
        time.sleep(0.2)
        recorded = b"".join(p.read_bytes() for p in (tmp_path / "cap").iterdir())
        assert payload in recorded

        net.set_link(0, up=False)  # a cut refuses new connections
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", net.peer_port(0, 1)), timeout=10)
        net.set_link(0, up=True)
        net.shape(0, 8 * 100_000)  # 100 kB/s: 200 kB take at least about 2 s whatever the machine's load
        with socket.create_connection(("127.0.0.1", net.peer_port(1, 0)), timeout=10) as c:
            conn, _ = srv.accept()
            t0 = time.monotonic()
            c.sendall(b"x" * 200_000)
            n = 0
            while n < 200_000:
                n += len(conn.recv(65536))
            took = time.monotonic() - t0
            conn.close()
        assert took >= 1.5
    finally:
        net.teardown()
        srv.close()


# ---------------------------------------------------------------------------------------------- the intruder
def test_an_unknown_key_is_denied_where_a_listed_one_is_accepted(tmp_path):
    """The intruder's check can fail: the listed key (the control) is accepted, its own key denied, plaintext
    refused; the site counts the two refusals."""
    from proxgt.executors.site.transport import SiteTransport

    pub = {name: new_site_keys(name, tmp_path)[2] for name in ("server", "friend", "intruder")}
    port = free_ports(1)[0]
    address = f"tcp://127.0.0.1:{port}"
    server = SiteTransport("server", {"friend": ("tcp://127.0.0.1:1", pub["friend"])},
                           load_site_key(tmp_path / "server.key_secret"), address, site_timeout_s=10.0)
    try:
        assert attempt(address, str(tmp_path / "friend.key_secret"), 0, 2.0) == "accepted"
        deadline = time.monotonic() + 10
        while not server.stats.dropped_messages and time.monotonic() < deadline:
            server.pump(0.05)  # the friend's message arrived (and was dropped: it is of no run)
        assert server.stats.dropped_messages == 1 and server.stats.bytes_received > 0
        got = server.stats.bytes_received
        assert attempt(address, str(tmp_path / "intruder.key_secret"), 0, 5.0) == "denied"
        assert attempt(address, None, 0, 5.0) == "protocol"
        with pytest.warns(UserWarning, match="refused a connection attempt"):
            while server.stats.refused_connections < 2 and time.monotonic() < deadline + 10:
                server.pump(0.05)
        assert server.stats.refused_connections == 2
        assert server.stats.bytes_received == got  # nothing from the intruder
    finally:
        server.close(linger_ms=0)


# ---------------------------------------------------------------------------------------------- orchestration
def _opts(tmp_path, **kw):
    pilot = tmp_path / "pilot.toml"
    pilot.write_text(PILOT)
    data = tiny_classification(tmp_path, rows=200, cols=5)
    base = dict(pilot=pilot, data=data, out=tmp_path / "out", site_command=STUB, timeout=120.0)
    return RehearsalOptions(**(base | kw))


def test_a_failing_site_stops_the_rehearsal_with_its_error(tmp_path):
    t0 = time.monotonic()
    result = rehearse(_opts(tmp_path, loopback=True, site_args=["--fail", "b-2", "--seconds", "120"]),
                      say=lambda s: None)
    assert time.monotonic() - t0 < 60  # the others were stopped, not waited for
    assert not result.ok
    assert [o.returncode == 0 for o in result.sites] == [False, False, False]
    assert result.sites[1].returncode == 2
    assert result.sites[1].last_error() == "proxgt: error: stub site failed on purpose"


def test_a_restarted_site_is_killed_then_started_again_with_rejoin_once_the_others_lost_it(tmp_path):
    """--restart c@0.2: c is killed 0.2 s into training; it starts again (with --rejoin, its log going on) only
    after every other site said it lost c (here b-2 says so 1.5 s after a does)."""
    site_args = ["--seconds", "2.5", "--say-lost", "c", "--lost-after", "0.5", "--late-site", "b-2"]
    result = rehearse(_opts(tmp_path, loopback=True, restarts=["c@0.2"], site_args=site_args,
                            site_command=[*STUB]), say=lambda s: None)
    assert result.ok, [(o.name, o.returncode, o.last_error()) for o in result.sites]
    killed, again = result.events[1], result.events[2]
    assert killed.endswith("site c killed") and again.endswith("site c started again with --rejoin (the others "
                                                                "had lost it)"), result.events
    out = tmp_path / "out" / "sites"
    said = [float((out / s / "said-lost").read_text()) for s in ("a", "b-2")]
    assert said[1] > said[0] + 1.0
    assert float((out / "c" / "rejoined").read_text()) >= said[1]  # not before both had said it
    assert json.loads((tmp_path / "out" / "rehearsal.json").read_text())["restarts"] == ["c@0.2"]


def test_sigterm_removes_the_sites_and_the_namespaces(tmp_path):
    """A rehearsal stopped by SIGTERM (as by Ctrl-C) leaves no site process and no namespace behind."""
    opts = _opts(tmp_path, site_args=["--seconds", "120"])
    code = ("import sys\nfrom pathlib import Path\nfrom proxgt.rehearsal import RehearsalOptions, rehearse\n"
            f"rehearse(RehearsalOptions(pilot={str(opts.pilot)!r}, data={opts.data!r}, out={str(opts.out)!r}, "
            f"site_command={STUB!r}, site_args=['--seconds', '120']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    deadline = time.monotonic() + 120
    while not all((opts.out / "sites" / s / "metrics.csv").exists() for s in ("a", "b-2", "c")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    if (opts.out / "namespaces.txt").exists():  # a rehearsal in namespaces: every one it named is gone
        made = (opts.out / "namespaces.txt").read_text().split()
        assert len(made) == 3 and not set(made) & namespaces()
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(opts.out).encode() in _cmdline(pid)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def namespaces() -> set[str]:
    """The network namespaces on this machine (none where ``ip`` is missing)."""
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    except OSError:
        return set()
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


def test_a_rehearsal_that_hangs_ends_at_its_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ProxGTValueError, match="ran past --timeout 3 s"):
        rehearse(_opts(tmp_path, loopback=True, timeout=3.0, site_args=["--seconds", "60"]), say=lambda s: None)
    assert time.monotonic() - t0 < 30
    report = json.loads((tmp_path / "out" / "rehearsal.json").read_text())
    assert report["timed_out"] is True
    assert all(v["returncode"] not in (0, None) for v in report["sites"].values())


def test_bad_input_is_one_line(tmp_path, capsys):
    opts = _opts(tmp_path)
    args = ["rehearse", str(opts.pilot), "--data", opts.data, "--out", str(tmp_path / "o"), "--loopback"]
    assert main([*args, "--rate", "a-c=1mbit"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "proxgt: error: --rate: sites a and c have no link in the pilot (its links: a-b-2, b-2-c)"]
    for restart, message in (("d@5", "'d' is not a site of the pilot"), ("c@-1", "expected SITE@SECONDS"),
                             ("c", "expected SITE@SECONDS")):
        assert main([*args, "--restart", restart]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main([*args, "--restart", "c@1", "--restart", "c@2"]) == 2
    assert "one restart per site" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "precious.txt").write_text("x")
    assert main([*args, "--overwrite"]) == 2
    assert "has no rehearsal.json" in capsys.readouterr().err
    assert (tmp_path / "o" / "precious.txt").exists()


def test_a_namespace_capture_finds_what_crossed_the_link_in_plaintext(tmp_path):
    """The control of the encryption check: a plaintext payload sent over a captured veth link is found in the
    capture's rebuilt TCP stream, even though it crossed the link in many packets."""
    from proxgt.rehearsal._capture import capture_streams
    from proxgt.rehearsal._netns import NamespaceNet
    from proxgt.rehearsal._run import _stop, start_recorders

    if (why := namespaces_unavailable()) is not None:
        pytest.skip(why)
    net = NamespaceNet(2, [(0, 1)])
    payload = np.random.default_rng(0).standard_normal(20000).astype(np.float32).tobytes()  # 80 kB: many segments
    procs = []
    try:
        net.setup()
        procs = start_recorders(net, {0: tmp_path / "cap" / "a.frames"}, dict(os.environ))
        server = subprocess.Popen([*net.prefix(1), sys.executable, "-c",
                                   "import socket,sys; s=socket.create_server(('10.77.0.2', 7400)); c,_=s.accept();"
                                   "n=0\nwhile (d:=c.recv(65536)): n+=len(d)\nprint(n)"], stdout=subprocess.PIPE)
        procs.append(server)
        sender = ("import socket,time\nfor _ in range(100):\n  try: s=socket.create_connection(('10.77.0.2',7400));"
                  " break\n  except OSError: time.sleep(0.1)\n"
                  f"s.sendall(open({str(tmp_path / 'p.bin')!r},'rb').read()); s.close()")
        (tmp_path / "p.bin").write_bytes(payload)
        subprocess.run([*net.prefix(0), sys.executable, "-c", sender], check=True, timeout=60)
        assert server.communicate(timeout=60)[0].strip() == str(len(payload)).encode()
        time.sleep(0.5)
    finally:
        _stop(procs)
        net.teardown()
    streams = capture_streams(tmp_path / "cap")
    assert any(payload in s for s in streams)
    assert not any(payload[::-1] in s for s in streams)


def test_namespace_links_reach_only_neighbours_shape_and_cut(tmp_path):
    """Two sites and an outsider site: a link's veth pair joins its two sites, tbf limits it (250 kB at 1 Mbit/s
    take at least 2 s), a cut makes connects fail at once and the link works again once up; no namespace is left."""
    from proxgt.rehearsal._netns import NamespaceNet

    if (why := namespaces_unavailable()) is not None:
        pytest.skip(why)
    net = NamespaceNet(3, [(0, 1)])
    recv = ("import socket,time\ns=socket.create_server(('10.77.0.2', 7400))\nfor _ in range(2):\n"
            "  c,_=s.accept(); n=0\n  while (d:=c.recv(65536)): n+=len(d)\n  c.sendall(str(n).encode()); c.close()")
    send = ("import socket,sys,time\nfor _ in range(100):\n  try: s=socket.create_connection(('10.77.0.2',7400));"
            " break\n  except OSError: time.sleep(0.1)\nt=time.monotonic(); s.sendall(b'x'*int(sys.argv[1]));"
            " s.shutdown(socket.SHUT_WR); n=s.recv(64); print(n.decode(), time.monotonic()-t)")
    probe = "import socket\ntry: socket.create_connection(('10.77.0.2', 7400), timeout=5); print('open')\n" \
            "except OSError as e: print(e.errno)"
    server = None
    try:
        net.setup()
        net.shape(0, 1e6)
        server = subprocess.Popen([*net.prefix(1), sys.executable, "-c", recv])
        got, took = subprocess.run([*net.prefix(0), sys.executable, "-c", send, "250000"], capture_output=True,
                                   text=True, timeout=120, check=True).stdout.split()
        assert got == "250000" and float(took) >= 1.5
        outsider = subprocess.run([*net.prefix(2), sys.executable, "-c", probe], capture_output=True, text=True,
                                  timeout=60).stdout.strip()
        assert outsider == str(errno.ENETUNREACH)  # site 2 has no link to site 1
        net.set_link(0, up=False)
        cut = subprocess.run([*net.prefix(0), sys.executable, "-c", probe], capture_output=True, text=True,
                             timeout=60).stdout.strip()
        assert cut == str(errno.ENETUNREACH)
        net.set_link(0, up=True)
        got, _ = subprocess.run([*net.prefix(0), sys.executable, "-c", send, "1000"], capture_output=True,
                                text=True, timeout=120, check=True).stdout.split()
        assert got == "1000"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        made = net.planned
        net.teardown()
    assert not set(made) & namespaces()
