"""The firewall chains a network's traffic passes, in traversal order (pure).

Each chain with the rules about the network and what each means.
"""

from __future__ import annotations

from exporter.meaning.kube_proxy import is_kube_proxy_chain
from exporter.model import (
    BACKEND_NFTABLES,
    Chain,
    Table,
)
from exporter.paths.context import PathContext
from exporter.paths.figures import (
    RuleKey,
    make_figures,
    rule_keys,
)
from exporter.paths.rules import (
    FAMILY_RANK,
    NetMatch,
    chain_hook,
    iptables_relevance,
    jump_targets,
    nft_relevance,
)
from exporter.paths.views import (
    ChainView,
    RuleView,
)


def _rules_shown(
    ctx: PathContext, ti: int, table: Table, m: NetMatch
) -> tuple[dict[str, list[int]], set[str]]:
    """Per chain, the indexes of the rules shown; and the chains holding a rule naming the net."""
    keep: dict[str, list[int]] = {}
    ours_chains: set[str] = set()
    for chain in table.chains:
        if is_kube_proxy_chain(table, chain.name):
            continue  # a Service's path (explain svc/NS/NAME), not the workload's
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
    ctx: PathContext, ti: int, table: Table, m: NetMatch
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
            rule_view(ctx, ti, table, chain, ri, key=keys[ri]) for ri in keep.get(name, ())
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


def rule_view(
    ctx: PathContext, ti: int, table: Table, chain: Chain, ri: int, *, key: RuleKey | None = None
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


def walk_chains(ctx: PathContext, m: NetMatch) -> tuple[ChainView, ...]:
    """The chains about this network, in traversal order (see module doc)."""
    views = []
    for ti, table in ctx.chosen:
        views += _table_chains(ctx, ti, table, m)
    views.sort(key=lambda kv: kv[0])
    return tuple(v for _, v in views)
