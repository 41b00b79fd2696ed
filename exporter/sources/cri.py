"""Pods of a Kubernetes node, read from its container runtime over the CRI (containerd, CRI-O).

Each pod is one workload: its sandbox owns the pod's network namespace (the
pod's containers share it). ``name`` is ``NAMESPACE/POD``, ``id`` the sandbox
id, ``netns_id`` the id the exporter's namespace gave ``/proc/<sandbox
pid>/ns/net`` (that path works from any mount namespace, unlike the runtime's
netns bind mounts). Endpoints and the host veth come from the CNI result the
runtime keeps; networks from the CNI configuration the runtime loaded.

What each poll costs. The CRI has no event stream that every runtime serves
for sandboxes, so the source polls, cheaply:

- ``ListPodSandbox`` filtered to ready sandboxes, every poll: one small
  message per pod (id, name, namespace, attempt, creation time);
- ``PodSandboxStatus(verbose=true)`` only for a sandbox not seen before (or
  seen with another creation time or attempt). It is the costly call — kilobytes
  of JSON per pod (runtime spec, CNI result) — and what it says does not change
  while the sandbox lives: the CNI plugins run once, when the sandbox starts, and
  a restarted pod gets a new sandbox. A steady-state poll therefore makes one
  CRI call however many pods run;
- ``Status(verbose=true)`` (the runtime's loaded CNI configuration) and
  ``Version`` when a new sandbox appeared, and after (re)connecting.

A sandbox that leaves the list is forgotten at once. After any failed call the
channel is closed and every cached status dropped: the next poll connects
afresh and reads everything again, so a restarted runtime is picked up without
waiting for gRPC's reconnect backoff.

Endpoint: ``--cri.endpoint`` (config ``cri.endpoint``). Unset, the first of
containerd's and CRI-O's standard sockets that exists is used; while neither
exists (or the socket's runtime does not serve the CRI, as Docker's own
containerd does not) the source is absent, not failing. Once it has answered,
failures are failures.

Pod labels and annotations are never read into the model: they must not
become metric labels.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from exporter.collector import CollectorAbsent, CollectorError
from exporter.collectors.links import read_netnsid
from exporter.config import Config
from exporter.model.workloads import (
    RUNTIME_CONTAINERD,
    RUNTIME_CRIO,
    Endpoint,
    Network,
    PortBinding,
    SourceData,
    Workload,
)

if TYPE_CHECKING:  # grpc (~20 MB resident) is imported only once a CRI socket exists
    import grpc

    from exporter.sources import cri_api_pb2 as pb
    from exporter.sources.cri_client import CriClient

log = logging.getLogger(__name__)

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CRIO_SOCKET = "/var/run/crio/crio.sock"
DEFAULT_ENDPOINTS = (CONTAINERD_SOCKET, CRIO_SOCKET)
DEFAULT_BRIDGE = "cni0"  # the CNI bridge plugin's default
PROTOCOLS = {0: "tcp", 1: "udp", 2: "sctp"}
NETWORK_MODE_POD = "pod"
NETWORK_MODE_HOST = "host"
NAMESPACE_MODE_NODE = 2  # CRI NamespaceMode NODE: the pod uses the node's network namespace

# --------------------------------------------------------------------------
# Parsing (pure): the runtime's verbose JSON -> model
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------


def _sandbox_key(item: pb.PodSandbox) -> tuple[int, int]:
    return (item.created_at, item.metadata.attempt)


def _rpc_code(exc: grpc.RpcError) -> str:
    """The gRPC status code's name (``UNAVAILABLE``...), "" if the error carries none."""
    code = exc.code() if hasattr(exc, "code") else None
    return str(getattr(code, "name", ""))


def _rpc_reason(exc: grpc.RpcError) -> str:
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{_rpc_code(exc) or 'ERROR'}: {details}"


