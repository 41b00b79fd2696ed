"""A leg's published ports, masquerade and drops: the managers' series about its network (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from exporter.model import (
    Network,
    Workload,
)
from exporter.paths.chains import rule_view
from exporter.paths.context import PathContext
from exporter.paths.figures import (
    sum_figures,
)
from exporter.paths.views import (
    DropView,
    Figures,
    Leg,
    MasqueradeView,
    PortView,
    RuleView,
)


def meaning_views(
    ctx: PathContext, ctr: Workload, bridge: str, net: Network | None
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
        view = rule_view(ctx, ti, table, chain, ri)
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
        port_views.append(PortView(*key4, connections(rules), tuple(rules)))
    # DNAT rules to this container that Docker's port list does not hold.
    for key4, rules in sorted(ports.items()):
        port_views.append(PortView(*key4, connections(rules), tuple(rules)))
    masq_views = tuple(
        MasqueradeView(subnet, connections(views), tuple(views))
        for subnet, views in sorted(masq.items())
    )
    drop_views = tuple(
        DropView(reason, sum_figures(v.figures for v in views), tuple(views))
        for reason, views in sorted(drops.items())
    )
    return tuple(port_views), masq_views, drop_views


def connections(rules: Sequence[RuleView]) -> Figures:
    """New connections: the packets of NAT rules (bytes are not meaningful there); None: no rule."""
    if not rules:
        return Figures(None, None)
    f = sum_figures(r.figures for r in rules)
    return Figures(f.packets, None, f.packets_per_second)


def ports_on_their_legs(legs: tuple[Leg, ...]) -> tuple[Leg, ...]:
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
