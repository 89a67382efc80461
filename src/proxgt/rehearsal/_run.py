"""``proxgt rehearse``: every site of a pilot as its own process on this machine, on links one can shape and cut.

A rehearsal (see :func:`rehearse`)

1. splits the data set over all nodes of the pilot as ``proxgt run --data DATASET --split S --nodes N`` would and
   writes each site's rows to ``OUT/shards/SITE.npz`` (with ``node_counts``, so the site reproduces the split);
2. makes throwaway keys (``OUT/keys``, mode 0700) for sites without ``public_key`` and writes the effective
   pilot file (the addresses and keys the sites really use) to ``OUT/pilot.toml``;
3. builds the network: one namespace per site joined by veth pairs when this process may (root or
   CAP_NET_ADMIN), else forwarding proxies on 127.0.0.1; shapes links (``--rate``), then starts one
   ``proxgt site`` per site (and the ``--intruder``), cuts and restores links on schedule (``--cut``), kills a
   site and starts it again with ``--rejoin`` once every other site has said it lost it (``--restart``);
4. ends by itself: when every site has exited, or at the global timeout (sites killed, a one-line error), and
   removes what it made (processes, namespaces, proxies) on every exit path, Ctrl-C and SIGTERM included;
5. gathers each site's ``summary.json`` into one table, the union of the sites' ``link_trace.csv`` into
   ``OUT/link_trace.csv``, and what happened into ``OUT/rehearsal.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxgt._io import atomic_write_text, json_safe
from proxgt.errors import ProxGTValueError
from proxgt.executors._sockets import free_ports
from proxgt.reporting.runs import table_markdown
from proxgt.settings import RunConfig
from proxgt.settings.config import read_toml

from ._capture import FRAMES_SUFFIX
from ._keys import private_folder, site_keys
from ._links import LinkCut, LinkRate, SiteRestart, parse_cut, parse_rate, parse_restart
from ._netns import NamespaceNet, namespaces_unavailable
from ._proxy import LoopbackNet

if TYPE_CHECKING:
    from proxgt.executors.site.pilot import Pilot

__all__ = ["RehearsalOptions", "RehearsalResult", "SiteOutcome", "rehearse", "rehearsal_table", "MARKER"]

#: The file that marks a folder as a rehearsal's (``--overwrite`` replaces no other folder).
MARKER = "rehearsal.json"
DEFAULT_PORT = 7300


class RehearsalTimeout(ProxGTValueError):
    """The rehearsal ran past its global timeout (its sites were stopped)."""


@dataclass
class RehearsalOptions:
    """What ``proxgt rehearse`` was asked for (the flags, unparsed link options included)."""

    pilot: str | Path
    data: str
    split: str | None = None
    out: str | Path | None = None
    rates: Sequence[str] = ()
    cuts: Sequence[str] = ()  # seconds since every site started training (logged its first metrics row)
    restarts: Sequence[str] = ()  # SITE@SECONDS: killed then, started again with --rejoin once the others lost it
    intruder: bool = False
    loopback: bool = False
    timeout: float = 900.0
    keys: str | Path | None = None
    capture: Sequence[str] = ()  # links whose bytes are recorded in OUT/capture/A-B/ (see _capture)
    overwrite: bool = False
    site_args: Sequence[str] = ()  # more flags for every `proxgt site`
    site_command: Sequence[str] | None = None  # the program run per site (default: this Python's `proxgt site`)


@dataclass
class SiteOutcome:
    name: str
    returncode: int | None
    folder: Path
    log: Path
    summary: dict[str, Any] | None = None

    def last_error(self) -> str:
        """The last non-empty line of the site's log (its one-line error, if it failed)."""
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""


