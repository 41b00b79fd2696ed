"""Docker's answers -> the model (pure): container inspect, network list, events.

Parses what the Docker Engine API answers (``GET /containers/ID/json``,
``GET /networks``, the event stream) into the runtime-neutral types of
:mod:`exporter.model.workloads`; no I/O here. The Docker source
(:mod:`exporter.sources.docker`) does the reading.

A network's bridge is named by Docker's rules: ``docker0`` for the network
``bridge``, ``br-<12 hex of the id>``, or the network's
``com.docker.network.bridge.name``. A container's network namespace is opened
at its ``SandboxKey``, else ``/proc/<State.Pid>/ns/net``.

Only the compose project and service labels are read; no other container
label or environment variable ever becomes a metric label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.model import (
    Endpoint,
    Network,
    PortBinding,
    Workload,
)
from exporter.sources.engine import (
    ENDPOINTS,
    INSPECT,
    NETWORKS,
    REMOVE,
)
from exporter.sources.jsonshape import ip_version, json_list, json_object

LABEL_COMPOSE_PROJECT = "com.docker.compose.project"
LABEL_COMPOSE_SERVICE = "com.docker.compose.service"
OPTION_BRIDGE_NAME = "com.docker.network.bridge.name"
# Predefined networks without a veth of their own.
NO_VETH_NETWORKS = frozenset({"host", "none"})

# Events that change what we export. "die"/"destroy" remove a container
# without asking Docker; the others re-inspect it.
CONTAINER_EVENTS = ("start", "die", "destroy", "rename")
NETWORK_EVENTS = ("connect", "disconnect", "create", "destroy")
# What the source subscribes to (the ``filters`` of ``GET /events``).
EVENT_FILTERS = {
    "type": ["container", "network"],
    "event": sorted(set(CONTAINER_EVENTS) | set(NETWORK_EVENTS)),
}


DOCKER_API = "Docker API"


def network_bridge(name: str, network_id: str, driver: str, options: Mapping[str, str]) -> str:
    """The host bridge interface of a Docker network ("" if it is not a bridge network)."""
    if driver != "bridge":
        return ""
    explicit = options.get(OPTION_BRIDGE_NAME, "")
    if explicit:
        return explicit
    if name == "bridge":
        return "docker0"
    return f"br-{network_id[:12]}"


def parse_network(raw: Mapping[str, Any]) -> Network:
    """One item of ``GET /networks`` (or a network inspect) -> Network."""
    name = str(raw.get("Name") or "")
    net_id = str(raw.get("Id") or raw.get("ID") or "")
    driver = str(raw.get("Driver") or "")
    options = {
        str(k): str(v)
        for k, v in json_object(DOCKER_API, raw.get("Options"), "network Options").items()
    }
    ipam = json_list(
        DOCKER_API,
        json_object(DOCKER_API, raw.get("IPAM"), "network IPAM").get("Config"),
        "IPAM.Config",
    )
    configs = [json_object(DOCKER_API, c, "an IPAM.Config item") for c in ipam]
    pools = sorted(
        (
            (str(c.get("Subnet") or ""), str(c.get("Gateway") or ""))
            for c in configs
            if c.get("Subnet")
        ),
        key=lambda pool: ip_version(pool[0]),
    )
    return Network(
        name=name,
        id=net_id,
        driver=driver,
        bridge=network_bridge(name, net_id, driver, options),
        subnets=tuple(s for s, _ in pools),
        gateways=tuple(g for _, g in pools),
        internal=bool(raw.get("Internal")),
        enable_ipv6=bool(raw.get("EnableIPv6")),
        options=options,
    )


def parse_ports(raw: Mapping[str, Any] | None) -> tuple[PortBinding, ...]:
    """``NetworkSettings.Ports`` ({"80/tcp": [{"HostIp", "HostPort"}]}) -> published ports."""
    out: list[PortBinding] = []
    for key, bindings in json_object(DOCKER_API, raw, "NetworkSettings.Ports").items():
        port, _, proto = str(key).partition("/")
        if not bindings or not port.isdigit():
            continue
        for item in json_list(DOCKER_API, bindings, f"the bindings of {key}"):
            b = json_object(DOCKER_API, item, f"a binding of {key}")
            host_port = str(b.get("HostPort") or "")
            if not host_port.isdigit():
                continue
            out.append(
                PortBinding(
                    protocol=proto or "tcp",
                    container_port=int(port),
                    host_ip=str(b.get("HostIp") or ""),
                    host_port=int(host_port),
                )
            )
    return tuple(sorted(out, key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port)))


def parse_container(raw: Mapping[str, Any], netns_id: int | None = None) -> Workload:
    """``GET /containers/ID/json`` -> Workload (compose labels only, nothing else)."""
    config = json_object(DOCKER_API, raw.get("Config"), "container Config")
    labels = json_object(DOCKER_API, config.get("Labels"), "Config.Labels")
    settings = json_object(DOCKER_API, raw.get("NetworkSettings"), "container NetworkSettings")
    mode = str(
        json_object(DOCKER_API, raw.get("HostConfig"), "container HostConfig").get("NetworkMode")
        or ""
    )
    if mode in ("", "default"):
        mode = "bridge"
    endpoints = tuple(
        Endpoint(
            network=str(name),
            network_id=str(ep.get("NetworkID") or ""),
            ip=str(ep.get("IPAddress") or ""),
            ipv6=str(ep.get("GlobalIPv6Address") or ""),
            mac=str(ep.get("MacAddress") or ""),
            gateway=str(ep.get("Gateway") or ""),
        )
        for name, ep in sorted(
            (str(n), json_object(DOCKER_API, e, f"the endpoint of network {n}"))
            for n, e in json_object(
                DOCKER_API, settings.get("Networks"), "NetworkSettings.Networks"
            ).items()
            if e is not None
        )
        if name not in NO_VETH_NETWORKS
    )
    return Workload(
        id=str(raw.get("Id") or ""),
        name=str(raw.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or raw.get("Image") or ""),
        compose_project=str(labels.get(LABEL_COMPOSE_PROJECT) or ""),
        compose_service=str(labels.get(LABEL_COMPOSE_SERVICE) or ""),
        network_mode=mode,
        netns_id=netns_id,
        endpoints=endpoints,
        ports=parse_ports(settings.get("Ports")),
    )


def container_running(raw: Mapping[str, Any]) -> bool:
    return bool((raw.get("State") or {}).get("Running"))


def netns_paths(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Where a container's network namespace can be opened: SandboxKey, then /proc/PID/ns/net."""
    paths: list[str] = []
    key = str((raw.get("NetworkSettings") or {}).get("SandboxKey") or "")
    if key:
        paths.append(key)
    pid = (raw.get("State") or {}).get("Pid") or 0
    if isinstance(pid, int) and pid > 0:
        paths.append(f"/proc/{pid}/ns/net")
    return tuple(paths)


def parse_event(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Docker event -> (container id, what to do) or ("", "networks"), or None.

    What to do: "remove" (died, destroyed), "inspect" (started, renamed, created)
    or "endpoints" (a network was connected or disconnected).
    """
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    actor = event.get("Actor") or {}
    if kind == "container":
        cid = str(actor.get("ID") or event.get("id") or "")
        if not cid or action not in CONTAINER_EVENTS:
            return None
        return cid, REMOVE if action in ("die", "destroy") else INSPECT
    if kind == "network":
        if action in ("create", "destroy"):
            return "", NETWORKS
        if action in ("connect", "disconnect"):
            cid = str((actor.get("Attributes") or {}).get("container") or "")
            return (cid, ENDPOINTS) if cid else None
    return None
