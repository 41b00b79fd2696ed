"""The CRI runtime's answers -> the model (pure): pod sandbox status, CNI configuration.

A pod is one workload: its sandbox owns the pod's network namespace (the pod's
containers share it). ``name`` is ``NAMESPACE/POD``, ``id`` the sandbox id.
Endpoints come from the CNI result the runtime keeps in a verbose
``PodSandboxStatus`` (containerd's ``cniResult``; CRI-O: the CRI's own IP
fields); networks from the CNI configuration the runtime loaded (containerd's
``Status(verbose).info["cniconfig"]``). The source that asks is
:mod:`exporter.sources.cri`.

Pod labels and annotations are never read into the model: they must not
become metric labels.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from exporter.model.workloads import (
    RUNTIME_CONTAINERD,
    RUNTIME_CRIO,
    Endpoint,
    Network,
    PortBinding,
    Workload,
)

if TYPE_CHECKING:
    from exporter.sources import cri_api_pb2 as pb

DEFAULT_BRIDGE = "cni0"  # the CNI bridge plugin's default
PROTOCOLS = {0: "tcp", 1: "udp", 2: "sctp"}
NETWORK_MODE_POD = "pod"
NETWORK_MODE_HOST = "host"
NAMESPACE_MODE_NODE = 2  # CRI NamespaceMode NODE: the pod uses the node's network namespace


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _json(text: str, what: str) -> Mapping[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"CRI {what} is not JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise ValueError(f"CRI {what} is {type(value).__name__}, expected an object")
    return value


def runtime_of(runtime_name: str) -> str:
    """The ``runtime`` label for a CRI ``Version.runtime_name``."""
    name = runtime_name.strip().lower()
    if name == "containerd":
        return RUNTIME_CONTAINERD
    if name in ("cri-o", "crio"):
        return RUNTIME_CRIO
    return name or "cri"


@dataclass(frozen=True, slots=True)
class CniNetwork:
    """A CNI network the runtime loaded, and the pod interface it makes (``eth0``)."""

    network: Network
    ifname: str


def _ipam_pools(ipam: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(subnet, gateway) pairs of an IPAM section (``subnet``/``gateway`` or ``ranges``)."""
    pools: list[tuple[str, str]] = []
    if ipam.get("subnet"):
        pools.append((str(ipam["subnet"]), str(ipam.get("gateway") or "")))
    for range_set in _seq(ipam.get("ranges")):
        for rng in _seq(range_set):
            r = _obj(rng)
            if r.get("subnet"):
                pools.append((str(r["subnet"]), str(r.get("gateway") or "")))
    return pools


def _version(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 9


def parse_cni_network(conflist: Mapping[str, Any], ifname: str, runtime: str) -> CniNetwork:
    """One CNI network configuration (a conflist, or a single plugin's conf) -> Network.

    ``driver`` is the first plugin's type; ``bridge`` the bridge plugin's
    interface (``cni0`` when unnamed), "" for routed plugins (ptp, Calico, ...).
    """
    name = str(conflist.get("name") or "")
    plugins = [_obj(p) for p in _seq(conflist.get("plugins"))] or [conflist]
    driver = str(plugins[0].get("type") or "")
    bridge = ""
    pools: list[tuple[str, str]] = []
    for plugin in plugins:
        if plugin.get("type") == "bridge" and not bridge:
            bridge = str(plugin.get("bridge") or DEFAULT_BRIDGE)
        pools += _ipam_pools(_obj(plugin.get("ipam")))
    pools.sort(key=lambda pool: _version(pool[0]))
    return CniNetwork(
        Network(
            name=name,
            id=name,
            driver=driver,
            bridge=bridge,
            subnets=tuple(s for s, _ in pools),
            gateways=tuple(g for _, g in pools),
            internal=False,
            enable_ipv6=any(_version(s) == 6 for s, _ in pools),
            runtime=runtime,
        ),
        ifname,
    )


def parse_cni_config(info: Mapping[str, str], runtime: str) -> tuple[CniNetwork, ...]:
    """``Status(verbose).info["cniconfig"]`` (containerd) -> the pod networks, loopback left out.

    Runtimes without that key (CRI-O) give no networks: endpoints then keep
    the network name "".
    """
    config = _json(info.get("cniconfig", ""), 'Status info "cniconfig"')
    out: list[CniNetwork] = []
    for item in _seq(config.get("Networks")):
        entry = _obj(item)
        ifname = str(entry.get("IFName") or "")
        conf = _obj(entry.get("Config"))
        source = str(conf.get("Source") or "")
        if source:
            conflist = _json(source, f"CNI configuration of {conf.get('Name')!r}")
        else:
            plugins = [
                json.loads(str(_obj(p).get("Source") or "{}")) for p in _seq(conf.get("Plugins"))
            ]
            conflist = {"name": conf.get("Name"), "plugins": plugins}
        if ifname == "lo" or any(
            _obj(p).get("type") == "loopback" for p in _seq(conflist.get("plugins"))
        ):
            continue
        out.append(parse_cni_network(conflist, ifname, runtime))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Sandbox:
    """What one verbose ``PodSandboxStatus`` says, kept while the sandbox lives."""

    workload: Workload  # netns_id not yet resolved (None)
    pid: int  # 0 if the runtime did not say
    netns_path: str  # the runtime's netns path ("" if unknown); valid in its mount namespace


def _ports(config: Mapping[str, Any]) -> tuple[PortBinding, ...]:
    out = []
    for item in _seq(config.get("port_mappings")):
        pm = _obj(item)
        host_port = int(pm.get("host_port") or 0)
        if not host_port:
            continue  # a containerPort without hostPort publishes nothing
        proto = pm.get("protocol", 0)
        protocol = (
            PROTOCOLS.get(proto, str(proto)) if isinstance(proto, int) else str(proto).lower()
        )
        out.append(
            PortBinding(
                protocol=protocol,
                container_port=int(pm.get("container_port") or 0),
                host_ip=str(pm.get("host_ip") or ""),
                host_port=host_port,
            )
        )
    return tuple(sorted(out, key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port)))


