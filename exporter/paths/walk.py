"""The walk: one workload's legs, from its interface to the uplink (pure).

:func:`build_path` joins what the poll's :class:`~exporter.view.HostView`
holds: the workload's interface and its host veth (the one join of
:mod:`exporter.workloads`), the bridge and its network, the routes through the
bridge and the default route with its uplink, then the firewall rules that
apply to traffic from and to the network, chain by chain in traversal order,
its published ports with their DNAT rules, its masquerade rule and its drops
by reason.

Which rules are shown: the rules of the firewall backend Docker uses (the
Docker manager's choice) that *name this network* (its bridge, in or out,
negated or not; an address in its subnet; a DNAT target in it; nftables chains
``...__BRIDGE``), plus the rules that name *no other* interface or address
(``-j DOCKER-USER``, ``-j RETURN``, the ``addrtype`` jumps, nftables
verdict-map dispatchers). A chain is shown when it holds a rule naming the
network or leads to a shown chain. Built-in chains come in hook order
(prerouting, input, forward, output, postrouting; raw, mangle, nat, filter
within a hook), each followed by the chains it jumps to.

What each rule means (a drop and its reason, a published port, the
masquerade, a forward accept) is what the managers said in the view's
meanings (:func:`exporter.paths.rules.build_rule_meanings`): the series each
rule feeds, so ``explain`` and the metrics never disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.model import (
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    LinksData,
    Network,
    RoutesData,
    Table,
    Workload,
)
from exporter.paths.figures import (
    RuleKey,
    link_hop,
    make_figures,
    rule_counters,
    rule_keys,
    sum_figures,
)
from exporter.paths.rules import (
    FAMILY_RANK,
    NetMatch,
    RuleKeyRef,
    RuleMeaning,
    build_rule_meanings,
    chain_hook,
    iptables_relevance,
    jump_targets,
    nft_relevance,
)
from exporter.paths.views import (
    Baseline,
    ChainView,
    ContainerInterfaceHop,
    ContainerPath,
    DropView,
    Figures,
    Leg,
    MasqueradeView,
    NetworkHop,
    PortView,
    RuleView,
    UplinkRoute,
)
from exporter.view import HostView
from exporter.workloads import WorkloadInterface

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
    meanings: Mapping[RuleKeyRef, tuple[RuleMeaning, ...]]
    counters: Mapping[RuleKey, tuple[int | None, int | None]]
    policies: Mapping[tuple[str, ...], tuple[int, int]]
    ifnames: Mapping[tuple[int, int], str]

    @property
    def seconds(self) -> float:
        return self.before.seconds if self.before is not None else 0.0


def _rules_shown(
    ctx: _Context, ti: int, table: Table, m: NetMatch
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
                ours, other = nft_relevance(rule.text, m)
            else:
                ours, other = iptables_relevance(rule.text, m)
            meant = ctx.meanings.get((ti, chain.name, ri), ())
            ours = ours or any(mn.labels.get("bridge") == m.bridge for mn in meant)
            if ours or not other:
                shown.append(ri)
            if ours:
                ours_chains.add(chain.name)
        keep[chain.name] = shown
    return keep, ours_chains


def _table_chains(
    ctx: _Context, ti: int, table: Table, m: NetMatch
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
            out += jump_targets(table, chain.rules[ri], m.bridge)
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
    bases = sorted((h[1], h[2], c.name) for c in table.chains if (h := chain_hook(table, c)))
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
    fam = FAMILY_RANK.get(table.family, 2)
    out = []
    for pos, (name, anchor) in enumerate(order.items()):
        chain = by_name[name]
        hook = chain_hook(table, chain)
        keys = rule_keys(table, chain)
        rules = tuple(
            _rule_view(ctx, ti, table, chain, ri, key=keys[ri]) for ri in keep.get(name, ())
        )
        pkey = (table.family, table.backend, table.name, chain.name)
        policy_figures = (
            make_figures(
                chain.policy_packets, chain.policy_bytes, ctx.policies.get(pkey), ctx.seconds
            )
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
        key = rule_keys(table, chain)[ri]
    return RuleView(
        family=table.family,
        backend=table.backend,
        table=table.name,
        chain=chain.name,
        rule=rule.text,
        figures=make_figures(rule.packets, rule.bytes, ctx.counters.get(key), ctx.seconds),
        meanings=tuple(mn.text() for mn in ctx.meanings.get((ti, chain.name, ri), ())),
    )


def _walk_chains(ctx: _Context, m: NetMatch) -> tuple[ChainView, ...]:
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
    meanings: Mapping[RuleKeyRef, tuple[RuleMeaning, ...]] = {}
    if firewall is not None:
        docker = next((m for m in view.meanings if m.manager == "docker"), None)
        if docker is not None:
            layout, backend = docker.layout, docker.backend
            chosen = tuple((i, firewall.tables[i]) for i in docker.tables)
        meanings = build_rule_meanings(firewall, view.meanings)
    counters, policies = rule_counters(before.firewall if before is not None else None)
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
    veth = link_hop(veth_link, links, prev, seconds)
    bridge_hop = None
    if veth_link.master is not None and veth_link.master in by_index:
        master = by_index[veth_link.master]
        nports = sum(1 for link in links.links if link.master == master.index)
        bridge_hop = link_hop(master, links, prev, seconds, nports)
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
    match = NetMatch(bridge, tuple(subnets))
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
        DropView(reason, sum_figures(v.figures for v in views), tuple(views))
        for reason, views in sorted(drops.items())
    )
    return tuple(port_views), masq_views, drop_views


def _connections(rules: Sequence[RuleView]) -> Figures:
    """New connections: the packets of NAT rules (bytes are not meaningful there); None: no rule."""
    if not rules:
        return Figures(None, None)
    f = sum_figures(r.figures for r in rules)
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
        hop = link_hop(link, ctx.links, prev, seconds) if link is not None else None
        out.append(UplinkRoute(r, hop))
    return tuple(out)


def _path(ctx: _Context, ctr: Workload, interfaces: Sequence[WorkloadInterface]) -> ContainerPath:
    legs = _ports_on_their_legs(
        tuple(_leg(ctx, ctr, wi) for wi in interfaces if wi.workload.id == ctr.id)
    )
    return ContainerPath(
        container=ctr,
        legs=legs,
        default_routes=_default_routes(ctx),
        layout=ctx.layout,
        backend=ctx.backend,
        interval=ctx.before.seconds if ctx.before is not None else None,
        firewall_errors=ctx.firewall.errors if ctx.firewall is not None else (),
    )


def _ports_on_their_legs(legs: tuple[Leg, ...]) -> tuple[Leg, ...]:
    """Each published port on the leg whose DNAT serves it.

    The runtime lists a container's ports, not the network they are published
    on: each leg starts with all of them. A port that a leg's DNAT rules serve
    stays there only; one that no leg's rules serve (docker-proxy alone) stays
    on the first leg only.
    """
    if len(legs) < 2:
        return legs
    served = {_port_key(p) for leg in legs for p in leg.published_ports if p.rules}
    out = []
    for i, leg in enumerate(legs):
        kept = tuple(
            p for p in leg.published_ports if p.rules or (i == 0 and _port_key(p) not in served)
        )
        out.append(replace(leg, published_ports=kept))
    return tuple(out)


def _port_key(p: PortView) -> tuple[str, str, int, int]:
    return (p.protocol, p.host_ip, p.host_port, p.container_port)


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
