"""From one poll's data to every metric family the exporter serves."""

from __future__ import annotations

import platform
from typing import TypeVar

from prometheus_client import ProcessCollector

from exporter import __version__
from exporter.collectors.conntrack import ConntrackData, owners_from_docker, render_conntrack
from exporter.collectors.links import render_interfaces, render_routes
from exporter.collectors.sysctl import render_sysctl
from exporter.config import Config
from exporter.firewall.collector import render_firewall
from exporter.meaning.docker import render_docker
from exporter.model import (
    DockerData,
    FirewallData,
    LinksData,
    MetricFamily,
    RoutesData,
    SysctlData,
)
from exporter.poller import PollResult
from exporter.sources.docker import render_containers

T = TypeVar("T")


def _get(poll: PollResult, name: str, kind: type[T]) -> T | None:
    value = poll.data.get(name)
    return value if isinstance(value, kind) else None


_PROCESS = ProcessCollector(registry=None)


def render_process() -> list[MetricFamily]:
    """The standard process_* metrics (CPU, memory, fds), from prometheus-client."""
    out = []
    for metric in _PROCESS.collect():
        if not metric.samples:
            continue
        name = metric.samples[0].name
        out.append(
            MetricFamily(
                name,
                metric.type,
                metric.documentation,
                (),
                tuple(((), s.value) for s in metric.samples if not s.labels),
            )
        )
    return out


def render_meta(poll: PollResult, exported: set[str]) -> list[MetricFamily]:
    status = [s for s in poll.status if s.name in exported]
    return [
        MetricFamily(
            "netpath_build_info",
            "gauge",
            "The exporter's version and the Python running it; value 1.",
            ("version", "python_version"),
            (((__version__, platform.python_version()), 1),),
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
    exported = {name for name in cfg.collectors if cfg.enabled(name)}
    families = render_meta(poll, exported) + render_process()
    links = _get(poll, "links", LinksData)
    docker = _get(poll, "containers", DockerData) if "containers" in exported else None
    if links is not None and "links" in exported:
        families += render_interfaces(links, include_loopback=cfg.links.include_loopback)
    if docker is not None:
        families += render_containers(docker, links)
    firewall = _get(poll, "firewall", FirewallData) if "firewall" in exported else None
    if firewall is not None:
        families += render_firewall(firewall)
        families += render_docker(firewall, docker, links)
    sysctl = _get(poll, "sysctl", SysctlData) if "sysctl" in exported else None
    if sysctl is not None:
        families += render_sysctl(sysctl)
    routes = _get(poll, "routes", RoutesData) if "routes" in exported else None
    if routes is not None:
        families += render_routes(routes)
    conntrack = _get(poll, "conntrack", ConntrackData) if "conntrack" in exported else None
    if conntrack is not None:
        families += render_conntrack(conntrack, owners_from_docker(docker))
    return families
