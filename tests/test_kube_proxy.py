"""kube-proxy's meaning (``manager="kube-proxy"``) on generated rulesets in its shapes (issue 12).

Pure: the rulesets of tests/kubeproxylab.py parsed as text. The lab tests on
real kernels are test_kube_proxy_lab.py.
"""

from __future__ import annotations

import time

from exporter.collectors.conntrack import ConntrackData, LastDump, render_service_active
from exporter.config import FirewallConfig
from exporter.firewall.collector import exported_only
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.meaning import MANAGERS, interpret_all
from exporter.meaning.base import ServicePort, Topology
from exporter.meaning.kube_proxy import KubeProxyManager, active_per_endpoint, parse_comment
from exporter.metrics.firewall import render_firewall
from exporter.metrics.meaning import render_meanings
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    Rule,
    Table,
)
from exporter.netlink.conntrack import DumpResult, TableInfo
from tests.kubeproxylab import (
    Svc,
    iptables_ruleset,
    many_services,
    nft_endpoint_chain,
    nft_service_chain,
    sep_chain,
)

WEB = Svc(
    "shop", "web", "http", "10.96.0.10", 80,
    (("10.244.0.2", 8080), ("10.244.0.3", 8080)),
    node_port=30080, external_ips=("203.0.113.7",),
)  # fmt: skip
EMPTY = Svc("shop", "gone", "", "10.96.0.11", 80, (), node_port=30081)
LB = Svc(
    "edge", "lb", "https", "10.96.0.12", 443, (("10.244.0.4", 8443),),
    lb_ips=("198.51.100.9",), source_ranges=("192.0.2.0/24",),
)  # fmt: skip
LOCAL = Svc("edge", "local", "p", "10.96.0.13", 81, (("10.244.0.5", 81),), node_port=30082,
            local_traffic=True)  # fmt: skip
DNS = Svc("kube-system", "kube-dns", "dns", "10.96.0.53", 53, (("10.244.0.6", 53),),
          protocol="udp")  # fmt: skip
WEB6 = Svc("shop", "web", "http", "fd00:96::10", 80, (("fd00:244::2", 8080),))
SERVICES = [WEB, EMPTY, LB, LOCAL, DNS, WEB6]


def counted(text: str, counts: dict[str, int]) -> str:
    """``text`` with iptables-save counters: [N:N*60] for the first rule containing each key."""
    out = []
    left = dict(counts)
    for line in text.splitlines():
        if not line.startswith("-A "):
            out.append(line)
            continue
        n = 0
        for key in list(left):
            if key in line:
                n = left.pop(key)
                break
        out.append(f"[{n}:{n * 60}] {line}")
    assert not left, f"no rule for {left}"
    return "\n".join(out) + "\n"


def fw_of(counts: dict[str, int] | None = None, backend: str = BACKEND_IPTABLES_NFT,
          counts6: dict[str, int] | None = None, *,
          large: bool = False) -> FirewallData:  # fmt: skip
    v4 = iptables_ruleset(SERVICES, large=large)
    tables = parse_iptables_save(counted(v4, counts or {}), "ipv4", backend)
    tables += parse_iptables_save(
        counted(iptables_ruleset(SERVICES, v6=True, large=large), counts6 or {}), "ipv6", backend
    )
    return FirewallData(((("ipv4", backend)), ("ipv6", backend)), tuple(tables), structure=0)


def families(fw: FirewallData) -> dict[str, dict[tuple[str, ...], float]]:
    meanings = interpret_all(fw, Topology())
    return {f.name: dict(f.samples) for f in render_meanings(fw, meanings)}


def test_registered_and_comments() -> None:
    assert any(isinstance(m, KubeProxyManager) for m in MANAGERS)
    assert parse_comment("shop/web:http -> 10.244.0.2:8080") == (
        "shop", "web", "http", "-> 10.244.0.2:8080",
    )  # fmt: skip
    assert parse_comment("shop/gone has no endpoints") == ("shop", "gone", "", "has no endpoints")
    assert parse_comment("kubernetes service portals") is None


