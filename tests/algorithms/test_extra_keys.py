"""Every registered algorithm refuses a key of its [extra] table that it does not know (one line), instead of
running with the key silently ignored."""

from __future__ import annotations

import pytest

from proxgt.errors import ProxGTValueError
from proxgt.registry import ALGORITHMS, POOLED, extra_tables
from proxgt.training import build_run


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_an_unknown_extra_key_is_refused(name):
    table = sorted(extra_tables(name))[0]
    nodes = 1 if POOLED in ALGORITHMS.traits(name) else 4
    cfg = {"data": "breast_cancer", "nodes": nodes, "iters": 2, "algorithm": name, "extra": {table: {"zzz": 1}}}
    with pytest.raises(ProxGTValueError, match=rf"unknown setting extra\.{table}\.zzz"):
        build_run(cfg)
