"""Declared capabilities: the run builder reads them (never probes), so a user's own method that declares them
combines with compressed gossip and differential privacy, epochs count its declared batch, and a package's
entry point registers it for the command line."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch

from proxgt.algorithms.base import Algorithm, Capabilities
from proxgt.errors import ProxGTValueError, RegistrationError
from proxgt.problems.oracle import FULL, MINIBATCH, PAIR
from proxgt.registry import ALGORITHMS, Registry
from proxgt.training import build_run

BASE = {"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 10, "seed": 3}
NO_ITERS = {k: v for k, v in BASE.items() if k != "iters"}


class _State(NamedTuple):
    x: torch.Tensor
    t: int


@dataclass(frozen=True)
class _PlainProxGD:
    """x <- M prox(x - a g): one fresh minibatch gradient, one keyed mixing (the README's example method)."""

    reg: object
    step: float
    batch: int = 16
    keys: tuple[str, ...] = ("x",)
    name: str = "test-plain-prox-gd"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(oracle_calls=frozenset({MINIBATCH}), batch_per_iter=self.batch, gossip_keys=self.keys)

    def init(self, x0, oracle, mix):
        return _State(x0.clone(), 0)

    def update(self, state, oracle, mix):
        g = oracle.grad(state.x, oracle.sample(self.batch))
        return _State(mix(self.reg.prox(state.x - self.step * g, self.step), key="x"), state.t + 1)


@pytest.fixture
def user_method():
    ALGORITHMS.register("test-plain-prox-gd", lambda ctx: _PlainProxGD(ctx.regularizer, ctx.step), replace=True)
    ALGORITHMS.register("test-unkeyed", lambda ctx: _PlainProxGD(ctx.regularizer, ctx.step, keys=()), replace=True)
    yield
    for name in ("test-plain-prox-gd", "test-unkeyed"):
        ALGORITHMS._entries.pop(name, None)
        ALGORITHMS._loaded.pop(name, None)


def test_capabilities_validate_their_declaration():
    with pytest.raises(ValueError, match="oracle_calls"):
        Capabilities(oracle_calls=frozenset({"psychic"}), batch_per_iter=1)
    with pytest.raises(ValueError, match="gossip_keys"):
        Capabilities(oracle_calls=frozenset({MINIBATCH}), batch_per_iter=1, compressed_gossip=True)
    caps = Capabilities(oracle_calls=frozenset({MINIBATCH, PAIR}), batch_per_iter=4)
    assert not caps.private and "two points" in caps.not_private_reason()
    assert not caps.compressible
    assert Capabilities(oracle_calls=frozenset({MINIBATCH}), batch_per_iter=4).private


@pytest.mark.parametrize("name, calls, private, compressible", [
    ("proxgt-sa", {MINIBATCH}, True, True),
    ("proxgt-sr-o", {MINIBATCH, PAIR}, False, True),
    ("proxgt-sr-e", {FULL, PAIR}, False, True),
    ("dproxsgt", {MINIBATCH}, True, True),
    ("prox-dsgd", {MINIBATCH}, True, False),
    ("deepstorm", {FULL, PAIR}, False, False),
    ("deepstorm-v1", {FULL, PAIR, MINIBATCH}, False, False),
    ("sppdm", {FULL, MINIBATCH}, False, False),
])
def test_shipped_algorithms_declare_what_they_do(name, calls, private, compressible):
    alg = build_run({**BASE, "algorithm": name}).algorithm
    assert isinstance(alg, Algorithm)
    caps = alg.capabilities
    assert caps.oracle_calls == frozenset(calls)
    assert caps.private is private and caps.compressible is compressible


def test_a_users_method_that_declares_capabilities_runs_compressed_and_private(user_method):
    import proxgt

    plain = proxgt.run({**BASE, "algorithm": "test-plain-prox-gd"})
    compressed = proxgt.run({**BASE, "algorithm": "test-plain-prox-gd", "compress": "topk:0.5"})
    private = proxgt.run({**BASE, "algorithm": "test-plain-prox-gd", "dp_clip": 1.0, "dp_noise": 0.5})
    assert compressed.rows[-1]["bytes_per_node"] < plain.rows[-1]["bytes_per_node"]
    assert "epsilon" in private.rows[-1] and math.isfinite(private.rows[-1]["epsilon"])
    # its declared batch is what epochs count: 1 epoch = ceil(m / 16) iterations
    spec = build_run({**NO_ITERS, "algorithm": "test-plain-prox-gd", "epochs": 1})
    m = round(sum(spec.meta["local_sizes"]) / 4)
    assert spec.iters == math.ceil(m / 16)


def test_a_method_that_names_no_gossip_keys_is_refused_for_compression_naming_the_declaration(user_method):
    with pytest.raises(ProxGTValueError, match="gossip_keys"):
        build_run({**BASE, "algorithm": "test-unkeyed", "compress": "topk:0.5"})


def test_epochs_count_the_declared_batch_of_methods_without_an_estimator():
    """DEEPSTORM holds no estimator object; its epochs follow its declared fresh samples per iteration."""
    spec = build_run({**NO_ITERS, "algorithm": "deepstorm", "epochs": 1, "batch": 8})
    m = round(sum(spec.meta["local_sizes"]) / 4)
    assert spec.algorithm.capabilities.batch_per_iter == 8
    assert spec.iters == math.ceil(m / 8)


def test_a_builder_returning_no_algorithm_is_a_one_line_error():
    ALGORITHMS.register("test-not-an-algorithm", lambda ctx: object(), replace=True)
    try:
        with pytest.raises(ProxGTValueError, match="capabilities"):
            build_run({**BASE, "algorithm": "test-not-an-algorithm"})
    finally:
        ALGORITHMS._entries.pop("test-not-an-algorithm", None)
        ALGORITHMS._loaded.pop("test-not-an-algorithm", None)


def _plugin(tmp_path, group: str, value: str) -> None:
    """A distribution on ``tmp_path`` whose entry point ``my-method`` in ``group`` points at ``value``."""
    dist = tmp_path / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nmy-method = {value}\n")
    (tmp_path / "myplug.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from typing import NamedTuple

        from proxgt.algorithms.base import Capabilities
        from proxgt.problems.oracle import MINIBATCH


        class State(NamedTuple):
            x: object
            t: int


        @dataclass(frozen=True)
        class Method:
            reg: object
            step: float
            name: str = "my-method"

            @property
            def capabilities(self):
                return Capabilities(oracle_calls=frozenset({MINIBATCH}), batch_per_iter=8)

            def init(self, x0, oracle, mix):
                return State(x0.clone(), 0)

            def update(self, state, oracle, mix):
                g = oracle.grad(state.x, oracle.sample(8))
                return State(mix(self.reg.prox(state.x - self.step * g, self.step)), state.t + 1)


        def build(ctx):
            return Method(ctx.regularizer, ctx.step)
    '''))


def test_entry_points_register_names_lazily_and_a_broken_one_is_a_one_line_error(tmp_path, monkeypatch):
    _plugin(tmp_path, "proxgt.test_algorithms", "myplug:build")
    (tmp_path / "broken-0.1.dist-info").mkdir()
    (tmp_path / "broken-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (tmp_path / "broken-0.1.dist-info" / "entry_points.txt").write_text(
        "[proxgt.test_algorithms]\nbroken-method = no_such_module_here:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("algorithm", group="proxgt.test_algorithms")
    reg.register("builtin", "builtins:str")
    assert set(reg.names()) == {"builtin", "my-method", "broken-method"}
    assert callable(reg.get("my-method"))
    with pytest.raises(RegistrationError) as err:
        reg.get("broken-method")
    msg = str(err.value)
    assert "\n" not in msg and "broken-method" in msg and "no_such_module_here" in msg


@pytest.mark.parametrize("command", [["run"], ["launch", "--nprocs", "2", "--timeout", "60"]])
def test_an_entry_point_method_runs_from_the_command_line_and_in_launch_workers(tmp_path, command):
    _plugin(tmp_path, "proxgt.algorithms", "myplug:build")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "proxgt.cli", *command, "--algorithm", "my-method", "--data",
                           "breast_cancer", "--nodes", "4", "--iters", "10", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file()
