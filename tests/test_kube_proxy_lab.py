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

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from grafana import promql
from tests import kubeproxylab as kp
from tests import lab
from tests.test_daemon_lab import Daemon

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = REPO / "grafana" / "dashboards"

PODS = ("10.244.0.2", "10.244.0.3")
WEB = kp.Svc(
    "shop", "web", "http", "10.96.0.10", 80, tuple((ip, 8080) for ip in PODS), node_port=30080
)
GONE = kp.Svc("shop", "gone", "", "10.96.0.11", 80, (), node_port=30081)
WEB6 = kp.Svc(
    "shop", "web", "http", "fd00:96::10", 80, tuple((kp.pod_ip6(ip), 8080) for ip in PODS)
)  # the IPv6 half of the dual-stack Service
SERVICES = [WEB, GONE, WEB6]
ALL_ENDPOINTS = {f"{ip}:8080" for ip in PODS} | {f"[{kp.pod_ip6(ip)}]:8080" for ip in PODS}
WEB_KEY = {"namespace": "shop", "service": "web", "port": "http", "protocol": "tcp"}

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class NodeLab:
    mode: str  # "nft" | "legacy" (iptables mode on that backend) | "nftables"
    node: kp.Node
    daemon: Daemon

    def save(self, v6: bool = False) -> str:
        tool = f"ip6tables-{self.mode}-save" if v6 else f"iptables-{self.mode}-save"
        return self.node.node.exec(tool, "-c", "-t", "nat")

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
            for v6 in (False, True):
                ruleset = kp.nft_ruleset(SERVICES, v6=v6, masquerade_rule=False)
                node.node.exec("nft", "-f", "-", input=ruleset)
        else:
            node.node.exec(f"iptables-{mode}-restore", input=kp.iptables_ruleset(SERVICES))
            ruleset6 = kp.iptables_ruleset(SERVICES, v6=True)
            node.node.exec(f"ip6tables-{mode}-restore", input=ruleset6)
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
    assert values(got, "netpath_service_endpoints", **WEB_KEY) == {"": 4}  # IPv4 and IPv6
    if node_lab.mode != "nftables":
        assert values(got, "netpath_service_endpoints", service="gone") == {"": 0}
        info = [lbl for lbl, _ in got["netpath_service_info"] if lbl["service"] == "web"]
        assert sorted(i["cluster_ip"] for i in info) == ["10.96.0.10", "fd00:96::10"]
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
    kernel = dnat_counters(node_lab.save() + node_lab.save(v6=True))
    assert after == {ep: float(kernel[ep]) for ep in after}
    assert set(after) == ALL_ENDPOINTS


@iptables_mode
def test_ipv6_clusterip_connections_equal_dnat_counters(node_lab: NodeLab) -> None:
    ends = "netpath_service_endpoint_connections_total"
    v6_eps = {f"[{kp.pod_ip6(ip)}]:8080" for ip in PODS}

    def v6_only(got: Samples) -> dict[str, float]:
        return {ep: v for ep, v in values(got, ends, **WEB_KEY).items() if ep in v6_eps}

    before = v6_only(node_lab.daemon.scrape_after(time.time()))
    n = 12
    assert kp.connect(node_lab.node.client, WEB6.cluster_ip, 80, n) == n
    after = v6_only(node_lab.scrape_after(time.time()))
    assert set(after) == v6_eps
    assert sum(after.values()) - sum(before.values()) == n
    kernel = dnat_counters(node_lab.save(v6=True))
    assert after == {ep: float(kernel[ep]) for ep in after}
    got = node_lab.daemon.scrape_after(time.time())
    info = sorted(
        lbl["cluster_ip"] for lbl, _ in got["netpath_service_info"] if lbl["service"] == "web"
    )
    assert info == ["10.96.0.10", "fd00:96::10"]


# A collector in the node, read chain by chain (as past 20k rules): which chains it dumps.
_PER_CHAIN = r"""
import json
from exporter.config import FirewallConfig
from exporter.firewall import nft_structure
from exporter.firewall.collector import FirewallCollector
from exporter.meaning import interpret_all
from exporter.meaning.base import SERVICE_ENDPOINT, Topology
from exporter.netlink.netfilter import NftReader
nft_structure.WHOLE_TABLE_MAX_RULES = 0
dumped = []
counters = NftReader.counters
def spy(self, family, table, chain=None):
    dumped.append(chain)
    return counters(self, family, table, chain)
NftReader.counters = spy
collector = FirewallCollector(FirewallConfig())
collector.collect()  # the structure
dumped.clear()
fw = collector.collect()  # counters only
(meaning,) = [m for m in interpret_all(fw, Topology()) if m.manager == "kube-proxy"]
series = [s for s in meaning.series if s.family == SERVICE_ENDPOINT]
print(json.dumps({"dumped": dumped, "endpoint_series": len(series)}))
"""


