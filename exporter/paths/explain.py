"""The packet path of one container, hop by hop, with live figures (``netpath-exporter explain``).

The walk (:func:`build_path`, pure) joins what the collectors read: the
container's interface and its host veth (the veth join of
:func:`exporter.sources.docker.build_container_interfaces`), the bridge and its
Docker network, the routes through the bridge and the default route with its
uplink, then the firewall rules that apply to traffic from and to the
network, chain by chain in traversal order, its published ports with their
DNAT rules, its MASQUERADE rule and its drops by reason.

Which rules are shown: the rules of the firewall backend Docker uses (as
:mod:`exporter.meaning.docker` chooses it) that *name this network* (its
bridge, in or out, negated or not; an address in its subnet; a DNAT target in
it; nftables chains ``...__BRIDGE``), plus the rules that name *no other*
interface or address (``-j DOCKER-USER``, ``-j RETURN``, the ``addrtype``
jumps, nftables verdict-map dispatchers). A chain is shown when it holds a
rule naming the network or leads to a shown chain. Built-in chains come in
hook order (prerouting, input, forward, output, postrouting; raw, mangle,
nat, filter within a hook), each followed by the chains it jumps to.

What each rule means to Docker (a drop and its reason, a published port, the
masquerade, a forward accept) is what :func:`exporter.meaning.docker.render_docker`
makes of it, so ``explain`` and the ``netpath_docker_*`` metrics never
disagree: it is run once over the ruleset with every rule's packet counter
set to a distinct power of two, and each series' sum names its rules.

Rates come from two readings ``interval`` seconds apart (:class:`Baseline`);
a counter that went down (rule or interface re-created) has no rate.
:func:`run_explain` is the I/O entry: it reads the local host with the
exporter's own collectors, no running exporter needed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import socket
import struct
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from exporter.config import Config, parse_duration
from exporter.meaning.base import DROPPED, FAMILY_LABELS, FORWARDED, MASQUERADE, PUBLISHED, Meaning
from exporter.meaning.ruletext import parse_iptables_rule, parse_nft_rule
from exporter.model import (
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    Link,
    LinksData,
    LinkStats,
    Network,
    Route,
    RoutesData,
    Rule,
    Table,
    Workload,
)
from exporter.view import HostView
from exporter.workloads import WorkloadInterface, has_own_netns

# --------------------------------------------------------------------------
# The path (plain data)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """A packet and a byte counter, with their rates over the sampling window (None: unknown)."""

    packets: int | None
    bytes: int | None
    packets_per_second: float | None = None
    bytes_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class LinkHop:
    """An interface of the host namespace; ``receive``/``transmit`` as the host sees them."""

    name: str
    ifindex: int
    kind: str
    mac: str
    operstate: str
    receive: Figures | None  # None if the kernel gave no counters
    transmit: Figures | None
    receive_dropped: int | None = None
    transmit_dropped: int | None = None
    receive_errors: int | None = None
    transmit_errors: int | None = None
    ports: int | None = None  # bridges: number of enslaved interfaces


@dataclass(frozen=True, slots=True)
class ContainerInterfaceHop:
    """The container's end of the veth; figures from the container's point of view."""

    name: str  # "" if it could not be read
    ifindex: int | None  # in the container's namespace
    ip: str  # "172.18.0.2/16" (prefix of the network's subnet), "" if none
    ipv6: str
    mac: str
    gateway: str
    receive: Figures | None  # what its host veth transmitted
    transmit: Figures | None  # what its host veth received


@dataclass(frozen=True, slots=True)
class NetworkHop:
    name: str
    id: str
    driver: str
    bridge: str
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    internal: bool


@dataclass(frozen=True, slots=True)
class RuleView:
    """One firewall rule on the path; ``meanings`` as the ``netpath_docker_*`` families see it."""

    family: str
    backend: str
    table: str
    chain: str
    rule: str
    figures: Figures
    meanings: tuple[str, ...] = ()  # e.g. "drop: isolation", "published tcp 8080 -> 80"


@dataclass(frozen=True, slots=True)
class ChainView:
    family: str
    backend: str
    table: str
    chain: str
    hook: str  # "prerouting", ... for built-in/base chains, "" for the others
    policy: str | None
    policy_figures: Figures | None
    rules: tuple[RuleView, ...]
    other_rules: int  # rules of the chain left out (they name only other networks)


@dataclass(frozen=True, slots=True)
class PortView:
    protocol: str
    host_ip: str
    host_port: int
    container_port: int
    connections: Figures  # packets of the DNAT rules: new connections
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class MasqueradeView:
    subnet: str
    connections: Figures
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class DropView:
    reason: str
    figures: Figures
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class Leg:
    """The path through one network of the container (one veth)."""

    container_interface: ContainerInterfaceHop
    veth: LinkHop
    bridge: LinkHop | None
    network: NetworkHop | None
    routes: tuple[Route, ...]  # the main table's routes through the bridge
    chains: tuple[ChainView, ...]
    published_ports: tuple[PortView, ...]
    masquerade: tuple[MasqueradeView, ...]
    drops: tuple[DropView, ...]


@dataclass(frozen=True, slots=True)
class UplinkRoute:
    route: Route
    uplink: LinkHop | None


@dataclass(frozen=True, slots=True)
class ContainerPath:
    container: Workload
    legs: tuple[Leg, ...]
    default_routes: tuple[UplinkRoute, ...]
    layout: str  # Docker's firewall layout ("unknown" if none)
    backend: str  # the firewall backend Docker's rules were read from ("" if none)
    interval: float | None  # seconds between the two readings; None: no rates
    firewall_errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Baseline:
    """The earlier reading the rates are computed from."""

    links: LinksData | None
    firewall: FirewallData | None
    seconds: float  # time between that reading and the current one


class ExplainError(Exception):
    """The container cannot be explained; the message says why, for the user."""


# --------------------------------------------------------------------------
# Finding the container (pure)
# --------------------------------------------------------------------------


def find_container(containers: Iterable[Workload], query: str) -> Workload:
    """The running container named ``query`` (a leading "/" allowed) or whose id starts with it.

    Raises :class:`LookupError` when none matches and :class:`ExplainError` when
    an id prefix is ambiguous.
    """
    name = query.removeprefix("/")
    listed = list(containers)
    for ctr in listed:
        if ctr.name == name or ctr.id == query:
            return ctr
    prefix = query.lower()
    matches = [c for c in listed if prefix and c.id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(sorted(c.name for c in matches))
        raise ExplainError(f"{query!r} is the start of several container ids ({names}): give more")
    raise LookupError(query)


def describe_missing(query: str, listed: Iterable[Mapping[str, Any]]) -> str:
    """Why ``query`` names no running container, given Docker's list of *all* containers.

    ``listed`` holds items of ``GET /containers/json?all=1`` (Id, Names, State, Status).
    """
    name = query.removeprefix("/")
    for item in listed:
        cid = str(item.get("Id") or "")
        names = [str(n).lstrip("/") for n in item.get("Names") or ()]
        if name in names or (len(query) >= 1 and cid.startswith(query.lower())):
            shown = names[0] if names else cid[:12]
            status = str(item.get("Status") or item.get("State") or "not running")
            return (
                f"container {shown} is not running ({status}): a stopped container has no "
                "network path; start it first"
            )
    return (
        f"no container named {query!r} or with an id starting with it on this host "
        "(`docker ps` lists the running ones)"
    )


def describe_no_network(container: Workload) -> str:
    """Why a running container has no path of its own."""
    mode = container.network_mode
    if mode == "host":
        why = "it uses the host's network stack (--network host): its traffic is the host's own"
    elif mode == "none":
        why = "it has no network (--network none)"
    elif mode.startswith("container:"):
        why = f"it shares the network namespace of container {mode.removeprefix('container:')[:12]}"
        why += ": explain that one"
    else:
        why = "it is attached to no network"
    return f"container {container.name} has no network path of its own: {why}"


# --------------------------------------------------------------------------
# Figures and rates
# --------------------------------------------------------------------------


def _rate(now: int | None, before: int | None, seconds: float | None) -> float | None:
    if now is None or before is None or not seconds or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


def _figures(
    packets: int | None, nbytes: int | None, before: tuple[int | None, int | None] | None, s: float
) -> Figures:
    if before is None:
        return Figures(packets, nbytes)
    return Figures(packets, nbytes, _rate(packets, before[0], s), _rate(nbytes, before[1], s))


def _sum_figures(items: Iterable[Figures]) -> Figures:
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


def _rule_keys(table: Table, chain: Chain) -> list[RuleKey]:
    seen: dict[str, int] = {}
    keys = []
    for rule in chain.rules:
        n = seen.get(rule.text, 0)
        seen[rule.text] = n + 1
        keys.append((table.family, table.backend, table.name, chain.name, rule.text, n))
    return keys


def _rule_counters(
    fw: FirewallData | None,
) -> tuple[dict[RuleKey, tuple[int | None, int | None]], dict[tuple[str, ...], tuple[int, int]]]:
    rules: dict[RuleKey, tuple[int | None, int | None]] = {}
    policies: dict[tuple[str, ...], tuple[int, int]] = {}
    if fw is None:
        return rules, policies
    for table in fw.tables:
        for chain in table.chains:
            for key, rule in zip(_rule_keys(table, chain), chain.rules, strict=True):
                rules[key] = (rule.packets, rule.bytes)
            if chain.policy_packets is not None and chain.policy_bytes is not None:
                policies[(table.family, table.backend, table.name, chain.name)] = (
                    chain.policy_packets,
                    chain.policy_bytes,
                )
    return rules, policies


def _link_hop(
    link: Link, links: LinksData, before: LinksData | None, seconds: float, ports: int | None = None
) -> LinkHop:
    st = links.stats.get(link.index)
    old = before.stats.get(link.index) if before is not None else None
    if st is None:
        return LinkHop(link.name, link.index, link.kind, link.mac, link.operstate, None, None)

    def pair(now: LinkStats, prev: LinkStats | None, side: str) -> Figures:
        p, b = getattr(now, f"{side}_packets"), getattr(now, f"{side}_bytes")
        base = (getattr(prev, f"{side}_packets"), getattr(prev, f"{side}_bytes")) if prev else None
        return _figures(p, b, base, seconds)

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


# --------------------------------------------------------------------------
# What Docker makes of each rule (via render_docker)
# --------------------------------------------------------------------------

# (table index in FirewallData.tables, chain name, rule index) -> meanings
_RuleRef = tuple[int, str, int]


@dataclass(frozen=True, slots=True)
class _Meaning:
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
) -> dict[_RuleRef, tuple[_Meaning, ...]]:
    """Which derived series each rule counts towards: the managers' own word (see module doc)."""
    found: dict[_RuleRef, list[_Meaning]] = {}
    for family, kind in _MEANING_KINDS:
        names = FAMILY_LABELS[family]
        for meaning in meanings:
            for series in meaning.series:
                if series.family != family:
                    continue
                m = _Meaning(kind, dict(zip(names, series.labels, strict=True)))
                for ref in series.rules:
                    chain = fw.tables[ref.table].chains[ref.chain].name
                    found.setdefault((ref.table, chain, ref.rule), []).append(m)
    return {ref: tuple(ms) for ref, ms in found.items()}


