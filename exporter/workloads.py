"""The join, written once for every runtime: workload -> host veth -> bridge -> network.

Pure. A workload's host veth is the veth whose peer lives in the workload's
network namespace (``peer_netnsid`` == the workload's ``netns_id``); its bridge
is the veth's master; its network is the runtime's network on that bridge,
else (routed CNIs: a ``cali*``/``lxc*`` veth with a ``/32`` route and no
bridge) the workload's endpoint that names that veth, or its only endpoint.

Several sources may see one namespace: on a node where kubelet once ran on
Docker (dockershim), Docker lists each pod's ``k8s_``-named containers beside
the CRI runtime's sandbox. The CRI sandbox wins: Docker's ``k8s_`` containers
whose namespace a CRI workload owns are left out (:func:`merge_sources`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from exporter.model import (
    Endpoint,
    LinksData,
    LinkStats,
    Network,
    SourceData,
    Workload,
)
from exporter.model.workloads import RUNTIME_DOCKER

NO_VETH_NETWORKS = frozenset({"host", "none"})
DOCKERSHIM_PREFIX = "k8s_"


def has_own_netns(workload: Workload) -> bool:
    """True if the workload has veths of its own (not host, none or another's namespace)."""
    mode = workload.network_mode
    if mode in NO_VETH_NETWORKS or mode.startswith("container:"):
        return False
    return bool(workload.endpoints)


def merge_sources(sources: Sequence[SourceData]) -> tuple[SourceData, ...]:
    """``sources`` without Docker's ``k8s_`` containers whose namespace a CRI pod owns."""
    cri_nsids = {
        w.netns_id
        for src in sources
        if src.runtime != RUNTIME_DOCKER
        for w in src.workloads
        if w.namespace and w.netns_id is not None
    }
    if not cri_nsids:
        return tuple(sources)
    out = []
    for src in sources:
        kept = tuple(
            w
            for w in src.workloads
            if not (
                src.runtime == RUNTIME_DOCKER
                and w.name.startswith(DOCKERSHIM_PREFIX)
                and w.netns_id in cri_nsids
            )
        )
        out.append(src if len(kept) == len(src.workloads) else replace(src, workloads=kept))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WorkloadInterface:
    """One host veth of a workload, with the network its bridge belongs to."""

    workload: Workload
    interface: str  # host-side veth name
    ifindex: int
    bridge: str  # master bridge name, "" if none
    network: str  # the runtime's network name, "" if unknown
    network_id: str
    ip: str  # the workload's address on that network ("" if unknown)
    mac: str  # the workload's MAC on that network
    stats: LinkStats | None  # host perspective (as the veth counts)


def build_interfaces(
    sources: Sequence[SourceData], links: LinksData
) -> tuple[WorkloadInterface, ...]:
    """Every host veth whose peer lives in a running workload's network namespace."""
    by_nsid: dict[int, Workload] = {}
    for src in sources:
        for w in src.workloads:
            if w.netns_id is not None and has_own_netns(w):
                by_nsid.setdefault(w.netns_id, w)
    if not by_nsid:
        return ()
    names = {link.index: link.name for link in links.links}
    by_bridge = {net.bridge: net for src in sources for net in src.networks if net.bridge}
    out: list[WorkloadInterface] = []
    for link in links.links:
        if link.kind != "veth" or link.peer_netnsid is None:
            continue
        owner = by_nsid.get(link.peer_netnsid)
        if owner is None:
            continue
        bridge = names.get(link.master, "") if link.master is not None else ""
        net = by_bridge.get(bridge)
        endpoint = _endpoint(owner, net, link.name)
        out.append(
            WorkloadInterface(
                workload=owner,
                interface=link.name,
                ifindex=link.index,
                bridge=bridge,
                network=net.name if net else (endpoint.network if endpoint else ""),
                network_id=net.id if net else (endpoint.network_id if endpoint else ""),
                ip=endpoint.ip if endpoint else "",
                mac=endpoint.mac if endpoint else "",
                stats=links.stats.get(link.index),
            )
        )
    out.sort(key=lambda wi: (wi.workload.name, wi.network, wi.interface))
    return tuple(out)


def _endpoint(w: Workload, net: Network | None, veth: str) -> Endpoint | None:
    if net is not None:
        for ep in w.endpoints:
            if ep.network_id == net.id or (not ep.network_id and ep.network == net.name):
                return ep
        return None
    # A veth on no known network: the endpoint naming it, or the only one.
    for ep in w.endpoints:
        if ep.interface == veth:
            return ep
    return w.endpoints[0] if len(w.endpoints) == 1 else None
