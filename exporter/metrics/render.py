"""From one poll's data to every metric family the exporter serves."""

from __future__ import annotations

import sys

from exporter import __version__
from exporter.config import Config
from exporter.metrics.meaning import render_meanings
from exporter.metrics.process import ProcessMetrics
from exporter.metrics.workloads import render_workloads
from exporter.model import MetricFamily
from exporter.poller import PollResult
from exporter.registry import COLLECTORS, resolve

_PROCESS = ProcessMetrics()

# platform.python_version() without importing platform (0.1 MB resident)
_PYTHON_VERSION = sys.version.split()[0]


def render_process() -> list[MetricFamily]:
    """The standard process_* metrics (CPU, memory, fds)."""
    return _PROCESS.render()


def render_meta(poll: PollResult, exported: set[str]) -> list[MetricFamily]:
    status = [s for s in poll.status if s.name in exported and not s.absent]
    return [
        MetricFamily(
            "netpath_build_info",
            "gauge",
            "The exporter's version and the Python running it; value 1.",
            ("version", "python_version"),
            (((__version__, _PYTHON_VERSION), 1),),
        ),
        MetricFamily(
            "netpath_collector_success",
            "gauge",
            "1 if the collector's last poll succeeded, else 0 (the reason is in the log).",
            ("collector",),
            tuple(((s.name,), int(s.success)) for s in status),
        ),
        MetricFamily(
            "netpath_collector_duration_seconds",
            "gauge",
            "Wall time of the collector's last poll, in seconds.",
            ("collector",),
            tuple(((s.name,), s.duration) for s in status),
        ),
        MetricFamily(
            "netpath_poll_timestamp_seconds",
            "gauge",
            "Unix time at which the last poll finished.",
            (),
            (((), poll.timestamp),),
        ),
        MetricFamily(
            "netpath_poll_duration_seconds",
            "gauge",
            "Wall time of the last whole poll, in seconds.",
            (),
            (((), poll.duration),),
        ),
    ]


def render_poll(poll: PollResult, cfg: Config) -> list[MetricFamily]:
    """Every family of one poll: meta, process, each collector's own, then the view's.

    The view's families are the workloads of every source (through the one join)
    and every firewall manager's meaning of the rules.
    """
    exported = {spec.name for spec in COLLECTORS if cfg.enabled(spec.name)}
    families = render_meta(poll, exported) + render_process()
    for spec in COLLECTORS:
        if spec.render and spec.name in exported:
            data = poll.data.get(spec.name)
            if data is not None:
                families += resolve(spec.render)(data, poll, cfg)
    view = poll.view
    if view is None:
        return families
    if view.sources:  # sources run only when enabled: every one is exported
        families += render_workloads(view.sources, view.interfaces)
    if view.firewall is not None and "firewall" in exported:
        families += render_meanings(view.firewall, view.meanings)
    return families
