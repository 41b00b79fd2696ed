"""The polling loop: one immutable snapshot per poll, swapped in atomically.

Each poll runs every collector once, in a fixed order, each isolated: one that
raises is reported with ``netpath_collector_success 0`` while the others are
served. Its error is logged once when it starts failing and once when it
recovers, not every poll. The HTTP side only ever reads ``latest`` (a single
reference, replaced whole), so a scrape never waits for a poll.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from exporter.collector import Collector, CollectorAbsent, CollectorError
from exporter.metrics.exposition import ExpositionWriter, GzipMember, gunzip
from exporter.model import MetricFamily, SourceData

if TYPE_CHECKING:
    from exporter.view import HostView

T = TypeVar("T")

log = logging.getLogger("netpath.poller")


@dataclass(frozen=True, slots=True)
class CollectorStatus:
    name: str
    success: bool
    duration: float  # seconds
    error: str = ""
    absent: bool = False  # a source whose runtime is not on this host (see CollectorAbsent)


@dataclass(frozen=True)
class PollResult:
    """What one poll read, and what the host view derives from it.

    ``data`` holds each collector's result by collector name (absent if it
    failed outright); read it with :meth:`get`, which checks the type, and
    :meth:`sources`, every discovery source's :class:`SourceData`. ``view``
    is the derived :class:`~exporter.view.HostView` (the workload join and
    every firewall manager's meaning) that the renderers, ``explain`` and
    ``/path`` all read.
    """

    data: Mapping[str, object]
    status: tuple[CollectorStatus, ...]
    timestamp: float  # Unix time the poll finished
    duration: float  # seconds
    view: HostView | None = None

    def get(self, name: str, kind: type[T]) -> T | None:
        """Collector ``name``'s data if it is a ``kind``, else None."""
        value = self.data.get(name)
        return value if isinstance(value, kind) else None

    def sources(self) -> tuple[SourceData, ...]:
        """Every discovery source's data, in poll order."""
        return tuple(v for v in self.data.values() if isinstance(v, SourceData))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A rendered poll: what it read, and its exposition kept as one gzip member.

    Prometheus asks for gzip, so every poll's exposition is compressed once,
    in the poll thread, and a scrape only writes it out (213 kB for a 5.2 MB
    exposition at 1000 containers): the first scrape after a poll costs no more
    than the next, and the plain text is not kept beside it. A client without
    gzip gets :attr:`body`, decompressed per request.
    ``gzip`` is empty for a snapshot kept for its data only (the previous poll).
    """

    poll: PollResult
    gzip: bytes = b""

    @property
    def body(self) -> bytes:
        """The exposition as plain text."""
        return gunzip(self.gzip) if self.gzip else b""


# Python objects a collector may leave allocated before a full GC follows it.
BIG_READ_BLOCKS = 50_000

Factory = Callable[[], Collector]
Renderer = Callable[[PollResult], list[MetricFamily]]
Deriver = Callable[["PollResult"], "HostView"]


def describe_error(exc: BaseException) -> str:
    """A collector's own errors speak for themselves; anything else names its type."""
    if isinstance(exc, CollectorError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Slot:
    """A collector, built lazily so a failing constructor is just a failing poll."""

    def __init__(self, name: str, factory: Factory) -> None:
        self.name = name
        self.factory = factory
        self.collector: Collector | None = None
        self.last_error = ""

    def collect(self) -> object:
        if self.collector is None:
            self.collector = self.factory()
        return self.collector.collect()

    def close(self) -> None:
        if self.collector is not None:
            try:
                self.collector.close()
            except Exception:
                log.warning(
                    "closing collector failed", extra={"collector": self.name}, exc_info=True
                )
            self.collector = None


class Poller:
    def __init__(
        self,
        collectors: Sequence[tuple[str, Factory]],
        render: Renderer,
        interval: float,
        derive: Deriver | None = None,
    ) -> None:
        self._slots = [_Slot(name, factory) for name, factory in collectors]
        self._render = render
        self._derive = derive
        self._interval = interval
        self._writer = ExpositionWriter()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        # (the snapshot before the latest, the latest): one reference, replaced whole
        self.snapshots: tuple[Snapshot | None, Snapshot | None] = (None, None)
        self.polls = 0

    @property
    def latest(self) -> Snapshot | None:
        """The last poll's snapshot (None before the first)."""
        return self.snapshots[1]

    def poll_once(self) -> Snapshot:
        start = time.monotonic()
        data: dict[str, object] = {}
        status: list[CollectorStatus] = []
        for slot in self._slots:
            t0 = time.monotonic()
            error = ""
            absent = False
            blocks = sys.getallocatedblocks()
            try:
                result = slot.collect()
            except CollectorAbsent as exc:
                absent = True
                error = str(exc)
            except Exception as exc:
                error = describe_error(exc)
                if slot.last_error != error:
                    log.debug("collector traceback", extra={"collector": slot.name}, exc_info=True)
            else:
                data[slot.name] = result
                partial = getattr(result, "errors", ())
                if partial:
                    error = "; ".join(partial)
            duration = time.monotonic() - t0
            if sys.getallocatedblocks() - blocks > BIG_READ_BLOCKS:
                # A big read (the first firewall text read, a Docker resync) is
                # freed now, before the next collector and the render allocate
                # beside it: otherwise the process keeps that high-water mark
                # as RSS.
                gc.collect()
            if not absent:
                self._log_transition(slot, error)
            status.append(CollectorStatus(slot.name, not error, duration, error, absent))
        result_poll = PollResult(data, tuple(status), time.time(), time.monotonic() - start)
        if self._derive is not None:
            result_poll = replace(result_poll, view=self._derive(result_poll))
        snap = Snapshot(result_poll, self._render_gzip(result_poll))
        # /path needs the previous poll's data, not its exposition: a new
        # Snapshot without it (a scrape may still be serving the old one)
        latest = self.latest
        previous = Snapshot(latest.poll) if latest is not None else None
        self.snapshots = (previous, snap)
        self.polls += 1
        self._ready.set()
        return snap

    def _render_gzip(self, poll: PollResult) -> bytes:
        """The exposition of one poll, as one gzip member.

        Each family's text is compressed as soon as it is rendered and then
        freed: the plain exposition (5 MB at 1000 containers) never exists
        whole, and the heap reuses one family's block for the next.
        Rendering allocates tens of thousands of acyclic objects (samples,
        counter lists): one collection of the young generation at the end costs
        less than the automatic collections (and their second passes over
        survivors) they would trigger along the way. The collectors, whose
        libraries may make cycles (the docker SDK), run with the collector as usual.
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            member = GzipMember()
            self._writer.write(self._render(poll), member)
            return member.close()
        finally:
            if enabled:
                gc.enable()
                gc.collect(0)

    def _log_transition(self, slot: _Slot, error: str) -> None:
        if error and error != slot.last_error:
            log.error("collector failed", extra={"collector": slot.name, "err": error})
        elif not error and slot.last_error:
            log.info("collector recovered", extra={"collector": slot.name})
        slot.last_error = error

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                # Rendering bugs must not kill the loop; the last snapshot stays served.
                log.exception("poll failed")
            next_at += self._interval
            now = time.monotonic()
            if next_at < now:
                skipped = int((now - next_at) // self._interval) + 1
                log.warning(
                    "poll took longer than the interval",
                    extra={"interval": self._interval, "skipped": skipped},
                )
                next_at += skipped * self._interval
            self._stop.wait(next_at - now)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for slot in self._slots:
            slot.close()