def test_iptables_mode_series_and_structure() -> None:
    web_a, web_b = sep_chain(WEB, WEB.endpoints[0]), sep_chain(WEB, WEB.endpoints[1])
    fw = fw_of(
        {
            f"-j {web_a}": 7,  # the jump into each KUBE-SEP chain counts its connections
            f"-j {web_b}": 5,
            f"-A {web_b} -p tcp": 99,  # not the DNAT rule (its chain is read for text only)
            '"shop/gone has no endpoints" --dport 80': 3,
            '"shop/gone has no endpoints" -m addrtype': 2,
            "-A KUBE-NODEPORTS -p tcp -m tcp -m comment --comment shop/web:http": 4,
            '"shop/web:http external IP"': 1,
            "traffic not accepted by": 6,
            '"edge/local:p has no local endpoints"': 9,
            "--ctstate INVALID -j DROP": 11,
            "-j MASQUERADE": 13,
        },
        counts6={f"-j {sep_chain(WEB6, WEB6.endpoints[0])}": 2, "--ctstate INVALID": 1},
    )
    got = families(fw)
    conns = got["netpath_service_endpoint_connections_total"]
    assert conns == {
        ("shop", "web", "http", "tcp", "10.244.0.2:8080"): 7,
        ("shop", "web", "http", "tcp", "10.244.0.3:8080"): 5,
        ("shop", "web", "http", "tcp", "[fd00:244::2]:8080"): 2,
        ("edge", "lb", "https", "tcp", "10.244.0.4:8443"): 0,
        ("edge", "local", "p", "tcp", "10.244.0.5:81"): 0,
        ("kube-system", "kube-dns", "dns", "udp", "10.244.0.6:53"): 0,
    }
    rejected = got["netpath_service_rejected_packets_total"]
    assert rejected == {
        ("shop", "gone", "", "tcp", "no_endpoints"): 5,  # ClusterIP 3 + NodePort 2
        ("edge", "lb", "https", "tcp", "source_range"): 6,
        ("edge", "local", "p", "tcp", "no_local_endpoints"): 9,
    }
    external = got["netpath_service_external_connections_total"]
    assert external == {
        ("shop", "web", "http", "tcp", "nodeport"): 4,
        ("shop", "web", "http", "tcp", "external_ip"): 1,
        ("edge", "local", "p", "tcp", "nodeport"): 0,
        ("edge", "lb", "https", "tcp", "load_balancer"): 0,
    }
    assert got["netpath_dropped_packets_total"] == {("kube-proxy", "", "", "invalid"): 12}
    assert got["netpath_dropped_bytes_total"] == {("kube-proxy", "", "", "invalid"): 720}
    assert got["netpath_masquerade_connections_total"] == {
        ("kube-proxy", "", "", "", "", "", ""): 13
    }
    assert got["netpath_firewall_layout_info"] == {("kube-proxy", "iptables"): 1}
    assert got["netpath_service_info"] == {
        ("edge", "lb", "https", "tcp", "10.96.0.12"): 1,
        ("edge", "local", "p", "tcp", "10.96.0.13"): 1,
        ("kube-system", "kube-dns", "dns", "udp", "10.96.0.53"): 1,
        ("shop", "gone", "", "tcp", "10.96.0.11"): 1,
        ("shop", "web", "http", "tcp", "10.96.0.10"): 1,
        ("shop", "web", "http", "tcp", "fd00:96::10"): 1,
    }
    assert got["netpath_service_endpoints"] == {
        ("edge", "lb", "https", "tcp"): 1,
        ("edge", "local", "p", "tcp"): 1,
        ("kube-system", "kube-dns", "dns", "udp"): 1,
        ("shop", "gone", "", "tcp"): 0,
        ("shop", "web", "http", "tcp"): 3,  # 2 IPv4 + 1 IPv6
    }


def test_large_cluster_mode_without_endpoint_comments_means_the_same() -> None:
    """With over 1000 endpoints kube-proxy writes no comment on the KUBE-SEP rules and
    the jumps into them: the Service port comes from the chains that jump there."""
    web_a, web_b = sep_chain(WEB, WEB.endpoints[0]), sep_chain(WEB, WEB.endpoints[1])
    counts = {f"-j {web_a}": 7, f"-j {web_b}": 5, "-j MASQUERADE": 13}
    counts6 = {f"-j {sep_chain(WEB6, WEB6.endpoints[0])}": 2}
    large = iptables_ruleset(SERVICES, large=True)
    assert not [line for line in large.splitlines() if "KUBE-SEP-" in line and "comment" in line]
    small_fw = fw_of(counts, counts6=counts6)
    large_fw = fw_of(counts, counts6=counts6, large=True)
    got = families(large_fw)
    assert (
        got["netpath_service_endpoint_connections_total"][
            ("shop", "web", "http", "tcp", "10.244.0.3:8080")
        ]
        == 5
    )
    assert got == families(small_fw)
    assert interpret_all(large_fw, Topology()) == interpret_all(small_fw, Topology())
    # kube-proxy's own switch, mirrored by the lab: 1001 endpoints make a large ruleset
    assert " -> 10.244." in iptables_ruleset(many_services(10, 1000))
    assert " -> 10.244." not in iptables_ruleset(many_services(10, 1001))


