"""The CRI source against a real containerd (CRI plugin, CNI bridge + portmap) — issue 11.

The source runs in a Python inside the lab node namespace (where the pods'
host veths are), as the exporter runs on a node. Each pod's workload must
name exactly the host veth whose ifindex is the pod's ``eth0`` iflink (asked
over netlink inside the pod namespace), with the network, bridge, IP and
hostPort the CNI plugins and containerd report. A steady-state poll makes one
CRI call; a new pod costs its one status call. containerd stopped: the source
fails with a clear message; started again: the same source object reads the
pods again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import crilab
import pytest
from crilab import BRIDGE, GATEWAY, NETWORK, SUBNET, CriLab
from dockerlab import NetnsPython, RemoteError

pytestmark = [pytest.mark.lab, pytest.mark.cri]


@pytest.fixture(scope="module")
def node(containerd: CriLab) -> Iterator[NetnsPython]:
    """A Python in the node namespace holding one CriSource ``src`` for the whole module."""
    py = containerd.python(
        "import dataclasses\n"
        "from exporter.sources.cri import CriSource\n"
        f"src = CriSource({containerd.sock!r})\n"
        "def poll():\n"
        "    d = src.collect()\n"
        "    return dataclasses.asdict(d)\n"
    )
    try:
        yield py
    finally:
        py.close()


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in data["workloads"]}


def host_links(cl: CriLab) -> dict[int, dict[str, Any]]:
    return {link["ifindex"]: link for link in cl.host_links()}


def test_pods_map_to_the_veth_of_their_eth0(containerd: CriLab, node: NetnsPython) -> None:
    web = containerd.run_pod("web", "team-a", ports=[(8080, 80)])
    api = containerd.run_pod("api", "team-a")
    db = containerd.run_pod("db", "team-b")
    data = node.eval("poll()")
    assert data["runtime"] == "containerd"
    assert data["version"].startswith("1.")
    got = by_name(data)
    assert sorted(got) == ["team-a/api", "team-a/web", "team-b/db"]

    links = host_links(containerd)
    for pod in (web, api, db):
        w = got[pod.full_name]
        assert (w["id"], w["namespace"], w["pod"]) == (pod.id, pod.namespace, pod.name)
        assert w["runtime"] == "containerd"
        assert w["network_mode"] == "pod"
        veth = links[pod.eth0_iflink()]
        # The join's key: the host veth whose peer lives in the pod's namespace.
        assert veth["link_netnsid"] == w["netns_id"]
        assert veth["master"] == BRIDGE
        # Exactly one host veth has its peer there.
        assert [n["ifname"] for n in links.values() if n.get("link_netnsid") == w["netns_id"]] == [
            veth["ifname"]
        ]
        (ep,) = w["endpoints"]
        assert ep["interface"] == veth["ifname"] == pod.host_veth()
        assert ep["network"] == ep["network_id"] == NETWORK
        eth0 = pod.cni_interfaces()["eth0"]
        assert ep["ip"] == pod.ip == eth0["IPConfigs"][0]["IP"]
        assert ep["gateway"] == GATEWAY == eth0["IPConfigs"][0]["Gateway"]
        assert ep["mac"] == eth0["Mac"]
        pod_link = json.loads(pod.exec("ip", "-j", "link", "show", "eth0"))[0]
        assert ep["mac"] == pod_link["address"]

    assert got["team-a/web"]["ports"] == [
        {"protocol": "tcp", "container_port": 80, "host_ip": "", "host_port": 8080}
    ]
    assert got["team-a/api"]["ports"] == got["team-b/db"]["ports"] == []

    (net,) = data["networks"]
    assert net["name"] == net["id"] == NETWORK
    assert net["driver"] == "bridge"
    assert net["bridge"] == BRIDGE
    assert net["subnets"] == [SUBNET]
    assert net["gateways"] == [GATEWAY]
    assert net["runtime"] == "containerd"


def test_steady_state_poll_is_one_cri_call(containerd: CriLab, node: NetnsPython) -> None:
    node.eval("poll()")
    before = node.eval("src.api_calls")
    for _ in range(3):
        node.eval("poll()")
    assert node.eval("src.api_calls") - before == 3  # ListPodSandbox only

    pod = containerd.run_pod("fresh", "team-b")
    before = node.eval("src.api_calls")
    data = node.eval("poll()")
    # ListPodSandbox, Status (CNI configuration), PodSandboxStatus of the new pod.
    assert node.eval("src.api_calls") - before == 3
    assert pod.full_name in by_name(data)


def test_removed_pod_is_gone_and_new_pod_appears_on_the_next_poll(
    containerd: CriLab, node: NetnsPython
) -> None:
    gone = containerd.run_pod("short-lived", "team-b")
    assert gone.full_name in by_name(node.eval("poll()"))
    containerd.remove_pod(gone)
    assert gone.full_name not in by_name(node.eval("poll()"))
    new = containerd.run_pod("newcomer", "team-a")
    got = by_name(node.eval("poll()"))
    assert (
        got[new.full_name]["netns_id"] == host_links(containerd)[new.eth0_iflink()]["link_netnsid"]
    )


def test_containerd_outage_fails_the_source_then_it_reconnects(
    containerd: CriLab, node: NetnsPython
) -> None:
    pod = containerd.run_pod("survivor", "team-a")
    before = by_name(node.eval("poll()"))[pod.full_name]
    containerd.stop()
    try:
        with pytest.raises(RemoteError) as err:
            node.eval("poll()")
        assert err.value.type == "CollectorError"
        assert containerd.sock in err.value.message
        # Still failing, not hanging, on the next poll.
        with pytest.raises(RemoteError):
            node.eval("poll()")
    finally:
        containerd.start()
    after = by_name(node.eval("poll()"))[pod.full_name]
    assert after == before  # the pod lived on; the same source read it again


def test_lab_pods_are_real_kubelet_style_sandboxes(containerd: CriLab) -> None:
    """The lab itself: the CNI cache and the nat rules the plugins wrote for a hostPort pod."""
    pod = containerd.run_pod("cached", "team-c", ports=[(8081, 81)])
    cache = containerd.cni_cache()[f"{NETWORK}-{pod.id}-eth0"]
    args = dict(cache["cniArgs"])
    assert (args["K8S_POD_NAMESPACE"], args["K8S_POD_NAME"]) == ("team-c", "cached")
    assert cache["capabilityArgs"]["portMappings"] == [
        {"HostPort": 8081, "ContainerPort": 81, "Protocol": "tcp", "HostIP": ""}
    ]
    nat = containerd.iptables_save()
    assert f'dnat name: \\"{NETWORK}\\" id: \\"{pod.id}\\"' in nat
    assert f"--to-destination {pod.ip}:81" in nat
    containerd.remove_pod(pod)
    assert f"{NETWORK}-{pod.id}-eth0" not in containerd.cni_cache()
    assert pod.id not in containerd.iptables_save()
    assert crilab.IMAGE_REF in containerd.ctr("images", "ls", "-q")
