"""Docker's meaning of the rules, from fixture rulesets of each layout (pure, no root).

The fixtures (tests/fixtures/docker_rules/) describe one host in every layout:
docker0 ("bridge", c2), "appnet" on br-40d652e0aac8 (web, publishing 8080:80
and 127.0.0.1:9000:9000, with IPv6 fd00:18::/64), the ``--internal`` network
"secret" on br-5ec2e7000001 (vault) and the icc=false network "quiet" on a
bridge named quietbr (q1). Each rule counter is distinct, so the expected sums
below show which rules went where.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from meanings import render_docker, render_meaning_families

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_text
from exporter.meaning.docker_layout import detect_layout, network_bridge
from exporter.meaning.ruletext import parse_iptables_rule, parse_nft_rule
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    Endpoint,
    FirewallData,
    MetricFamily,
    Network,
    PortBinding,
    Rule,
    SourceData,
    Table,
    Workload,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docker_rules"
SEED_RULESET = FIXTURES.parent / "firewall" / "seed-docker-classic.iptables-save"

APP = "br-40d652e0aac8"
INTERNAL_BR = "br-5ec2e7000001"
QUIET = "quietbr"


# --------------------------------------------------------------------------
# Loading fixtures into FirewallData
# --------------------------------------------------------------------------


def iptables_tables(name: str, family: str, backend: str = BACKEND_IPTABLES_NFT) -> list[Table]:
    return parse_iptables_save((FIXTURES / name).read_text(), family, backend)


def nft_tables_from_text(text: str) -> list[Table]:
    """nft listing text -> model tables, as the firewall collector builds them."""
    out = []
    for t in parse_nft_text(text):
        chains = tuple(
            Chain(
                name=c.name,
                rules=tuple(Rule(r.text, r.packets, r.bytes) for r in c.rules),
                policy=c.policy,
                hook=c.hook,
            )
            for c in t.chains
        )
        out.append(Table(family=t.family, backend=BACKEND_NFTABLES, name=t.name, chains=chains))
    return out


def firewall(*tables: Table) -> FirewallData:
    backends = sorted({(t.family, t.backend) for t in tables})
    return FirewallData(backends=tuple(backends), tables=tuple(tables))


def layout_firewall(layout: str) -> FirewallData:
    if layout == "v29-nftables":
        return firewall(*nft_tables_from_text((FIXTURES / "v29-nftables.nft").read_text()))
    tables = iptables_tables(f"{layout}.ipv4.iptables-save", "ipv4")
    v6 = FIXTURES / f"{layout}.ipv6.iptables-save"
    if v6.exists():
        tables += iptables_tables(v6.name, "ipv6")
    return firewall(*tables)


def _net(name: str, nid: str, bridge: str, subnets: tuple[str, ...], **kw: object) -> Network:
    return Network(
        name=name,
        id=nid,
        driver="bridge",
        bridge=bridge,
        subnets=subnets,
        gateways=(),
        internal=bool(kw.get("internal", False)),
        enable_ipv6=len(subnets) > 1,
        options=kw.get("options", {}),  # type: ignore[arg-type]
    )


def _ctr(
    name: str, network: str, ip: str, ipv6: str = "", ports: tuple[PortBinding, ...] = ()
) -> Workload:
    return Workload(
        id=name * 8,
        name=name,
        image="busybox",
        compose_project="",
        compose_service="",
        network_mode=network,
        netns_id=None,
        endpoints=(Endpoint(network, "", ip, ipv6, "", ""),),
        ports=ports,
    )


DOCKER = SourceData(
    version="27.5.1",
    workloads=(
        _ctr("c2", "bridge", "172.17.0.2"),
        _ctr("q1", "quiet", "172.20.0.2"),
        _ctr("vault", "secret", "172.19.0.2"),
        _ctr(
            "web",
            "appnet",
            "172.18.0.2",
            "fd00:18::2",
            (PortBinding("tcp", 80, "0.0.0.0", 8080), PortBinding("tcp", 9000, "127.0.0.1", 9000)),
        ),
    ),
    networks=(
        _net("appnet", "40d652e0aac8" + "a" * 52, APP, ("172.18.0.0/16", "fd00:18::/64")),
        _net("bridge", "b" * 64, "docker0", ("172.17.0.0/16",)),
        _net(
            "quiet",
            "c" * 64,
            QUIET,
            ("172.20.0.0/16",),
            options={
                "com.docker.network.bridge.name": QUIET,
                "com.docker.network.bridge.enable_icc": "false",
            },
        ),
        _net("secret", "5ec2e7000001" + "d" * 52, INTERNAL_BR, ("172.19.0.0/16",), internal=True),
    ),
)


def series(families: list[MetricFamily]) -> dict[str, dict[tuple[str, ...], float]]:
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for fam in families:
        assert fam.name not in out, f"family {fam.name} twice"
        out[fam.name] = dict(fam.samples)
        assert len(out[fam.name]) == len(fam.samples), f"duplicate series in {fam.name}"
    return out


# --------------------------------------------------------------------------
# Expected values per layout
# --------------------------------------------------------------------------

PUBLISHED_V4 = {
    ("web", "appnet", "tcp", "0.0.0.0", "8080", "80"): 51,
    ("web", "appnet", "tcp", "127.0.0.1", "9000", "9000"): 52,
}
PUBLISHED_V6 = {("web", "appnet", "tcp", "::", "8080", "80"): 67}
MASQ_V4 = {
    ("quiet", QUIET, "172.20.0.0/16"): 41,
    ("appnet", APP, "172.18.0.0/16"): 42,
    ("bridge", "docker0", "172.17.0.0/16"): 43,
}
MASQ_V6 = {("appnet", APP, "fd00:18::/64"): 66}


EXPECTED: dict[str, dict[str, object]] = {
    "classic": {
        "dropped": {
            (APP, "", "isolation"): (32 + 5, 3200 + 520),
            ("docker0", "", "isolation"): (33, 3300),
            (QUIET, "", "isolation"): (31, 3100),
            (QUIET, "", "icc"): (13, 1300),
            (INTERNAL_BR, "", "internal"): (21 + 22, 2100 + 2200),
        },
        "published": PUBLISHED_V4 | PUBLISHED_V6,
        "masquerade": MASQ_V4 | MASQ_V6,
        "forwarded": {
            (APP, "", "inbound"): (101 + 23 + 4 + 61 + 64, 10100 + 1380 + 240 + 6100 + 6400),
            (APP, "", "outbound"): (102 + 62, 10200 + 6200),
            (APP, "", "internal"): (103 + 63, 10300 + 6300),
            ("docker0", "", "inbound"): (201, 20100),
            ("docker0", "", "outbound"): (202, 20200),
            ("docker0", "", "internal"): (203, 20300),
            (QUIET, "", "inbound"): (11, 1100),
            (QUIET, "", "outbound"): (12, 1200),
            (INTERNAL_BR, "", "internal"): (14, 1400),
        },
    },
    "forward-chains": {
        "dropped": {
            (APP, "", "isolation"): (32, 3200),
            (APP, "", "unpublished"): (82, 8200),
            (APP, "", "direct_access"): (71 + 72, 4260 + 4320),
            ("docker0", "", "isolation"): (33, 3300),
            ("docker0", "", "unpublished"): (81, 8100),
            (QUIET, "", "isolation"): (31, 3100),
            (QUIET, "", "unpublished"): (83, 8300),
            (QUIET, "", "icc"): (13, 1300),
            (INTERNAL_BR, "", "internal"): (21 + 22, 2100 + 2200),
        },
        "published": PUBLISHED_V4,
        "masquerade": MASQ_V4,
        "forwarded": {
            (APP, "", "inbound"): (101 + 23 + 4, 10100 + 1380 + 240),
            (APP, "", "outbound"): (102, 10200),
            ("docker0", "", "inbound"): (201, 20100),
            ("docker0", "", "outbound"): (202, 20200),
            (QUIET, "", "inbound"): (11, 1100),
            (QUIET, "", "outbound"): (12, 1200),
            (INTERNAL_BR, "", "outbound"): (14, 1400),
        },
    },
    "v29-iptables": {
        "dropped": {
            (APP, "", "unpublished"): (82 + 9, 8200 + 936),
            (APP, "", "direct_access"): (71 + 8, 4260 + 832),
            ("docker0", "", "unpublished"): (81, 8100),
            (QUIET, "", "unpublished"): (83, 8300),
            (QUIET, "", "direct_access"): (73, 4380),
            (QUIET, "", "icc"): (13, 1300),
            (INTERNAL_BR, "", "internal"): (21 + 22, 2100 + 2200),
        },
        "published": PUBLISHED_V4 | PUBLISHED_V6,
        "masquerade": MASQ_V4 | MASQ_V6,
        "forwarded": {
            (APP, "", "inbound"): (101 + 23 + 4 + 61 + 64, 10100 + 1380 + 240 + 6100 + 6400),
            (APP, "", "outbound"): (102 + 62, 10200 + 6200),
            ("docker0", "", "inbound"): (201, 20100),
            ("docker0", "", "outbound"): (202, 20200),
            (QUIET, "", "inbound"): (11, 1100),
            (QUIET, "", "outbound"): (12, 1200),
            (INTERNAL_BR, "", "outbound"): (14, 1400),
        },
    },
    "v29-nftables": {
        "dropped": {
            (APP, "", "unpublished"): (82 + 9, 8200 + 936),
            (APP, "", "direct_access"): (71 + 8, 4260 + 832),
            ("docker0", "", "unpublished"): (81, 8100),
            (QUIET, "", "unpublished"): (83, 8300),
            (QUIET, "", "direct_access"): (73, 4380),
            (QUIET, "", "icc"): (13, 1300),
            (INTERNAL_BR, "", "internal"): (21 + 22, 2100 + 2200),
        },
        "published": PUBLISHED_V4 | PUBLISHED_V6,
        "masquerade": MASQ_V4 | MASQ_V6,
        "forwarded": {
            (APP, "", "inbound"): (101 + 23 + 4 + 61 + 64, 10100 + 1380 + 240 + 6100 + 6400),
            (APP, "", "outbound"): (104 + 102 + 65 + 62, 10400 + 10200 + 6500 + 6200),
            (APP, "", "internal"): (103 + 63, 10300 + 6300),
            ("docker0", "", "inbound"): (201, 20100),
            ("docker0", "", "outbound"): (204 + 202, 20400 + 20200),
            ("docker0", "", "internal"): (203, 20300),
            (QUIET, "", "inbound"): (11, 1100),
            (QUIET, "", "outbound"): (17 + 12, 1700 + 1200),
            (INTERNAL_BR, "", "inbound"): (15, 1500),
            (INTERNAL_BR, "", "outbound"): (16, 1600),
            (INTERNAL_BR, "", "internal"): (14, 1400),
        },
    },
}

NETWORK_OF = {APP: "appnet", "docker0": "bridge", QUIET: "quiet", INTERNAL_BR: "secret"}


def _split(
    expected: dict[tuple[str, str, str], tuple[int, int]], with_names: bool
) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int]]:
    packets: dict[tuple[str, ...], int] = {}
    nbytes: dict[tuple[str, ...], int] = {}
    for (bridge, _, x), (p, b) in expected.items():
        key = (NETWORK_OF[bridge] if with_names else bridge, bridge, x)
        packets[key] = p
        nbytes[key] = b
    return packets, nbytes


LAYOUTS = ["classic", "forward-chains", "v29-iptables", "v29-nftables"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_is_detected(layout: str) -> None:
    assert detect_layout(layout_firewall(layout)) == layout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_families_per_layout(layout: str) -> None:
    got = series(render_docker(layout_firewall(layout), DOCKER, None))
    exp = EXPECTED[layout]
    dropped_p, dropped_b = _split(exp["dropped"], True)  # type: ignore[arg-type]
    fwd_p, fwd_b = _split(exp["forwarded"], True)  # type: ignore[arg-type]
    assert got["netpath_dropped_packets_total"] == dropped_p
    assert got["netpath_dropped_bytes_total"] == dropped_b
    assert got["netpath_forwarded_packets_total"] == fwd_p
    assert got["netpath_forwarded_bytes_total"] == fwd_b
    assert got["netpath_published_port_connections_total"] == exp["published"]
    assert got["netpath_masquerade_connections_total"] == exp["masquerade"]
    assert got["netpath_firewall_layout_info"] == {(layout,): 1}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_without_docker_the_bridge_names_the_network(layout: str) -> None:
    got = series(render_docker(layout_firewall(layout), None, None))
    exp = EXPECTED[layout]
    dropped_p, _ = _split(exp["dropped"], False)  # type: ignore[arg-type]
    assert got["netpath_dropped_packets_total"] == dropped_p
    published = {
        ("", APP, *rest): v
        for (_, _, *rest), v in exp["published"].items()  # type: ignore[attr-defined]
    }
    assert got["netpath_published_port_connections_total"] == published
    masq = {(b, b, s): v for (_, b, s), v in exp["masquerade"].items()}  # type: ignore[attr-defined]
    assert got["netpath_masquerade_connections_total"] == masq


def test_families_and_label_names_follow_the_contract() -> None:
    fams = render_meaning_families(layout_firewall("classic"), DOCKER)
    drop_labels = ("manager", "network", "bridge", "reason")
    fwd_labels = ("manager", "network", "bridge", "direction")
    svc_labels = ("namespace", "service", "port", "protocol")
    assert [(f.name, f.type, f.labels) for f in fams] == [
        ("netpath_dropped_packets_total", "counter", drop_labels),
        ("netpath_dropped_bytes_total", "counter", drop_labels),
        (
            "netpath_published_port_connections_total",
            "counter",
            (
                "manager",
                "container",
                "namespace",
                "pod",
                "network",
                "protocol",
                "host_ip",
                "host_port",
                "container_port",
            ),
        ),
        (
            "netpath_masquerade_connections_total",
            "counter",
            ("manager", "network", "bridge", "subnet", "container", "namespace", "pod"),
        ),
        ("netpath_forwarded_packets_total", "counter", fwd_labels),
        ("netpath_forwarded_bytes_total", "counter", fwd_labels),
        ("netpath_service_endpoint_connections_total", "counter", (*svc_labels, "endpoint")),
        ("netpath_service_rejected_packets_total", "counter", (*svc_labels, "reason")),
        ("netpath_service_external_connections_total", "counter", (*svc_labels, "via")),
        ("netpath_firewall_layout_info", "gauge", ("manager", "layout")),
        ("netpath_service_info", "gauge", (*svc_labels, "cluster_ip")),
        ("netpath_service_endpoints", "gauge", svc_labels),
    ]
    for fam in fams:
        for labels, _ in fam.samples:
            assert len(labels) == len(fam.labels)


def test_seed_ruleset_is_classic() -> None:
    # the seed was saved without -c: give every rule a zero counter
    text = SEED_RULESET.read_text().replace("\n-A ", "\n[0:0] -A ")
    fw = firewall(*parse_iptables_save(text, "ipv4", BACKEND_IPTABLES_LEGACY))
    got = series(render_docker(fw, None, None))
    assert got["netpath_firewall_layout_info"] == {("classic",): 1}
    assert got["netpath_dropped_packets_total"] == {
        (APP, APP, "isolation"): 0,
        ("docker0", "docker0", "isolation"): 0,
    }
    assert got["netpath_published_port_connections_total"] == {
        ("", APP, "tcp", "0.0.0.0", "80", "80"): 0
    }


# --------------------------------------------------------------------------
# Layout detection where several backends hold rules
# --------------------------------------------------------------------------


def test_no_docker_rules_is_unknown() -> None:
    fw = firewall(Table("ipv4", BACKEND_IPTABLES_NFT, "filter", (Chain("FORWARD", (), "ACCEPT"),)))
    assert detect_layout(fw) == "unknown"
    assert detect_layout(FirewallData((), ())) == "unknown"
    got = series(render_docker(fw, DOCKER, None))
    assert got["netpath_firewall_layout_info"] == {("unknown",): 1}
    assert got["netpath_dropped_packets_total"] == {}


def test_leftover_isolation_chains_do_not_make_v29_look_older() -> None:
    tables = iptables_tables("v29-iptables.ipv4.iptables-save", "ipv4")
    filt = next(t for t in tables if t.name == "filter")
    leftovers = (Chain("DOCKER-ISOLATION-STAGE-1", ()), Chain("DOCKER-ISOLATION-STAGE-2", ()))
    tables = [
        t if t is not filt else Table(t.family, t.backend, t.name, t.chains + leftovers)
        for t in tables
    ]
    assert detect_layout(firewall(*tables)) == "v29-iptables"


def test_hooked_backend_beats_leftover_chains_of_a_newer_layout() -> None:
    legacy = iptables_tables("classic.ipv4.iptables-save", "ipv4", BACKEND_IPTABLES_LEGACY)
    # v29 chains left in iptables-nft, no longer hooked into FORWARD
    nft = [
        Table(t.family, t.backend, t.name, tuple(c for c in t.chains if c.name != "FORWARD"))
        for t in iptables_tables("v29-iptables.ipv4.iptables-save", "ipv4")
    ]
    fw = firewall(*legacy, *nft)
    assert detect_layout(fw) == "classic"
    got = series(render_docker(fw, DOCKER, None))
    # only the legacy (classic) counters: no v29 "unpublished" drops added in
    assert ("appnet", APP, "unpublished") not in got["netpath_dropped_packets_total"]
    assert got["netpath_dropped_packets_total"][("appnet", APP, "isolation")] == 32


def test_newest_hooked_layout_wins() -> None:
    legacy = iptables_tables("classic.ipv4.iptables-save", "ipv4", BACKEND_IPTABLES_LEGACY)
    nft = nft_tables_from_text((FIXTURES / "v29-nftables.nft").read_text())
    assert detect_layout(firewall(*legacy, *nft)) == "v29-nftables"
    v29 = iptables_tables("v29-iptables.ipv4.iptables-save", "ipv4")
    assert detect_layout(firewall(*legacy, *v29)) == "v29-iptables"


def test_same_layout_in_both_iptables_backends_prefers_nft_and_does_not_sum() -> None:
    legacy = iptables_tables("classic.ipv4.iptables-save", "ipv4", BACKEND_IPTABLES_LEGACY)
    nft = iptables_tables("classic.ipv4.iptables-save", "ipv4", BACKEND_IPTABLES_NFT)
    got = series(render_docker(firewall(*legacy, *nft), DOCKER, None))
    assert got["netpath_dropped_packets_total"][("appnet", APP, "isolation")] == 32


def test_chains_only_without_forward_still_detect() -> None:
    for layout in ("classic", "forward-chains", "v29-iptables"):
        tables = [
            Table(t.family, t.backend, t.name, tuple(c for c in t.chains if c.name != "FORWARD"))
            for t in iptables_tables(f"{layout}.ipv4.iptables-save", "ipv4")
        ]
        assert detect_layout(firewall(*tables)) == layout


# --------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------


def test_garbage_and_foreign_rules_are_skipped() -> None:
    rules = (
        Rule("-j DOCKER-USER", 1, 1),
        Rule("-j DOCKER-ISOLATION-STAGE-1", 1, 1),
        Rule('-m comment --comment "unterminated', 5, 5),
        Rule("-i eth0 -o eth0 -j ACCEPT", 7, 7),  # not a Docker bridge
        Rule("-i eth0 ! -o eth0 -j ACCEPT", 7, 7),
        Rule("-o br-x -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", 3, 30),
        Rule("-o br-x -j DOCKER", 0, 0),
        Rule("! ! -o", 1, 1),
        Rule("", 1, 1),
    )
    stage2 = (Rule("-o br-x -j DROP", 9, 90), Rule("-o br-x -j DROP", 1, 10), Rule("-o br-x", 4, 4))
    fw = firewall(
        Table(
            "ipv4",
            BACKEND_IPTABLES_NFT,
            "filter",
            (
                Chain("FORWARD", rules, "DROP", 0, 0),
                Chain("DOCKER-ISOLATION-STAGE-2", stage2),
                Chain("DOCKER", (Rule("-j", 1, 1),)),
            ),
        ),
        Table("ip", BACKEND_NFTABLES, "other", (Chain("c", (Rule("{{{", 1, 1),)),)),
    )
    got = series(render_docker(fw, None, None))
    assert got["netpath_firewall_layout_info"] == {("classic",): 1}
    # duplicate identical rules are summed; the rule without a target is ignored
    assert got["netpath_dropped_packets_total"] == {("br-x", "br-x", "isolation"): 10}
    assert got["netpath_forwarded_packets_total"] == {("br-x", "br-x", "inbound"): 3}


def test_unknown_layout_renders_without_crashing() -> None:
    fw = firewall(
        Table(
            "ipv4",
            BACKEND_IPTABLES_NFT,
            "filter",
            (
                Chain("FORWARD", (Rule("-j DOCKER-SOMETHING-NEW", 1, 1),), "ACCEPT"),
                Chain("DOCKER-USER", (Rule("-j RETURN", 1, 1),)),
                Chain("DOCKER", (Rule("! -i br-y -o br-y -j DROP", 6, 60),)),
            ),
        )
    )
    got = series(render_docker(fw, None, None))
    assert got["netpath_firewall_layout_info"] == {("unknown",): 1}
    assert got["netpath_dropped_packets_total"] == {("br-y", "br-y", "unpublished"): 6}


def test_nft_rules_without_counters_are_skipped() -> None:
    chain = Chain(
        "filter-forward-in__br-z", (Rule('drop comment "UNPUBLISHED PORT DROP"', None, None),)
    )
    fw = firewall(Table("ip", BACKEND_NFTABLES, "docker-bridges", (chain,)))
    got = series(render_docker(fw, None, None))
    assert got["netpath_dropped_packets_total"] == {}


def test_published_port_container_falls_back_to_empty() -> None:
    rule = Rule("! -i br-q -p udp -m udp --dport 53 -j DNAT --to-destination 10.9.0.7:5353", 4, 400)
    fw = firewall(Table("ipv4", BACKEND_IPTABLES_NFT, "nat", (Chain("DOCKER", (rule,)),)))
    got = series(render_docker(fw, DOCKER, None))
    assert got["netpath_published_port_connections_total"] == {
        ("", "br-q", "udp", "0.0.0.0", "53", "5353"): 4
    }


# --------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------


def test_parse_iptables_rule() -> None:
    r = parse_iptables_rule("-d 172.18.0.2/32 ! -i br-1 -o br-1 -p tcp -m tcp --dport 80 -j ACCEPT")
    assert r is not None
    assert r.conds == {"d", "!i", "o", "p", "dport"}
    assert (r.destination, r.in_iface, r.out_iface, r.protocol, r.dport, r.target) == (
        "172.18.0.2/32",
        "br-1",
        "br-1",
        "tcp",
        "80",
        "ACCEPT",
    )
    r = parse_iptables_rule("-o br-1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    assert r is not None and r.conds == {"o", "ctstate"} and r.ctstate == "RELATED,ESTABLISHED"
    r = parse_iptables_rule(
        "! -i br-1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80"
    )
    assert r is not None and r.to_destination == "[fd00::2]:80" and r.target == "DNAT"
    r = parse_iptables_rule("-m addrtype --dst-type LOCAL -j DOCKER")
    assert r is not None and r.conds == {"--dst-type"} and r.target == "DOCKER"
    r = parse_iptables_rule("-m set --match-set docker-ext-bridges-v4 dst -j DOCKER")
    assert r is not None and r.conds == {"--match-set"}
    for bad in ('-m comment --comment "x', "! ! -o x", "-i", "-j A B", "foo", "-o x !"):
        assert parse_iptables_rule(bad) is None, bad


def test_parse_nft_rule() -> None:
    r = parse_nft_rule(
        'ip daddr 172.18.0.2 iifname != "br-x" counter drop comment "DROP DIRECT ACCESS"'
    )
    assert r is not None
    assert r.conds == {"daddr", "!iif"} and r.daddr == "172.18.0.2" and r.iif == "br-x"
    assert r.verdict == "drop" and r.comment == "DROP DIRECT ACCESS" and r.counter
    r = parse_nft_rule(
        'iifname != "b" tcp dport 8080 counter packets 5 bytes 300 '
        'dnat to [fd00::2]:80 comment "DNAT"'
    )
    assert r is not None and r.verdict == "dnat" and r.target == "[fd00::2]:80"
    assert r.l4proto == "tcp" and r.dport == "8080" and r.conds == {"!iif", "dport"}
    r = parse_nft_rule("ct state established,related counter accept")
    assert r is not None and r.conds == {"ct"} and r.ct_state == "established,related"
    r = parse_nft_rule('oifname != "b" ip6 saddr fd00::/64 counter masquerade comment "MASQUERADE"')
    assert r is not None and r.verdict == "masquerade" and r.saddr == "fd00::/64"
    r = parse_nft_rule("oifname vmap @filter-forward-in-jumps")
    assert r is not None and r.verdict == "" and "vmap" in r.conds
    for bad in ('comment "x', "dnat", "jump", "ip daddr"):
        assert parse_nft_rule(bad) is None, bad


def test_network_bridge() -> None:
    def net(name: str, bridge: str = "", **options: str) -> Network:
        return Network(
            name, "0123456789ab" + "f" * 52, "bridge", bridge, (), (), False, options=options
        )

    assert network_bridge(net("bridge")) == "docker0"
    assert network_bridge(net("appnet")) == "br-0123456789ab"
    assert network_bridge(net("x", **{"com.docker.network.bridge.name": "mybr"})) == "mybr"
    assert network_bridge(net("x", "given")) == "given"
    host = Network("host", "e" * 64, "host", "", (), (), False)
    assert network_bridge(host) == ""