def test_iptables_legacy_reads_the_same() -> None:
    fw = fw_of({f"-j {sep_chain(WEB, WEB.endpoints[0])}": 3}, BACKEND_IPTABLES_LEGACY)
    meaning = KubeProxyManager().interpret(fw, Topology())
    assert meaning is not None
    assert meaning.backend == BACKEND_IPTABLES_LEGACY
    got = families(fw)["netpath_service_endpoint_connections_total"]
    assert got[("shop", "web", "http", "tcp", "10.244.0.2:8080")] == 3


def test_service_addresses() -> None:
    meaning = KubeProxyManager().interpret(fw_of(), Topology())
    assert meaning is not None
    web = next(s for s in meaning.services if s.service == "web" and "10.96.0.10" in s.cluster_ips)
    assert web.addresses == (("10.96.0.10", 80), ("203.0.113.7", 80), ("fd00:96::10", 80))
    assert web.node_ports == (30080,)
    gone = next(s for s in meaning.services if s.service == "gone")
    assert gone.node_ports == (30081,)
    assert gone.endpoints == ()


def test_kube_chains_are_read_for_meaning_only() -> None:
    from exporter.config import parse_config  # noqa: PLC0415
    from exporter.firewall.selection import read_chain, select_chain  # noqa: PLC0415

    cfg = FirewallConfig()
    assert read_chain(cfg, "nat", "KUBE-SEP-X", False)
    assert not select_chain(cfg, "nat", "KUBE-SEP-X", False)
    assert read_chain(cfg, "kube-proxy", "service-X-a/b/tcp/p", False)
    assert not read_chain(cfg, "nat", "OTHER", False)
    off = FirewallConfig(chains_exclude=("nat/KUBE-SEP-*",))
    assert not read_chain(off, "nat", "KUBE-SEP-X", False)
    parsed = parse_config({"firewall": {"chains_interpret": []}}, "config file x.yaml")
    assert parsed.firewall.chains_interpret == ()
    assert not read_chain(parsed.firewall, "nat", "KUBE-SEP-X", False)


def test_endpoint_chains_are_read_for_their_text_only() -> None:
    """KUBE-SEP chains: text only (the jumps into them count), unless exported or
    configured otherwise; every other chain read is counted."""
    from exporter.config import parse_config  # noqa: PLC0415
    from exporter.firewall.selection import COUNTED, NOT_READ, TEXT_ONLY, reading  # noqa: PLC0415

    cfg = FirewallConfig()
    assert reading(cfg, "nat", "KUBE-SEP-X", False) == TEXT_ONLY
    assert reading(cfg, "nat", "KUBE-SVC-X", False) == COUNTED
    assert reading(cfg, "filter", "DOCKER-USER", False) == COUNTED
    assert reading(cfg, "nat", "OTHER", False) == NOT_READ
    exported = FirewallConfig(chains_include=("nat/KUBE-SEP-*",))
    assert reading(exported, "nat", "KUBE-SEP-X", False) == COUNTED
    parsed = parse_config({"firewall": {"chains_text_only": []}}, "config file x.yaml")
    assert reading(parsed.firewall, "nat", "KUBE-SEP-X", False) == COUNTED


def test_raw_kube_rules_stay_out_of_the_rule_families() -> None:
    fw = fw_of()
    cfg = FirewallConfig()
    rendered = {f.name: f for f in render_firewall(exported_only(fw, cfg))}
    chains = {labels[3] for labels, _ in rendered["netpath_firewall_rule_packets_total"].samples}
    assert not any(c.startswith("KUBE-") for c in chains)
    assert {"PREROUTING", "FORWARD", "POSTROUTING"} <= chains  # built-ins still exported
    wide = FirewallConfig(chains_include=("*/KUBE-*",))
    rendered = {f.name: f for f in render_firewall(exported_only(fw, wide))}
    chains = {labels[3] for labels, _ in rendered["netpath_firewall_rule_packets_total"].samples}
    assert "KUBE-SERVICES" in chains


# --------------------------------------------------------------------------
# nftables mode: names from chain names alone
# --------------------------------------------------------------------------