def target(endpoint: str) -> str:
    """A gRPC target for a CRI endpoint given as a socket path or ``unix://`` URL."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("unix:"):
        return "unix://" + endpoint.removeprefix("unix:")
    return "unix://" + endpoint


def socket_path(endpoint: str) -> str:
    """The filesystem path of a unix-socket CRI endpoint."""
    return target(endpoint).removeprefix("unix://")


class CriSource:
    """The CRI discovery source (collector name ``cri``); see the module doc."""

    name = "cri"

    def __init__(self, endpoint: str = "", timeout: float = 5.0) -> None:
        self.configured = endpoint
        self.timeout = timeout
        self._client: CriClient | None = None
        self._endpoint = ""  # the endpoint answering (or last tried)
        self._answered = False  # has answered once: failures are failures from then on
        self._runtime = ""
        self._version = ""
        self._networks: tuple[CniNetwork, ...] = ()
        self._networks_read = False
        self._sandboxes: dict[str, tuple[tuple[int, int], Sandbox]] = {}
        self._nsids: dict[str, int] = {}
        self.api_calls = 0  # CRI calls made, for tests and the bench

    # -- connection ---------------------------------------------------------

    def _pick_endpoint(self) -> str:
        if self.configured:
            path = socket_path(self.configured)
            if not os.path.exists(path):
                raise CollectorError(f"cri.endpoint {self.configured}: no such socket ({path})")
            return self.configured
        for candidate in DEFAULT_ENDPOINTS:
            if os.path.exists(candidate):
                return candidate
        if self._answered:
            raise CollectorError(f"the CRI socket {self._endpoint} is gone (the runtime stopped?)")
        raise CollectorAbsent(
            f"no CRI runtime socket ({' or '.join(DEFAULT_ENDPOINTS)}); set --cri.endpoint"
        )

    def _connect(self) -> CriClient:
        if self._client is not None:
            return self._client
        endpoint = self._pick_endpoint()
        import grpc  # noqa: PLC0415 - only where a CRI socket exists

        from exporter.sources.cri_client import CriClient  # noqa: PLC0415 - same

        client = CriClient(endpoint, timeout=self.timeout)
        try:
            version = client.version()
        except grpc.RpcError as exc:
            client.close()
            raise self._failure(endpoint, exc) from None
        self.api_calls += 1
        self._client = client
        self._endpoint = endpoint
        self._runtime = runtime_of(version.runtime_name)
        self._version = version.runtime_version
        self._answered = True
        self._networks = ()
        self._networks_read = False
        self._sandboxes.clear()
        self._nsids.clear()
        log.info(
            "CRI: %s %s at %s (CRI %s)",
            version.runtime_name,
            version.runtime_version,
            endpoint,
            version.runtime_api_version,
        )
        return client

    def _failure(self, endpoint: str, exc: grpc.RpcError) -> CollectorError:
        if _rpc_code(exc) == "UNIMPLEMENTED":
            msg = (
                f"{endpoint} does not serve the CRI runtime.v1 API "
                f"(e.g. Docker's containerd, whose cri plugin is disabled): {_rpc_reason(exc)}"
            )
            if not self.configured and not self._answered:
                return CollectorAbsent(msg)
            return CollectorError(msg)
        return CollectorError(f"CRI runtime at {endpoint} is not answering ({_rpc_reason(exc)})")

    def _drop(self) -> None:
        """Forget the channel and every cached status: the next poll starts afresh."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._sandboxes.clear()
        self._nsids.clear()

    # -- polling --------------------------------------------------------------

    def collect(self) -> SourceData:
        client = self._connect()
        import grpc  # noqa: PLC0415 - loaded by _connect already

        try:
            return self._poll(client)
        except grpc.RpcError as exc:
            self._drop()
            raise self._failure(self._endpoint, exc) from None

    def _poll(self, client: CriClient) -> SourceData:
        listing = client.list_ready_sandboxes()
        self.api_calls += 1
        items = {item.id: item for item in listing.items}
        for gone in set(self._sandboxes) - set(items):
            del self._sandboxes[gone]
            self._nsids.pop(gone, None)
        new = [
            item
            for item in items.values()
            if item.id not in self._sandboxes or self._sandboxes[item.id][0] != _sandbox_key(item)
        ]
        if new or not self._networks_read:
            status = client.status()
            self.api_calls += 1
            try:
                self._networks = parse_cni_config(status.info, self._runtime)
            except (ValueError, TypeError) as exc:
                log.warning("CRI: %s; pods' networks unnamed", exc)
                self._networks = ()
            self._networks_read = True
        for item in new:
            try:
                resp = client.sandbox_status(item.id)
            except grpc.RpcError as exc:
                if _rpc_code(exc) == "NOT_FOUND":
                    continue  # removed between the list and now
                raise
            finally:
                self.api_calls += 1
            self._sandboxes[item.id] = (_sandbox_key(item), self._parse(item, resp))
            self._nsids.pop(item.id, None)
        workloads = []
        for sandbox_id, (_, sandbox) in self._sandboxes.items():
            w = sandbox.workload
            if w.network_mode == NETWORK_MODE_POD:
                w = replace(w, netns_id=self._netns_id(sandbox_id, sandbox))
            workloads.append(w)
        workloads.sort(key=lambda w: (w.name, w.id))
        networks = fill_gateways((n.network for n in self._networks), workloads)
        return SourceData(
            version=self._version,
            workloads=tuple(workloads),
            networks=tuple(sorted(networks, key=lambda n: n.name)),
            runtime=self._runtime,
        )

    def _parse(self, item: pb.PodSandbox, resp: pb.PodSandboxStatusResponse) -> Sandbox:
        """The sandbox's status; one the runtime answered badly (logged) is a pod
        without a path, still named, rather than a failure of every pod."""
        try:
            return parse_sandbox(resp, self._networks, self._runtime)
        except (ValueError, TypeError) as exc:
            meta = item.metadata
            log.warning("CRI: pod %s/%s: %s", meta.namespace, meta.name, exc)
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
                    runtime=self._runtime,
                    namespace=meta.namespace,
                    pod=meta.name,
                ),
                pid=0,
                netns_path="",
            )

    def _netns_id(self, sandbox_id: str, sandbox: Sandbox) -> int | None:
        """The nsid of the pod's namespace, read once it exists (no CRI call)."""
        known = self._nsids.get(sandbox_id)
        if known is not None:
            return known
        paths = [f"/proc/{sandbox.pid}/ns/net"] if sandbox.pid else []
        if sandbox.netns_path:
            paths.append(sandbox.netns_path)
        for path in paths:
            with contextlib.suppress(OSError):
                nsid = read_netnsid(path)
                if nsid is not None:
                    self._nsids[sandbox_id] = nsid
                    return nsid
        return None

    def close(self) -> None:
        self._drop()


def make_cri(cfg: Config) -> CriSource:
    """The registry's factory: the CRI source on ``cri.endpoint`` (or the default sockets)."""
    return CriSource(str(cfg.setting("cri.endpoint")))
