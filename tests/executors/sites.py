"""Helpers of the site runtime's tests: keys, a pilot file on free loopback ports, each site's shard cut exactly as
the simulator splits the whole data, and sites run as threads of the test process (one torch thread each)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from proxgt.executors._sockets import free_ports
from proxgt.executors.site.executor import run_site
from proxgt.executors.site.pilot import load_pilot, pilot_run_config
from proxgt.executors.site.transport import new_site_keys, read_public_key
from proxgt.settings import RunConfig
from proxgt.training import build_run

RUN = """
[data]
test_fraction = 0.0
[mixing]
rounds = 2
[algorithm]
algorithm = "proxgt-sa"
batch = 4
[problem]
problem = "logistic"
reg = "l1"
reg_strength = 1e-3
[run]
iters = {iters}
log_every = 5
seed = 3
{extra}
"""


def keys(folder: Path, names: list[str]) -> dict[str, str]:
    """Public key line of each site (made once per folder)."""
    out = {}
    for name in names:
        public = folder / f"{name}.key"
        if not public.exists():
            new_site_keys(name, folder)
        out[name] = read_public_key(public)
    return out


def _placeholders() -> dict[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="proxgt-keys-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return keys(folder, ["a", "b", "c"])


#: valid public keys for pilot files that are parsed but never run (nobody holds their secrets after the tests)
PLACEHOLDER_KEYS = _placeholders()


def pilot_text(sites: dict[str, int], edges: list[list[str]], public: dict[str, str], *, deadline: float = 5.0,
               timeout: float = 30.0, iters: int = 12, extra: str = "", ports: list[int] | None = None) -> str:
    ports = ports or free_ports(len(sites))
    text = f'[pilot]\nname = "t"\nround_deadline_s = {deadline}\nsite_timeout_s = {timeout}\n\n'
    for (name, nodes), port in zip(sites.items(), ports, strict=True):
        text += (f'[[site]]\nname = "{name}"\naddress = "tcp://127.0.0.1:{port}"\npublic_key = "{public[name]}"\n'
                 f"nodes = {nodes}\n\n")
    text += "[links]\nedges = [" + ", ".join(f'["{a}", "{b}"]' for a, b in edges) + "]\n"
    return text + RUN.format(iters=iters, extra=extra)


def data_file(folder: Path, n: int = 120, d: int = 6) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0, 1, -1)
    path = folder / "full.npz"
    np.savez(path, X=X, y=y)
    return path


def shards(pilot_path: Path, full: Path, folder: Path) -> dict[str, Path]:
    """Each site's rows of the simulator's split of ``full`` (with node_counts), as a rehearsal writes them."""
    pilot = load_pilot(pilot_path)
    cfg = pilot_run_config(pilot, data=str(full), edge_file=folder / "edges.txt")
    nd = build_run(RunConfig.from_dict(cfg)).node_data
    out = {}
    for s in pilot.sites:
        X = np.concatenate([nd.X[i, : int(nd.counts[i])].numpy() for i in s.node_ids])
        y = np.concatenate([nd.y[i, : int(nd.counts[i])].numpy() for i in s.node_ids])
        out[s.name] = folder / f"{s.name}.npz"
        np.savez(out[s.name], X=X, y=y, node_counts=np.array([int(nd.counts[i]) for i in s.node_ids]))
    return out


def run_sites(pilots: dict[str, Path], key_dir: Path, data: dict[str, Path], out: Path,
              **kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run every site of ``pilots`` (site -> its pilot file) in a thread; site -> History or the exception.
    ``kwargs[name]``: extra keyword arguments of that site's run_site."""
    results: dict[str, Any] = {}

    def go(name: str) -> None:
        try:
            results[name] = run_site(pilots[name], name, key_dir / f"{name}.key_secret", str(data[name]),
                                     out=str(out / name), **kwargs.get(name, {}))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results[name] = exc

    threads = [threading.Thread(target=go, args=(name,)) for name in pilots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results