def nft_fw(services: list[Svc], masquerade_rule: bool = False) -> FirewallData:
    """The kube-proxy table as the firewall reader keeps it: chains and rules, no maps."""
    tables = []
    for fam, v6 in (("ip", False), ("ip6", True)):
        jump = Rule("jump services", None, None)
        chains = [Chain("nat-prerouting", (jump,), "accept", None, None, "prerouting")]
        for s in services:
            if s.v6 != v6 or not s.endpoints:
                continue
            ipx = "ip6" if v6 else "ip"
            rules = [Rule("numgen random mod 2 vmap { 0 : goto x }", None, None)]
            if masquerade_rule:
                text = (f"{ipx} daddr {s.cluster_ip} {s.protocol} dport {s.port} {ipx} saddr != "
                        "10.244.0.0/16 jump mark-for-masquerade")  # fmt: skip
                rules.insert(0, Rule(text, None, None))
            chains.append(Chain(nft_service_chain(s), tuple(rules)))
            for ep in s.endpoints:
                dnat = Rule(f"meta l4proto {s.protocol} dnat to {ep[0]}:{ep[1]}", None, None)
                chains.append(Chain(nft_endpoint_chain(s, ep), (dnat,)))
        tables.append(Table(fam, BACKEND_NFTABLES, "kube-proxy", tuple(chains)))
    return FirewallData((("ipv4", BACKEND_NFTABLES), ("ipv6", BACKEND_NFTABLES)), tuple(tables))


def test_nftables_mode_names_from_chain_names() -> None:
    fw = nft_fw(SERVICES)
    got = families(fw)
    assert got["netpath_firewall_layout_info"] == {("kube-proxy", "nftables"): 1}
    assert got["netpath_service_endpoints"] == {
        ("edge", "lb", "https", "tcp"): 1,
        ("edge", "local", "p", "tcp"): 1,
        ("kube-system", "kube-dns", "dns", "udp"): 1,
        ("shop", "web", "http", "tcp"): 3,
    }
    # no counters in nftables mode: no counter series
    assert got["netpath_service_endpoint_connections_total"] == {}
    meaning = KubeProxyManager().interpret(fw, Topology())
    assert meaning is not None
    web = [s for s in meaning.services if s.service == "web"]
    assert web[0].endpoints == (("10.244.0.2", 8080), ("10.244.0.3", 8080), ("fd00:244::2", 8080))
    assert web[0].cluster_ips == ()  # in the service-ips map only
    with_ip = KubeProxyManager().interpret(nft_fw(SERVICES, masquerade_rule=True), Topology())
    assert with_ip is not None
    web = [s for s in with_ip.services if s.service == "web"]
    assert web[0].cluster_ips == ("10.96.0.10", "fd00:96::10")


# --------------------------------------------------------------------------
# Active connections: the join with the conntrack dump
# --------------------------------------------------------------------------


def sp(name: str, eps: tuple[tuple[str, int], ...], addrs: tuple[tuple[str, int], ...] = (),
       node_ports: tuple[int, ...] = ()) -> ServicePort:  # fmt: skip
    return ServicePort("ns", name, "p", "tcp", tuple(a for a, _ in addrs[:1]), addrs, node_ports,
                       eps)  # fmt: skip


def test_active_join() -> None:
    a = sp("a", (("10.244.0.2", 80),), (("10.96.0.1", 80),), (30080,))
    b = sp("b", (("10.244.0.2", 80),), (("10.96.0.2", 80),))  # same endpoint, other Service
    c = sp("c", (("10.244.0.3", 443), ("10.244.0.3", 80)))  # no known address (nftables mode)
    active = {
        ("tcp", "10.96.0.1", 80, "10.244.0.2", 80): 4,
        ("tcp", "192.0.2.1", 30080, "10.244.0.2", 80): 2,  # NodePort
        ("tcp", "10.96.0.2", 80, "10.244.0.2", 80): 1,
        ("tcp", "10.244.0.2", 80, "10.244.0.2", 80): 9,  # straight to the pod: not DNATed
        ("tcp", "192.0.2.1", 8080, "10.244.0.2", 80): 5,  # a hostPort: not the Services'
        ("tcp", "10.96.0.3", 443, "10.244.0.3", 443): 3,
        ("tcp", "10.96.0.3", 80, "10.244.0.3", 80): 6,
        ("udp", "10.96.0.3", 80, "10.244.0.3", 80): 8,  # other protocol
    }
    assert active_per_endpoint([a, b, c], active) == {
        ("ns", "a", "p", "tcp", "10.244.0.2:80"): 6,
        ("ns", "b", "p", "tcp", "10.244.0.2:80"): 1,
        ("ns", "c", "p", "tcp", "10.244.0.3:443"): 3,
        ("ns", "c", "p", "tcp", "10.244.0.3:80"): 6,
    }