# per-chain dumps are iptables-nft's; legacy reads a table in one blob
@pytest.mark.parametrize("node_lab", ["nft"], indirect=True)
def test_endpoint_chains_are_read_for_their_text_only(node_lab: NodeLab) -> None:
    """On iptables-nft each chain counted is a dump a poll: the KUBE-SEP chains (three in
    four on a node) are not dumped, their Services' chains are, and every endpoint is
    still counted (test_clusterip_connections_equal_dnat_counters: equal to the DNAT's)."""
    got = json.loads(node_lab.node.node.exec(sys.executable, "-c", _PER_CHAIN))
    dumped = [c for c in got["dumped"] if c]
    assert any(c.startswith("KUBE-SVC-") for c in dumped), dumped
    assert not [c for c in dumped if c.startswith("KUBE-SEP-")]
    assert got["endpoint_series"] == sum(len(s.endpoints) for s in SERVICES)


@iptables_mode
def test_invalid_drops(node_lab: NodeLab) -> None:
    key = {"manager": "kube-proxy", "reason": "invalid"}
    dropped = "netpath_dropped_packets_total"
    first = values(node_lab.daemon.scrape_after(time.time()), dropped, **key)
    k = 7
    assert kp.send_invalid(node_lab.node.client, kp.CLIENT, PODS[0], k) == k
    got = values(node_lab.scrape_after(time.time()), dropped, **key)
    assert got["invalid"] - first["invalid"] == k


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
    assert set(active) == {f"{ip}:8080" for ip in PODS} | {
        f"[{kp.pod_ip6(ip)}]:8080" for ip in PODS
    }


# --------------------------------------------------------------------------
# The Services dashboard and the Services alerts on a real Prometheus
# --------------------------------------------------------------------------

# argv: client address, rounds. Traffic all along: ClusterIP, NodePort, a Service without
# endpoints, and INVALID segments; a round every 0.2s (load, not synchronisation).
TRAFFIC = r"""
import socket, subprocess, sys, time
for _ in range(int(sys.argv[2])):
    for addr, port in (("10.96.0.10", 80), ("192.0.2.1", 30080), ("10.96.0.11", 80)):
        try:
            with socket.create_connection((addr, port), timeout=2) as c:
                c.sendall(b"close\n")
                while c.recv(64):
                    pass
        except OSError:
            pass
    time.sleep(0.2)
"""


