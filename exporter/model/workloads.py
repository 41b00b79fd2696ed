"""Runtime-neutral workloads and networks (PROVISIONAL copy of the planned seams API;
replaced by the lead's file when the ``seams:`` commit is merged)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.model import PortBinding

__all__ = ["Endpoint", "Network", "PortBinding", "SourceData", "Workload"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    network: str
    network_id: str
    ip: str
    ipv6: str
    mac: str
    gateway: str
    interface: str = ""


@dataclass(frozen=True, slots=True)
class Workload:
    runtime: str
    id: str
    name: str
    namespace: str
    pod: str
    image: str
    compose_project: str
    compose_service: str
    network_mode: str
    netns_id: int | None
    endpoints: tuple[Endpoint, ...]
    ports: tuple[PortBinding, ...]
    no_path_reason: str = ""


@dataclass(frozen=True, slots=True)
class Network:
    runtime: str
    name: str
    id: str
    driver: str
    bridge: str
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    internal: bool
    enable_ipv6: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class SourceData:
    runtime: str
    version: str
    workloads: tuple[Workload, ...]
    networks: tuple[Network, ...]