def test_active_family_from_a_dump() -> None:
    a = sp("a", (("10.244.0.2", 80),), (("10.96.0.1", 80),))
    raw = {(6, bytes([10, 96, 0, 1]), 80, bytes([10, 244, 0, 2]), 80): 3}
    dump = LastDump(DumpResult(3, False, {}, raw), 0.1, 1.0)
    fam = render_service_active(dump, [a])
    assert fam.name == "netpath_service_endpoint_active_connections"
    assert fam.samples == ((("ns", "a", "p", "tcp", "10.244.0.2:80"), 3),)
    assert ConntrackData(TableInfo(3, 10), {}, dump).dump is dump


# --------------------------------------------------------------------------
# A node's size
# --------------------------------------------------------------------------


def test_node_scale_series_are_bounded() -> None:
    services = many_services(5_000, 20_000)
    text = iptables_ruleset(services)
    tables = parse_iptables_save(counted(text, {}), "ipv4", BACKEND_IPTABLES_NFT)
    fw = FirewallData((("ipv4", BACKEND_IPTABLES_NFT),), tuple(tables), structure=424242)
    rules = sum(len(c.rules) for t in tables for c in t.chains)
    assert rules > 60_000
    t0 = time.process_time()
    meanings = interpret_all(fw, Topology())
    derive = time.process_time() - t0
    fams = {f.name: f for f in render_meanings(fw, meanings)}
    assert len(fams["netpath_service_endpoint_connections_total"].samples) == 20_000
    assert len(fams["netpath_service_external_connections_total"].samples) == 1_250
    assert len(fams["netpath_service_info"].samples) == 5_000
    assert len(fams["netpath_service_endpoints"].samples) == 5_000
    total = sum(len(f.samples) for f in fams.values())
    assert total <= 5_000 * 2 + 20_000 + 1_250 + 10  # bounded by Services x endpoints
    raw = render_firewall(exported_only(fw, FirewallConfig()))
    raw_rules = next(f for f in raw if f.name == "netpath_firewall_rule_packets_total")
    assert len(raw_rules.samples) < 20  # the built-ins' jumps only
    # the per-poll cost: the plan is kept, only the counters are summed again
    t0 = time.process_time()
    for _ in range(5):
        render_meanings(fw, meanings)
    per_poll = (time.process_time() - t0) / 5
    print(f"\n{rules} rules: derive {derive:.3f}s, render per poll {per_poll * 1000:.1f}ms")


# --------------------------------------------------------------------------
# explain svc/NAMESPACE/NAME
# --------------------------------------------------------------------------


def test_service_walk_from_kube_services_to_each_endpoint() -> None:
    from exporter.paths.service import (  # noqa: PLC0415
        build_service_walk,
        format_service_walk,
        parse_service_query,
    )

    web_a = sep_chain(WEB, WEB.endpoints[0])
    before = fw_of({f"-A {web_a} -p tcp": 3})
    now = fw_of({f"-A {web_a} -p tcp": 7, '"shop/web:http cluster IP" --dport 80 -j KUBE-SVC': 9})
    meaning = KubeProxyManager().interpret(now, Topology())
    assert meaning is not None
    assert parse_service_query("svc/shop/web") == ("shop", "web")
    assert parse_service_query("web") is None
    active = {("shop", "web", "http", "tcp", "10.244.0.2:8080"): 2}
    walk = build_service_walk(
        now, meaning, "shop", "web", before=before, seconds=2.0, active=active
    )
    assert walk is not None
    chains = [(s.depth, s.chain) for s in walk.steps if s.table == "nat"]
    assert chains[0] == (0, "KUBE-SERVICES")
    dnat = [s for s in walk.steps if "DNAT" in s.rule]
    # via the ClusterIP, again via the external IP's and the NodePort's KUBE-EXT chain
    # (both lead to KUBE-SVC); IPv4 then IPv6
    assert [s.rule.rsplit(" ", 1)[1] for s in dnat] == [
        *["10.244.0.2:8080", "10.244.0.3:8080"] * 3, "[fd00:244::2]:8080",
    ]  # fmt: skip
    assert dnat[0].packets == 7 and dnat[0].rate == 2.0
    assert all(s.depth == 2 for s in dnat[:2])
    text = format_service_walk(walk)
    assert "Service shop/web (kube-proxy, iptables mode, iptables-nft)" in text
    assert "port http/tcp: 10.96.0.10:80, 203.0.113.7:80, fd00:96::10:80; NodePort 30080" in text
    assert "7 packets (2.0/s)" in text
    assert "http/tcp 10.244.0.2:8080: 2" in text
    assert build_service_walk(now, meaning, "shop", "nothing") is None
    gone = build_service_walk(now, meaning, "shop", "gone")
    assert gone is not None
    assert {s.chain for s in gone.steps} == {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"}
