"""Interfaces and routes of the host network namespace.

The topology (names, kinds, master bridge, veth peer) comes from a raw
``RTM_GETLINK`` dump, read only at start and when it changes; the counters
from a raw ``RTM_GETSTATS`` dump on every poll; the routes from raw
``RTM_GETROUTE`` dumps when a link or route changed (all in
:mod:`exporter.netlink.route`).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from exporter.config import Config
from exporter.model import Link, LinksData, MetricFamily, Route, RoutesData, Series
from exporter.netlink import route as rtnetlink

RT_TABLE_MAIN = 254
RTN_UNICAST = 1

# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

_BY_NAME = attrgetter("name")


def read_topology() -> tuple[Link, ...]:
    """Every interface of this process's network namespace, sorted by name."""
    return tuple(sorted(rtnetlink.read_links(), key=_BY_NAME))


def read_netnsid(path: str) -> int | None:
    """The id this namespace assigned to the network namespace at ``path``.

    ``path`` is a namespace file (Docker's SandboxKey, ``/proc/PID/ns/net``).
    None if no id is assigned (the kernel assigns one once a link refers to it).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return rtnetlink.read_netnsid_of_fd(fd)
    except rtnetlink.NetlinkError as exc:
        # E.g. EINVAL: the path is no longer a namespace (Docker leaves a removed
        # container's SandboxKey behind as a plain file).
        raise OSError(exc.errno, f"{path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def build_routes(
    raw: Iterable[rtnetlink.RouteEntry],
    bridges: Mapping[int, str],
    names: Mapping[int, str],
) -> RoutesData:
    """Select the main table's routes through a bridge, and the default routes.

    ``raw`` holds (destination address or "", prefix length, table, route type,
    next hops); ``bridges`` the bridges by ifindex; ``names`` every other
    interface name that may be needed, by ifindex.
    """
    found: set[Route] = set()
    for dst, dst_len, table, rtype, hops in raw:
        if table != RT_TABLE_MAIN or rtype != RTN_UNICAST:
            continue
        destination = "default" if dst_len == 0 else f"{dst}/{dst_len}"
        for oif, gateway in hops:
            if oif is None:
                continue
            if oif in bridges:
                found.add(Route(destination, bridges[oif], gateway))
            elif destination == "default" and oif in names:
                found.add(Route(destination, names[oif], gateway))
    ordered = sorted(
        found, key=lambda r: (r.destination != "default", r.destination, r.interface, r.gateway)
    )
    return RoutesData(routes=tuple(ordered))


def read_routes() -> RoutesData:
    """The main table's IPv4 and IPv6 routes through a bridge, plus the default route(s)."""
    bridges = rtnetlink.read_link_names("bridge")
    entries = rtnetlink.read_route_entries(table=RT_TABLE_MAIN)
    raw = [e for e in entries if e[2] == RT_TABLE_MAIN]
    names: dict[int, str] = {}
    for _dst, dst_len, _table, _type, hops in raw:
        for oif, _gw in hops:
            if dst_len == 0 and oif is not None and oif not in bridges:
                with contextlib.suppress(OSError):  # vanished meanwhile
                    names[oif] = socket.if_indextoname(oif)
    return build_routes(raw, bridges, names)


# --------------------------------------------------------------------------
# Collectors
# --------------------------------------------------------------------------


class LinksCollector:
    """Counters of every interface on every poll; the topology only when it changed."""

    name = "links"

    def __init__(self) -> None:
        self._monitor = rtnetlink.ChangeMonitor(rtnetlink.RTMGRP_LINK)
        self._stats = rtnetlink.StatsReader()
        self._topology: tuple[Link, ...] | None = None
        self._indexes: frozenset[int] = frozenset()
        self.topology_reads = 0  # for tests and benchmarks

    def collect(self) -> LinksData:
        changed = self._monitor.changed()
        stats = self._stats.read()
        if self._topology is None or changed or stats.keys() != self._indexes:
            self._topology = read_topology()
            self._indexes = frozenset(link.index for link in self._topology)
            self.topology_reads += 1
        return LinksData(links=self._topology, stats=stats)

    def close(self) -> None:
        self._monitor.close()
        self._stats.close()


class RoutesCollector:
    """The routes of :func:`read_routes`, re-read when a link or route changed."""

    name = "routes"

    def __init__(self) -> None:
        groups = rtnetlink.RTMGRP_LINK | rtnetlink.RTMGRP_IPV4_ROUTE | rtnetlink.RTMGRP_IPV6_ROUTE
        self._monitor = rtnetlink.ChangeMonitor(groups)
        self._routes: RoutesData | None = None

    def collect(self) -> RoutesData:
        if self._monitor.changed() or self._routes is None:
            self._routes = read_routes()
        return self._routes

    def close(self) -> None:
        self._monitor.close()


# --------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------

