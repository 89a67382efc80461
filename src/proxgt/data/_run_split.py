"""The data of a run, split over its nodes: the one place that turns the data settings into node shards."""

from __future__ import annotations

from typing import Any

from proxgt._validation import ProxGTValueError

from ._dataset import Dataset, NodeData
from ._load import load_dataset
from ._split import split_nodes, train_test_split

__all__ = ["load_run_split"]


def load_run_split(cfg: Any) -> tuple[Dataset, Dataset | None, NodeData]:
    """``(train, test, node_data)`` of the settings ``cfg`` (``data``, ``data_dir``, ``seed``, ``test_fraction``,
    ``nodes``, ``split``, ``alpha``): the data set loaded whole, a test part held out when the source has none,
    and the training rows split over ``cfg.nodes`` nodes. :func:`proxgt.training.build_run` and
    ``proxgt rehearse`` (which writes each site's rows) both call it, so a rehearsal's sites hold exactly the rows
    the simulator's nodes hold.
    """
    train, test = load_dataset(cfg.data, seed=cfg.seed, data_dir=cfg.data_dir)
    if test is None and cfg.test_fraction > 0 and len(train) >= 10:
        train, test = train_test_split(train, cfg.test_fraction, seed=cfg.seed)
    if cfg.nodes > len(train):
        raise ProxGTValueError(
            f"cannot split {len(train)} training samples over {cfg.nodes} nodes: each node needs at least one "
            "sample"
        )
    return train, test, split_nodes(train, cfg.nodes, cfg.split, alpha=cfg.alpha, seed=cfg.seed)
