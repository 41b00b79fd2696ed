"""The real exporter on a lab Kubernetes node (containerd + CNI plugins), scraped over HTTP.

Issue 11, "Must show" 1 and 3: pods in two namespaces, one with a hostPort;
each pod's exported veth is exactly the host interface whose ifindex is the
pod's ``eth0`` iflink (asked over netlink inside the pod), with the network,
bridge, IP and MAC of the CNI result. A removed pod's series are gone within
two polls, a new pod's there within two polls. containerd stopped: the cri
collector reports 0 while links and firewall keep serving; containerd back:
the pods are back without restarting the exporter.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from crilab import (
    BRIDGE,
    NETWORK,
    SUBNET,
    CriLab,
    NodeExporter,
    Pod,
    Samples,
    poll_until,
    series,
    success,
)

pytestmark = [pytest.mark.lab, pytest.mark.cri]

POD_SERIES = (
    "netpath_container_info",
    "netpath_container_interface_info",
    "netpath_container_network_receive_bytes_total",
    "netpath_container_network_transmit_packets_total",
)


@pytest.fixture(scope="module")
def exporter(containerd: CriLab) -> Iterator[NodeExporter]:
    ex = NodeExporter(containerd)
    try:
        yield ex
    finally:
        ex.stop()


def veth_of(cl: CriLab, pod: Pod) -> dict[str, object]:
    """The node's link whose ifindex is the pod's eth0 iflink (netlink, not sysfs)."""
    iflink = pod.eth0_iflink()
    (link,) = [link for link in cl.host_links() if link["ifindex"] == iflink]
    return link


def test_each_pod_exports_the_veth_of_its_eth0(containerd: CriLab, exporter: NodeExporter) -> None:
    cl = containerd
    pods = [
        cl.run_pod("web", "team-a", ports=[(8080, 80)]),
        cl.run_pod("api", "team-a"),
        cl.run_pod("db", "team-b"),
    ]
    names = {p.full_name for p in pods}

    def all_up(got: Samples) -> bool:
        return {r["container"] for r in series(got, "netpath_container_interface_info")} == names

    got = exporter.within_two_polls(all_up)
    assert success(got, "cri") == 1
    for pod in pods:
        veth = veth_of(cl, pod)
        eth0 = pod.cni_interfaces()["eth0"]
        (row,) = series(got, "netpath_container_interface_info", container=pod.full_name)
        assert row == {
            "container": pod.full_name,
            "container_id": pod.id[:12],
            "namespace": pod.namespace,
            "pod": pod.name,
            "network": NETWORK,
            "bridge": BRIDGE,
            "interface": veth["ifname"],
            "ip": pod.ip,
            "mac": eth0["Mac"],
        }
        assert veth["master"] == BRIDGE
        assert row["ip"] == eth0["IPConfigs"][0]["IP"]
        assert row["interface"] == pod.host_veth()
        (info,) = series(got, "netpath_container_info", container=pod.full_name)
        assert (info["runtime"], info["namespace"], info["pod"]) == (
            "containerd",
            pod.namespace,
            pod.name,
        )
        assert series(
            got,
            "netpath_container_network_receive_bytes_total",
            container=pod.full_name,
            interface=str(veth["ifname"]),
            network=NETWORK,
        )
    (net,) = series(got, "netpath_network_info", network=NETWORK)
    assert (net["bridge"], net["subnet"], net["driver"]) == (BRIDGE, SUBNET, "bridge")


def test_pods_come_and_go_within_two_polls(containerd: CriLab, exporter: NodeExporter) -> None:
    cl = containerd
    leaving = cl.run_pod("leaving", "team-b")
    exporter.within_two_polls(
        lambda g: bool(series(g, "netpath_container_interface_info", container="team-b/leaving"))
    )
    cl.remove_pod(leaving)

    def gone(got: Samples) -> bool:
        return not any(series(got, fam, container="team-b/leaving") for fam in POD_SERIES)

    exporter.within_two_polls(gone)

    coming = cl.run_pod("coming", "team-a")
    got = exporter.within_two_polls(
        lambda g: bool(series(g, "netpath_container_interface_info", container="team-a/coming"))
    )
    (row,) = series(got, "netpath_container_interface_info", container="team-a/coming")
    assert row["interface"] == veth_of(cl, coming)["ifname"]


def test_containerd_outage_and_return(containerd: CriLab, exporter: NodeExporter) -> None:
    cl = containerd
    pod = cl.run_pod("steady", "team-b")
    got = exporter.within_two_polls(
        lambda g: bool(series(g, "netpath_container_interface_info", container=pod.full_name))
    )
    (before,) = series(got, "netpath_container_interface_info", container=pod.full_name)
    rules_before = len(got["netpath_firewall_rule_packets_total"])

    cl.stop()
    try:
        got = exporter.within_two_polls(lambda g: success(g, "cri") == 0)
        assert success(got, "links") == 1 and success(got, "firewall") == 1
        assert series(got, "netpath_interface_info", interface=BRIDGE)
        assert series(got, "netpath_interface_info", interface=before["interface"])
        assert len(got["netpath_firewall_rule_packets_total"]) == rules_before
    finally:
        cl.start()

    def back() -> Samples | None:
        got = exporter.scrape()
        rows = series(got, "netpath_container_interface_info", container=pod.full_name)
        return got if success(got, "cri") == 1 and rows else None

    got = poll_until("the pods to come back", back, timeout=30, interval=0.3)
    assert series(got, "netpath_container_interface_info", container=pod.full_name) == [before]


def test_explain_names_a_pods_path(containerd: CriLab) -> None:
    """``explain NAMESPACE/POD``: the pod's veth, bridge, CNI network and its CNI rules."""
    cl = containerd
    pod = cl.run_pod("explained", "team-c", ports=[(8090, 90)])
    out = cl.exec(
        sys.executable, "-m", "exporter", "explain", pod.full_name,
        "--cri.endpoint", cl.sock, "--no-collector.docker", "--interval", "100ms",
    )  # fmt: skip
    veth = veth_of(cl, pod)
    assert f"Pod team-c/explained (sandbox {pod.id[:12]}), runtime containerd" in out
    assert f"Network {NETWORK} " in out
    assert f"host veth {veth['ifname']} (ifindex {veth['ifindex']}," in out
    assert f"bridge {BRIDGE} " in out
    assert f"tcp 0.0.0.0:8090 -> {pod.ip}:90" in out
    assert "-j DNAT --to-destination" in out
    assert f'id: \\"{pod.id}\\"" -j MASQUERADE' in out
