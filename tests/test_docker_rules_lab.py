"""Docker's meaning of the rules against the real kernel, on lab hosts in each layout.

No dockerd here can produce the forward-chains, v29-iptables or v29-nftables
layouts, so a lab host (network namespace) gets two Docker-like networks A and B
(bridges, veths, "container" namespaces a1, b1, b2), an uplink to a lab
"outside" namespace, and a ruleset written in the exact shape of the layout
(tests/lab.py: docker_iptables_ruleset / docker_nft_ruleset). b1 publishes
8080 -> 80. Then the same traffic on every layout:

* N pings from a1 (network A) to b1 and to b2 (network B) move
  ``netpath_dropped_packets_total{network="netb"}`` by exactly N with the
  reason the layout can tell (isolation; on Docker 29 direct_access for the
  container with a published port, unpublished for the other);
* K new TCP connections from the outside namespace to the published port move
  ``published_port_connections`` of b1 by exactly K;
* M new TCP connections from a1 to the outside namespace move
  ``masquerade_connections{network="neta"}`` by exactly M.

The firewall collector runs inside the lab host (a child process entered into
its network namespace); render_docker is applied to what it read.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lab
import pytest
from meanings import render_docker

from exporter.model import (
    Chain,
    Endpoint,
    FirewallData,
    Network,
    PortBinding,
    Rule,
    SourceData,
    Table,
    Workload,
)

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent

A_BR, B_BR = "br-0a0a0a0a0a0a", "br-0b0b0b0b0b0b"
A_NET4, B_NET4 = "10.231.1.0/24", "10.231.2.0/24"
A_NET6, B_NET6 = "fd00:231:1::/64", "fd00:231:2::/64"
A1, B1, B2 = "10.231.1.2", "10.231.2.2", "10.231.2.3"
A1_6, B1_6, B2_6 = "fd00:231:1::2", "fd00:231:2::2", "fd00:231:2::3"
HOST_UP, OUTSIDE = "10.231.9.1", "10.231.9.2"
NETWORKS4 = [(A_BR, A_NET4), (B_BR, B_NET4)]
NETWORKS6 = [(A_BR, A_NET6), (B_BR, B_NET6)]
PORTS4 = [(B_BR, B1, 8080, 80)]
PORTS6 = [(B_BR, B1_6, 8080, 80)]

N_PINGS = 5
K_CONNECTIONS = 4
M_CONNECTIONS = 3
ICMP4_BYTES = 84  # IPv4 header 20 + ICMP 8 + 56 data bytes (ping's default)
ICMP6_BYTES = 104  # IPv6 header 40 + ICMPv6 8 + 56


def _container(
    name: str, net: str, ip: str, ip6: str, ports: tuple[PortBinding, ...] = ()
) -> Workload:
    return Workload(
        id=name * 16,
        name=name,
        image="busybox",
        compose_project="",
        compose_service="",
        network_mode=net,
        netns_id=None,
        endpoints=(Endpoint(net, "", ip, ip6, "", ""),),
        ports=ports,
    )


DOCKER = SourceData(
    version="lab",
    workloads=(
        _container("a1", "neta", A1, A1_6),
        _container("b1", "netb", B1, B1_6, (PortBinding("tcp", 80, "", 8080),)),
        _container("b2", "netb", B2, B2_6),
    ),
    networks=(
        Network("neta", "0a" * 32, "bridge", A_BR, (A_NET4, A_NET6), (), False, True),
        Network("netb", "0b" * 32, "bridge", B_BR, (B_NET4, B_NET6), (), False, True),
    ),
)

# Which reason each layout gives a ping from network A to b1 (published port) and b2 (none).
DROP_REASONS = {
    "classic": {"b1": "isolation", "b2": "isolation"},
    "forward-chains": {"b1": "isolation", "b2": "isolation"},
    "v29-iptables": {"b1": "direct_access", "b2": "unpublished"},
    "v29-nftables": {"b1": "direct_access", "b2": "unpublished"},
}


@dataclasses.dataclass
class DockerLabHost:
    host: lab.Netns
    a1: lab.Netns
    b1: lab.Netns
    b2: lab.Netns
    outside: lab.Netns


@contextmanager
def docker_lab_host(layout: str, backend: str, *, ipv6: bool = False) -> Iterator[DockerLabHost]:
    with lab.namespaces("dr", 5) as (host, a1, b1, b2, outside):
        six = ipv6
        lab.add_bridge(host, A_BR, "10.231.1.1/24", "fd00:231:1::1/64" if six else None)
        lab.add_bridge(host, B_BR, "10.231.2.1/24", "fd00:231:2::1/64" if six else None)
        for ns, veth, br, ip, ip6, gw, gw6 in (
            (a1, "veth-a1", A_BR, A1, A1_6, "10.231.1.1", "fd00:231:1::1"),
            (b1, "veth-b1", B_BR, B1, B1_6, "10.231.2.1", "fd00:231:2::1"),
            (b2, "veth-b2", B_BR, B2, B2_6, "10.231.2.1", "fd00:231:2::1"),
        ):
            lab.add_container(
                host,
                ns,
                host_if=veth,
                bridge=br,
                addr=ip + "/24",
                gateway=gw,
                addr6=ip6 + "/64" if six else None,
                gateway6=gw6 if six else None,
            )
        lab.add_uplink(
            host, outside, host_if="eth-up", host_addr=HOST_UP + "/24", outside_addr=OUTSIDE + "/24"
        )
        lab.enable_forwarding(host)
        if backend == "nftables":
            text = lab.docker_nft_ruleset(NETWORKS4, PORTS4)
            if six:
                text += lab.docker_nft_ruleset(NETWORKS6, PORTS6, ipv6=True)
            host.exec("nft", "-f", "-", input=text)
        else:
            suffix = "-legacy" if backend == "iptables-legacy" else "-nft"
            host.exec(
                f"iptables{suffix}-restore",
                input=lab.docker_iptables_ruleset(layout, NETWORKS4, PORTS4),
            )
            if six:
                host.exec(
                    f"ip6tables{suffix}-restore",
                    input=lab.docker_iptables_ruleset(layout, NETWORKS6, PORTS6, ipv6=True),
                )
        yield DockerLabHost(host, a1, b1, b2, outside)


_READ = r"""
import dataclasses, json
from exporter.config import FirewallConfig
from exporter.firewall.collector import FirewallCollector
c = FirewallCollector(FirewallConfig())
try:
    # a chain's rules may be a model.Rules (made on demand): written as its Rule dicts
    rules = lambda o: [dataclasses.asdict(r) for r in o]
    print(json.dumps(dataclasses.asdict(c.collect()), default=rules))