# --------------------------------------------------------------------------
# Which rules and chains are about a network
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NetMatch:
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


def _iptables_relevance(text: str, m: _NetMatch) -> tuple[bool, bool]:
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


def _nft_relevance(text: str, m: _NetMatch) -> tuple[bool, bool]:
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


def _jump_targets(table: Table, rule: Rule, bridge: str) -> list[str]:
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


def _hook(table: Table, chain: Chain) -> tuple[str, int, int] | None:
    """(hook name, hook rank, priority rank) of a built-in / base chain, None for the others."""
    if table.backend == BACKEND_NFTABLES:
        if chain.hook is None or chain.hook not in _NFT_HOOKS:
            return None
        prefix = chain.name.split("-", 1)[0].lower()
        return chain.hook, _NFT_HOOKS[chain.hook], _TABLE_PRIO.get(prefix, 3)
    if chain.policy is None or chain.name not in _HOOKS:
        return None
    return chain.name.lower(), _HOOKS[chain.name], _TABLE_PRIO.get(table.name, 5)


_FAMILY_RANK = {"ipv4": 0, "ip": 0, "ipv6": 1, "ip6": 1}


# --------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    networks: tuple[Network, ...]
    links: LinksData
    firewall: FirewallData | None
    routes: RoutesData | None
    before: Baseline | None
    layout: str
    backend: str
    chosen: tuple[tuple[int, Table], ...]
    meanings: Mapping[_RuleRef, tuple[_Meaning, ...]]
    counters: Mapping[RuleKey, tuple[int | None, int | None]]
    policies: Mapping[tuple[str, ...], tuple[int, int]]
    ifnames: Mapping[tuple[int, int], str]

    @property
    def seconds(self) -> float:
        return self.before.seconds if self.before is not None else 0.0