_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("receive_bytes", "rx_bytes", "Bytes received by the interface."),
    ("receive_packets", "rx_packets", "Packets received by the interface."),
    ("receive_errors", "rx_errors", "Receive errors counted by the interface."),
    ("receive_dropped", "rx_dropped", "Received packets the interface dropped."),
    ("transmit_bytes", "tx_bytes", "Bytes transmitted by the interface."),
    ("transmit_packets", "tx_packets", "Packets transmitted by the interface."),
    ("transmit_errors", "tx_errors", "Transmit errors counted by the interface."),
    ("transmit_dropped", "tx_dropped", "Packets the interface dropped instead of transmitting."),
)


@dataclass(frozen=True, slots=True)
class _InterfacesPlan:
    """What the topology alone decides in :func:`render_interfaces`."""

    links: tuple[Link, ...]  # the topology it was made for (matched by identity)
    include_loopback: bool
    info: MetricFamily
    bridge_ports: MetricFamily
    indexes: tuple[int, ...]  # ifindex of each interface with counters, in order
    labels: tuple[tuple[str], ...]  # its label set


_plans: list[_InterfacesPlan] = []  # the last one made; LinksCollector keeps its topology tuple


def _interfaces_plan(links: tuple[Link, ...], include_loopback: bool) -> _InterfacesPlan:
    for plan in _plans:
        if plan.links is links and plan.include_loopback == include_loopback:
            return plan
    by_index = {link.index: link for link in links}
    bridges = {link.index: link.name for link in links if link.kind == "bridge"}
    shown = [link for link in links if include_loopback or link.kind != "loopback"]
    info = tuple(
        (
            (
                link.name,
                link.kind,
                bridges.get(link.master, "") if link.master is not None else "",
                link.mac,
                link.operstate,
            ),
            1,
        )
        for link in shown
    )
    ports: dict[int, int] = dict.fromkeys(bridges, 0)
    for link in links:
        if link.master is not None and link.master in ports:
            ports[link.master] += 1
    plan = _InterfacesPlan(
        links=links,
        include_loopback=include_loopback,
        info=MetricFamily(
            name="netpath_interface_info",
            type="gauge",
            help="Interface of the host network namespace: kind, master bridge, MAC address "
            "and operational state.",
            labels=("interface", "kind", "bridge", "mac", "operstate"),
            samples=info,
        ),
        bridge_ports=MetricFamily(
            name="netpath_bridge_ports",
            type="gauge",
            help="Number of interfaces enslaved to the bridge.",
            labels=("bridge",),
            samples=tuple(((by_index[i].name,), n) for i, n in ports.items()),
        ),
        indexes=tuple(link.index for link in shown),
        labels=tuple((link.name,) for link in shown),
    )
    _plans[:] = [plan]
    return plan


# LinkStats' fields in the order of _COUNTERS
_ALL_COUNTERS = attrgetter(*(field for _, field, _ in _COUNTERS))


def render_interfaces(data: LinksData, include_loopback: bool = False) -> list[MetricFamily]:
    """netpath_interface_* and netpath_bridge_ports families (metrics.md "Interfaces").

    What the topology decides (info, bridge ports, label sets) is derived once
    per topology tuple; every poll reads each counter afresh.
    """
    plan = _interfaces_plan(data.links, include_loopback)
    stats = data.stats
    labels: Sequence[tuple[str]] = plan.labels
    try:
        counted = [stats[i] for i in plan.indexes]
    except KeyError:  # a link without stats (it vanished): leave it out
        kept = [
            (label, i) for label, i in zip(plan.labels, plan.indexes, strict=True) if i in stats
        ]
        labels = [label for label, _ in kept]
        counted = [stats[i] for _, i in kept]
    families = [plan.info]
    # One row of the eight counters per interface, turned into one column per counter.
    columns = list(zip(*map(_ALL_COUNTERS, counted), strict=True)) or [()] * len(_COUNTERS)
    for (metric, _, help_text), column in zip(_COUNTERS, columns, strict=True):
        families.append(
            MetricFamily(
                name=f"netpath_interface_{metric}_total",
                type="counter",
                help=help_text,
                labels=("interface",),
                samples=Series.counters(labels, column),
            )
        )
    families.append(plan.bridge_ports)
    return families


def render_routes(data: RoutesData) -> list[MetricFamily]:
    """netpath_route_info (metrics.md "Host diagnostics")."""
    return [
        MetricFamily(
            name="netpath_route_info",
            type="gauge",
            help="Route of the main routing table through a bridge, or a default route.",
            labels=("destination", "interface", "gateway"),
            samples=tuple(((r.destination, r.interface, r.gateway), 1) for r in data.routes),
        )
    ]


# --------------------------------------------------------------------------
# Registry rows (see exporter.registry)
# --------------------------------------------------------------------------


def make_links(cfg: Config) -> LinksCollector:
    return LinksCollector()


def make_routes(cfg: Config) -> RoutesCollector:
    return RoutesCollector()


def render_links(data: LinksData, poll: object, cfg: Config) -> list[MetricFamily]:
    return render_interfaces(data, include_loopback=cfg.links.include_loopback)


def render_routes_data(data: RoutesData, poll: object, cfg: Config) -> list[MetricFamily]:
    return render_routes(data)
