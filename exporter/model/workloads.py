"""Workloads: whoever owns the network namespace at the far end of a host veth.

A Docker or Podman container, or a Kubernetes pod (its sandbox; the pod's
containers share it). Every discovery source (:mod:`exporter.sources`)
produces these same frozen types, and the veth -> bridge -> network join
(:mod:`exporter.workloads`) is written once over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RUNTIME_DOCKER = "docker"
RUNTIME_PODMAN = "podman"
RUNTIME_CONTAINERD = "containerd"
RUNTIME_CRIO = "cri-o"


@dataclass(frozen=True, slots=True)
class Network:
    """A network as its runtime calls it (Docker/Podman network, CNI network)."""

    name: str
    id: str  # full id; Podman: the name; CNI: the name
    driver: str
    bridge: str  # host bridge interface name ("" if not a bridge network)
    subnets: tuple[str, ...]  # IPv4 first, then IPv6
    gateways: tuple[str, ...]
    internal: bool
    enable_ipv6: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    runtime: str = RUNTIME_DOCKER
    isolated: bool = False  # Podman networks created with isolate=true


@dataclass(frozen=True, slots=True)
class PortBinding:
    protocol: str  # "tcp" | "udp" | "sctp"
    container_port: int
    host_ip: str  # "" or "0.0.0.0" for all
    host_port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A workload's attachment to one network."""

    network: str  # network name
    network_id: str
    ip: str  # IPv4 address, "" if none
    ipv6: str
    mac: str
    gateway: str
    interface: str = ""  # host-side veth name when the runtime reports it (CNI result)


@dataclass(frozen=True, slots=True)
class Workload:
    """One network namespace's owner: a container or a pod sandbox."""

    id: str  # full id (container id, or the pod's sandbox id)
    name: str  # container name without "/"; on Kubernetes "NAMESPACE/POD"
    image: str
    compose_project: str
    compose_service: str
    network_mode: str  # "bridge", "host", "none", "container:<id>", a network name; "pod"
    netns_id: int | None  # nsid of its network namespace as seen from the host; None if unknown
    endpoints: tuple[Endpoint, ...]
    ports: tuple[PortBinding, ...]
    runtime: str = RUNTIME_DOCKER
    namespace: str = ""  # Kubernetes namespace ("" elsewhere)
    pod: str = ""  # Kubernetes pod name ("" elsewhere)
    no_path_reason: str = ""  # why no host veth can exist (rootless networking), "" otherwise


@dataclass(frozen=True, slots=True)
class SourceData:
    """What one discovery source read: its runtime's running workloads and networks."""

    version: str
    workloads: tuple[Workload, ...]  # running only, sorted by name
    networks: tuple[Network, ...]  # sorted by name
    runtime: str = RUNTIME_DOCKER
