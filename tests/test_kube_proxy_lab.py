"""kube-proxy's meaning on a node-shaped lab, read by the real exporter over HTTP (issue 12).

A node namespace with a ``cni0`` bridge, two endpoint "pods" serving TCP, an
outside client routed through the node, and rulesets in kube-proxy's shapes
(tests/kubeproxylab.py) loaded with ``iptables-restore`` (iptables-nft),
``iptables-legacy-restore`` and ``nft -f``. The exporter runs in the node
namespace (``python -m exporter``) and is scraped over HTTP; every figure is
compared with what the kernel says (``iptables-save -c``, ``conntrack -L``)
or with the connections the test made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import kubeproxylab as kp
from tests import lab
from tests.test_daemon_lab import Daemon

pytestmark = pytest.mark.lab

PODS = ("10.244.0.2", "10.244.0.3")
WEB = kp.Svc(
    "shop", "web", "http", "10.96.0.10", 80, tuple((ip, 8080) for ip in PODS), node_port=30080
)
GONE = kp.Svc("shop", "gone", "", "10.96.0.11", 80, (), node_port=30081)
SERVICES = [WEB, GONE]
WEB_KEY = {"namespace": "shop", "service": "web", "port": "http", "protocol": "tcp"}

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class NodeLab:
    mode: str  # "nft" | "legacy" (iptables mode on that backend) | "nftables"
    node: kp.Node
    daemon: Daemon

    def save(self) -> str:
        return self.node.node.exec(f"iptables-{self.mode}-save", "-c", "-t", "nat")

    def scrape_after(self, t: float, *, dump: bool = False) -> Samples:
        """The first exposition whose poll (and, with ``dump``, conntrack dump) is after ``t``."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = self.daemon.scrape_after(t)
            if not dump or any(v > t for _, v in got["netpath_conntrack_dump_timestamp_seconds"]):
                return got
            time.sleep(0.05)  # the next poll, not a result
        raise AssertionError("no conntrack dump finished after the traffic")


@pytest.fixture(scope="module", params=["nft", "legacy", "nftables"])
def node_lab(request: pytest.FixtureRequest) -> Iterator[NodeLab]:
    lab.need_root()
    mode = request.param
    with kp.node(PODS, 8080) as node:
        if mode == "nftables":
            node.node.exec("nft", "-f", "-", input=kp.nft_ruleset(SERVICES, masquerade_rule=False))
        else:
            node.node.exec(f"iptables-{mode}-restore", input=kp.iptables_ruleset(SERVICES))
        daemon = Daemon(node.node, "--conntrack.interval=200ms", "--poll.interval=200ms")
        try:
            yield NodeLab(mode, node, daemon)
        finally:
            daemon.stop()


def values(got: Samples, name: str, **match: str) -> dict[str, float]:
    """{endpoint or reason or via: value} of the samples of ``name`` matching ``match``."""
    out = {}
    for labels, v in got.get(name, []):
        if all(labels.get(k) == want for k, want in match.items()):
            key = labels.get("endpoint") or labels.get("reason") or labels.get("via") or ""
            out[key] = v
    return out


_SEP_DNAT = re.compile(r"^\[(\d+):\d+\] -A (KUBE-SEP-\S+) .*--to-destination (\S+)")


def dnat_counters(save: str) -> dict[str, int]:
    """Endpoint -> its DNAT rule's packets, read from ``iptables-save -c`` text."""
    out = {}
    for line in save.splitlines():
        m = _SEP_DNAT.match(line)
        if m:
            out[m[3]] = int(m[1])
    return out


# nftables mode writes no rule counters: the counter tests run on iptables mode's backends
iptables_mode = pytest.mark.parametrize("node_lab", ["nft", "legacy"], indirect=True)


def test_layout_and_structure(node_lab: NodeLab) -> None:
    got = node_lab.daemon.scrape_after(time.time())
    layout = "nftables" if node_lab.mode == "nftables" else "iptables"
    assert ({"manager": "kube-proxy", "layout": layout}, 1) in got["netpath_firewall_layout_info"]
    assert values(got, "netpath_service_endpoints", **WEB_KEY) == {"": 2}
    if node_lab.mode != "nftables":
        assert values(got, "netpath_service_endpoints", service="gone") == {"": 0}
        info = [lbl for lbl, _ in got["netpath_service_info"] if lbl["service"] == "web"]
        assert [i["cluster_ip"] for i in info] == ["10.96.0.10"]
    rules = got.get("netpath_firewall_rule_packets_total", [])
    assert not [lbl for lbl, _ in rules if lbl["chain"].startswith(("KUBE-", "service-"))]


@iptables_mode
def test_clusterip_connections_equal_dnat_counters(node_lab: NodeLab) -> None:
    before = values(
        node_lab.daemon.scrape_after(time.time()),
        "netpath_service_endpoint_connections_total",
        **WEB_KEY,
    )
    n = 20
    assert kp.connect(node_lab.node.client, WEB.cluster_ip, 80, n) == n
    t = time.time()
    got = node_lab.scrape_after(t)
    after = values(got, "netpath_service_endpoint_connections_total", **WEB_KEY)
    assert sum(after.values()) - sum(before.values()) == n
    kernel = dnat_counters(node_lab.save())
    assert after == {ep: float(kernel[ep]) for ep in after}
    assert set(after) == {f"{ip}:8080" for ip in PODS}


@iptables_mode
def test_rejected_and_nodeport(node_lab: NodeLab) -> None:
    first = node_lab.daemon.scrape_after(time.time())
    k, m = 5, 6
    assert kp.connect(node_lab.node.client, GONE.cluster_ip, 80, k, "refused") == k
    assert kp.connect(node_lab.node.client, kp.NODE_UPLINK, WEB.node_port, m) == m
    got = node_lab.scrape_after(time.time())

    def moved(name: str, key: str, **match: str) -> float:
        return values(got, name, **match)[key] - values(first, name, **match).get(key, 0)

    assert moved("netpath_service_rejected_packets_total", "no_endpoints", service="gone") == k
    assert moved("netpath_service_external_connections_total", "nodeport", **WEB_KEY) == m
    ends = "netpath_service_endpoint_connections_total"
    total = sum(values(got, ends, **WEB_KEY).values())
    total -= sum(values(first, ends, **WEB_KEY).values())
    assert total == m  # the NodePort's connections reached the endpoints through the same DNAT


def test_active_connections_count_the_held_ones(node_lab: NodeLab) -> None:
    client = node_lab.node.client
    closed = kp.connect(client, WEB.cluster_ip, 80, 3)  # left in TIME_WAIT
    assert closed == 3
    held_n = 4
    with kp.hold(client, WEB.cluster_ip, 80, held_n) as held:
        assert held == held_n
        listed = node_lab.node.node.exec(
            "conntrack", "-L", "-p", "tcp", "--orig-dst", WEB.cluster_ip, check=False
        )
        established: dict[str, int] = {}
        for line in listed.splitlines():
            if " ESTABLISHED " in line:
                reply_src = re.findall(r"src=(\S+)", line)[1]
                established[f"{reply_src}:8080"] = established.get(f"{reply_src}:8080", 0) + 1
        assert sum(established.values()) == held_n
        assert " TIME_WAIT " in listed
        got = node_lab.scrape_after(time.time(), dump=True)
        active = values(got, "netpath_service_endpoint_active_connections", **WEB_KEY)
    assert sum(active.values()) == held_n
    assert {ep: v for ep, v in active.items() if v} == established
    assert set(active) == {f"{ip}:8080" for ip in PODS}
