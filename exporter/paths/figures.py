"""Counters and rates of the hops and rules on a path (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.model import (
    Chain,
    FirewallData,
    Link,
    LinksData,
    LinkStats,
    Table,
)
from exporter.paths.views import Figures, LinkHop

# --------------------------------------------------------------------------
# Figures and rates
# --------------------------------------------------------------------------


def _rate(now: int | None, before: int | None, seconds: float | None) -> float | None:
    if now is None or before is None or not seconds or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


def make_figures(
    packets: int | None, nbytes: int | None, before: tuple[int | None, int | None] | None, s: float
) -> Figures:
    if before is None:
        return Figures(packets, nbytes)
    return Figures(packets, nbytes, _rate(packets, before[0], s), _rate(nbytes, before[1], s))


def sum_figures(items: Iterable[Figures]) -> Figures:
    items = list(items)

    def total(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v or 0 for v in values)

    def total_rate(values: list[float | None]) -> float | None:
        return (
            None if not values or any(v is None for v in values) else sum(v or 0.0 for v in values)
        )

    return Figures(
        total([f.packets for f in items]),
        total([f.bytes for f in items]),
        total_rate([f.packets_per_second for f in items]),
        total_rate([f.bytes_per_second for f in items]),
    )


# Rule identity across readings: its content and its occurrence in the chain.
RuleKey = tuple[str, str, str, str, str, int]


def rule_keys(table: Table, chain: Chain) -> list[RuleKey]:
    seen: dict[str, int] = {}
    keys = []
    for rule in chain.rules:
        n = seen.get(rule.text, 0)
        seen[rule.text] = n + 1
        keys.append((table.family, table.backend, table.name, chain.name, rule.text, n))
    return keys


def rule_counters(
    fw: FirewallData | None,
) -> tuple[dict[RuleKey, tuple[int | None, int | None]], dict[tuple[str, ...], tuple[int, int]]]:
    rules: dict[RuleKey, tuple[int | None, int | None]] = {}
    policies: dict[tuple[str, ...], tuple[int, int]] = {}
    if fw is None:
        return rules, policies
    for table in fw.tables:
        for chain in table.chains:
            for key, rule in zip(rule_keys(table, chain), chain.rules, strict=True):
                rules[key] = (rule.packets, rule.bytes)
            if chain.policy_packets is not None and chain.policy_bytes is not None:
                policies[(table.family, table.backend, table.name, chain.name)] = (
                    chain.policy_packets,
                    chain.policy_bytes,
                )
    return rules, policies


def link_hop(
    link: Link, links: LinksData, before: LinksData | None, seconds: float, ports: int | None = None
) -> LinkHop:
    st = links.stats.get(link.index)
    old = before.stats.get(link.index) if before is not None else None
    if st is None:
        return LinkHop(link.name, link.index, link.kind, link.mac, link.operstate, None, None)

    def pair(now: LinkStats, prev: LinkStats | None, side: str) -> Figures:
        p, b = getattr(now, f"{side}_packets"), getattr(now, f"{side}_bytes")
        base = (getattr(prev, f"{side}_packets"), getattr(prev, f"{side}_bytes")) if prev else None
        return make_figures(p, b, base, seconds)

    return LinkHop(
        name=link.name,
        ifindex=link.index,
        kind=link.kind,
        mac=link.mac,
        operstate=link.operstate,
        receive=pair(st, old, "rx"),
        transmit=pair(st, old, "tx"),
        receive_dropped=st.rx_dropped,
        transmit_dropped=st.tx_dropped,
        receive_errors=st.rx_errors,
        transmit_errors=st.tx_errors,
        ports=ports,
    )