@dataclass
class Prom:
    node: lab.Netns
    addr: str

    def api(self, path: str, **params: str) -> dict[str, object]:
        args = [a for k, v in params.items() for a in ("--data-urlencode", f"{k}={v}")]
        out = self.node.exec(
            "curl", "-sf", "--max-time", "10", "-G", f"http://{self.addr}{path}", *args
        )
        answer: dict[str, object] = json.loads(out)
        return answer

    def query(self, expr: str) -> list[dict[str, object]]:
        answer = self.api("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        data = answer["data"]
        assert isinstance(data, dict)
        result: list[dict[str, object]] = data["result"]
        return result


@pytest.fixture
def prometheus(node_lab: NodeLab, tmp_path: Path) -> Iterator[Prom]:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed (dev.sh TEST_PACKAGES has it)")
    port = lab.free_port()
    rules = tmp_path / "alerts.yml"
    rules.write_text(RULES.read_text())
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "netpath",
                "static_configs": [{"targets": [f"127.0.0.1:{node_lab.daemon.port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    node = node_lab.node.node
    procs = [
        node.popen(
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        node_lab.node.client.popen(
            sys.executable,
            "-c",
            TRAFFIC,
            kp.CLIENT,
            "100000",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        yield Prom(node, f"127.0.0.1:{port}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def wait_query(prom: Prom, expr: str, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = prom.query(expr)
        except RuntimeError:
            got = []  # Prometheus still starting
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"no series for {expr} within {timeout}s")


@pytest.mark.parametrize("node_lab", ["nft"], indirect=True)
def test_services_dashboard_and_alerts_on_prometheus(node_lab: NodeLab, prometheus: Prom) -> None:
    wait_query(prometheus, 'count_over_time(up{job="netpath"}[1m]) >= 12', timeout=90)
    # INVALID segments once Prometheus holds the counter before them (a rise to rate over)
    kp.send_invalid(node_lab.node.client, kp.CLIENT, PODS[0], 5)
    wait_query(prometheus, 'increase(netpath_dropped_packets_total{reason="invalid"}[1m]) > 0')
    wait_query(prometheus, "netpath_service_endpoint_active_connections")
    dashboard = json.loads((DASHBOARDS / "netpath-services.json").read_text())
    builtins = {"__rate_interval": "10s", "__interval": "1s", "__range": "1m", "__range_s": "60"}
    instance = f"127.0.0.1:{node_lab.daemon.port}"
    variables = promql.variable_queries(dashboard)
    assert set(variables) == {"instance", "namespace", "service"}
    everything = {"instance": instance, "namespace": ".*", "service": ".*"} | builtins
    # Two Services chosen, as Grafana writes a multi-value selection into a regex.
    chosen = {"instance": instance, "namespace": "shop", "service": "(web|gone)"} | builtins
    for name, want in (("namespace", {"shop"}), ("service", {"web", "gone"})):
        selector, label = promql.parse_label_values(variables[name])
        found = prometheus.query(promql.substitute(selector, everything))
        assert {s["metric"][label] for s in found} == want  # type: ignore[index]
    empty = []
    checked = 0
    for subst in (everything, chosen):
        for title, ref, expr in promql.panel_queries(dashboard):
            checked += 1
            if not prometheus.query(promql.substitute(expr, subst)):
                empty.append(f"{title} [{ref}]: {promql.substitute(expr, subst)}")
    assert not empty, "queries without a series:\n" + "\n".join(empty)
    assert checked >= 24
    rules = {
        r["alert"]: r["expr"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    gone = prometheus.query(rules["NetpathServiceWithoutEndpointsReceiving"])
    # (Prometheus keeps no empty label: the unnamed port has none)
    assert [(s["metric"]["service"], s["metric"].get("port")) for s in gone] == [("gone", None)]  # type: ignore[index, union-attr]
    invalid = prometheus.query(rules["NetpathInvalidDropsRising"])
    assert [s["metric"]["manager"] for s in invalid] == ["kube-proxy"]  # type: ignore[index]


def test_explain_service_walks_to_each_endpoint(node_lab: NodeLab) -> None:
    assert kp.connect(node_lab.node.client, WEB.cluster_ip, 80, 4) == 4
    with kp.hold(node_lab.node.client, WEB.cluster_ip, 80, 2) as held:
        assert held == 2
        text = node_lab.node.node.exec(
            sys.executable, "-m", "exporter", "explain", "svc/shop/web", "--interval=0",
            "--no-collector.docker",
        )  # fmt: skip
        kernel = "" if node_lab.mode == "nftables" else node_lab.save() + node_lab.save(v6=True)
    layout = "nftables" if node_lab.mode == "nftables" else "iptables"
    assert text.startswith(f"Service shop/web (kube-proxy, {layout} mode, ")
    assert "endpoints: 10.244.0.2:8080, 10.244.0.3:8080" in text
    active = re.findall(r"^  http/tcp (\S+): (\d+)$", text, re.M)
    assert sum(int(n) for _, n in active) == 2
    if node_lab.mode == "nftables":
        assert "endpoint-" in text and "no counter" in text
        return
    # Each endpoint's DNAT rule, as its KUBE-SEP chain holds it, with the kernel's counter
    # (iptables-save -c read after explain; nothing else connects meanwhile).
    walked = re.findall(r"^ +(KUBE-SEP-\S+): .*--to-destination (\S+)\n +-> (\d+) packets?", text,
                        re.M)  # fmt: skip
    assert {ep for _, ep, _ in walked} == ALL_ENDPOINTS
    counters = dnat_counters(kernel)
    for _, ep, packets in walked:
        assert int(packets) == counters[ep]
    with pytest.raises(RuntimeError, match="no Service shop/nothing in kube-proxy's rules"):
        node_lab.node.node.exec(sys.executable, "-m", "exporter", "explain", "svc/shop/nothing",
                                "--interval=0", "--no-collector.docker")  # fmt: skip
