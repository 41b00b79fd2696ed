"""Pure tests of chain selection and of what counts as a backend holding rules."""

from __future__ import annotations

from exporter.config import FirewallConfig
from exporter.firewall.selection import backend_families, select_chain, table_holds_rules
from exporter.model import (
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    Table,
)


def test_default_selection_builtin_and_docker_chains() -> None:
    cfg = FirewallConfig()
    assert select_chain(cfg, "filter", "FORWARD", True)
    assert select_chain(cfg, "filter", "DOCKER-USER", False)
    assert select_chain(cfg, "nat", "DOCKER", False)
    assert select_chain(cfg, "docker-bridges", "filter-forward-in__br-x", False)
    assert not select_chain(cfg, "nat", "KUBE-SEP-ABC", False)


def test_exclude_wins_and_builtin_can_be_dropped() -> None:
    cfg = FirewallConfig(
        include_builtin_chains=False,
        chains_include=("filter/*",),
        chains_exclude=("filter/DOCKER-ISOLATION-*",),
    )
    assert not select_chain(cfg, "nat", "POSTROUTING", True)
    assert select_chain(cfg, "filter", "FORWARD", True)
    assert select_chain(cfg, "filter", "DOCKER", False)
    assert not select_chain(cfg, "filter", "DOCKER-ISOLATION-STAGE-2", False)
    assert not select_chain(FirewallConfig(chains_exclude=("*/INPUT",)), "filter", "INPUT", True)


def test_backend_families() -> None:
    assert backend_families("ipv4", BACKEND_IPTABLES_NFT) == ("ipv4",)
    assert backend_families("inet", BACKEND_NFTABLES) == ("ipv4", "ipv6")
    assert backend_families("ip6", BACKEND_NFTABLES) == ("ipv6",)
    assert backend_families("bridge", BACKEND_NFTABLES) == ()


def test_holds_rules() -> None:
    empty = Table("ipv4", BACKEND_IPTABLES_NFT, "filter", (Chain("INPUT", (), policy="ACCEPT"),))
    assert not table_holds_rules(empty)
    assert table_holds_rules(
        Table("ipv4", BACKEND_IPTABLES_NFT, "filter", (Chain("INPUT", (), policy="DROP"),))
    )
    assert table_holds_rules(Table("ipv4", BACKEND_IPTABLES_NFT, "filter", (Chain("X", ()),)))
    assert not table_holds_rules(
        Table("ip", BACKEND_NFTABLES, "t", (Chain("c", (), policy="accept", hook="input"),))
    )
