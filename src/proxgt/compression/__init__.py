"""Compression operators for gossip messages and their spec strings (``--compress``).

The operators themselves (torch) are in :mod:`proxgt.compression.operators` (``make_compressor("topk:0.1")``);
this package's top level holds only the torch-free spec parser, which the settings table uses.
"""

from proxgt.compression.spec import OPERATORS, CompressSpec, canonical_spec, parse_compress

__all__ = ["OPERATORS", "CompressSpec", "canonical_spec", "parse_compress"]
