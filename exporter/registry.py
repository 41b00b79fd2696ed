"""The one list of collectors: adding one is a module plus a row here.

Each row names the collector, where its factory, renderer and ``check``
findings live (``"module:function"``, imported when first used, so a missing
optional piece fails only its own collector and ``--help`` stays fast), whether
it is on by default, what it needs read before it, and its own settings.
Config keys (``collectors.NAME``), flags (``--[no-]collector.NAME``), the
settings' keys and flags (``conntrack.interval`` / ``--conntrack.interval``),
the poll order, rendering and ``check`` all come from this list.

A row's functions:

- ``factory(cfg: Config) -> Collector`` — see :mod:`exporter.collector`;
- ``render(data, poll: PollResult, cfg: Config) -> list[MetricFamily]`` —
  the collector's own families (sources have none: their workloads are
  rendered together, through the one join, by :mod:`exporter.metrics.workloads`);
- ``describe(data, poll: PollResult, cfg: Config) -> list[Finding]`` — what
  ``netpath-exporter check`` says about it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SETTING_KINDS = ("str", "duration", "int", "bool")


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of a collector: config key ``SECTION.NAME``, flag ``--SECTION.NAME``."""

    key: str  # "cri.endpoint"
    kind: str  # one of SETTING_KINDS
    default: str | float | int | bool
    help: str

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def dest(self) -> str:
        return "setting_" + self.key.replace(".", "_").replace("-", "_")


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    name: str
    help: str  # what it reads, for --help and check
    factory: str  # "module:function"
    render: str = ""  # "module:function", "" if it renders nothing of its own
    describe: str = ""  # "module:function", "" if check says nothing about it
    default: bool = True
    needs: tuple[str, ...] = ()  # collectors read before it whenever it runs
    settings: tuple[Setting, ...] = ()
    source: bool = False  # a discovery source: its data is SourceData


def resolve(ref: str) -> Callable[..., Any]:
    """The function ``"module:function"`` names."""
    module, _, attr = ref.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "links",
        "interfaces of the host network namespace: counters, kinds, bridges",
        "exporter.collectors.links:make_links",
        render="exporter.collectors.links:render_links",
        describe="exporter.check:describe_links",
    ),
    CollectorSpec(
        "firewall",
        "iptables (nft and legacy) and nftables rules with their counters",
        "exporter.firewall.collector:make_firewall",
        render="exporter.firewall.collector:render_firewall_rules",
        describe="exporter.check:describe_firewall",
    ),
    CollectorSpec(
        "sysctl",
        "IP forwarding and bridge-netfilter switches",
        "exporter.collectors.sysctl:make_sysctl",
        render="exporter.collectors.sysctl:render_sysctl_data",
        describe="exporter.check:describe_sysctl",
    ),
    CollectorSpec(
        "routes",
        "the main table's routes through bridges, and the default routes",
        "exporter.collectors.links:make_routes",
        render="exporter.collectors.links:render_routes_data",
        describe="exporter.check:describe_routes",
    ),
    CollectorSpec(
        "docker",
        "Docker containers and networks (Docker API)",
        "exporter.sources.docker:make_docker",
        describe="exporter.check:describe_docker",
        needs=("links",),
        source=True,
    ),
    CollectorSpec(
        "cri",
        "Kubernetes pods and CNI networks (CRI: containerd, CRI-O)",
        "exporter.sources.cri:make_cri",
        describe="exporter.check:describe_cri",
        needs=("links",),
        source=True,
        settings=(
            Setting(
                "cri.endpoint",
                "str",
                "",
                "the CRI runtime's unix socket (default: containerd's "
                "/run/containerd/containerd.sock, else CRI-O's /var/run/crio/crio.sock)",
            ),
        ),
    ),
    CollectorSpec(
        "podman",
        "Podman containers and networks (Podman API socket)",
        "exporter.sources.podman:make_podman",
        describe="exporter.sources.podman:describe_podman",
        needs=("links",),
        settings=(
            Setting(
                "podman.host",
                "str",
                "unix:///run/podman/podman.sock",
                "Podman's API socket (rootful by default); the collector is absent while "
                "the default socket does not exist",
            ),
        ),
        source=True,
    ),
    CollectorSpec(
        "conntrack",
        "the conntrack table over ctnetlink: size, limit, statistics; entries per workload",
        "exporter.collectors.conntrack:make_conntrack",
        render="exporter.collectors.conntrack:render_conntrack_data",
        describe="exporter.collectors.conntrack:describe_conntrack",
        settings=(
            Setting(
                "conntrack.interval",
                "duration",
                30.0,
                "time between dumps of the whole table for attribution (default 30s)",
            ),
            Setting(
                "conntrack.max-entries",
                "int",
                1_000_000,
                "bound on the entries one dump reads (default 1000000)",
            ),
        ),
    ),
)

BY_NAME = {spec.name: spec for spec in COLLECTORS}
NAMES = tuple(BY_NAME)


def all_settings() -> tuple[Setting, ...]:
    return tuple(s for spec in COLLECTORS for s in spec.settings)