def _rules_shown(
    ctx: _Context, ti: int, table: Table, m: _NetMatch
) -> tuple[dict[str, list[int]], set[str]]:
    """Per chain, the indexes of the rules shown; and the chains holding a rule naming the net."""
    keep: dict[str, list[int]] = {}
    ours_chains: set[str] = set()
    for chain in table.chains:
        if table.backend == BACKEND_NFTABLES and "__" in chain.name:
            if chain.name.rsplit("__", 1)[1] == m.bridge:
                keep[chain.name] = list(range(len(chain.rules)))
                ours_chains.add(chain.name)
            continue
        shown = []
        for ri, rule in enumerate(chain.rules):
            if table.backend == BACKEND_NFTABLES:
                ours, other = _nft_relevance(rule.text, m)
            else:
                ours, other = _iptables_relevance(rule.text, m)
            meant = ctx.meanings.get((ti, chain.name, ri), ())
            ours = ours or any(mn.labels.get("bridge") == m.bridge for mn in meant)
            if ours or not other:
                shown.append(ri)
            if ours:
                ours_chains.add(chain.name)
        keep[chain.name] = shown
    return keep, ours_chains


def _table_chains(
    ctx: _Context, ti: int, table: Table, m: _NetMatch
) -> list[tuple[tuple[int, int, int, int, int], ChainView]]:
    """The chains of one table about the network, with their sort keys."""
    by_name = {c.name: c for c in table.chains}
    keep, ours_chains = _rules_shown(ctx, ti, table, m)
    if not ours_chains:
        return []

    def targets(name: str) -> list[str]:
        chain = by_name[name]
        out: list[str] = []
        for ri in keep.get(name, ()):
            out += _jump_targets(table, chain.rules[ri], m.bridge)
        return out

    # A chain is shown when it names the network or leads to a shown chain.
    shown = set(ours_chains)
    changed = True
    while changed:
        changed = False
        for name in keep:
            if name not in shown and any(t in shown for t in targets(name)):
                shown.add(name)
                changed = True
    # Traversal order: base chains by hook, each followed (depth first) by the chains
    # it jumps to; a chain sorts with the base chain it was first reached from.
    order: dict[str, tuple[int, int]] = {}
    bases = sorted((h[1], h[2], c.name) for c in table.chains if (h := _hook(table, c)))
    starts = [(name, (hook, prio)) for hook, prio, name in bases]
    starts += [(c.name, (9, 9)) for c in table.chains]
    for start, anchor in starts:
        stack = [start]
        while stack:
            name = stack.pop()
            if name in order or name not in shown:
                continue
            order[name] = anchor
            stack.extend(reversed(targets(name)))
    fam = _FAMILY_RANK.get(table.family, 2)
    out = []
    for pos, (name, anchor) in enumerate(order.items()):
        chain = by_name[name]
        hook = _hook(table, chain)
        keys = _rule_keys(table, chain)
        rules = tuple(
            _rule_view(ctx, ti, table, chain, ri, key=keys[ri]) for ri in keep.get(name, ())
        )
        pkey = (table.family, table.backend, table.name, chain.name)
        policy_figures = (
            _figures(chain.policy_packets, chain.policy_bytes, ctx.policies.get(pkey), ctx.seconds)
            if chain.policy_packets is not None
            else None
        )
        view = ChainView(
            family=table.family,
            backend=table.backend,
            table=table.name,
            chain=chain.name,
            hook=hook[0] if hook else "",
            policy=chain.policy,
            policy_figures=policy_figures,
            rules=rules,
            other_rules=len(chain.rules) - len(rules),
        )
        out.append(((fam, anchor[0], anchor[1], ti, pos), view))
    return out


