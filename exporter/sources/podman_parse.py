"""Podman's answers -> the model (pure): container inspect, libpod network list, events.

Podman serves the Docker Engine API beside its own libpod API; the source
(:mod:`exporter.sources.podman`) reads containers and events from the former
and networks from the latter (the compatible endpoints name no bridge). No I/O
here but :func:`isolated_in_file`, which reads a network's JSON file. Podman's
quirks, as Podman 4.3 answers:

- an endpoint's ``NetworkID`` is the network's *name*: the real id is looked up
  in the network list;
- ``network connect``/``disconnect`` events carry the container in ``Actor.ID``
  (Docker: in the attributes); a removed container says ``remove`` (Docker:
  ``destroy``);
- netavark's ``isolate`` option is in the network's options (API) and its JSON
  file (``/etc/containers/networks/NAME.json``);
- ``SandboxKey`` (``/run/netns/netns-<uuid>``) is in Podman's mount namespace;
  ``/proc/<State.Pid>/ns/net`` is tried first.

Containers with no host veth (user-mode networking: slirp4netns, pasta, the
rootless default; bridge networks of rootless Podman, whose veths live in its
rootless network namespace; host or none networking) get ``no_path_reason``
saying why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from exporter.model.workloads import RUNTIME_PODMAN, Endpoint, Network, Workload
from exporter.sources.docker_parse import parse_ports
from exporter.sources.engine import ENDPOINTS, INSPECT, NETWORKS, REMOVE
from exporter.sources.jsonshape import ip_version, json_list, json_object

PODMAN_API = "Podman API"

RUNTIME = RUNTIME_PODMAN

COMPOSE_PROJECT = ("com.docker.compose.project", "io.podman.compose.project")
COMPOSE_SERVICE = ("com.docker.compose.service", "io.podman.compose.service")

# Podman's container events: which remove, which re-inspect. Others (create, init,
# cleanup, exec, ...) change nothing we export.
REMOVE_ACTIONS = frozenset({"die", "died", "stop", "kill", "remove", "destroy"})
INSPECT_ACTIONS = frozenset({"start", "restart", "rename", "unpause"})

MODES_WITHOUT_VETH = {
    "host": "host network: no veth of its own",
    "none": "no network",
    "slirp4netns": "user-mode networking (slirp4netns): no host veth",
    "pasta": "user-mode networking (pasta): no host veth",
}
ROOTLESS_BRIDGE = "rootless Podman: the veth is in the rootless network namespace, not on the host"


def is_isolated(options: Mapping[str, str]) -> bool:
    """netavark's ``isolate`` option: ``true`` (or ``strict``, netavark 1.6+)."""
    return options.get("isolate", "").lower() in ("true", "strict", "1")


def parse_network(raw: Mapping[str, Any]) -> Network:
    """One item of libpod's ``GET /libpod/networks/json`` -> Network."""
    name = str(raw.get("name") or "")
    driver = str(raw.get("driver") or "")
    options = {
        str(k): str(v)
        for k, v in json_object(PODMAN_API, raw.get("options"), "network options").items()
    }
    pools = sorted(
        (
            (str(s.get("subnet") or ""), str(s.get("gateway") or ""))
            for s in (
                json_object(PODMAN_API, item, "a network subnet")
                for item in json_list(PODMAN_API, raw.get("subnets"), "subnets")
            )
            if s.get("subnet")
        ),
        key=lambda pool: ip_version(pool[0]),
    )
    return Network(
        runtime=RUNTIME,
        name=name,
        id=str(raw.get("id") or ""),
        driver=driver,
        # macvlan/ipvlan name their parent interface here: only a bridge is "the" bridge.
        bridge=str(raw.get("network_interface") or "") if driver == "bridge" else "",
        subnets=tuple(s for s, _ in pools),
        gateways=tuple(g for _, g in pools),
        internal=bool(raw.get("internal")),
        enable_ipv6=bool(raw.get("ipv6_enabled")),
        options=options,
        isolated=is_isolated(options),
    )


