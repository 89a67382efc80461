"""Before training, the processes of a torch.distributed run agree on what they run: the resolved settings, the
number of processes per machine and the proxgt and torch versions. Two machines started with different
``--step`` (or versions) would otherwise both finish with results that match neither; a mismatch is refused
with one line naming the settings that differ (:class:`~proxgt.errors.ProxGTValueError`: exit code 2)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from proxgt.errors import ProxGTValueError
from proxgt.executors.failures import DistributedFailure

__all__ = ["agree_on_settings", "agreed_settings", "settings_fingerprint"]

#: settings that may differ between machines: each machine's own paths and device index
LOCAL = ("out", "device")


def agreed_settings(cfg_dict: dict[str, Any], nprocs: int, nnodes: int) -> dict[str, Any]:
    """What every process of a run must hold equal (JSON-safe): ``cfg_dict`` without :data:`LOCAL`, this
    machine's number of processes, the number of machines, and the proxgt and torch versions."""
    import torch

    import proxgt
    from proxgt._io import json_safe

    settings = {k: v for k, v in cfg_dict.items() if k not in LOCAL}
    settings.update(nprocs=nprocs, nnodes=nnodes, proxgt_version=proxgt.__version__, torch_version=torch.__version__)
    return json_safe(settings)


def settings_fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def agree_on_settings(store: Any, rank: int, world: int, cfg_dict: dict[str, Any], prefix: str,
                      timeout_s: float) -> str:
    """Publish this process's settings in ``store`` and compare them with every other process's (machine by
    machine, each machine's first process first: a machine that counts its processes differently is named
    before anything waits for processes that do not exist); returns the agreed hash.

    Keys are named by machine and local rank (``GROUP_RANK``, ``LOCAL_RANK``), not by global rank, which machines
    with a different ``--nprocs`` would compute differently. Raises ProxGTValueError naming the differing
    settings, DistributedFailure naming a process that did not publish within ``timeout_s`` (the store's timeout:
    e.g. a machine that never came)."""
    nprocs = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)
    node = int(os.environ.get("GROUP_RANK", rank // max(1, nprocs)))
    local = int(os.environ.get("LOCAL_RANK", rank % max(1, nprocs)))
    nnodes = max(1, world // max(1, nprocs))
    mine = json.loads(json.dumps(agreed_settings(cfg_dict, nprocs, nnodes), default=str))  # as the others read it
    digest = settings_fingerprint(mine)
    store.set(f"{prefix}settings/{node}.{local}", json.dumps({"hash": digest, "settings": mine}, default=str))
    order = [(g, 0) for g in range(nnodes)] + [(g, r) for g in range(nnodes) for r in range(1, nprocs)]
    for g, r in order:
        if (g, r) == (node, local):
            continue
        try:
            theirs = json.loads(store.get(f"{prefix}settings/{g}.{r}"))
        except (RuntimeError, OSError):  # DistStoreError (a RuntimeError): timed out, or the store is gone
            raise DistributedFailure(
                f"node rank {g}, local rank {r} did not join within --timeout {timeout_s:g} s"
                + ("" if nnodes == 1 else " (is its machine's launcher started, with the same --nnodes and "
                                          "--master-addr/--master-port?)")
            ) from None
        if theirs["hash"] == digest:
            continue
        other = theirs["settings"]
        differ = sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k))
        who = f"node rank {g}" if g != node else f"local rank {r} of this machine"
        detail = ", ".join(f"{k} ({mine.get(k)!r} here, {other.get(k)!r} there)" for k in differ[:4])
        raise ProxGTValueError(
            f"the processes of this run were started with different settings: {who} differs in "
            f"{', '.join(differ)}: {detail}; start every machine with the same settings"
        )
    return digest