def _rule_view(
    ctx: _Context, ti: int, table: Table, chain: Chain, ri: int, *, key: RuleKey | None = None
) -> RuleView:
    rule = chain.rules[ri]
    if key is None:
        key = _rule_keys(table, chain)[ri]
    return RuleView(
        family=table.family,
        backend=table.backend,
        table=table.name,
        chain=chain.name,
        rule=rule.text,
        figures=_figures(rule.packets, rule.bytes, ctx.counters.get(key), ctx.seconds),
        meanings=tuple(mn.text() for mn in ctx.meanings.get((ti, chain.name, ri), ())),
    )


def _walk_chains(ctx: _Context, m: _NetMatch) -> tuple[ChainView, ...]:
    """The chains about this network, in traversal order (see module doc)."""
    views = []
    for ti, table in ctx.chosen:
        views += _table_chains(ctx, ti, table, m)
    views.sort(key=lambda kv: kv[0])
    return tuple(v for _, v in views)


def _context(
    view: HostView,
    links: LinksData,
    *,
    before: Baseline | None,
    ifnames: Mapping[tuple[int, int], str],
) -> _Context:
    firewall = view.firewall
    layout, backend = "unknown", ""
    chosen: tuple[tuple[int, Table], ...] = ()
    meanings: Mapping[_RuleRef, tuple[_Meaning, ...]] = {}
    if firewall is not None:
        docker = next((m for m in view.meanings if m.manager == "docker"), None)
        if docker is not None:
            layout, backend = docker.layout, docker.backend
            chosen = tuple((i, firewall.tables[i]) for i in docker.tables)
        meanings = build_rule_meanings(firewall, view.meanings)
    counters, policies = _rule_counters(before.firewall if before is not None else None)
    return _Context(
        tuple(net for src in view.sources for net in src.networks),
        links,
        firewall,
        view.routes,
        before,
        layout,
        backend,
        chosen,
        meanings,
        counters,
        policies,
        ifnames,
    )


def _prefixed(ip: str, net: Network | None) -> str:
    if not ip or "/" in ip or net is None:
        return ip
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    for sub in net.subnets:
        try:
            n = ipaddress.ip_network(sub, strict=False)
        except ValueError:
            continue
        if addr.version == n.version and addr in n:
            return f"{ip}/{n.prefixlen}"
    return ip


def _network_of(ctx: _Context, name: str, network_id: str) -> Network | None:
    for net in ctx.networks:
        if (network_id and net.id == network_id) or (not network_id and net.name == name):
            return net
    for net in ctx.networks:
        if net.name == name:
            return net
    return None


