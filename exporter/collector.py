"""The one seam every collector implements (after node_exporter's ``Collector``)."""

from __future__ import annotations

from typing import Protocol


class Collector(Protocol):
    """Reads one part of the host once per poll.

    ``collect`` does the I/O and returns plain immutable data (see
    :mod:`exporter.model`); it raises on failure, and the poller isolates
    that failure: the collector's ``netpath_collector_success`` goes to 0 and
    every other collector is still served. ``close`` releases sockets and
    threads at shutdown.
    """

    name: str

    def collect(self) -> object: ...

    def close(self) -> None: ...


class CollectorError(Exception):
    """A collector could not do its job; the message says why, for the log."""


class CollectorAbsent(CollectorError):
    """What the collector reads is not on this host, and nobody asked for it.

    A discovery source raises it while its runtime's default endpoint does not
    exist and was not configured explicitly: the collector is then left out
    of ``netpath_collector_success`` instead of failing on every host without
    that runtime. Once it has answered, its failures are failures.
    """