finally:
    c.close()
"""


def _firewall_from_json(d: dict[str, Any]) -> FirewallData:
    tables = tuple(
        Table(
            t["family"],
            t["backend"],
            t["name"],
            tuple(
                Chain(
                    c["name"],
                    tuple(Rule(**r) for r in c["rules"]),
                    c["policy"],
                    c["policy_packets"],
                    c["policy_bytes"],
                    c["hook"],
                )
                for c in t["chains"]
            ),
        )
        for t in d["tables"]
    )
    return FirewallData(tuple(tuple(b) for b in d["backends"]), tables, tuple(d["errors"]))


def read_firewall(host: lab.Netns) -> FirewallData:
    """Run the firewall collector inside the lab host and return what it read."""
    proc = subprocess.run(
        ["nsenter", f"--net={host.path}", sys.executable, "-c", _READ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"firewall collector in {host.name} failed: {proc.stderr[-2000:]}")
    fw = _firewall_from_json(json.loads(proc.stdout))
    assert fw.errors == (), fw.errors
    return fw


Series = dict[str, dict[tuple[str, ...], float]]


def docker_metrics(host: lab.Netns) -> Series:
    fams = render_docker(read_firewall(host), DOCKER, None)
    return {f.name: dict(f.samples) for f in fams}


def delta(before: Series, after: Series, family: str) -> dict[tuple[str, ...], float]:
    """Series of ``family`` that changed, with their increase."""
    b, a = before[family], after[family]
    out = {k: v - b.get(k, 0) for k, v in a.items() if v != b.get(k, 0)}
    assert all(k in a for k in b), f"{family}: series vanished"
    return out


DROPPED = "netpath_dropped_packets_total"
DROPPED_BYTES = "netpath_dropped_bytes_total"
PUBLISHED = "netpath_published_port_connections_total"
MASQUERADE = "netpath_masquerade_connections_total"
FORWARDED = "netpath_forwarded_packets_total"

LAYOUT_BACKENDS = [
    ("classic", "iptables-nft"),
    ("classic", "iptables-legacy"),
    ("forward-chains", "iptables-nft"),
    ("v29-iptables", "iptables-nft"),
    ("v29-nftables", "nftables"),
]


@pytest.mark.parametrize(("layout", "backend"), LAYOUT_BACKENDS)
def test_same_traffic_same_movements(layout: str, backend: str) -> None:
    lab.need_root()
    with docker_lab_host(layout, backend) as lh:
        m0 = docker_metrics(lh.host)
        assert m0["netpath_firewall_layout_info"] == {(layout,): 1}

        # N pings from network A to each container of network B: all dropped.
        for name, ip in (("b1", B1), ("b2", B2)):
            before = docker_metrics(lh.host)
            lab.ping(lh.a1, ip, N_PINGS)
            after = docker_metrics(lh.host)
            reason = DROP_REASONS[layout][name]
            assert delta(before, after, DROPPED) == {("netb", B_BR, reason): N_PINGS}, name
            assert delta(before, after, DROPPED_BYTES) == {
                ("netb", B_BR, reason): N_PINGS * ICMP4_BYTES
            }

        # K new connections from outside to the published port.
        with lab.tcp_server(lh.b1, 80):
            before = docker_metrics(lh.host)
            assert lab.tcp_connect(lh.outside, HOST_UP, 8080, K_CONNECTIONS) == K_CONNECTIONS
            after = docker_metrics(lh.host)
        assert delta(before, after, PUBLISHED) == {
            ("b1", "netb", "tcp", "0.0.0.0", "8080", "80"): K_CONNECTIONS
        }
        assert delta(before, after, DROPPED) == {}
        moved = delta(before, after, FORWARDED)
        assert moved.get(("netb", B_BR, "inbound"), 0) > 0
        assert moved.get(("netb", B_BR, "outbound"), 0) > 0
        assert not any(k[0] == "neta" for k in moved), moved

        # M new connections from a container of network A to the outside.
        with lab.tcp_server(lh.outside, 9000):
            before = docker_metrics(lh.host)
            assert lab.tcp_connect(lh.a1, OUTSIDE, 9000, M_CONNECTIONS) == M_CONNECTIONS
            after = docker_metrics(lh.host)
        assert delta(before, after, MASQUERADE) == {("neta", A_BR, A_NET4): M_CONNECTIONS}
        assert delta(before, after, PUBLISHED) == {}
        assert delta(before, after, DROPPED) == {}
        moved = delta(before, after, FORWARDED)
        assert moved.get(("neta", A_BR, "outbound"), 0) > 0
        assert moved.get(("neta", A_BR, "inbound"), 0) > 0
        assert not any(k[0] == "netb" for k in moved), moved


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_ipv6_isolation_drop_classic(backend: str) -> None:
    lab.need_root()
    with docker_lab_host("classic", backend, ipv6=True) as lh:
        before = docker_metrics(lh.host)
        lab.ping(lh.a1, B1_6, N_PINGS)
        after = docker_metrics(lh.host)
        assert delta(before, after, DROPPED) == {("netb", B_BR, "isolation"): N_PINGS}
        assert delta(before, after, DROPPED_BYTES) == {
            ("netb", B_BR, "isolation"): N_PINGS * ICMP6_BYTES
        }
        # the IPv4 ping on the same network lands in the same series (families summed)
        lab.ping(lh.a1, B1, N_PINGS)
        again = docker_metrics(lh.host)
        assert delta(after, again, DROPPED) == {("netb", B_BR, "isolation"): N_PINGS}