def _leg(ctx: _Context, ctr: Workload, ci: Any) -> Leg:
    links = ctx.links
    prev = ctx.before.links if ctx.before is not None else None
    seconds = ctx.before.seconds if ctx.before is not None else 0.0
    by_index = {link.index: link for link in links.links}
    veth_link = by_index[ci.ifindex]
    veth = _link_hop(veth_link, links, prev, seconds)
    bridge_hop = None
    if veth_link.master is not None and veth_link.master in by_index:
        master = by_index[veth_link.master]
        nports = sum(1 for link in links.links if link.master == master.index)
        bridge_hop = _link_hop(master, links, prev, seconds, nports)
    net = _network_of(ctx, ci.network, ci.network_id)
    endpoint = next(
        (e for e in ctr.endpoints if (net and e.network_id == net.id) or e.network == ci.network),
        None,
    )
    peer = veth_link.peer_index
    ifname = ""
    if peer is not None and ctr.netns_id is not None:
        ifname = ctx.ifnames.get((ctr.netns_id, peer), "")
    iface = ContainerInterfaceHop(
        name=ifname,
        ifindex=peer,
        ip=_prefixed(ci.ip, net),
        ipv6=_prefixed(endpoint.ipv6, net) if endpoint else "",
        mac=ci.mac,
        gateway=endpoint.gateway if endpoint else "",
        receive=veth.transmit,
        transmit=veth.receive,
    )
    network = (
        NetworkHop(
            name=net.name,
            id=net.id,
            driver=net.driver,
            bridge=net.bridge,
            subnets=net.subnets,
            gateways=net.gateways,
            internal=net.internal,
        )
        if net is not None
        else None
    )
    bridge = bridge_hop.name if bridge_hop is not None else (net.bridge if net else "")
    routes = tuple(
        r for r in (ctx.routes.routes if ctx.routes else ()) if r.interface == bridge and bridge
    )
    subnets = []
    for sub in net.subnets if net else ():
        try:
            subnets.append(ipaddress.ip_network(sub, strict=False))
        except ValueError:
            continue
    match = _NetMatch(bridge, tuple(subnets))
    chains = _walk_chains(ctx, match) if bridge else ()
    ports, masq, drops = _docker_views(ctx, ctr, bridge, net)
    return Leg(iface, veth, bridge_hop, network, routes, chains, ports, masq, drops)


def _docker_views(
    ctx: _Context, ctr: Workload, bridge: str, net: Network | None
) -> tuple[tuple[PortView, ...], tuple[MasqueradeView, ...], tuple[DropView, ...]]:
    """Published ports, masquerade and drops of one leg, from the rules' Docker meanings.

    Every rule with a meaning for this network counts, shown in the walk or not.
    """
    if ctx.firewall is None or not bridge:
        return (), (), ()
    ports: dict[tuple[str, str, int, int], list[RuleView]] = {}
    masq: dict[str, list[RuleView]] = {}
    drops: dict[str, list[RuleView]] = {}
    net_name = net.name if net is not None else bridge
    for (ti, chain_name, ri), meanings in sorted(ctx.meanings.items()):
        table = ctx.firewall.tables[ti]
        chain = next(c for c in table.chains if c.name == chain_name)
        view = _rule_view(ctx, ti, table, chain, ri)
        for mn in meanings:
            lb = mn.labels
            if mn.kind == "published":
                ours = lb["container"] == ctr.name and lb["network"] in (net_name, "")
                if ours and lb["host_port"].isdigit() and lb["container_port"].isdigit():
                    key = (lb["protocol"], lb["host_ip"], int(lb["host_port"]))
                    ports.setdefault((*key, int(lb["container_port"])), []).append(view)
            elif mn.kind == "masquerade" and lb["bridge"] == bridge:
                masq.setdefault(lb["subnet"], []).append(view)
            elif mn.kind == "drop" and lb["bridge"] == bridge:
                drops.setdefault(lb["reason"], []).append(view)
    port_views = []
    for pb in ctr.ports:
        key4 = (pb.protocol, pb.host_ip or "0.0.0.0", pb.host_port, pb.container_port)
        rules = ports.pop(key4, [])
        port_views.append(PortView(*key4, _connections(rules), tuple(rules)))
    # DNAT rules to this container that Docker's port list does not hold.
    for key4, rules in sorted(ports.items()):
        port_views.append(PortView(*key4, _connections(rules), tuple(rules)))
    masq_views = tuple(
        MasqueradeView(subnet, _connections(views), tuple(views))
        for subnet, views in sorted(masq.items())
    )
    drop_views = tuple(
        DropView(reason, _sum_figures(v.figures for v in views), tuple(views))
        for reason, views in sorted(drops.items())
    )
    return tuple(port_views), masq_views, drop_views


def _connections(rules: Sequence[RuleView]) -> Figures:
    """New connections: the packets of NAT rules (bytes are not meaningful there); None: no rule."""
    if not rules:
        return Figures(None, None)
    f = _sum_figures(r.figures for r in rules)
    return Figures(f.packets, None, f.packets_per_second)


def _default_routes(ctx: _Context) -> tuple[UplinkRoute, ...]:
    prev = ctx.before.links if ctx.before is not None else None
    seconds = ctx.before.seconds if ctx.before is not None else 0.0
    by_name = {link.name: link for link in ctx.links.links}
    out = []
    for r in ctx.routes.routes if ctx.routes else ():
        if r.destination != "default":
            continue
        link = by_name.get(r.interface)
        hop = _link_hop(link, ctx.links, prev, seconds) if link is not None else None
        out.append(UplinkRoute(r, hop))
    return tuple(out)


