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
from typing import Any

from exporter.model import (
    LinksData,
    Network,
    Workload,
)
from exporter.paths.chains import walk_chains
from exporter.paths.context import PathContext, path_context
from exporter.paths.figures import (
    link_hop,
)
from exporter.paths.meanings import meaning_views, ports_on_their_legs
from exporter.paths.rules import (
    NetMatch,
)
from exporter.paths.views import (
    Baseline,
    ContainerInterfaceHop,
    ContainerPath,
    Leg,
    NetworkHop,
    UplinkRoute,
)
from exporter.view import HostView
from exporter.workloads import WorkloadInterface


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


def _network_of(ctx: PathContext, name: str, network_id: str) -> Network | None:
    for net in ctx.networks:
        if (network_id and net.id == network_id) or (not network_id and net.name == name):
            return net
    for net in ctx.networks:
        if net.name == name:
            return net
    return None


def _leg(ctx: PathContext, ctr: Workload, ci: Any) -> Leg:
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
    chains = walk_chains(ctx, match) if bridge else ()
    ports, masq, drops = meaning_views(ctx, ctr, bridge, net)
    return Leg(iface, veth, bridge_hop, network, routes, chains, ports, masq, drops)


def _default_routes(ctx: PathContext) -> tuple[UplinkRoute, ...]:
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


_RUNTIME_MANAGER = {"podman": "netavark"}


def _path(
    ctx: PathContext, ctr: Workload, interfaces: Sequence[WorkloadInterface]
) -> ContainerPath:
    legs = ports_on_their_legs(
        tuple(_leg(ctx, ctr, wi) for wi in interfaces if wi.workload.id == ctr.id)
    )
    manager = _RUNTIME_MANAGER.get(ctr.runtime, "docker")
    layout, backend = ctx.layouts.get(manager, (ctx.layout, ctx.backend))
    return ContainerPath(
        container=ctr,
        legs=legs,
        default_routes=_default_routes(ctx),
        layout=layout,
        backend=backend,
        interval=ctx.before.seconds if ctx.before is not None else None,
        firewall_errors=ctx.firewall.errors if ctx.firewall is not None else (),
        manager=manager,
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
        return _path(path_context(view, _NO_LINKS, before=before, ifnames={}), container, ())
    ctx = path_context(view, view.links, before=before, ifnames=ifnames or {})
    return _path(ctx, container, view.interfaces)


def build_paths(view: HostView, *, before: Baseline | None = None) -> tuple[ContainerPath, ...]:
    """The path of every running workload that has a host veth, by name."""
    if view.links is None:
        return ()
    ctx = path_context(view, view.links, before=before, ifnames={})
    owners = {wi.workload.id: wi.workload for wi in view.interfaces}
    return tuple(
        _path(ctx, w, view.interfaces) for w in sorted(owners.values(), key=lambda w: w.name)
    )


_NO_LINKS = LinksData((), {})