def _netns_path(info: Mapping[str, Any]) -> str:
    spec = _obj(info.get("runtimeSpec"))
    for ns in _seq(_obj(spec.get("linux")).get("namespaces")):
        entry = _obj(ns)
        if entry.get("type") == "network":
            return str(entry.get("path") or "")
    return ""


def _endpoints(
    info: Mapping[str, Any],
    status: pb.PodSandboxStatus,
    networks: Sequence[CniNetwork],
) -> tuple[Endpoint, ...]:
    """One endpoint per pod interface of the CNI result (``eth0``...), loopback left out.

    containerd's ``cniResult.Interfaces`` holds every network's interfaces by name:
    the pod's (with a ``Sandbox`` path), the host veths and bridges (without). A
    host interface that is no network's bridge is a veth; it is named on the
    endpoint only where that is unambiguous (one pod interface, one veth).
    """
    result = _obj(info.get("cniResult"))
    interfaces = {str(k): _obj(v) for k, v in _obj(result.get("Interfaces")).items()}
    by_if = {n.ifname: n.network for n in networks}
    bridges = {n.network.bridge for n in networks if n.network.bridge}
    pod_ifs = sorted(n for n, i in interfaces.items() if i.get("Sandbox") and n != "lo")
    host_veths = sorted(
        n for n, i in interfaces.items() if not i.get("Sandbox") and n not in bridges
    )
    out = []
    for ifname in pod_ifs:
        iface = interfaces[ifname]
        v4 = v6 = gw = ""
        for cfg in _seq(iface.get("IPConfigs")):
            c = _obj(cfg)
            ip = str(c.get("IP") or "")
            if ":" in ip:
                v6 = v6 or ip
            elif ip:
                v4 = v4 or ip
                gw = gw or str(c.get("Gateway") or "")
        net = by_if.get(ifname)
        out.append(
            Endpoint(
                network=net.name if net else "",
                network_id=net.id if net else "",
                ip=v4,
                ipv6=v6,
                mac=str(iface.get("Mac") or ""),
                gateway=gw,
                interface=host_veths[0] if len(pod_ifs) == 1 and len(host_veths) == 1 else "",
            )
        )
    if not out and status.network.ip:
        # No CNI result in the verbose info (CRI-O): the CRI's own IP fields.
        ips = [status.network.ip, *(a.ip for a in status.network.additional_ips)]
        net = networks[0].network if len(networks) == 1 else None
        out.append(
            Endpoint(
                network=net.name if net else "",
                network_id=net.id if net else "",
                ip=next((ip for ip in ips if ":" not in ip), ""),
                ipv6=next((ip for ip in ips if ":" in ip), ""),
                mac="",
                gateway="",
            )
        )
    return tuple(out)


def parse_sandbox(
    resp: pb.PodSandboxStatusResponse, networks: Sequence[CniNetwork], runtime: str
) -> Sandbox:
    """A verbose ``PodSandboxStatus`` answer -> the pod's workload (netns id unresolved)."""
    status = resp.status
    info = _json(resp.info.get("info", ""), f"PodSandboxStatus info of {status.id}")
    meta = status.metadata
    host_network = status.linux.namespaces.options.network == NAMESPACE_MODE_NODE
    endpoints = () if host_network else _endpoints(info, status, networks)
    pid = info.get("pid")
    return Sandbox(
        workload=Workload(
            id=status.id,
            name=f"{meta.namespace}/{meta.name}",
            image="",
            compose_project="",
            compose_service="",
            network_mode=NETWORK_MODE_HOST if host_network else NETWORK_MODE_POD,
            netns_id=None,
            endpoints=endpoints,
            ports=_ports(_obj(info.get("config"))),
            runtime=runtime,
            namespace=meta.namespace,
            pod=meta.name,
        ),
        pid=pid if isinstance(pid, int) and pid > 0 else 0,
        netns_path=_netns_path(info),
    )


def listed_sandbox(item: pb.PodSandbox, runtime: str) -> Sandbox:
    """A pod as ``ListPodSandbox`` names it: no endpoints, no path (its status is unreadable)."""
    meta = item.metadata
    return Sandbox(
        workload=Workload(
            id=item.id,
            name=f"{meta.namespace}/{meta.name}",
            image="",
            compose_project="",
            compose_service="",
            network_mode=NETWORK_MODE_POD,
            netns_id=None,
            endpoints=(),
            ports=(),
            runtime=runtime,
            namespace=meta.namespace,
            pod=meta.name,
        ),
        pid=0,
        netns_path="",
    )


def fill_gateways(
    networks: Iterable[Network], workloads: Iterable[Workload]
) -> tuple[Network, ...]:
    """Networks whose configuration names no gateway get the one their pods' CNI results show."""
    seen: dict[str, str] = {}
    for w in workloads:
        for ep in w.endpoints:
            if ep.network and ep.gateway:
                seen.setdefault(ep.network, ep.gateway)
    out = []
    for net in networks:
        gw = seen.get(net.name, "")
        if gw and net.subnets and not any(net.gateways):
            gw_version = ipaddress.ip_address(gw).version
            gateways = tuple(gw if _version(s) == gw_version else "" for s in net.subnets)
            out.append(replace(net, gateways=gateways))
        else:
            out.append(net)
    return tuple(out)