def _path(ctx: _Context, ctr: Workload, interfaces: Sequence[WorkloadInterface]) -> ContainerPath:
    legs = tuple(_leg(ctx, ctr, wi) for wi in interfaces if wi.workload.id == ctr.id)
    return ContainerPath(
        container=ctr,
        legs=legs,
        default_routes=_default_routes(ctx),
        layout=ctx.layout,
        backend=ctx.backend,
        interval=ctx.before.seconds if ctx.before is not None else None,
        firewall_errors=ctx.firewall.errors if ctx.firewall is not None else (),
    )


def build_path(
    container: Workload,
    view: HostView,
    *,
    before: Baseline | None = None,
    ifnames: Mapping[tuple[int, int], str] | None = None,
) -> ContainerPath:
    """The path of one workload's traffic; no legs if no host veth of it is found.

    ``ifnames`` names container-side interfaces by (netns id, ifindex).
    """
    if view.links is None:
        return _path(_context(view, _NO_LINKS, before=before, ifnames={}), container, ())
    ctx = _context(view, view.links, before=before, ifnames=ifnames or {})
    return _path(ctx, container, view.interfaces)


def build_paths(view: HostView, *, before: Baseline | None = None) -> tuple[ContainerPath, ...]:
    """The path of every running workload that has a host veth, by name."""
    if view.links is None:
        return ()
    ctx = _context(view, view.links, before=before, ifnames={})
    owners = {wi.workload.id: wi.workload for wi in view.interfaces}
    return tuple(
        _path(ctx, w, view.interfaces) for w in sorted(owners.values(), key=lambda w: w.name)
    )


_NO_LINKS = LinksData((), {})


# --------------------------------------------------------------------------
# Output (pure)
# --------------------------------------------------------------------------


