"""Compression operators: round trips, payload sizes, unbiasedness, contraction, seeded randomness, bad specs."""

from __future__ import annotations

import math

import pytest
import torch

from proxgt.compression import canonical_spec, parse_compress
from proxgt.compression.operators import make_compressor, pack_bits, unpack_bits
from proxgt.errors import ProxGTValueError

SPECS = ["none", "fp16", "bf16", "topk:0.1", "topk:0.01", "randk:0.1", "qsgd:16", "qsgd:4", "qsgd:1", "sign"]


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_payload_is_uint8_of_the_declared_width_and_decodes_to_c_of_x(spec, dtype):
    c = make_compressor(spec)
    x = torch.randn(5, 123, dtype=dtype)
    payload = c.encode(x, _gens(5))
    assert payload.dtype == torch.uint8 and payload.shape == (5, c.payload_bytes(123, dtype))
    y = c.decode(payload, 123, dtype)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert torch.equal(c(x, _gens(5)), y)  # C = decode . encode, same draws for the same seeds


def test_payload_sizes_follow_the_formats():
    d = 123  # a9a: 123 features
    assert make_compressor("none").payload_bytes(d) == 4 * d
    assert make_compressor("none").payload_bytes(d, torch.float64) == 8 * d
    assert make_compressor("fp16").payload_bytes(d) == make_compressor("bf16").payload_bytes(d) == 2 * d
    assert make_compressor("topk:0.1").payload_bytes(d) == 12 * (4 + 2)  # 12 float32 values + 12 int16 indices
    assert make_compressor("randk:0.1").payload_bytes(d) == 12 * (4 + 2)
    assert make_compressor("topk:0.01").payload_bytes(d) == 1 * 6  # k = max(1, floor(1.23))
    big = 203530  # the MLP: indices need int32
    assert make_compressor("topk:0.01").payload_bytes(big) == 2035 * (4 + 4)
    assert make_compressor("qsgd:16").payload_bytes(d) == 4 + math.ceil(d * 6 / 8)  # 33 codes -> 6 bits
    assert make_compressor("qsgd:4").payload_bytes(d) == 4 + math.ceil(d * 4 / 8)  # 9 codes -> 4 bits
    assert make_compressor("qsgd:1").payload_bytes(d) == 4 + math.ceil(d * 2 / 8)  # 3 codes -> 2 bits
    assert make_compressor("sign").payload_bytes(d) == 4 + math.ceil(d / 8)


@pytest.mark.parametrize("spec", ["none", "topk:1", "randk:1"])
def test_lossless_operators_round_trip_exactly(spec):
    x = torch.randn(4, 77, dtype=torch.float64)
    assert torch.equal(make_compressor(spec)(x, _gens(4)), x)


def test_casts_round_trip_to_their_precision():
    x = torch.randn(3, 50)
    assert torch.equal(make_compressor("fp16")(x), x.half().float())
    assert torch.equal(make_compressor("bf16")(x), x.bfloat16().float())


def test_topk_keeps_the_largest_entries_and_nothing_else():
    x = torch.tensor([[0.1, -5.0, 0.3, 2.0, -0.2, 0.0, 1.0, 0.05, -3.0, 0.4]])
    y = make_compressor("topk:0.3")(x)  # k = 3
    assert torch.equal(y, torch.tensor([[0.0, -5.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, -3.0, 0.0]]))


def test_sign_is_the_scaled_sign():
    x = torch.tensor([[1.0, -3.0, 0.0, 2.0]])
    assert torch.equal(make_compressor("sign")(x), torch.tensor([[1.5, -1.5, 1.5, 1.5]]))


@pytest.mark.parametrize("spec", ["topk:0.1", "topk:0.01", "topk:0.5", "sign"])
def test_contractive_operators_satisfy_the_contraction_inequality(spec):
    c = make_compressor(spec)
    assert not c.unbiased
    torch.manual_seed(0)
    for d in (10, 123, 1000):
        x = torch.randn(20, d, dtype=torch.float64) * torch.rand(20, 1, dtype=torch.float64) * 10
        x[0] = 0.0  # the zero vector too
        x[1, : d // 2] = 0.0  # and a sparse one
        err = ((c(x) - x) ** 2).sum(dim=1)
        bound = (1 - c.constant(d)) * (x**2).sum(dim=1)
        assert (err <= bound + 1e-12).all(), spec
    # the constant is tight for top-k on a vector with equal magnitudes
    x = torch.ones(1, 100, dtype=torch.float64)
    if spec.startswith("topk"):
        assert ((c(x) - x) ** 2).sum() == pytest.approx((1 - c.constant(100)) * 100)


@pytest.mark.parametrize("spec", ["randk:0.1", "qsgd:4", "qsgd:1"])
def test_random_operators_are_unbiased_with_the_declared_variance(spec):
    c = make_compressor(spec)
    assert c.unbiased and c.random
    d, draws = 40, 4000
    x = torch.randn(1, d, dtype=torch.float64)
    samples = c(x.repeat(draws, 1), _gens(draws, seed=7))  # one draw per row, each row its own generator
    mean = samples.mean(dim=0)
    spread = samples.std(dim=0) / math.sqrt(draws)
    assert (mean - x[0]).abs().max() <= 5 * spread.max() + 1e-12  # E C(x) = x within 5 standard errors
    var = ((samples - x) ** 2).sum(dim=1).mean()
    assert var <= 1.1 * c.constant(d) * (x**2).sum()
    assert var > 0  # it is random


def test_random_operators_follow_the_row_generators():
    c = make_compressor("randk:0.2")
    x = torch.randn(3, 50)
    a = c.encode(x, _gens(3, seed=1))
    assert torch.equal(a, c.encode(x, _gens(3, seed=1)))  # same seeds, same payload
    assert not torch.equal(a, c.encode(x, _gens(3, seed=2)))
    # row i depends only on generator i: the same row with the same generator, wherever it sits
    g = _gens(3, seed=1)
    one = c.encode(x[2:3].clone(), [g[2]])
    assert torch.equal(one[0], a[2])
    # different nodes draw different index sets for the same vector
    same = x[:1].repeat(3, 1)
    idx = c.encode(same, _gens(3))[:, 10 * 4:]
    assert not torch.equal(idx[0], idx[1])
    with pytest.raises(ProxGTValueError, match="generator per row"):
        c.encode(x)


@pytest.mark.parametrize("bits", [1, 3, 6, 8, 11, 16])
def test_bit_packing_round_trips(bits):
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2**bits, (4, 37), generator=g, dtype=torch.int32)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (4, math.ceil(37 * bits / 8))
    assert torch.equal(unpack_bits(packed, 37, bits), codes)


def test_spec_parsing_normalizes_and_rejects_bad_input():
    assert parse_compress("topk:0.1") == ("topk", 0.1)
    assert parse_compress("qsgd:16") == ("qsgd", 16)
    assert canonical_spec(" TopK:0.10 ") == "topk:0.1"
    for bad, msg in [("zip", "unknown compression operator"), ("topk:0", r"\(0, 1\]"), ("topk:1.5", r"\(0, 1\]"),
                     ("randk:-0.1", r"\(0, 1\]"), ("topk:nan", r"\(0, 1\]"), ("qsgd:0", "levels"),
                     ("qsgd:2.5", "levels"), ("qsgd", "needs its levels"), ("sign:2", "takes no parameter"),
                     ("", "compress must be"), (3, "compress must be")]:
        with pytest.raises(ProxGTValueError, match=msg) as info:
            parse_compress(bad)
        assert "\n" not in str(info.value)
