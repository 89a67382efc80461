"""Compression operators C for gossip messages, vectorized over node rows (n x d).

Every operator turns each row into the bytes that would travel (:meth:`Compressor.encode`: a ``uint8`` tensor of
shape (n, :meth:`~Compressor.payload_bytes`), the same width for every row) and back (:meth:`~Compressor.decode`).
``C(x)`` is *defined* as ``decode(encode(x))``, so a sender and its receivers hold bit-identical copies.

Payloads (s = bytes of the run's float dtype, 4 for float32; k = max(1, floor(ratio * d))):

==============  ==============================================================  =================================
operator        payload per row                                                 bytes
==============  ==============================================================  =================================
``none``        the row in its dtype                                            ``d s``
``fp16/bf16``   the row cast to 2 bytes                                         ``2 d``
``topk:R``      k values (dtype) then k indices (int16 if d <= 32768, else       ``k (s + 2 or 4)``
``randk:R``     int32)
``qsgd:S``      the norm (dtype) then d codes ``sign * level + S`` packed with   ``s + ceil(d b / 8)``
                b = ceil(log2(2S + 1)) bits each
``sign``        the scale ||x||_1 / d (dtype) then d sign bits                   ``s + ceil(d / 8)``
==============  ==============================================================  =================================

Each operator declares ``unbiased`` and :meth:`~Compressor.constant`: for unbiased operators the variance factor
omega (E C(x) = x, E||C(x) - x||^2 <= omega ||x||^2); for the others the contraction delta
(||C(x) - x||^2 <= (1 - delta) ||x||^2). The random operators (randk, qsgd) draw from one
``torch.Generator`` per row, which the caller owns (one per node, seeded per node: no draw is shared between
nodes, and a node's draws do not depend on which process hosts it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from proxgt.compression.spec import parse_compress
from proxgt.errors import ProxGTValueError

__all__ = ["Compressor", "Identity", "Cast", "TopK", "RandK", "QSGD", "ScaledSign", "make_compressor",
           "pack_bits", "unpack_bits"]

Generators = Sequence[torch.Generator] | None


def _to_bytes(t: torch.Tensor) -> torch.Tensor:
    """(n, m) tensor of any dtype -> (n, m * itemsize) uint8 (native byte order: both ends are one platform)."""
    return t.contiguous().view(torch.uint8)


def _from_bytes(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`_to_bytes` (through a flat copy: a column slice of one row may carry any stride)."""
    return b.reshape(-1).view(dtype).reshape(b.shape[0], -1)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """(n, d) non-negative integer codes < 2**bits -> (n, ceil(d * bits / 8)) uint8, most significant bit first."""
    n, d = codes.shape
    shifts = torch.arange(bits - 1, -1, -1, device=codes.device, dtype=codes.dtype)
    b = ((codes.unsqueeze(-1) >> shifts) & 1).to(torch.uint8).reshape(n, d * bits)
    pad = (-b.shape[1]) % 8
    if pad:
        b = torch.nn.functional.pad(b, (0, pad))
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=codes.device)
    return (b.reshape(n, -1, 8) * weights).sum(dim=-1, dtype=torch.int32).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, d: int, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: (n, m) uint8 -> (n, d) int32 codes."""
    n = packed.shape[0]
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    b = ((packed.unsqueeze(-1) >> shifts) & 1).reshape(n, -1)[:, : d * bits].reshape(n, d, bits).to(torch.int32)
    weights = 2 ** torch.arange(bits - 1, -1, -1, device=packed.device, dtype=torch.int32)
    return (b * weights).sum(dim=-1, dtype=torch.int32)


def _uniforms(rows: torch.Tensor, generators: Generators, what: str) -> torch.Tensor:
    """(n, d) uniforms on [0, 1), row i from ``generators[i]`` (drawn on the CPU, so a node's draws do not depend
    on the device)."""
    n, d = rows.shape
    if generators is None or len(generators) != n:
        raise ProxGTValueError(f"{what} is random: it needs one generator per row ({n}), got "
                               f"{'none' if generators is None else len(generators)}")
    u = torch.stack([torch.rand(d, generator=g, dtype=torch.float64) for g in generators])
    return u.to(device=rows.device)


class Compressor:
    """Base class. Subclasses set ``name``, ``unbiased``, ``random`` and implement the four methods."""

    name: str = ""
    unbiased: bool = False
    random: bool = False

    def constant(self, d: int) -> float:
        """omega (variance factor) if ``unbiased``, else delta (contraction), for vectors of length ``d``."""
        raise NotImplementedError

    def gossip_contraction(self, d: int) -> float:
        """The contraction delta that error-compensated gossip sees, in (0, 1]: the declared delta of a
        contractive operator, 1/(1 + omega) for an unbiased one (gossip uses it rescaled by that factor, which
        makes it contractive with that delta)."""
        c = self.constant(d)
        return 1.0 / (1.0 + c) if self.unbiased else c

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one row of length ``d`` and float ``dtype`` encodes to."""
        raise NotImplementedError

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        """(n, d) float rows -> (n, payload_bytes(d, dtype)) uint8."""
        raise NotImplementedError

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(n, payload_bytes) uint8 -> (n, d) rows of ``dtype``."""
        raise NotImplementedError

    def __call__(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        """C(rows) = decode(encode(rows))."""
        return self.decode(self.encode(rows, generators), rows.shape[1], rows.dtype)

    def __repr__(self) -> str:
        return self.name


class Identity(Compressor):
    """``none``: the row as it is (unbiased with omega = 0, contractive with delta = 1)."""

    name = "none"
    unbiased = True

    def constant(self, d: int) -> float:
        return 0.0

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return d * _itemsize(dtype)

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        return _to_bytes(rows)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return _from_bytes(payload, dtype)


class Cast(Compressor):
    """``fp16`` / ``bf16``: a 2-byte float cast. Declared contractive with delta = 1 - u^2 (u = the unit
    roundoff, 2^-11 for fp16 and 2^-8 for bf16), which holds for entries in the format's normal range; fp16
    overflows to inf beyond 65504 and flushes below ~6e-8 (bf16 has float32's range)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.name = "fp16" if dtype == torch.float16 else "bf16"
        self._u = 2.0**-11 if dtype == torch.float16 else 2.0**-8

    def constant(self, d: int) -> float:
        return 1.0 - self._u**2

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return 2 * d

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        return _to_bytes(rows.to(self.dtype))

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return _from_bytes(payload, self.dtype).to(dtype)


class _Sparsifier(Compressor):
    """Values plus indices of k = max(1, floor(ratio d)) entries per row."""

    def __init__(self, ratio: float):
        self.ratio = float(ratio)

    def k(self, d: int) -> int:
        return max(1, min(d, math.floor(self.ratio * d)))

    @staticmethod
    def index_dtype(d: int) -> torch.dtype:
        return torch.int16 if d <= 2**15 else torch.int32

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return self.k(d) * (_itemsize(dtype) + _itemsize(self.index_dtype(d)))

    def _pack(self, values: torch.Tensor, idx: torch.Tensor, d: int) -> torch.Tensor:
        return torch.cat([_to_bytes(values), _to_bytes(idx.to(self.index_dtype(d)))], dim=1)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        k = self.k(d)
        split = k * _itemsize(dtype)
        values = _from_bytes(payload[:, :split], dtype)
        idx = _from_bytes(payload[:, split:], self.index_dtype(d)).to(torch.int64)
        return torch.zeros((payload.shape[0], d), dtype=dtype, device=payload.device).scatter_(1, idx, values)


class TopK(_Sparsifier):
    """``topk:RATIO``: the k largest-magnitude entries, unscaled. Contractive: ||C(x) - x||^2 <= (1 - k/d)||x||^2."""

    def __init__(self, ratio: float):
        super().__init__(ratio)
        self.name = f"topk:{self.ratio:g}"

    def constant(self, d: int) -> float:
        return self.k(d) / d

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        d = rows.shape[1]
        idx = torch.topk(rows.abs(), self.k(d), dim=1, sorted=False).indices
        return self._pack(rows.gather(1, idx), idx, d)


class RandK(_Sparsifier):
    """``randk:RATIO``: k entries drawn uniformly without replacement per row, scaled by d/k: unbiased with
    omega = d/k - 1. Each row draws its own indices from its own generator (nothing shared between nodes);
    the indices travel in the payload."""

    unbiased = True
    random = True

    def __init__(self, ratio: float):
        super().__init__(ratio)
        self.name = f"randk:{self.ratio:g}"

    def constant(self, d: int) -> float:
        return d / self.k(d) - 1.0

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        d = rows.shape[1]
        k = self.k(d)
        # the k smallest of d iid uniforms are a uniform k-subset
        idx = torch.topk(_uniforms(rows, generators, self.name), k, dim=1, largest=False, sorted=False).indices
        return self._pack(rows.gather(1, idx) * (d / k), idx, d)


class QSGD(Compressor):
    """``qsgd:LEVELS``: x_j -> ||x|| sign(x_j) l_j / s with l_j = floor(s|x_j|/||x||) + Bernoulli(fractional
    part): unbiased with omega = min(d / s^2, sqrt(d) / s) (Alistarh et al., 2017). Not rescaled."""

    unbiased = True
    random = True

    def __init__(self, levels: int):
        self.levels = int(levels)
        self.bits = max(1, math.ceil(math.log2(2 * self.levels + 1)))
        self.name = f"qsgd:{self.levels}"

    def constant(self, d: int) -> float:
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return _itemsize(dtype) + math.ceil(d * self.bits / 8)

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        s = self.levels
        norm = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        scaled = (rows.abs() / torch.where(norm > 0, norm, torch.ones_like(norm))).to(torch.float64) * s
        floor = scaled.floor()
        level = floor + (_uniforms(rows, generators, self.name) < scaled - floor).to(torch.float64)
        level = level.clamp_(0, s).to(torch.int32)
        codes = torch.where(rows < 0, -level, level) + s
        return torch.cat([_to_bytes(norm), pack_bits(codes, self.bits)], dim=1)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        split = _itemsize(dtype)
        norm = _from_bytes(payload[:, :split], dtype)
        codes = unpack_bits(payload[:, split:], d, self.bits) - self.levels
        return norm * (codes.to(dtype) / self.levels)


class ScaledSign(Compressor):
    """``sign``: (||x||_1 / d) sign(x), sign(0) = +1. ||C(x) - x||^2 = ||x||^2 - ||x||_1^2 / d, so it is
    contractive with delta = ||x||_1^2 / (d ||x||^2) >= 1/d (the declared worst case)."""

    name = "sign"

    def constant(self, d: int) -> float:
        return 1.0 / d

    def payload_bytes(self, d: int, dtype: torch.dtype = torch.float32) -> int:
        return _itemsize(dtype) + math.ceil(d / 8)

    def encode(self, rows: torch.Tensor, generators: Generators = None) -> torch.Tensor:
        scale = rows.abs().mean(dim=1, keepdim=True)
        return torch.cat([_to_bytes(scale), pack_bits((rows >= 0).to(torch.int32), 1)], dim=1)

    def decode(self, payload: torch.Tensor, d: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        split = _itemsize(dtype)
        scale = _from_bytes(payload[:, :split], dtype)
        signs = unpack_bits(payload[:, split:], d, 1).to(dtype) * 2 - 1
        return scale * signs


def make_compressor(spec: str) -> Compressor:
    """The operator of a ``--compress`` spec: ``make_compressor("topk:0.1")``. Bad specs: one-line error.

    >>> make_compressor("qsgd:4").payload_bytes(123)
    66
    """
    name, arg = parse_compress(spec)
    if arg is not None:  # the operators with a parameter (checked by parse_compress)
        if name == "topk":
            return TopK(float(arg))
        if name == "randk":
            return RandK(float(arg))
        return QSGD(int(arg))
    if name == "none":
        return Identity()
    if name == "fp16":
        return Cast(torch.float16)
    if name == "bf16":
        return Cast(torch.bfloat16)
    return ScaledSign()
