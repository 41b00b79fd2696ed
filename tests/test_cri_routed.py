"""Routed CNIs (Calico's shape): a veth per pod with a /32 route and no bridge (issue 11, 4).

The lab: a second lab containerd whose pod network is the CNI ``ptp`` plugin,
which makes exactly that shape (host veth, ``/32`` route to the pod IP via it,
no bridge). The real exporter must map each pod to the veth whose ifindex is
its eth0 iflink, with ``bridge=""`` and the CNI network's name. A pure join
test covers the same with a hand-made ``cali*`` veth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import crilab
import lab
import pytest
from crilab import ROUTED_NETWORK, ROUTED_SUBNET, CriLab, NodeExporter, Samples, series, success
from dockerlab import NetnsPython

from exporter.model import Endpoint, Link, LinksData, Network, SourceData, Workload
from exporter.workloads import build_interfaces


def test_join_maps_a_routed_veth_without_a_bridge() -> None:
    pod = Workload(
        id="f" * 64,
        name="team-a/calico-pod",
        image="",
        compose_project="",
        compose_service="",
        network_mode="pod",
        netns_id=7,
        endpoints=(
            Endpoint("k8s-pod-network", "k8s-pod-network", "10.9.0.5", "", "ee:ee:ee:ee:ee:ee", ""),
        ),
        ports=(),
        runtime="containerd",
        namespace="team-a",
        pod="calico-pod",
    )
    net = Network(
        "k8s-pod-network", "k8s-pod-network", "calico", "", ("10.9.0.0/16",), ("",), False
    )
    links = LinksData(
        links=(
            Link(1, "lo", "loopback", None, "", "unknown"),
            Link(2, "eth0", "physical", None, "02:00:00:00:00:01", "up"),
            Link(9, "cali1234567890a", "veth", None, "ee:ee:ee:ee:ee:ee", "up", 4, 7),
            Link(10, "cali0000000000b", "veth", None, "ee:ee:ee:ee:ee:ee", "up", 4, 8),
        ),
        stats={},
    )
    src = SourceData("1.6.20", (pod,), (net,), runtime="containerd")
    (wi,) = build_interfaces([src], links)
    assert (wi.interface, wi.bridge, wi.network, wi.ip) == (
        "cali1234567890a",
        "",
        "k8s-pod-network",
        "10.9.0.5",
    )
    assert wi.workload is pod


@pytest.fixture(scope="module")
def routed_node() -> Iterator[CriLab]:
    crilab.need_containerd()
    with crilab.cri_lab(cni=crilab.routed_conflist()) as cl:
        yield cl


@pytest.mark.lab
@pytest.mark.cri
def test_exporter_maps_routed_pods(routed_node: CriLab) -> None:
    cl = routed_node
    pods = [cl.run_pod("r1", "team-a"), cl.run_pod("r2", "team-b")]
    # The routed shape: no bridge on the node, a /32 route per pod through its veth.
    assert not [
        link for link in cl.host_links() if link.get("linkinfo", {}).get("info_kind") == "bridge"
    ]
    routes = json.loads(cl.exec("ip", "-j", "route"))
    ex = NodeExporter(cl)
    try:
        names = {p.full_name for p in pods}

        def up(got: Samples) -> bool:
            return {
                r["container"] for r in series(got, "netpath_container_interface_info")
            } == names

        got = ex.within_two_polls(up)
        assert success(got, "cri") == 1
        for pod in pods:
            iflink = pod.eth0_iflink()
            (veth,) = [link for link in cl.host_links() if link["ifindex"] == iflink]
            assert "master" not in veth
            assert {"dst": pod.ip, "dev": veth["ifname"]}.items() <= next(
                r for r in routes if r["dst"] == pod.ip
            ).items()
            (row,) = series(got, "netpath_container_interface_info", container=pod.full_name)
            assert (row["interface"], row["bridge"], row["network"], row["ip"]) == (
                veth["ifname"],
                "",
                ROUTED_NETWORK,
                pod.ip,
            )
        (net,) = series(got, "netpath_network_info", network=ROUTED_NETWORK)
        assert (net["bridge"], net["driver"], net["subnet"]) == ("", "ptp", ROUTED_SUBNET)
    finally:
        ex.stop()


class _Node:
    """What NetnsPython needs of a lab: the namespace to run in and the environment."""

    def __init__(self, ns: lab.Netns) -> None:
        self.netns = ns

    def env(self) -> dict[str, str]:
        return dict(os.environ)


JOIN = r"""
from dataclasses import asdict
from exporter.collectors.links import LinksCollector, read_netnsid
from exporter.model import Endpoint, Network, SourceData, Workload
from exporter.workloads import build_interfaces

def join(pods):
    workloads = tuple(
        Workload(id=sid, name=f"calico/{name}", image="", compose_project="",
                 compose_service="", network_mode="pod", netns_id=read_netnsid(path),
                 endpoints=(Endpoint("k8s-pod-network", "k8s-pod-network", ip, "", "", ""),),
                 ports=(), runtime="containerd", namespace="calico", pod=name)
        for sid, name, path, ip in pods
    )
    net = Network("k8s-pod-network", "k8s-pod-network", "calico", "", ("10.9.0.0/16",), ("",),
                  False, runtime="containerd")
    src = SourceData("1.6.20", workloads, (net,), runtime="containerd")
    return [(wi.workload.pod, wi.interface, wi.bridge, wi.network, wi.ip)
            for wi in build_interfaces([src], LinksCollector().collect())]
"""


@pytest.mark.lab
def test_hand_built_calico_veths_map_to_their_pods() -> None:
    """Calico's shape by hand: ``cali*`` veths, a /32 route each, proxy ARP, no bridge."""
    with lab.netns("calnode") as node, lab.namespaces("calpod", 2) as pods:
        lab.enable_forwarding(node)
        # The node's own address and default route (proxy ARP answers for 169.254.1.1
        # because the node routes it elsewhere than back into the cali* veth).
        node.ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
        node.ip("addr", "add", "10.9.255.1/24", "dev", "up0")
        node.ip("link", "set", "up0", "up")
        node.ip("link", "set", "up1", "up")
        node.ip("route", "add", "default", "dev", "up0")
        for i, pod in enumerate(pods):
            cali, ip = f"cali{i:011x}", f"10.9.0.{5 + i}"
            node.ip("link", "add", cali, "type", "veth", "peer", "name", "eth0", "netns", pod.path)
            node.ip("link", "set", cali, "up")
            node.exec("sysctl", "-q", "-w", f"net.ipv4.conf.{cali}.proxy_arp=1")
            node.ip("route", "add", f"{ip}/32", "dev", cali)
            pod.ip("addr", "add", f"{ip}/32", "dev", "eth0")
            pod.ip("link", "set", "eth0", "up")
            pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        # The shape works: the node reaches each pod over its /32 route.
        for i in range(2):
            node.exec("busybox", "ping", "-c", "1", "-W", "2", f"10.9.0.{5 + i}")
        with NetnsPython(_Node(node), JOIN) as py:  # type: ignore[arg-type]
            got = py.eval(
                "join([(f'{i:064x}', f'pod{i}', p, f'10.9.0.{5 + i}') for i, p in enumerate("
                f"{[p.path for p in pods]!r})])"
            )
    assert sorted(map(tuple, got)) == [
        ("pod0", "cali00000000000", "", "k8s-pod-network", "10.9.0.5"),
        ("pod1", "cali00000000001", "", "k8s-pod-network", "10.9.0.6"),
    ]