def isolated_in_file(dirs: Iterable[str], name: str) -> bool | None:
    """The ``isolate`` option from the network's JSON file; None if no file is readable."""
    if not name or "/" in name or name.startswith("."):
        return None
    for d in dirs:
        try:
            raw = json.loads((Path(d) / f"{name}.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, Mapping):
            options = raw.get("options")
            if isinstance(options, Mapping):
                return is_isolated({str(k): str(v) for k, v in options.items()})
            return False
    return None


def _label(labels: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = labels.get(key)
        if value:
            return str(value)
    return ""


def no_path_reason(mode: str, rootless: bool) -> str:
    """Why a container in network mode ``mode`` has no host veth ("" if it has one)."""
    if mode in MODES_WITHOUT_VETH:
        return MODES_WITHOUT_VETH[mode]
    if mode.startswith("container:"):
        return f"shares the network namespace of container {mode.split(':', 1)[1][:12]}"
    if mode.startswith("ns:"):
        return f"joins the network namespace {mode[3:]}"
    if rootless:
        return ROOTLESS_BRIDGE
    return ""


def parse_container(
    raw: Mapping[str, Any],
    networks: Mapping[str, Network],
    *,
    rootless: bool = False,
    netns_id: int | None = None,
) -> Workload:
    """A Docker-compatible container inspect -> Workload (compose labels only, nothing else).

    ``networks`` by name give the endpoints their network ids (Podman's
    ``NetworkID`` is the name).
    """
    config = json_object(PODMAN_API, raw.get("Config"), "container Config")
    labels = json_object(PODMAN_API, config.get("Labels"), "Config.Labels")
    settings = json_object(PODMAN_API, raw.get("NetworkSettings"), "container NetworkSettings")
    mode = str(
        json_object(PODMAN_API, raw.get("HostConfig"), "container HostConfig").get("NetworkMode")
        or ""
    )
    if mode in ("", "default"):
        mode = "bridge"
    endpoints: list[Endpoint] = []
    for name, ep in sorted(
        (str(n), json_object(PODMAN_API, e, f"the endpoint of network {n}"))
        for n, e in json_object(
            PODMAN_API, settings.get("Networks"), "NetworkSettings.Networks"
        ).items()
        if e is not None
    ):
        net = networks.get(name)
        endpoints.append(
            Endpoint(
                network=name,
                network_id=net.id if net is not None else str(ep.get("NetworkID") or ""),
                ip=str(ep.get("IPAddress") or ""),
                ipv6=str(ep.get("GlobalIPv6Address") or ""),
                mac=str(ep.get("MacAddress") or ""),
                gateway=str(ep.get("Gateway") or ""),
            )
        )
    reason = no_path_reason(mode, rootless)
    return Workload(
        runtime=RUNTIME,
        id=str(raw.get("Id") or ""),
        name=str(raw.get("Name") or "").lstrip("/"),
        namespace="",
        pod="",
        image=str(config.get("Image") or raw.get("Image") or ""),
        compose_project=_label(labels, COMPOSE_PROJECT),
        compose_service=_label(labels, COMPOSE_SERVICE),
        network_mode=mode,
        netns_id=netns_id,
        endpoints=tuple(endpoints),
        ports=parse_ports(settings.get("Ports")),
        no_path_reason=reason,
    )


def netns_paths(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Where the container's network namespace opens: /proc/PID/ns/net, then SandboxKey.

    (Podman's SandboxKey is a bind mount in Podman's own mount namespace.)
    """
    paths: list[str] = []
    pid = json_object(PODMAN_API, raw.get("State"), "container State").get("Pid") or 0
    if isinstance(pid, int) and pid > 0:
        paths.append(f"/proc/{pid}/ns/net")
    key = str(
        json_object(PODMAN_API, raw.get("NetworkSettings"), "NetworkSettings").get("SandboxKey")
        or ""
    )
    if key:
        paths.append(key)
    return tuple(paths)


def parse_event(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Podman event (Docker-compatible stream) -> (container id, what to do), or None."""
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    actor = json_object(PODMAN_API, event.get("Actor"), "event Actor")
    if kind == "container":
        cid = str(actor.get("ID") or event.get("id") or "")
        if not cid:
            return None
        if action in REMOVE_ACTIONS:
            return cid, REMOVE
        if action in INSPECT_ACTIONS:
            return cid, INSPECT
        return None
    if kind == "network":
        if action in ("connect", "disconnect"):
            attrs = json_object(PODMAN_API, actor.get("Attributes"), "event Attributes")
            cid = str(attrs.get("container") or actor.get("ID") or "")
            return (cid, ENDPOINTS) if cid else None
        if action in ("create", "remove", "destroy"):
            return "", NETWORKS
    return None
