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
# kube-proxy's Service families (no ``manager`` label: only kube-proxy writes Services)
SERVICE_ENDPOINT = "service_endpoint"
SERVICE_REJECTED = "service_rejected"
SERVICE_EXTERNAL = "service_external"
_SERVICE_PORT = ("namespace", "service", "port", "protocol")

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
    SERVICE_ENDPOINT: (*_SERVICE_PORT, "endpoint"),
    SERVICE_REJECTED: (*_SERVICE_PORT, "reason"),
    SERVICE_EXTERNAL: (*_SERVICE_PORT, "via"),
}


@dataclass(frozen=True, slots=True)
class CounterFamily:
    """How a family's series are rendered: a counter of the rules' packets (and bytes)."""

    name: str  # without _total; packets families end in _packets / _connections
    help: str
    with_bytes: str = ""  # the bytes family's name (without _total), "" if none


# The families rendered by exporter.metrics.meaning, in rendering order. A new
# family is a name here, its labels in FAMILY_LABELS, and Series that name it.
COUNTER_FAMILIES: Mapping[str, CounterFamily] = {
    DROPPED: CounterFamily(
        "netpath_dropped_packets",
        "Packets dropped by a firewall manager's DROP rules, per destination network and reason.",
        "netpath_dropped_bytes",
    ),
    PUBLISHED: CounterFamily(
        "netpath_published_port_connections",
        "New connections to a published port (packets of its DNAT rule; nat sees "
        "the first packet of each connection).",
    ),
    MASQUERADE: CounterFamily(
        "netpath_masquerade_connections",
        "New connections masqueraded on their way out (packets of the MASQUERADE "
        "rule), per network, or per workload where the manager keeps a rule per workload.",
    ),
    FORWARDED: CounterFamily(
        "netpath_forwarded_packets",
        "Packets accepted by a firewall manager's per-network forward rules, per direction.",
        "netpath_forwarded_bytes",
    ),
    SERVICE_ENDPOINT: CounterFamily(
        "netpath_service_endpoint_connections",
        "New connections a Service sent to the endpoint (packets of kube-proxy's DNAT rule "
        "for it; nat sees the first packet of each connection). iptables mode only.",
    ),
    SERVICE_REJECTED: CounterFamily(
        "netpath_service_rejected_packets",
        "Packets kube-proxy rejected or dropped for the Service: no endpoints, no local "
        "endpoints, or a source outside the load balancer's source ranges.",
    ),
    SERVICE_EXTERNAL: CounterFamily(
        "netpath_service_external_connections",
        "New connections to the Service from outside its ClusterIP: by NodePort, external "
        "IP or load-balancer IP (packets of kube-proxy's jump into its external chain).",
    ),
}


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a Kubernetes Service as kube-proxy's rules describe it."""

    namespace: str
    service: str
    port: str  # the port's name ("" for a Service's one unnamed port)
    protocol: str  # "tcp", "udp", "sctp"
    cluster_ips: tuple[str, ...]  # its ClusterIP(s); () where the rules do not name them
    # (address, port) it is reached at besides NodePorts: ClusterIP, external IPs,
    # load-balancer IPs; () where the rules do not name them (nftables mode keeps them in maps)
    addresses: tuple[tuple[str, int], ...]
    node_ports: tuple[int, ...]
    endpoints: tuple[tuple[str, int], ...]  # (address, port), sorted

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.service, self.port, self.protocol)


def endpoint_label(ip: str, port: int) -> str:
    """``10.0.0.1:80`` / ``[fd00::1]:80``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


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
    services: tuple[ServicePort, ...] = ()  # kube-proxy's Services, sorted by key


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
