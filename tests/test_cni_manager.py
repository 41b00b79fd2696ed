"""The CNI plugins' firewall manager (``manager="cni"``), on fixture rulesets (issue 11).

The lab test with the real plugins is test_cri_meaning.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.meaning import MANAGERS
from exporter.meaning.base import MASQUERADE, PUBLISHED, RuleRef, build_topology
from exporter.meaning.cni import CniManager
from exporter.meaning.ruletext import iptables_comment
from exporter.metrics.meaning import render_meanings
from exporter.model import (
    BACKEND_IPTABLES_NFT,
    Endpoint,
    FirewallData,
    Network,
    SourceData,
    Workload,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cni_rules"
WEB, DB, GHOST = "a" * 64, "b" * 64, "c" * 64


def fw(name: str = "cni-bridge-portmap.ipv4.iptables-save") -> FirewallData:
    tables = parse_iptables_save((FIXTURE / name).read_text(), "ipv4", BACKEND_IPTABLES_NFT)
    return FirewallData(backends=(("ipv4", BACKEND_IPTABLES_NFT),), tables=tuple(tables))


def pod(sandbox: str, namespace: str, name: str, ip: str) -> Workload:
    return Workload(
        id=sandbox,
        name=f"{namespace}/{name}",
        image="",
        compose_project="",
        compose_service="",
        network_mode="pod",
        netns_id=None,
        endpoints=(Endpoint("k8s-pods", "k8s-pods", ip, "", "", "10.88.0.1"),),
        ports=(),
        runtime="containerd",
        namespace=namespace,
        pod=name,
    )


NET = Network(
    "k8s-pods", "k8s-pods", "bridge", "cni0", ("10.88.0.0/16",), ("10.88.0.1",), False,
    runtime="containerd",
)  # fmt: skip
CRI = SourceData(
    "1.6.20",
    (pod(WEB, "shop", "web", "10.88.0.2"), pod(DB, "data", "db", "10.88.0.3")),
    (NET,),
    runtime="containerd",
)


def samples(fwd: FirewallData, sources: tuple[SourceData, ...] = (CRI,)) -> dict[str, dict]:  # type: ignore[type-arg]
    meaning = CniManager().interpret(fwd, build_topology(sources, {}))
    assert meaning is not None
    return {f.name: dict(f.samples) for f in render_meanings(fwd, (meaning,))}


def test_comment_text_is_unquoted() -> None:
    text = f'-s 10.88.0.2/32 -m comment --comment "name: \\"k8s-pods\\" id: \\"{WEB}\\"" -j CNI-x'
    assert iptables_comment(text) == f'name: "k8s-pods" id: "{WEB}"'
    assert iptables_comment("-m comment --comment plain -j X") == "plain"
    assert iptables_comment("-j X") == ""


def test_the_manager_is_registered() -> None:
    assert any(isinstance(m, CniManager) for m in MANAGERS)


def test_hostports_and_per_pod_masquerade() -> None:
    got = samples(fw())
    assert got["netpath_published_port_connections_total"] == {
        # manager, container, namespace, pod, network, protocol, host_ip, host_port, container_port
        ("cni", "shop/web", "shop", "web", "k8s-pods", "tcp", "0.0.0.0", "8080", "80"): 11,
        ("cni", "shop/web", "shop", "web", "k8s-pods", "udp", "127.0.0.1", "5353", "53"): 5,
    }
    # One series per pod (never a per-network sum), the MASQUERADE rule's packets only:
    # pod-to-pod traffic (the ACCEPT before it) is not masquerade.
    assert got["netpath_masquerade_connections_total"] == {
        ("cni", "k8s-pods", "cni0", "10.88.0.0/16", "data/db", "data", "db"): 3,
        ("cni", "k8s-pods", "cni0", "10.88.0.0/16", "shop/web", "shop", "web"): 7,
    }
    assert got["netpath_firewall_layout_info"] == {("cni", "iptables"): 1}


def test_series_name_their_rules() -> None:
    data = fw()
    meaning = CniManager().interpret(data, build_topology((CRI,), {}))
    assert meaning is not None
    assert (meaning.manager, meaning.layout, meaning.backend) == ("cni", "iptables", "iptables-nft")
    nat = data.tables[0]
    for s in meaning.series:
        (ref,) = s.rules
        assert isinstance(ref, RuleRef)
        chain = nat.chains[ref.chain]
        rule = chain.rules[ref.rule].text
        if s.family == PUBLISHED:
            assert chain.name.startswith("CNI-DN-") and "-j DNAT" in rule
        else:
            assert s.family == MASQUERADE
            assert chain.name.startswith("CNI-") and rule.endswith("-j MASQUERADE")


def test_a_pod_leaving_takes_only_its_own_series() -> None:
    """The db pod gone (its rules with it): web's series keep their values."""
    data = fw()
    nat = data.tables[0]
    kept = tuple(
        replace(c, rules=tuple(r for r in c.rules if DB not in r.text))
        for c in nat.chains
        if c.name != "CNI-22222222222222222222bbbb"
    )
    gone = replace(data, tables=(replace(nat, chains=kept),))
    cri = replace(CRI, workloads=CRI.workloads[:1])
    got = samples(gone, (cri,))
    assert got["netpath_masquerade_connections_total"] == {
        ("cni", "k8s-pods", "cni0", "10.88.0.0/16", "shop/web", "shop", "web"): 7
    }


def test_unknown_sandboxes_count_nowhere() -> None:
    """Without the pods' names (CRI down) no series: they would collapse into one."""
    got = samples(fw(), ())
    assert got["netpath_published_port_connections_total"] == {}
    assert got["netpath_masquerade_connections_total"] == {}


def test_a_pod_known_by_ip_only() -> None:
    """A source that reports the pod but not under the sandbox id the rules name."""
    other_id = replace(CRI.workloads[0], id="d" * 64)
    got = samples(fw(), (replace(CRI, workloads=(other_id,)),))
    assert ("cni", "k8s-pods", "cni0", "10.88.0.0/16", "shop/web", "shop", "web") in got[
        "netpath_masquerade_connections_total"
    ]


def test_a_docker_container_at_the_address_is_not_the_pod() -> None:
    docker_ctr = replace(
        CRI.workloads[0], id="e" * 64, name="web", namespace="", pod="", runtime="docker"
    )
    docker = SourceData("27.5.1", (docker_ctr,), (), runtime="docker")
    got = samples(fw(), (docker,))
    assert got["netpath_published_port_connections_total"] == {}


def test_no_cni_rules_no_meaning() -> None:
    seed = Path(__file__).resolve().parent / "fixtures" / "firewall"
    text = (seed / "seed-docker-classic.iptables-save").read_text()
    tables = parse_iptables_save(text, "ipv4", BACKEND_IPTABLES_NFT)
    data = FirewallData(backends=(("ipv4", BACKEND_IPTABLES_NFT),), tables=tuple(tables))
    assert CniManager().interpret(data, build_topology((CRI,), {})) is None
