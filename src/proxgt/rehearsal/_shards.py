"""What a rehearsal hands each site: its rows of the data set and a key pair."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import zmq.auth

from proxgt._io import atomic_write_with
from proxgt.data._dataset import NodeData, is_sparse
from proxgt.data._run_split import load_run_split
from proxgt.errors import ProxGTValueError
from proxgt.settings import RunConfig

__all__ = ["write_shards", "site_keys", "private_folder"]


def private_folder(path: Path) -> Path:
    """``path`` created (or tightened) with mode 0700: key files and anything secret go there."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _site_arrays(nd: NodeData, node_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """The rows of ``node_ids`` node after node (as an ``.npz`` that :func:`proxgt.data.load_npz` reads) with
    ``node_counts`` (samples per node, in order); labels are the split's class codes."""
    part = nd.shard(node_ids)
    pooled = part.pooled()
    arrays: dict[str, np.ndarray] = {"y": pooled.y.numpy(), "node_counts": part.counts.numpy().astype(np.int64)}
    if is_sparse(pooled.X):  # CSR keys beside y, as load_npz reads them
        X = pooled.X
        arrays |= {"data": X.values().numpy(), "indices": X.col_indices().numpy(),
                   "indptr": X.crow_indices().numpy(), "shape": np.array(X.shape, dtype=np.int64)}
    else:
        arrays["X"] = pooled.X.to(torch.float32).numpy()
    return arrays


def write_shards(cfg: RunConfig, node_ids: Sequence[Sequence[int]], names: Sequence[str], folder: Path) -> list[Path]:
    """Split the data of ``cfg`` over ``cfg.nodes`` nodes as ``proxgt run`` does and write site ``k``'s nodes
    ``node_ids[k]`` to ``folder/<names[k]>.npz``; returns the paths."""
    _, _, nd = load_run_split(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ids in zip(names, node_ids, strict=True):
        arrays = _site_arrays(nd, ids)
        path = folder / f"{name}.npz"
        atomic_write_with(path, lambda fh, a=arrays: np.savez(fh, **a))
        paths.append(path)
    return paths


def site_keys(names: Sequence[str], public_keys: Sequence[str | None], key_dir: Path,
              given: Path | None) -> tuple[list[str], list[Path]]:
    """Each site's public key and secret key file.

    A site without a public key in the pilot gets a throwaway pair in ``key_dir`` (mode 0700); a site with one
    needs its secret file ``given/<name>.key_secret`` (``--keys``), checked against the pilot's public key.
    """
    private_folder(key_dir)
    publics, secrets = [], []
    for name, public in zip(names, public_keys, strict=True):
        if public is None:
            pub_file, secret_file = zmq.auth.create_certificates(str(key_dir), name)
            os.chmod(secret_file, 0o600)
            pub, _ = zmq.auth.load_certificate(pub_file)
            publics.append(pub.decode())
            secrets.append(Path(secret_file))
            continue
        if given is None:
            raise ProxGTValueError(
                f"site {name} has a public_key in the pilot: give its secret key with --keys DIR "
                f"(DIR/{name}.key_secret), or leave public_key out for a throwaway key")
        secret_file = given / f"{name}.key_secret"
        try:
            pub, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as exc:
            raise ProxGTValueError(f"site {name}: cannot read the secret key {secret_file}: {exc}") from None
        if secret is None or pub.decode() != public:
            raise ProxGTValueError(f"site {name}: {secret_file} does not hold the secret of the pilot's public_key")
        publics.append(public)
        secrets.append(secret_file)
    return publics, secrets
