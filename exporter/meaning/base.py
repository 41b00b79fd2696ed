"""The seam every firewall manager implements, and what it yields.

A *manager* is the program that wrote a set of rules (Docker, netavark, the
CNI plugins, kube-proxy). Its interpretation is pure: it reads one
:class:`~exporter.model.FirewallData` and the host's :class:`Topology` (the
runtimes' networks and workload addresses) and says which rules feed which
manager-neutral series (:class:`Series`), each series naming the rules that
feed it. The renderer (:mod:`exporter.metrics.meaning`) sums those rules'
counters on every poll; ``explain`` and ``/path`` show the same rules with
the same meaning, so the three can never disagree.

Adding a manager is a module with a class of this shape plus a row in
:data:`exporter.meaning.MANAGERS`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.model import FirewallData, SourceData

# The manager-neutral families a series can belong to, with their label names
# (``manager`` first; see docs/metrics.md).
DROPPED = "dropped"
PUBLISHED = "published"
MASQUERADE = "masquerade"
FORWARDED = "forwarded"

FAMILY_LABELS: Mapping[str, tuple[str, ...]] = {
    DROPPED: ("manager", "network", "bridge", "reason"),
    PUBLISHED: (
        "manager",
        "container",
        "namespace",
        "pod",
        "network",
        "protocol",
        "host_ip",
        "host_port",
        "container_port",
    ),
    MASQUERADE: ("manager", "network", "bridge", "subnet", "container", "namespace", "pod"),
    FORWARDED: ("manager", "network", "bridge", "direction"),
}


@dataclass(frozen=True, slots=True, order=True)
class RuleRef:
    """A rule of one FirewallData: ``fw.tables[table].chains[chain].rules[rule]``."""

    table: int
    chain: int
    rule: int


@dataclass(frozen=True, slots=True)
class Series:
    """One derived series: its family, label values (FAMILY_LABELS order), the rules it sums."""

    family: str
    labels: tuple[str, ...]
    rules: tuple[RuleRef, ...]

    def label(self, name: str) -> str:
        return self.labels[FAMILY_LABELS[self.family].index(name)]


@dataclass(frozen=True, slots=True)
class Meaning:
    """What one manager's rules mean on this host."""

    manager: str
    layout: str  # the shape of its rules ("classic", "v29-nftables", "iptables", ...)
    backend: str  # the firewall backend its rules were read from ("" if none)
    tables: tuple[int, ...]  # indexes of the tables (in FirewallData.tables) it interpreted
    series: tuple[Series, ...]  # sorted by (family, labels)


@dataclass(frozen=True, slots=True)
class WorkloadAddress:
    name: str  # the workload's ``container`` label
    namespace: str
    pod: str
    network: str


@dataclass(frozen=True, slots=True)
class Topology:
    """What the managers may know of the host besides the rules (pure, from the sources)."""

    # bridge -> network name, of every runtime's networks
    networks: Mapping[str, str] = field(default_factory=dict)
    # address (no prefix) -> the workload holding it
    workloads: Mapping[str, WorkloadAddress] = field(default_factory=dict)
    # (subnet, bridge) of every network with a bridge
    subnets: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = ()
    # (runtime, network) for every network, by name
    runtimes: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[SourceData, ...] = ()

    def network(self, bridge: str) -> str:
        """The network on ``bridge``; the bridge's own name if no runtime names it."""
        return self.networks.get(bridge, bridge)

    def bridge_of_ip(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        for net, bridge in self.subnets:
            if addr.version == net.version and addr in net:
                return bridge
        return ""

    def has_runtime(self, runtime: str) -> bool:
        return any(s.runtime == runtime for s in self.sources)


class Manager(Protocol):
    """One firewall manager's interpretation of the rules (pure)."""

    name: str

    def interpret(self, fw: FirewallData, topo: Topology) -> Meaning | None:
        """Its meaning, or None when this host holds none of its rules."""
        ...


def plain_ip(addr: str) -> str:
    """``172.18.0.2/32`` -> ``172.18.0.2``; ``fd00::2/128`` -> ``fd00::2``."""
    return addr.split("/", 1)[0]


def build_topology(sources: Sequence[SourceData], bridge_of: Mapping[str, str]) -> Topology:
    """The topology of every source's networks and workloads.

    ``bridge_of`` maps network name -> bridge for networks whose bridge the
    runtime does not report itself (Docker's derived ``br-<id>`` names).
    """
    networks: dict[str, str] = {}
    runtimes: dict[str, str] = {}
    subnets = []
    for src in sources:
        for net in src.networks:
            runtimes.setdefault(net.name, src.runtime)
            bridge = net.bridge or bridge_of.get(net.name, "")
            if not bridge:
                continue
            networks[bridge] = net.name
            for sub in net.subnets:
                try:
                    subnets.append((ipaddress.ip_network(sub, strict=False), bridge))
                except ValueError:
                    continue
    workloads: dict[str, WorkloadAddress] = {}
    for src in sources:
        for w in src.workloads:
            for ep in w.endpoints:
                for ip in (ep.ip, ep.ipv6):
                    if ip:
                        workloads[plain_ip(ip)] = WorkloadAddress(
                            w.name, w.namespace, w.pod, ep.network
                        )
    return Topology(networks, workloads, tuple(subnets), runtimes, tuple(sources))
