"""The path of one workload, hop by hop, as plain data (what explain and /path show)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.model import (
    FirewallData,
    LinksData,
    Route,
    Workload,
)

# --------------------------------------------------------------------------
# The path (plain data)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """A packet and a byte counter, with their rates over the sampling window (None: unknown)."""

    packets: int | None
    bytes: int | None
    packets_per_second: float | None = None
    bytes_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class LinkHop:
    """An interface of the host namespace; ``receive``/``transmit`` as the host sees them."""

    name: str
    ifindex: int
    kind: str
    mac: str
    operstate: str
    receive: Figures | None  # None if the kernel gave no counters
    transmit: Figures | None
    receive_dropped: int | None = None
    transmit_dropped: int | None = None
    receive_errors: int | None = None
    transmit_errors: int | None = None
    ports: int | None = None  # bridges: number of enslaved interfaces


@dataclass(frozen=True, slots=True)
class ContainerInterfaceHop:
    """The container's end of the veth; figures from the container's point of view."""

    name: str  # "" if it could not be read
    ifindex: int | None  # in the container's namespace
    ip: str  # "172.18.0.2/16" (prefix of the network's subnet), "" if none
    ipv6: str
    mac: str
    gateway: str
    receive: Figures | None  # what its host veth transmitted
    transmit: Figures | None  # what its host veth received


@dataclass(frozen=True, slots=True)
class NetworkHop:
    name: str
    id: str
    driver: str
    bridge: str
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    internal: bool


@dataclass(frozen=True, slots=True)
class RuleView:
    """One firewall rule on the path; ``meanings``: the meaning families it feeds."""

    family: str
    backend: str
    table: str
    chain: str
    rule: str
    figures: Figures
    meanings: tuple[str, ...] = ()  # e.g. "drop: isolation", "published tcp 8080 -> 80"


@dataclass(frozen=True, slots=True)
class ChainView:
    family: str
    backend: str
    table: str
    chain: str
    hook: str  # "prerouting", ... for built-in/base chains, "" for the others
    policy: str | None
    policy_figures: Figures | None
    rules: tuple[RuleView, ...]
    other_rules: int  # rules of the chain left out (they name only other networks)


@dataclass(frozen=True, slots=True)
class PortView:
    protocol: str
    host_ip: str
    host_port: int
    container_port: int
    connections: Figures  # packets of the DNAT rules: new connections
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class MasqueradeView:
    subnet: str
    connections: Figures
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class DropView:
    reason: str
    figures: Figures
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class Leg:
    """The path through one network of the container (one veth)."""

    container_interface: ContainerInterfaceHop
    veth: LinkHop
    bridge: LinkHop | None
    network: NetworkHop | None
    routes: tuple[Route, ...]  # the main table's routes through the bridge
    chains: tuple[ChainView, ...]
    published_ports: tuple[PortView, ...]
    masquerade: tuple[MasqueradeView, ...]
    drops: tuple[DropView, ...]


@dataclass(frozen=True, slots=True)
class UplinkRoute:
    route: Route
    uplink: LinkHop | None


@dataclass(frozen=True, slots=True)
class ContainerPath:
    container: Workload
    legs: tuple[Leg, ...]
    default_routes: tuple[UplinkRoute, ...]
    layout: str  # the firewall manager's layout ("unknown" if none)
    backend: str  # the firewall backend its rules were read from ("" if none)
    interval: float | None  # seconds between the two readings; None: no rates
    firewall_errors: tuple[str, ...] = ()
    manager: str = "docker"  # the firewall manager of the workload's runtime
    # conntrack entries whose original or reply source is the workload's address on each
    # network, from the last attribution dump; None when conntrack was not read
    conntrack: ConntrackView | None = None


@dataclass(frozen=True, slots=True)
class ConntrackView:
    entries: Mapping[str, int]  # network -> entries
    dump_age: float  # seconds since the dump finished


def manager_title(manager: str) -> str:
    """How text and page name a firewall manager ("Docker", "netavark", ...)."""
    return "Docker" if manager == "docker" else manager


@dataclass(frozen=True, slots=True)
class Baseline:
    """The earlier reading the rates are computed from."""

    links: LinksData | None
    firewall: FirewallData | None
    seconds: float  # time between that reading and the current one


class ExplainError(Exception):
    """The container cannot be explained; the message says why, for the user."""
