"""Which rules a path shows and what each means: the managers' own word (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.meaning.base import DROPPED, FAMILY_LABELS, FORWARDED, MASQUERADE, PUBLISHED, Meaning
from exporter.meaning.ruletext import parse_iptables_rule, parse_nft_rule
from exporter.model import (
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    Rule,
    Table,
)

# --------------------------------------------------------------------------
# What the managers make of each rule (their meanings)
# --------------------------------------------------------------------------

# (table index in FirewallData.tables, chain name, rule index) -> meanings
RuleKeyRef = tuple[int, str, int]


@dataclass(frozen=True, slots=True)
class RuleMeaning:
    kind: str  # "drop", "published", "masquerade", "forwarded"
    labels: Mapping[str, str]

    def text(self) -> str:
        lb = self.labels
        if self.kind == "drop":
            return f"drop: {lb['reason']}"
        if self.kind == "published":
            host = lb["host_ip"]
            host = f"[{host}]" if ":" in host else host
            return f"published {lb['protocol']} {host}:{lb['host_port']} -> {lb['container_port']}"
        if self.kind == "masquerade":
            return f"masquerade {lb['subnet']}"
        return f"forwarded {lb['direction']}"


# The families a rule's meaning is shown for, in the order they are listed.
_MEANING_KINDS = (
    (DROPPED, "drop"),
    (PUBLISHED, "published"),
    (MASQUERADE, "masquerade"),
    (FORWARDED, "forwarded"),
)


def build_rule_meanings(
    fw: FirewallData, meanings: Sequence[Meaning]
) -> dict[RuleKeyRef, tuple[RuleMeaning, ...]]:
    """Which derived series each rule counts towards: the managers' own word (see module doc)."""
    found: dict[RuleKeyRef, list[RuleMeaning]] = {}
    for family, kind in _MEANING_KINDS:
        names = FAMILY_LABELS[family]
        for meaning in meanings:
            for series in meaning.series:
                if series.family != family:
                    continue
                m = RuleMeaning(kind, dict(zip(names, series.labels, strict=True)))
                for ref in series.rules:
                    chain = fw.tables[ref.table].chains[ref.chain].name
                    found.setdefault((ref.table, chain, ref.rule), []).append(m)
    return {ref: tuple(ms) for ref, ms in found.items()}


# --------------------------------------------------------------------------
# Which rules and chains are about a network
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetMatch:
    bridge: str
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def has_address(self, addr: str) -> bool:
        try:
            net = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            return False
        return any(net.version == s.version and net.subnet_of(s) for s in self.subnets)  # type: ignore[arg-type]


_IFACE_CONDS = ("i", "o")
_ADDR_CONDS = ("s", "d")


def _dnat_address(target: str) -> str:
    if target.startswith("["):
        return target[1:].partition("]")[0]
    return target.partition(":")[0] if target.count(":") == 1 else target


def iptables_relevance(text: str, m: NetMatch) -> tuple[bool, bool]:
    """(names this network, names another interface or address) of one iptables rule."""
    r = parse_iptables_rule(text)
    if r is None:
        return False, True
    ours = other = False
    for cond, value in (("i", r.in_iface), ("o", r.out_iface)):
        if cond in r.conds or "!" + cond in r.conds:
            if value == m.bridge:
                ours = True
            elif cond in r.conds:
                other = True
    for cond, value in (("s", r.source), ("d", r.destination)):
        if cond in r.conds or "!" + cond in r.conds:
            if m.has_address(value):
                ours = True
            elif cond in r.conds:
                other = True
    if r.to_destination:
        if m.has_address(_dnat_address(r.to_destination)):
            ours = True
        else:
            other = True
    return ours, other


def nft_relevance(text: str, m: NetMatch) -> tuple[bool, bool]:
    n = parse_nft_rule(text)
    if n is None:
        return False, True
    ours = other = False
    for cond, value in (("iif", n.iif), ("oif", n.oif)):
        if value and (cond in n.conds or "!" + cond in n.conds):
            if value.strip('"') == m.bridge:
                ours = True
            elif cond in n.conds:
                other = True
    for cond, value in (("saddr", n.saddr), ("daddr", n.daddr)):
        # "fib daddr type local" leaves a bare "daddr" among the conditions: no address.
        if value and (cond in n.conds or "!" + cond in n.conds):
            if m.has_address(value):
                ours = True
            elif cond in n.conds:
                other = True
    if n.verdict == "dnat" and n.target:
        if m.has_address(_dnat_address(n.target)):
            ours = True
        else:
            other = True
    return ours, other


_VMAP = re.compile(r"\bvmap @(\S+?)-jumps\b")


def jump_targets(table: Table, rule: Rule, bridge: str) -> list[str]:
    if table.backend == BACKEND_NFTABLES:
        n = parse_nft_rule(rule.text)
        out = [n.target] if n is not None and n.verdict in ("jump", "goto") else []
        out += [f"{name}__{bridge}" for name in _VMAP.findall(rule.text)]
        return out
    r = parse_iptables_rule(rule.text)
    return [r.target] if r is not None and r.target else []


_HOOKS = {"PREROUTING": 0, "INPUT": 1, "FORWARD": 2, "OUTPUT": 3, "POSTROUTING": 4}
_NFT_HOOKS = {"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4}
_TABLE_PRIO = {"raw": 0, "mangle": 1, "nat": 2, "filter": 3, "security": 4}


def chain_hook(table: Table, chain: Chain) -> tuple[str, int, int] | None:
    """(hook name, hook rank, priority rank) of a built-in / base chain, None for the others."""
    if table.backend == BACKEND_NFTABLES:
        if chain.hook is None or chain.hook not in _NFT_HOOKS:
            return None
        prefix = chain.name.split("-", 1)[0].lower()
        return chain.hook, _NFT_HOOKS[chain.hook], _TABLE_PRIO.get(prefix, 3)
    if chain.policy is None or chain.name not in _HOOKS:
        return None
    return chain.name.lower(), _HOOKS[chain.name], _TABLE_PRIO.get(table.name, 5)


FAMILY_RANK = {"ipv4": 0, "ip": 0, "ipv6": 1, "ip6": 1}
