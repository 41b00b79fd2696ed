"""Pure tests of the netpath_firewall_* families (exporter/metrics/firewall.py)."""

from __future__ import annotations

from exporter.metrics.firewall import render_firewall
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    MetricFamily,
    Rule,
    Table,
)


def _families(fw: FirewallData) -> dict[str, MetricFamily]:
    return {f.name: f for f in render_firewall(fw)}


def test_render() -> None:
    fw = FirewallData(
        backends=(("ipv4", BACKEND_IPTABLES_LEGACY), ("ipv4", BACKEND_NFTABLES)),
        tables=(
            Table(
                "ipv4",
                BACKEND_IPTABLES_LEGACY,
                "filter",
                (
                    Chain(
                        "FORWARD",
                        (Rule("-j DOCKER-USER", 5, 500),),
                        policy="DROP",
                        policy_packets=3,
                        policy_bytes=300,
                    ),
                    Chain(
                        "DOCKER-ISOLATION-STAGE-2",
                        (
                            Rule("-o br-x -j DROP", 2, 168),
                            Rule("-j RETURN", 1, 10),
                            Rule("-o br-x -j DROP", 3, 252),
                        ),
                    ),
                ),
            ),
            Table(
                "ip",
                BACKEND_NFTABLES,
                "docker-bridges",
                (
                    Chain(
                        "filter-FORWARD",
                        (Rule("oifname vmap @filter-forward-in-jumps", None, None),),
                        policy="accept",
                        hook="forward",
                    ),
                ),
            ),
        ),
    )
    fams = _families(fw)
    assert list(fams) == [
        "netpath_firewall_rule_packets_total",
        "netpath_firewall_rule_bytes_total",
        "netpath_firewall_chain_policy_packets_total",
        "netpath_firewall_chain_policy_bytes_total",
        "netpath_firewall_chain_rules",
        "netpath_firewall_backend_info",
    ]
    pk = fams["netpath_firewall_rule_packets_total"]
    assert pk.type == "counter"
    assert pk.labels == ("family", "backend", "table", "chain", "rule")
    legacy = ("ipv4", BACKEND_IPTABLES_LEGACY, "filter")
    assert pk.samples == (
        ((*legacy, "FORWARD", "-j DOCKER-USER"), 5),
        ((*legacy, "DOCKER-ISOLATION-STAGE-2", "-o br-x -j DROP"), 5),
        ((*legacy, "DOCKER-ISOLATION-STAGE-2", "-j RETURN"), 1),
    )
    by = dict(fams["netpath_firewall_rule_bytes_total"].samples)
    assert by[(*legacy, "DOCKER-ISOLATION-STAGE-2", "-o br-x -j DROP")] == 420
    pol = fams["netpath_firewall_chain_policy_packets_total"]
    assert pol.labels == ("family", "backend", "table", "chain", "policy")
    assert pol.samples == (((*legacy, "FORWARD", "DROP"), 3),)  # nft chain has no counters
    assert fams["netpath_firewall_chain_policy_bytes_total"].samples[0][1] == 300
    rules = fams["netpath_firewall_chain_rules"]
    assert rules.type == "gauge"
    assert dict(rules.samples) == {
        (*legacy, "FORWARD"): 1,
        (*legacy, "DOCKER-ISOLATION-STAGE-2"): 3,
        ("ip", BACKEND_NFTABLES, "docker-bridges", "filter-FORWARD"): 1,
    }
    info = fams["netpath_firewall_backend_info"]
    assert info.samples == (
        (("ipv4", BACKEND_IPTABLES_LEGACY), 1),
        (("ipv4", BACKEND_NFTABLES), 1),
    )


def test_render_empty() -> None:
    fams = render_firewall(FirewallData(backends=(), tables=()))
    assert len(fams) == 6
    assert all(f.samples == () for f in fams)
