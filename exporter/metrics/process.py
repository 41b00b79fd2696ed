"""The standard ``process_*`` metrics, read from ``/proc/self``.

The same six families, names, help texts and values as prometheus-client's
``ProcessCollector`` (and so as every Prometheus client library on Linux).
Read here because importing prometheus-client costs the daemon 12 MB of
resident memory (its WSGI and HTTP servers, asyncio and TLS glue), more than
all the per-series state of a 1000-container host; it stays the tests' oracle
(README, "Why prometheus-client is not in the daemon").
"""

from __future__ import annotations

import os
import resource

from exporter.model import MetricFamily

_PROC = "/proc/self"
_PAGESIZE = os.sysconf("SC_PAGESIZE")
try:
    _TICKS = float(os.sysconf("SC_CLK_TCK"))
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    _TICKS = 100.0


def boot_time(proc: str = "/proc") -> float | None:
    """The kernel's boot time (``btime`` of /proc/stat), Unix seconds; None without /proc."""
    try:
        with open(f"{proc}/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class ProcessMetrics:
    """Renders the process families; without /proc it renders none (as prometheus-client)."""

    def __init__(self) -> None:
        self._btime = boot_time()

    def render(self) -> list[MetricFamily]:
        if self._btime is None:
            return []
        out: list[MetricFamily] = []
        try:
            with open(f"{_PROC}/stat", "rb") as f:
                # Fields after the command name, which may itself hold ") ".
                parts = f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            pass
        else:
            out += [
                _gauge(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    float(parts[20]),
                ),
                _gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    float(parts[21]) * _PAGESIZE,
                ),
                _gauge(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    float(parts[19]) / _TICKS + self._btime,
                ),
                MetricFamily(
                    "process_cpu_seconds_total",
                    "counter",
                    "Total user and system CPU time spent in seconds.",
                    (),
                    (((), float(parts[11]) / _TICKS + float(parts[12]) / _TICKS),),
                ),
            ]
        try:
            open_fds = len(os.listdir(f"{_PROC}/fd"))
        except OSError:
            return out
        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # the soft limit, as /proc shows
        out += [
            _gauge("process_open_fds", "Number of open file descriptors.", open_fds),
            _gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                float(max_fds) if max_fds != resource.RLIM_INFINITY else float("inf"),
            ),
        ]
        return out


def _gauge(name: str, help_text: str, value: float) -> MetricFamily:
    return MetricFamily(name, "gauge", help_text, (), (((), value),))
