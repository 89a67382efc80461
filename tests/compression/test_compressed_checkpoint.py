"""A compressed run resumed from a checkpoint ends exactly like the uninterrupted run: the public copies and the
random operators' generators travel in the checkpoint."""

from __future__ import annotations

import pytest
import torch

from proxgt.compression.operators import make_compressor
from proxgt.errors import ProxGTValueError
from proxgt.mixing import Mixer, SimulatedCommunicator
from proxgt.mixing.compressed import CompressedMixer
from proxgt.topology import make_topology

from ..executors.resuming import stopped_and_resumed


@pytest.mark.parametrize("algorithm,compress,network", [
    ("proxgt-sr-e", "randk:0.3", {}), ("cdproxsgt", "topk:0.2", {}), ("proxgt-sa", "qsgd:4", {}),
    # per-link public copies on a changing graph travel in the checkpoint as well
    ("proxgt-sr-e", "randk:0.3", {"link_failure": 0.3, "node_dropout": 0.2}),
    ("proxgt-sa", "topk:0.2", {"topology": "random-matching"}),
])
def test_compressed_run_resumes_exactly(algorithm, compress, network, tmp_path, monkeypatch):
    cfg = {"data": "breast_cancer", "nodes": 4, "iters": 30, "log_every": 5, "batch": 8, "algorithm": algorithm,
           "compress": compress, "mixing": "plain", "rounds": 1, "test_fraction": 0.0, "dtype": "float64",
           **network}
    ref, hist = stopped_and_resumed(cfg, tmp_path / "r", monkeypatch)
    for ra, rb in zip(ref.rows, hist.rows, strict=True):
        assert {c: v for c, v in ra.items() if c != "wall_s"} == {c: v for c, v in rb.items() if c != "wall_s"}
    assert torch.equal(hist.x, ref.x)



def _ring(n: int) -> SimulatedCommunicator:
    topo = make_topology("ring", n)
    return SimulatedCommunicator(topo.W, topo.degrees)


def _mixer() -> CompressedMixer:
    return CompressedMixer(_ring(5), make_compressor("randk:0.3"), 0.6, seed=7)


def test_the_compressed_mixer_owns_its_state_and_hands_it_over_plainly(tmp_path):
    mix = _mixer()
    g = torch.Generator().manual_seed(0)
    Z = [torch.randn(5, 12, generator=g, dtype=torch.float64) for _ in range(4)]
    for key, z in zip(("x", "y"), Z[:2], strict=True):
        mix(z, key=key)
    assert "_gossip" not in vars(mix.comm)  # nothing stashed on the communicator
    torch.save(mix.state_dict(), tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(state) == {"public", "generators"} and set(state["public"]) == {"x", "y"}
    other, fresh = _mixer(), _mixer()
    other.load_state_dict(state)
    for key, z in zip(("x", "y"), Z[2:], strict=True):  # both go on alike: public copies and generators travelled
        out = mix(z, key=key)
        assert torch.equal(out, other(z, key=key))
        assert not torch.equal(out, fresh(z, key=key))  # without them, another result


def test_plain_mixing_keeps_no_state():
    mix = Mixer(_ring(4), "chebyshev", 3, lam=0.5)
    assert mix.state_dict() == {}
    mix.load_state_dict({})
    with pytest.raises(ProxGTValueError, match="keeps no state"):
        mix.load_state_dict({"public": {}})