@dataclass
class RehearsalResult:
    out: Path
    mode: str  # "namespaces" or "loopback"
    mode_reason: str
    sites: list[SiteOutcome]
    wall_s: float
    intruder: dict[str, Any] | None = None
    link_trace: Path | None = None
    events: list[str] = field(default_factory=list)
    replay: Path | None = None  # OUT/replay.toml: the simulator's run on the recorded trace

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.sites) and not (self.intruder or {}).get("accepted", 0)

    def disagreement(self) -> float | None:
        """How far the sites' final models are apart: the largest ``||x_i - mean|| / ||mean||`` over all nodes'
        final rows (None unless every site wrote its final.npz)."""
        import numpy as np

        try:
            rows = np.concatenate([np.load(s.folder / "final.npz", allow_pickle=False)["x"] for s in self.sites])
        except (OSError, KeyError, ValueError):
            return None
        mean = rows.mean(axis=0)
        scale = float(np.linalg.norm(mean)) or 1.0
        return float(np.linalg.norm(rows - mean, axis=1).max()) / scale


# ---------------------------------------------------------------------------------------------- helpers
def _port_of(address: str) -> int:
    try:
        port = urlsplit(address).port
    except ValueError:
        port = None
    return port or DEFAULT_PORT


def _prepare_out(opts: RehearsalOptions, pilot: Pilot) -> Path:
    out = Path(opts.out) if opts.out is not None else Path("runs") / "rehearsal" / pilot.name
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not opts.overwrite:
            raise ProxGTValueError(f"{out} exists and is not empty: give another --out, or --overwrite to replace a "
                                   "previous rehearsal there")
        if out.is_symlink() or not (out / MARKER).is_file():
            raise ProxGTValueError(f"--overwrite replaces only a previous rehearsal's folder; {out} has no {MARKER}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _toml(table: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(json_safe(table))


def _effective_pilot(pilot: Pilot, addresses: Sequence[str], publics: Sequence[str]) -> str:
    raw = read_toml(pilot.path, "pilot file")
    raw["site"] = [dict(s, address=a, public_key=k) for s, a, k in zip(raw["site"], addresses, publics, strict=True)]
    return ("# The pilot file this rehearsal's sites ran with: the addresses and (throwaway) keys it made.\n"
            + _toml(raw))


def _merge_traces(folders: Sequence[Path], out: Path) -> Path | None:
    """The union of the sites' ``link_trace.csv`` (one header), sorted as read: None when no site wrote one."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    for folder in folders:
        path = folder / "link_trace.csv"
        if not path.is_file():
            continue
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        comments = [ln for ln in lines if ln.startswith("#")]
        body = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
        if not body:
            continue
        if header is None:
            header = [*comments, ",".join(body[0])]
        rows.extend(body[1:])
    if header is None:
        return None

    def key(r: list[str]) -> list[tuple[int, int, str]]:  # numbers as numbers, before any text
        return [(0, int(c), "") if c.lstrip("-").isdigit() else (1, 0, c) for c in r]

    rows.sort(key=key)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    target = out / "link_trace.csv"
    atomic_write_text(target, "\n".join(header) + "\n" + buf.getvalue())
    return target


@contextmanager
def _terminating_signals() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise KeyboardInterrupt, so the clean-up in ``finally`` runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _logged(folder: Path) -> bool:
    """Whether a site logged its first metrics row (it logs iteration 0 when its training loop starts)."""
    try:
        with (folder / "metrics.csv").open("rb") as fh:
            return fh.read(1 << 16).count(b"\n") >= 2
    except OSError:
        return False


def _log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _stop(procs: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """Terminate the processes this rehearsal started (by their ids), kill those still alive after ``grace``."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- the run
def rehearse(opts: RehearsalOptions, say: Callable[[str], None] = print) -> RehearsalResult:
    """Run a rehearsal (see the module docstring); raises ProxGTValueError (one line) on bad input, and
    :class:`RehearsalTimeout` when it had to stop the sites at ``opts.timeout``."""
    if not (isinstance(opts.timeout, int | float) and math.isfinite(opts.timeout) and opts.timeout > 0):
        raise ProxGTValueError(f"--timeout must be a positive number of seconds, got {opts.timeout!r}")
    # the executors package imports torch: not at module level, which the helper processes import
    from proxgt.executors.site.pilot import load_pilot, pilot_run_config

    pilot = load_pilot(opts.pilot)
    names = [s.name for s in pilot.sites]
    rates: list[LinkRate] = [parse_rate(r, names, pilot.links) for r in opts.rates]
    cuts: list[LinkCut] = [parse_cut(c, names, pilot.links) for c in opts.cuts]
    captures = {parse_cut(f"{c}@0:1", names, pilot.links).edge for c in opts.capture}
    restarts: list[SiteRestart] = [parse_restart(r, names) for r in opts.restarts]
    if len({r.site for r in restarts}) < len(restarts):
        raise ProxGTValueError("--restart: one restart per site")
    reason = namespaces_unavailable() if not opts.loopback else "--loopback"
    mode = "loopback" if reason is not None else "namespaces"
    out = _prepare_out(opts, pilot).resolve()
    data = opts.data
    if Path(data).expanduser().is_file():  # a file, not a built-in name: the replay reads it from anywhere
        data = str(Path(data).expanduser().resolve())
    split = {"split": opts.split} if opts.split is not None else {}
    # the simulator's run of this pilot: it splits the data (so the shards are its nodes' rows) and replays the
    # rehearsal's link trace afterwards (OUT/replay.toml)
    sim = RunConfig.from_dict(pilot_run_config(pilot, data=data, edge_file=out / "edges.txt") | split)
    index = {n: k for k, n in enumerate(names)}
    edges = [(index[a], index[b]) for a, b in pilot.links]

    from ._shards import write_shards  # torch and the data package: not for the helper processes

    shards = write_shards(sim, [s.node_ids for s in pilot.sites], names, out / "shards")
    publics, secrets = site_keys(names, [s.public_key for s in pilot.sites], out / "keys",
                                 Path(opts.keys) if opts.keys is not None else None)
    net: NamespaceNet | LoopbackNet
    if mode == "namespaces":
        net = NamespaceNet(len(names), edges, intruder=opts.intruder)
        # named before they exist: should a clean-up ever fail, this says what to remove (ip netns del NAME)
        atomic_write_text(out / "namespaces.txt", "\n".join(net.planned) + "\n")
        addresses = [f"tcp://{net.address(k)}:{_port_of(s.address)}" for k, s in enumerate(pilot.sites)]
    else:
        ports = free_ports(len(names))
        net = LoopbackNet(ports, edges, capture={e: out / "capture" / "-".join(pilot.links[e]) for e in captures})
        addresses = [f"tcp://127.0.0.1:{p}" for p in ports]
    atomic_write_text(out / "pilot.toml", _effective_pilot(pilot, addresses, publics))
    say(f"rehearsal of {pilot.name}: {len(names)} sites, {pilot.n_nodes} nodes, "
        f"{'network namespaces' if mode == 'namespaces' else f'loopback ({reason})'}; output in {out}")

    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    outcomes = [SiteOutcome(n, None, out / "sites" / n, logs / f"{n}.log") for n in names]
    procs: list[subprocess.Popen[bytes]] = []
    recorders: list[subprocess.Popen[bytes]] = []
    intruder_proc: subprocess.Popen[bytes] | None = None
    events: list[str] = []
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    site_program = [sys.executable, "-m", "proxgt.cli", "site"]
    commands: list[list[str]] = []
    start = time.monotonic()
    timed_out = False
    cut_left: list[str] = []
    down: set[int] = set()  # sites killed by --restart and not started again yet
    with _terminating_signals():
        try:
            net.setup()
            for r in rates:
                net.shape(r.edge, r.bits_per_s)
            if isinstance(net, NamespaceNet):
                recorders = start_recorders(net, {e: out / "capture" / "-".join(pilot.links[e]) /
                                                  f"{pilot.links[e][0]}{FRAMES_SUFFIX}" for e in captures}, env)
            if opts.intruder:  # ready before the sites: it tries them from the moment they listen
                intruder_proc = _start_intruder(net, out, addresses, names, env)
            start = time.monotonic()
            for k, name in enumerate(names):
                cmd = [*(opts.site_command or site_program), str(out / "pilot.toml"), "--site", name,
                       "--key", str(secrets[k]), "--data", str(shards[k]), "--out", str(outcomes[k].folder),
                       *opts.site_args]
                if isinstance(net, LoopbackNet):
                    for i, j in edges:
                        if k in (i, j):
                            other = j if k == i else i
                            cmd += ["--peer-address", f"{names[other]}=tcp://127.0.0.1:{net.peer_port(k, other)}"]
                    prefix: list[str] = []
                else:
                    prefix = net.prefix(k)
                commands.append([*prefix, *cmd])
                with outcomes[k].log.open("wb") as log:
                    procs.append(subprocess.Popen(commands[k], stdout=log, stderr=subprocess.STDOUT, env=env))
            schedule = sorted([(c.start, c.edge, False) for c in cuts] + [(c.end, c.edge, True) for c in cuts])
            training: float | None = None  # when the last site logged its first metrics row: the cuts' clock
            while any(p.poll() is None for p in procs):
                now = time.monotonic() - start
                if training is None and all(_logged(o.folder) for o in outcomes):
                    training = now
                    events.append(f"{now:.1f}s every site is training")
                while training is not None and schedule and schedule[0][0] <= now - training:
                    _, e, up = schedule.pop(0)
                    net.set_link(e, up)
                    events.append(f"{now:.1f}s link {'-'.join(pilot.links[e])} {'up' if up else 'down'}")
                for due in [x for x in restarts if training is not None and x.at <= now - training]:
                    procs[due.site].kill()  # as a machine that is cut off or crashes: no goodbye
                    procs[due.site].wait()
                    restarts.remove(due)
                    down.add(due.site)
                    events.append(f"{now:.1f}s site {names[due.site]} killed")
                for k in sorted(down):
                    if all(f"site {names[k]} was lost" in _log_text(o.log) for o in outcomes if o.name != names[k]):
                        with outcomes[k].log.open("ab") as log:  # its log goes on
                            procs[k] = subprocess.Popen([*commands[k], "--rejoin"], stdout=log,
                                                        stderr=subprocess.STDOUT, env=env)
                        down.discard(k)
                        events.append(f"{now:.1f}s site {names[k]} started again with --rejoin (the others had "
                                      "lost it)")
                if now > opts.timeout:
                    timed_out = True
                    break
                failed = [k for k, p in enumerate(procs) if p.poll() not in (None, 0) and k not in down]
                if failed:  # a site that stopped with an error: the others would only wait for it
                    break
                time.sleep(0.05)
            cut_left = [f"{'-'.join(pilot.links[e])} {'up' if up else 'down'} at {at:g}s" for at, e, up in schedule]
            cut_left += [f"site {names[x.site]} killed at {x.at:g}s" for x in restarts]
            cut_left += [f"site {names[k]} started again" for k in sorted(down)]
        finally:
            _stop(procs + ([intruder_proc] if intruder_proc is not None else []) + recorders)
            left = net.teardown()
            if left:
                say(f"warning: could not remove the network namespaces {', '.join(left)} (ip netns del them)")
    wall = time.monotonic() - start
    for o, p in zip(outcomes, procs, strict=False):
        o.returncode = p.returncode
        try:
            o.summary = json.loads((o.folder / "summary.json").read_text())
        except (OSError, ValueError):
            o.summary = None
    intruder = None
    if opts.intruder:
        try:
            intruder = json.loads((out / "intruder.json").read_text())
        except (OSError, ValueError):
            intruder = {"attempts": 0, "accepted": 0, "per_site": {}}
    trace = _merge_traces([o.folder for o in outcomes], out)
    replay_file = None
    if trace is not None:
        replay = pilot_run_config(pilot, data=data, edge_file=out / "edges.txt", link_trace=trace,
                                  out=str(out / "replay")) | split
        replay_file = out / "replay.toml"
        atomic_write_text(replay_file, "# the simulator's run of this rehearsal, on its recorded link trace: "
                          f"proxgt run -c {out / 'replay.toml'}\n" + _toml(RunConfig.from_dict(replay).to_toml_dict()))
    if cut_left:  # the sites finished before these link events were due
        events.append(f"not done (the sites had finished): {', '.join(cut_left)}")
    result = RehearsalResult(out, mode, reason or "", outcomes, wall, intruder, trace, events, replay_file)
    atomic_write_text(out / MARKER, json.dumps(json_safe({
        "pilot": str(opts.pilot), "data": opts.data, "split": sim.split, "mode": mode, "wall_s": wall,
        "timed_out": timed_out, "rates": [f"{'-'.join(pilot.links[r.edge])}={r.text}" for r in rates],
        "cuts": [f"{'-'.join(pilot.links[c.edge])}@{c.start:g}:{c.end:g}" for c in cuts], "events": events,
        "restarts": list(opts.restarts),
        "sites": {o.name: {"returncode": o.returncode, "folder": str(o.folder)} for o in outcomes},
        "intruder": intruder}), indent=1) + "\n")
    if timed_out:
        raise RehearsalTimeout(f"the rehearsal ran past --timeout {opts.timeout:g} s: its sites were stopped "
                               f"(their logs: {logs})")
    return result


def start_recorders(net: NamespaceNet, files: dict[int, Path], env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """A packet recorder on the first end of each link ``e`` in ``files``, writing ``files[e]``; returns once all
    of them listen."""
    procs = []
    for e, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*net.prefix(net.edges[e][0]), sys.executable, "-m", "proxgt.rehearsal._capture",
               net.link_devices(e)[0], str(path)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
    deadline = time.monotonic() + 60
    while not all(f.exists() for f in files.values()):  # a recorder opens its file once bound: no packet escapes
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            _stop(procs)
            raise ProxGTValueError("rehearsal network: a packet recorder did not start")
        time.sleep(0.05)
    return procs


def _start_intruder(net: NamespaceNet | LoopbackNet, out: Path, addresses: Sequence[str],
                    names: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    from proxgt.executors.site.transport import new_site_keys

    _, secret, _ = new_site_keys("intruder", private_folder(out / "keys" / "intruder"))
    cmd = [sys.executable, "-m", "proxgt.rehearsal._intruder", "--key", str(secret), "--out",
           str(out / "intruder.json")]
    for name, address in zip(names, addresses, strict=True):
        cmd += ["--target", f"{name}={address}"]
    prefix = net.prefix(None) if isinstance(net, NamespaceNet) else []
    with (out / "logs" / "intruder.log").open("wb") as log:
        proc = subprocess.Popen([*prefix, *cmd], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while not (out / "intruder.json").exists():  # it writes its (empty) record once it runs
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop([proc])
            raise ProxGTValueError(f"the intruder did not start (its log: {out / 'logs' / 'intruder.log'})")
        time.sleep(0.05)
    return proc


# ---------------------------------------------------------------------------------------------- the table
#: keys of a site's ``summary.json["site"]`` -> table columns (network counters), then the final metrics
_COUNTERS = (("iterations", "iterations"), ("bytes sent", "bytes_sent"), ("waiting s", "seconds_waiting"),
             ("late", "messages_late"), ("lost", "messages_lost"), ("refused", "refused_connections"),
             ("neighbour gap", "neighbour_gap"))
_FINALS = ("objective", "train_accuracy", "test_accuracy", "grad_mapping_sq")  # consensus: see disagreement()


def rehearsal_table(result: RehearsalResult) -> str:
    """One row per site: exit code, the network counters and the final metrics of its summary.json."""
    rows = []
    finals = [f for f in _FINALS if any(f in ((o.summary or {}).get("final") or {}) for o in result.sites)]
    for o in result.sites:
        s = o.summary or {}
        net = s.get("site") or {}
        row: dict[str, Any] = {"site": o.name, "exit": o.returncode if o.returncode is not None else "-"}
        for col, key in _COUNTERS:
            v = net.get(key, "-")
            row[col] = (f"{v:.2e}" if key == "neighbour_gap" else f"{v:.1f}") if isinstance(v, float) else v
        for f in finals:
            v = (s.get("final") or {}).get(f, math.nan)
            row[f"final_{f}"] = float(v) if isinstance(v, int | float) else math.nan
        rows.append(row)
    cols = ["site", "exit", *(c for c, _ in _COUNTERS), *(f"final_{f}" for f in finals)]
    return table_markdown(rows, cols)
