"""Rehearsals of a cross-site pilot on one machine (``proxgt rehearse``): every site its own process, on links
that can be shaped and cut, optionally with an intruder. See :func:`rehearse`."""

from ._run import MARKER, RehearsalOptions, RehearsalResult, SiteOutcome, rehearsal_table, rehearse

__all__ = ["rehearse", "rehearsal_table", "RehearsalOptions", "RehearsalResult", "SiteOutcome", "MARKER"]