def _json(obj: object) -> Any:
    if isinstance(obj, tuple | list):
        return [_json(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _json(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {name: _json(getattr(obj, name)) for name in obj.__dataclass_fields__}
    return obj


def path_to_json(path: ContainerPath) -> dict[str, Any]:
    """The path as plain JSON-ready data (``explain --json``)."""
    ctr = path.container
    return {
        "container": {
            "name": ctr.name,
            "id": ctr.id,
            "image": ctr.image,
            "network_mode": ctr.network_mode,
            "compose_project": ctr.compose_project,
            "compose_service": ctr.compose_service,
        },
        "interval_seconds": path.interval,
        "firewall": {
            "backend": path.backend,
            "layout": path.layout,
            "errors": list(path.firewall_errors),
        },
        "networks": [_json(leg) for leg in path.legs],
        "default_routes": [
            {**_json(u.route), "uplink": _json(u.uplink)} for u in path.default_routes
        ],
    }


def format_path_json(path: ContainerPath) -> str:
    return json.dumps(path_to_json(path), indent=2) + "\n"


def _plural(n: int | None, word: str) -> str:
    return f"{_n(n)} {word}" + ("" if n == 1 else "s")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v}"


def _r(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 or v == 0 else f"{v:.1f}"


def _bytes(v: int | None) -> str:
    if v is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v} B"


def _figs(f: Figures | None, rates: bool) -> str:
    if f is None:
        return "no counters"
    text = f"{_n(f.packets)} pkts {_bytes(f.bytes)}"
    if rates:
        text += f" ({_r(f.packets_per_second)} pkt/s, {_r(f.bytes_per_second)} B/s)"
    return text


def _link_line(hop: LinkHop, rates: bool) -> list[str]:
    lines = [
        f"receive  {_figs(hop.receive, rates)}",
        f"transmit {_figs(hop.transmit, rates)}",
    ]
    if hop.receive is not None:
        lines.append(
            f"dropped rx {_n(hop.receive_dropped)} tx {_n(hop.transmit_dropped)}, "
            f"errors rx {_n(hop.receive_errors)} tx {_n(hop.transmit_errors)}"
        )
    return lines


def format_path_text(path: ContainerPath) -> str:
    """The path for people: numbered hops, then the firewall chain by chain."""
    ctr = path.container
    rates = path.interval is not None
    out = [f"Container {ctr.name} ({ctr.id[:12]}), image {ctr.image or '-'}"]
    window = f"rates over {path.interval:.1f} s" if rates else "no rates (one reading)"
    fw = f"firewall {path.backend or 'none found'}, Docker layout {path.layout}"
    out.append(f"{window}; {fw}")
    for err in path.firewall_errors:
        out.append(f"warning: firewall: {err}")
    for leg in path.legs:
        net = leg.network
        out.append("")
        if net is not None:
            out.append(f"Network {net.name} ({net.id[:12]}, driver {net.driver})")
        else:
            out.append("Network: unknown (the bridge belongs to no Docker network)")
        iface = leg.container_interface
        where = f"ifindex {iface.ifindex}" if iface.ifindex is not None else "ifindex ?"
        out.append(f"  1. container interface {iface.name or '?'} ({where} in the container)")
        addrs = ", ".join(a for a in (iface.ip, iface.ipv6) if a) or "no address"
        out.append(f"       {addrs}  mac {iface.mac or '-'}  gateway {iface.gateway or '-'}")
        out.append(f"       sent     {_figs(iface.transmit, rates)}")
        out.append(f"       received {_figs(iface.receive, rates)}")
        v = leg.veth
        out.append(f"  2. host veth {v.name} (ifindex {v.ifindex}, {v.operstate}, mac {v.mac})")
        out += [f"       {line}" for line in _link_line(v, rates)]
        b = leg.bridge
        if b is not None:
            out.append(
                f"  3. bridge {b.name} (ifindex {b.ifindex}, {b.operstate}, "
                f"{b.ports} port{'s' if b.ports != 1 else ''})"
            )
        else:
            out.append("  3. bridge: none (the veth has no master)")
        if net is not None:
            subnets = ", ".join(net.subnets) or "-"
            gateways = ", ".join(net.gateways) or "-"
            internal = "yes" if net.internal else "no"
            out.append(f"       subnet {subnets}  gateway {gateways}  internal {internal}")
        if b is not None:
            out += [f"       {line}" for line in _link_line(b, rates)]
        out.append("  4. routing")
        for r in leg.routes:
            via = f" via {r.gateway}" if r.gateway else ""
            out.append(f"       {r.destination}{via} dev {r.interface}")
        if not leg.routes:
            out.append("       no route through the bridge (is it down?)")
        for u in path.default_routes:
            via = f" via {u.route.gateway}" if u.route.gateway else ""
            out.append(f"       default{via} dev {u.route.interface}")
            if u.uplink is not None:
                out.append(f"         uplink {u.uplink.name} ({u.uplink.operstate})")
                out += [f"         {line}" for line in _link_line(u.uplink, rates)[:2]]
        if not path.default_routes:
            out.append("       no default route")
        out.append("  5. firewall, in traversal order")
        if not leg.chains:
            out.append("       no rules about this network")
        for ch in leg.chains:
            head = f"       {ch.family} {ch.table} {ch.chain}"
            if ch.hook:
                head += f" (hook {ch.hook}"
                if ch.policy is not None:
                    head += f", policy {ch.policy}"
                    if ch.policy_figures is not None:
                        head += f": {_figs(ch.policy_figures, rates)}"
                head += ")"
            out.append(head)
            for rv in ch.rules:
                tag = f"   <- {'; '.join(rv.meanings)}" if rv.meanings else ""
                out.append(
                    f"         {_n(rv.figures.packets):>8} {_bytes(rv.figures.bytes):>10}"
                    + (f" {_r(rv.figures.packets_per_second):>7}/s" if rates else "")
                    + f"  {rv.rule}{tag}"
                )
            if ch.other_rules:
                out.append(
                    f"         ({_plural(ch.other_rules, 'rule')} about other networks not shown)"
                )
            if not ch.rules:
                out.append("         (no rules)")
        out.append("  6. published ports")
        for p in leg.published_ports:
            target = _hostport(iface.ip.split("/")[0] or "?", p.container_port)
            head = f"       {p.protocol} {_hostport(p.host_ip, p.host_port)} -> {target}  "
            if not p.rules:
                out.append(head + "no DNAT rule: docker-proxy alone serves it")
                continue
            out.append(
                head
                + _plural(p.connections.packets, "connection")
                + (f" ({_r(p.connections.packets_per_second)}/s)" if rates else "")
            )
            for rv in p.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.published_ports:
            out.append("       none")
        out.append("  7. masquerade (new connections leaving through another interface)")
        for mq in leg.masquerade:
            out.append(
                f"       {mq.subnet}: {_plural(mq.connections.packets, 'connection')}"
                + (f" ({_r(mq.connections.packets_per_second)}/s)" if rates else "")
            )
            for rv in mq.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.masquerade:
            out.append("       no MASQUERADE rule for this network")
        out.append(f"  8. drops into {net.name if net else 'this network'}, by reason")
        for d in leg.drops:
            out.append(f"       {d.reason}: {_figs(d.figures, rates)}")
            for rv in d.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.drops:
            out.append("       no Docker drop rule for this network")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Reading the host (I/O)
# --------------------------------------------------------------------------

_NLMSG = struct.Struct("=IHHII")
_RTA = struct.Struct("=HHi")
IFLA_TARGET_NETNSID = 46
RTM_GETLINK = 18
NLM_F_REQUEST_DUMP = 0x1 | 0x300


def read_container_ifnames(netnsid: int, timeout: float = 2.0) -> dict[int, str]:
    """{ifindex: name} of the interfaces in the namespace this one calls ``netnsid``.

    One RTM_GETLINK dump with IFLA_TARGET_NETNSID: no namespace is entered.
    """
    from exporter.netlink import route as rtnetlink  # noqa: PLC0415

    body = rtnetlink.build_link_dump_request(1)[16:] + _RTA.pack(8, IFLA_TARGET_NETNSID, netnsid)
    req = _NLMSG.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST_DUMP, 1, 0) + body
    names: dict[int, str] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.settimeout(timeout)
        sock.sendto(req, (0, 0))
        done = False
        while not done:
            part, done = rtnetlink.parse_link_names(sock.recv(1 << 16), 1)
            names.update(part)
    return names


def run_explain(
    cfg: Config,
    query: str,
    *,
    interval: float = 1.0,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Explain one workload of the local host; 0 when done, 1 when it cannot be explained.

    Polls through the daemon's own pipeline (:func:`exporter.pipeline.make_poller`):
    twice, ``interval`` apart, for the rates.
    """
    from exporter.pipeline import make_poller  # noqa: PLC0415 - only for `explain`
    from exporter.registry import BY_NAME  # noqa: PLC0415

    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str) -> int:
        print(f"netpath-exporter explain: {message}", file=err)
        return 1

    poller = make_poller(cfg, render=False)
    quiet = logging.getLogger("netpath.poller")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        first = poller.poll_once().poll
        view = first.view
        assert view is not None
        workloads = [w for src in view.sources for w in src.workloads]
        failed = [
            s for s in first.status if not s.success and not s.absent and BY_NAME[s.name].source
        ]
        try:
            ctr = find_container(workloads, query)
        except ExplainError as exc:
            return fail(str(exc))
        except LookupError:
            if not view.sources and failed:
                return fail("; ".join(s.error for s in failed))
            return fail(_describe_missing_workload(cfg, query, failed))
        if not has_own_netns(ctr):
            return fail(describe_no_network(ctr))
        before = None
        poll = first
        if interval > 0:
            # The counters were read at the end of the first poll: the window starts there.
            time.sleep(max(0.0, first.timestamp + interval - time.time()))
            poll = poller.poll_once().poll
            seconds = poll.timestamp - first.timestamp
            if first.view is not None and first.view.links is not None:
                before = Baseline(first.view.links, first.view.firewall, seconds)
    finally:
        poller.stop()
        quiet.disabled = was_disabled
    view = poll.view
    assert view is not None
    ifnames: dict[tuple[int, int], str] = {}
    if ctr.netns_id is not None:
        try:
            for index, name in read_container_ifnames(ctr.netns_id).items():
                ifnames[(ctr.netns_id, index)] = name
        except (OSError, ValueError):
            pass  # the names are a nicety: the ifindexes are shown anyway
    path = build_path(ctr, view, before=before, ifnames=ifnames)
    if not path.legs:
        return fail(
            f"found no host veth of container {ctr.name}: run explain in the network "
            "namespace of the container host (rootless runtimes keep their veths in their "
            "own namespace)"
        )
    out.write(format_path_json(path) if as_json else format_path_text(path))
    out.flush()
    return 0


def _describe_missing_workload(cfg: Config, query: str, failed: Sequence[Any]) -> str:
    """Why ``query`` names no running workload: Docker's stopped containers say most."""
    if cfg.enabled("docker") and not any(s.name == "docker" for s in failed):
        from exporter.sources.docker import list_all_containers  # noqa: PLC0415

        try:
            listed = list_all_containers(cfg.docker.resolved_host(), cfg.docker.timeout)
        except Exception as exc:  # Docker went away meanwhile: say what we know
            return f"no running container {query!r} ({exc})"
        return describe_missing(query, listed)
    return describe_missing(query, [])


def parse_interval(value: str) -> float:
    """``--interval``: a duration ("1s", "500ms") or 0 for a single reading without rates."""
    if value.strip() in ("0", "0s"):
        return 0.0
    return parse_duration(value)


def _interval_arg(value: str) -> float:
    try:
        return parse_interval(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` subcommand's own arguments, added to the exporter's common flags."""
    parser.description = (
        "Print the path of one container's traffic on this host, hop by hop, with live "
        "figures: its interface, host veth, bridge and Docker network, routes, the firewall "
        "rules that apply to its network chain by chain, published ports, masquerade and drops."
    )
    parser.epilog = "Exit 1 when the container is unknown, stopped or has no network of its own."
    parser.add_argument("container", help="container name or id prefix")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--interval",
        type=_interval_arg,
        default=1.0,
        metavar="DURATION",
        help="rate window: read the counters twice this far apart (default 1s; 0: once, no rates)",
    )


__all__ = [
    "Baseline",
    "ContainerPath",
    "ExplainError",
    "add_explain_arguments",
    "build_path",
    "build_paths",
    "build_rule_meanings",
    "describe_missing",
    "describe_no_network",
    "find_container",
    "format_path_json",
    "format_path_text",
    "parse_interval",
    "path_to_json",
    "read_container_ifnames",
    "run_explain",
]
