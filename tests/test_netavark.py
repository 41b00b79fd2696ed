"""Pure tests of netavark's meaning (manager="netavark") over a fixture ruleset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.meaning import MANAGERS
from exporter.meaning.base import DROPPED, FORWARDED, MASQUERADE, PUBLISHED, build_topology
from exporter.meaning.netavark import NetavarkManager, analyse, chain_hash
from exporter.meaning.ruletext import iptables_comment
from exporter.metrics.meaning import render_meanings
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    FirewallData,
    MetricFamily,
    SourceData,
)
from exporter.model.workloads import Endpoint, Network, Workload

FIXTURE = Path(__file__).parent / "fixtures" / "podman" / "netavark-1.4.iptables-save"
WEB_ID = "64e30e1ed8ac0c3fc6b1dfa63ca65c7f439ad35127cd5bcb0573a54f560663d0"


def network(name: str, bridge: str, subnet: str, gateway: str, **kw: bool) -> Network:
    return Network(
        runtime="podman",
        name=name,
        id=chain_hash(name).lower() * 4,
        driver="bridge",
        bridge=bridge,
        subnets=(subnet,),
        gateways=(gateway,),
        internal=False,
        **kw,
    )


NETWORKS = (
    network("iso", "podman1", "10.89.0.0/24", "10.89.0.1", isolated=True),
    network("plain", "podman2", "10.89.1.0/24", "10.89.1.1"),
    network("podman", "podman0", "10.88.0.0/16", "10.88.0.1"),
)


def workload(name: str, cid: str, *eps: tuple[str, str]) -> Workload:
    return Workload(
        runtime="podman",
        id=cid,
        name=name,
        namespace="",
        pod="",
        image="localhost/busybox:latest",
        compose_project="",
        compose_service="",
        network_mode="bridge",
        netns_id=1,
        endpoints=tuple(Endpoint(net, net, ip, "", "", "") for net, ip in eps),
        ports=(),
    )


WORKLOADS = (workload("web", WEB_ID, ("plain", "10.89.1.2")),)


def firewall(backend: str = BACKEND_IPTABLES_NFT) -> FirewallData:
    tables = parse_iptables_save(FIXTURE.read_text(), "ipv4", backend)
    return FirewallData(backends=(("ipv4", backend),), tables=tuple(tables))


def render_netavark(
    fw: FirewallData, networks: tuple[Network, ...], workloads: tuple[Workload, ...]
) -> list[MetricFamily]:
    meaning = analyse(fw, networks, workloads)
    return render_meanings(fw, (meaning,) if meaning is not None else ())


def samples(fw: FirewallData, name: str) -> dict[tuple[str, ...], float]:
    (fam,) = [f for f in render_netavark(fw, NETWORKS, WORKLOADS) if f.name == name]
    return {labels: value for labels, value in fam.samples}


def test_chain_hash_is_netavarks() -> None:
    assert chain_hash("plain") == "CCDD3DA9F299D"  # as netavark named the chain in the lab


def test_isolation_drops_per_isolated_network() -> None:
    fw = firewall()
    assert samples(fw, "netpath_dropped_packets_total") == {
        ("netavark", "iso", "podman1", "isolation"): 5
    }
    assert samples(fw, "netpath_dropped_bytes_total") == {
        ("netavark", "iso", "podman1", "isolation"): 420
    }


def test_published_ports_count_the_dnat_rules() -> None:
    got = samples(firewall(), "netpath_published_port_connections_total")
    assert got == {
        ("netavark", "web", "", "", "plain", "tcp", "0.0.0.0", "8080", "80"): 8,
        ("netavark", "web", "", "", "plain", "tcp", "127.0.0.1", "8443", "443"): 3,
    }


def test_published_port_owner_from_the_comment_when_the_ip_is_unknown() -> None:
    moved = (workload("web", WEB_ID, ("plain", "10.89.1.99")),)
    (fam,) = [
        f
        for f in render_netavark(firewall(), NETWORKS, moved)
        if f.name == "netpath_published_port_connections_total"
    ]
    assert {labels[1] for labels, _ in fam.samples} == {"web"}


def test_masquerade_per_network_without_workload_labels() -> None:
    assert samples(firewall(), "netpath_masquerade_connections_total") == {
        ("netavark", "iso", "podman1", "10.89.0.0/24", "", "", ""): 1,
        ("netavark", "plain", "podman2", "10.89.1.0/24", "", "", ""): 5,
        ("netavark", "podman", "podman0", "10.88.0.0/16", "", "", ""): 1,
    }


def test_forwarded_per_direction() -> None:
    assert samples(firewall(), "netpath_forwarded_packets_total") == {
        ("netavark", "iso", "podman1", "inbound"): 3,
        ("netavark", "iso", "podman1", "outbound"): 4,
        ("netavark", "plain", "podman2", "inbound"): 20,
        ("netavark", "plain", "podman2", "outbound"): 21,
        ("netavark", "podman", "podman0", "inbound"): 1,
        ("netavark", "podman", "podman0", "outbound"): 2,
    }
    assert (
        samples(firewall(), "netpath_forwarded_bytes_total")[
            ("netavark", "plain", "podman2", "outbound")
        ]
        == 2100
    )


def test_layout_info() -> None:
    assert samples(firewall(), "netpath_firewall_layout_info") == {("netavark", "iptables"): 1}
    empty = FirewallData((), ())
    assert samples(empty, "netpath_firewall_layout_info") == {}
    assert all(not f.samples for f in render_netavark(empty, NETWORKS, WORKLOADS))
    assert analyse(empty, NETWORKS, WORKLOADS) is None


def test_unknown_networks_are_left_out() -> None:
    meaning = analyse(firewall(), (), ())
    assert meaning is not None
    # only the isolation drop remains: its bridge names it
    assert [(s.family, s.labels) for s in meaning.series] == [
        (DROPPED, ("netavark", "", "podman1", "isolation"))
    ]


def test_each_series_names_its_rules() -> None:
    fw = firewall()
    meaning = analyse(fw, NETWORKS, WORKLOADS)
    assert meaning is not None
    texts = {
        (s.family, s.labels[1] if s.family != PUBLISHED else s.labels[7]): [
            fw.tables[r.table].chains[r.chain].rules[r.rule].text for r in s.rules
        ]
        for s in meaning.series
        if s.family in (MASQUERADE, PUBLISHED, FORWARDED)
    }
    assert texts[(MASQUERADE, "plain")] == ["! -d 224.0.0.0/4 -j MASQUERADE"]
    assert texts[(PUBLISHED, "8080")] == [
        "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.89.1.2:80"
    ]


def test_ipv4_and_ipv6_tables_are_summed() -> None:
    v4 = firewall()
    v6_text = (
        FIXTURE.read_text()
        .replace("10.89.1.0/24", "fd00:89:1::/64")
        .replace("10.89.1.2:80", "[fd00:89:1::2]:80")
    )
    v6 = parse_iptables_save(v6_text, "ipv6", BACKEND_IPTABLES_NFT)
    nets = (replace(NETWORKS[1], subnets=("10.89.1.0/24", "fd00:89:1::/64")), *NETWORKS[::2])
    fw = FirewallData((*v4.backends, ("ipv6", BACKEND_IPTABLES_NFT)), v4.tables + tuple(v6))
    (fam,) = [
        f for f in render_netavark(fw, nets, WORKLOADS) if f.name == "netpath_dropped_packets_total"
    ]
    assert dict(fam.samples) == {("netavark", "iso", "podman1", "isolation"): 10}
    (masq,) = [
        f
        for f in render_netavark(fw, nets, WORKLOADS)
        if f.name == "netpath_masquerade_connections_total"
    ]
    assert dict(masq.samples)[("netavark", "plain", "podman2", "fd00:89:1::/64", "", "", "")] == 5


@pytest.mark.parametrize("stale", [BACKEND_IPTABLES_LEGACY])
def test_one_backend_is_used(stale: str) -> None:
    nft = firewall()
    legacy = firewall(stale)
    fw = FirewallData(nft.backends + legacy.backends, nft.tables + legacy.tables)
    assert samples(fw, "netpath_dropped_packets_total") == {
        ("netavark", "iso", "podman1", "isolation"): 5
    }


def test_rule_comment() -> None:
    text = '-p tcp -m comment --comment "dnat name: plain id: abc" -j NETAVARK-DN-X'
    assert iptables_comment(text) == "dnat name: plain id: abc"
    assert iptables_comment("-j ACCEPT") == ""


def test_the_manager_reads_podman_sources_from_the_topology() -> None:
    assert any(isinstance(m, NetavarkManager) for m in MANAGERS)
    src = SourceData(version="4.3.1", workloads=WORKLOADS, networks=NETWORKS, runtime="podman")
    fw = firewall()
    meaning = NetavarkManager().interpret(fw, build_topology((src,), {}))
    assert meaning is not None
    assert (meaning.manager, meaning.layout, meaning.backend) == (
        "netavark",
        "iptables",
        BACKEND_IPTABLES_NFT,
    )
    assert meaning.tables == (0, 1)
    assert meaning == analyse(fw, NETWORKS, WORKLOADS)


def test_a_dual_stack_network_on_ip6tables() -> None:
    assert chain_hash("dual") == "52A648766DA40"  # as netavark named it in the lab
    text = (FIXTURE.parent / "netavark-1.4-dual.ip6tables-save").read_text()
    fw = FirewallData(
        (("ipv6", BACKEND_IPTABLES_NFT),),
        tuple(parse_iptables_save(text, "ipv6", BACKEND_IPTABLES_NFT)),
    )
    dual = replace(
        network("dual", "podman1", "10.89.5.0/24", "10.89.5.1"),
        subnets=("10.89.5.0/24", "fd00:89:5::/64"),
        gateways=("10.89.5.1", "fd00:89:5::1"),
        enable_ipv6=True,
    )
    web = Workload(
        runtime="podman",
        id=WEB_ID,
        name="web",
        image="",
        compose_project="",
        compose_service="",
        network_mode="bridge",
        netns_id=1,
        endpoints=(Endpoint("dual", "dual", "10.89.5.2", "fd00:89:5::2", "", ""),),
        ports=(),
    )
    got = {f.name: dict(f.samples) for f in render_netavark(fw, (dual,), (web,))}
    assert got["netpath_published_port_connections_total"] == {
        ("netavark", "web", "", "", "dual", "tcp", "::", "8080", "80"): 2
    }
    assert got["netpath_masquerade_connections_total"] == {
        ("netavark", "dual", "podman1", "fd00:89:5::/64", "", "", ""): 3
    }
    assert got["netpath_forwarded_packets_total"] == {
        ("netavark", "dual", "podman1", "inbound"): 4,
        ("netavark", "dual", "podman1", "outbound"): 5,
    }
