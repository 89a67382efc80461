"""The link options of a rehearsal: ``--rate A-B=1mbit`` and ``--cut A-B@START:END``, checked against the pilot."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from proxgt.errors import ProxGTValueError

__all__ = ["LinkRate", "LinkCut", "SiteRestart", "parse_rate", "parse_cut", "parse_link", "parse_restart", "rate_bits"]

# tc's rate units (bits and bytes per second, decimal prefixes as tc reads them)
_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


@dataclass(frozen=True)
class LinkRate:
    """A link (index into the pilot's edges) limited to ``bits_per_s`` in each direction."""

    edge: int
    bits_per_s: float
    text: str


@dataclass(frozen=True)
class LinkCut:
    """A link (index into the pilot's edges) down from ``start`` to ``end`` seconds after every site started
    training."""

    edge: int
    start: float
    end: float


@dataclass(frozen=True)
class SiteRestart:
    """Site ``site`` (index into the pilot's sites) killed ``at`` seconds after every site started training, and
    started again with ``--rejoin`` once every other site has said it lost it."""

    site: int
    at: float


def rate_bits(text: str) -> float:
    """Bits per second of a tc-style rate (``1mbit``, ``500kbit``, ``2mbps`` = 2 MB/s); ProxGTValueError if bad."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]+)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ProxGTValueError(
            f"--rate: cannot read the rate {text!r}: give a number and a unit ({', '.join(_UNITS)}), e.g. 1mbit")
    value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 8000:
        raise ProxGTValueError(f"--rate: {text!r} is below 8kbit; give at least 8kbit (one kilobyte per second)")
    return value


def parse_link(text: str, sites: Sequence[str], edges: Sequence[tuple[str, str]], flag: str) -> int:
    """The index in ``edges`` of the link ``A-B`` (either order); site names may contain ``-`` themselves."""
    splits = [(text[:i], text[i + 1:]) for i, ch in enumerate(text) if ch == "-"]
    named = [(a, b) for a, b in splits if a in sites and b in sites]
    if not named:
        raise ProxGTValueError(
            f"{flag}: {text!r} does not name a link as SITE-SITE with sites of the pilot ({', '.join(sites)})")
    a, b = named[0]
    for k, (u, v) in enumerate(edges):
        if {u, v} == {a, b}:
            return k
    links = ", ".join(f"{u}-{v}" for u, v in edges)
    raise ProxGTValueError(f"{flag}: sites {a} and {b} have no link in the pilot (its links: {links})")


def parse_rate(text: str, sites: Sequence[str], edges: Sequence[tuple[str, str]]) -> LinkRate:
    """``A-B=RATE``."""
    link, sep, rate = text.rpartition("=")
    if not sep:
        raise ProxGTValueError(f"--rate: expected SITE-SITE=RATE (e.g. a-b=1mbit), got {text!r}")
    return LinkRate(parse_link(link, sites, edges, "--rate"), rate_bits(rate), rate.strip())


def parse_cut(text: str, sites: Sequence[str], edges: Sequence[tuple[str, str]]) -> LinkCut:
    """``A-B@START:END`` (seconds since every site started training, START < END)."""
    link, sep, window = text.rpartition("@")
    start_s, colon, end_s = window.partition(":")
    try:
        start, end = float(start_s), float(end_s)
    except ValueError:
        start = end = math.nan
    if not sep or not colon or not (math.isfinite(start) and math.isfinite(end)):
        raise ProxGTValueError(f"--cut: expected SITE-SITE@START:END in seconds (e.g. a-b@5:25), got {text!r}")
    if not 0 <= start < end:
        raise ProxGTValueError(f"--cut {text}: the window must satisfy 0 <= START < END (got {start:g}:{end:g})")
    return LinkCut(parse_link(link, sites, edges, "--cut"), start, end)


def parse_restart(text: str, sites: Sequence[str]) -> SiteRestart:
    """``SITE@SECONDS`` (seconds since every site started training)."""
    name, sep, at_s = text.rpartition("@")
    try:
        at = float(at_s)
    except ValueError:
        at = math.nan
    if not sep or not math.isfinite(at) or at < 0:
        raise ProxGTValueError(f"--restart: expected SITE@SECONDS, seconds >= 0 (e.g. c@5), got {text!r}")
    if name not in sites:
        raise ProxGTValueError(f"--restart {text}: {name!r} is not a site of the pilot ({', '.join(sites)})")
    return SiteRestart(list(sites).index(name), at)
