"""The training loop's per-iteration finiteness check (one read of the iterates)."""

from __future__ import annotations

import pytest
import torch

from proxgt.training.loop import _all_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_nan_or_infinite_entry_is_caught_and_an_overflowing_sum_is_not_a_false_alarm(dtype):
    X = torch.randn(4, 1000, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert _all_finite(X)
    for bad in (float("nan"), float("inf"), -float("inf")):
        Y = X.clone()
        Y[3, 999] = bad
        assert not _all_finite(Y)
    both = X.clone()
    both[0, 0], both[1, 1] = float("inf"), -float("inf")  # their sum is NaN: still not finite
    assert not _all_finite(both)
    huge = torch.full((4, 1000), torch.finfo(dtype).max / 2, dtype=dtype)
    assert not torch.isfinite(huge.sum())  # the sum overflows, every entry is finite
    assert _all_finite(huge)
