"""PROVISIONAL copy of the planned seams API (replaced by the lead's file on merge)."""

from __future__ import annotations

from exporter.collector import CollectorError


class SourceAbsent(CollectorError):
    """The source's endpoint was not configured explicitly and does not exist."""
