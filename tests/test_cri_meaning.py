"""The CNI plugins' rules as the exporter's manager="cni" series, with real traffic (issue 11, 2).

On the lab Kubernetes node (real containerd, CNI bridge with ipMasq, portmap), an
"outside" namespace hangs off the node by a veth. K connections from outside to
a pod's hostPort move ``netpath_published_port_connections_total{manager="cni"}``
of that pod by exactly K, and it equals the DNAT rule's own counter. M
connections from another pod to the outside move that pod's own
``netpath_masquerade_connections_total`` series by exactly M; connections from
pod to pod (which the same per-pod chain accepts before its MASQUERADE) move it
by nothing. A removed pod's series goes; the other pod's stays as it was.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import lab
import pytest
from crilab import NETWORK, SUBNET, CriLab, NodeExporter, Pod, Samples, series, value

pytestmark = [pytest.mark.lab, pytest.mark.cri]

UPLINK_NODE = "10.231.77.1"
UPLINK_OUTSIDE = "10.231.77.2"
HOST_PORT, POD_PORT, OUTSIDE_PORT = 8080, 80, 9000

# Accepts and closes connections until killed; says "ready" once listening.
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# N sequential connections, each one a new connection (and conntrack entry); fails loudly.
CLIENT = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    c = socket.create_connection((host, port), timeout=5)
    c.recv(1)
    c.close()
"""


class Server:
    def __init__(self, prefix: list[str], port: int) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-c", SERVER, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", self.proc.stderr.read() if self.proc.stderr else line

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def connect(prefix: list[str], host: str, port: int, n: int) -> None:
    lab.run([*prefix, sys.executable, "-c", CLIENT, host, str(port), str(n)])


def ns_prefix(path: str) -> list[str]:
    return ["nsenter", f"--net={path}"]


@pytest.fixture(scope="module")
def outside(containerd: CriLab) -> Iterator[lab.Netns]:
    ns = lab.Netns("crio")
    ns.create()
    try:
        lab.add_uplink(
            containerd.netns,
            ns,
            host_if="np-up0",
            host_addr=f"{UPLINK_NODE}/24",
            outside_addr=f"{UPLINK_OUTSIDE}/24",
        )
        containerd.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        yield ns
    finally:
        ns.delete()  # takes the uplink veth with it


@pytest.fixture(scope="module")
def exporter(containerd: CriLab) -> Iterator[NodeExporter]:
    ex = NodeExporter(containerd)
    try:
        yield ex
    finally:
        ex.stop()


def published(got: Samples, pod: Pod) -> float:
    return value(
        got,
        "netpath_published_port_connections_total",
        manager="cni",
        container=pod.full_name,
        namespace=pod.namespace,
        pod=pod.name,
        network=NETWORK,
        protocol="tcp",
        host_ip="0.0.0.0",
        host_port=str(HOST_PORT),
        container_port=str(POD_PORT),
    )


def masquerade(got: Samples, pod: Pod) -> float:
    return value(
        got,
        "netpath_masquerade_connections_total",
        manager="cni",
        container=pod.full_name,
        namespace=pod.namespace,
        pod=pod.name,
        network=NETWORK,
        bridge="cni0",
        subnet=SUBNET,
    )


def dnat_rule_packets(cl: CriLab, pod: Pod) -> int:
    """The DNAT rule's own packet counter, from ``iptables-save -c``."""
    pattern = rf"^\[(\d+):\d+\] -A CNI-DN-\S+ .*-j DNAT --to-destination {re.escape(pod.ip)}:"
    (found,) = re.findall(pattern, cl.iptables_save(), re.MULTILINE)
    return int(found)


def test_hostport_connections_and_per_pod_masquerade(
    containerd: CriLab, outside: lab.Netns, exporter: NodeExporter
) -> None:
    cl = containerd
    web = cl.run_pod("web", "shop", ports=[(HOST_PORT, POD_PORT)])
    client = cl.run_pod("client", "batch")
    servers = [
        Server(ns_prefix(web.netns), POD_PORT),
        Server(ns_prefix(outside.path), OUTSIDE_PORT),
    ]
    try:

        def both(got: Samples) -> bool:
            return bool(
                series(got, "netpath_masquerade_connections_total", pod="web")
                and series(got, "netpath_masquerade_connections_total", pod="client")
                and series(got, "netpath_published_port_connections_total", pod="web")
            )

        before = exporter.within_two_polls(both)

        # K connections from outside to the hostPort.
        k = 7
        connect(ns_prefix(outside.path), UPLINK_NODE, HOST_PORT, k)
        _, got = exporter.scrape_after(time.time())
        assert published(got, web) - published(before, web) == k
        dnat = dnat_rule_packets(cl, web)
        assert published(got, web) == dnat
        (rule_series,) = [
            v
            for labels, v in got["netpath_firewall_rule_packets_total"]
            if labels["chain"].startswith("CNI-DN-") and "-j DNAT" in labels["rule"]
        ]
        assert rule_series == dnat
        # Inbound connections are not masquerade (their replies are not new connections).
        assert masquerade(got, web) == masquerade(before, web)

        # Pod to pod: accepted by client's chain before its MASQUERADE, counted nowhere here.
        mid = got
        connect(ns_prefix(client.netns), web.ip, POD_PORT, 5)
        _, got = exporter.scrape_after(time.time())
        assert masquerade(got, client) == masquerade(mid, client)
        assert masquerade(got, web) == masquerade(mid, web)

        # M connections from the client pod to the outside: exactly M on its own series.
        m = 4
        mid = got
        connect(ns_prefix(client.netns), UPLINK_OUTSIDE, OUTSIDE_PORT, m)
        _, got = exporter.scrape_after(time.time())
        assert masquerade(got, client) - masquerade(mid, client) == m
        assert masquerade(got, web) == masquerade(mid, web)
        assert published(got, web) == published(mid, web)
    finally:
        for s in servers:
            s.stop()

    # The client pod leaves: its series goes, web's stays with its value.
    web_masq = masquerade(got, web)
    cl.remove_pod(client)
    got = exporter.within_two_polls(
        lambda g: not series(g, "netpath_masquerade_connections_total", pod="client")
    )
    assert masquerade(got, web) == web_masq
    layouts = {
        (labels["manager"], labels["layout"]) for labels, _ in got["netpath_firewall_layout_info"]
    }
    assert ("cni", "iptables") in layouts
