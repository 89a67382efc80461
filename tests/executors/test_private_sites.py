"""Differential privacy across sites: every site draws its noise from a secret seed of its own, so two pilots with
the same settings and seed draw different noise, and no site can regenerate another's."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from sites import data_file, keys, pilot_text, run_sites, shards  # noqa: E402

# step given: under DP a site refuses step = auto (it would need the smoothness bound of every site's raw rows)
PRIVATE = "step = 0.1\n[privacy]\ndp_clip = 1.0\ndp_noise = 1.0\n"


def _pilot(tmp_path: Path, name: str) -> tuple[Path, dict[str, Path]]:
    """A two-site pilot on fresh loopback ports; the same settings and seed every time."""
    public = keys(tmp_path / "keys", ["a", "b"])
    pilot = tmp_path / f"{name}.toml"
    text = pilot_text({"a": 1, "b": 1}, [["a", "b"]], public, iters=6, extra=PRIVATE)
    # an explicit step: the auto step would need every site's raw rows (refused under DP across sites)
    pilot.write_text(text.replace("[algorithm]\n", "[algorithm]\nstep = 0.5\n", 1))
    return pilot, shards(pilot, data_file(tmp_path), tmp_path)


def test_two_private_pilots_with_one_seed_draw_different_noise(tmp_path):
    finals = []
    for run in ("first", "second"):
        pilot, data = _pilot(tmp_path, run)
        res = run_sites({"a": pilot, "b": pilot}, tmp_path / "keys", data, tmp_path / run)
        assert all(not isinstance(r, BaseException) for r in res.values()), res
        finals.append(np.concatenate([np.load(tmp_path / run / s / "final.npz")["x"] for s in ("a", "b")]))
    assert finals[0].shape == finals[1].shape and not np.array_equal(finals[0], finals[1])
    for site in ("a", "b"):
        config = tomllib.loads((tmp_path / "first" / site / "config.toml").read_text())
        assert config["privacy"]["dp_secure_noise"] is True
