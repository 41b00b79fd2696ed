"""The ``netpath_firewall_*`` families from a :class:`~exporter.model.FirewallData` (pure).

What depends on the ruleset's structure alone (labels, which rules are summed)
is derived once per ``FirewallData.structure`` (:class:`_FirewallPlan`); every
poll sums the counters afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from exporter.model import FirewallData, MetricFamily, Series


@dataclass(frozen=True, slots=True)
class _ChainRender:
    """What a chain's structure says about its series."""

    count: int  # its number of rules
    # None: every rule has counters and a text of its own, one series each in
    # order; else the indexes of the rules summed into each series, in order.
    groups: tuple[tuple[int, ...], ...] | None
    policy_labels: tuple[str, ...] | None  # None for a chain without a policy


@dataclass(frozen=True, slots=True)
class _FirewallPlan:
    """The structure's part of :func:`render_firewall`: all but the counter values."""

    chains: tuple[_ChainRender, ...]  # every chain of every table, in order
    rule_labels: tuple[tuple[str, ...], ...]  # one per rule series
    nrules: tuple[tuple[tuple[str, ...], int], ...]  # netpath_firewall_chain_rules, whole


# The plan of the last structure only: a structure that changed never comes
# back (its token is not reused) and a plan holds every rule's labels (11 MB
# more after 30 ruleset changes at 10k rules with four kept). Pollers of other
# structures in the same process rebuild theirs.
_PLANS: dict[int, _FirewallPlan] = {}
_PLANS_KEPT = 1


def _firewall_plan(fw: FirewallData) -> _FirewallPlan:
    chains: list[_ChainRender] = []
    rule_labels: list[tuple[str, ...]] = []
    nrules: list[tuple[tuple[str, ...], int]] = []
    for t in fw.tables:
        fam, backend, tname = t.family, t.backend, t.name
        for c in t.chains:
            chain = c.name
            nrules.append(((fam, backend, tname, chain), len(c.rules)))
            by_text: dict[str, list[int]] = {}
            for i, r in enumerate(c.rules):
                if r.packets is None or r.bytes is None:
                    continue
                group = by_text.get(r.text)
                if group is None:
                    by_text[r.text] = [i]
                else:
                    group.append(i)
            rule_labels.extend((fam, backend, tname, chain, text) for text in by_text)
            groups = None
            if len(by_text) != len(c.rules):
                groups = tuple(tuple(g) for g in by_text.values())
            policy = (fam, backend, tname, chain, c.policy) if c.policy is not None else None
            chains.append(_ChainRender(len(c.rules), groups, policy))
    return _FirewallPlan(tuple(chains), tuple(rule_labels), tuple(nrules))


def _plan_of(fw: FirewallData) -> _FirewallPlan:
    plan = _PLANS.get(fw.structure) if fw.structure else None
    counts = [len(c.rules) for t in fw.tables for c in t.chains]
    if plan is None or counts != [c.count for c in plan.chains]:
        plan = _firewall_plan(fw)
        if fw.structure:
            if len(_PLANS) >= _PLANS_KEPT:
                _PLANS.pop(next(iter(_PLANS)), None)
            _PLANS[fw.structure] = plan
    return plan


def render_firewall(fw: FirewallData) -> list[MetricFamily]:
    """The ``netpath_firewall_*`` families of metrics.md.

    Identical rules in one chain are one series with their counters summed;
    rules without a counter are not exported. Policy counters only for
    built-in/base chains that have them. What depends on the structure alone
    (labels, which rules are summed) is derived once per
    ``FirewallData.structure``; every poll sums the counters afresh.
    """
    plan = _plan_of(fw)
    pk: list[int] = []
    by: list[int] = []
    pol_pk: list[tuple[tuple[str, ...], int]] = []
    pol_by: list[tuple[tuple[str, ...], int]] = []
    chains = [c for t in fw.tables for c in t.chains]
    for c, cr in zip(chains, plan.chains, strict=True):
        cpk, cby = c.counter_columns()
        if cr.groups is None:  # no rule without counters (see _firewall_plan)
            pk += cast(Sequence[int], cpk)
            by += cast(Sequence[int], cby)
        else:
            for g in cr.groups:
                pk.append(sum(cast(list[int], [cpk[i] for i in g])))
                by.append(sum(cast(list[int], [cby[i] for i in g])))
        if (
            cr.policy_labels is not None
            and c.policy_packets is not None
            and c.policy_bytes is not None
        ):
            pol_pk.append((cr.policy_labels, c.policy_packets))
            pol_by.append((cr.policy_labels, c.policy_bytes))
    rule_pk = Series.counters(plan.rule_labels, pk)
    rule_by = Series.counters(plan.rule_labels, by)
    rule_labels = ("family", "backend", "table", "chain", "rule")
    pol_labels = ("family", "backend", "table", "chain", "policy")
    return [
        MetricFamily(
            "netpath_firewall_rule_packets_total",
            "counter",
            "Packets matched by the firewall rule (identical rules in one chain summed).",
            rule_labels,
            rule_pk,
        ),
        MetricFamily(
            "netpath_firewall_rule_bytes_total",
            "counter",
            "Bytes matched by the firewall rule (identical rules in one chain summed).",
            rule_labels,
            rule_by,
        ),
        MetricFamily(
            "netpath_firewall_chain_policy_packets_total",
            "counter",
            "Packets that reached the end of the built-in chain and met its policy.",
            pol_labels,
            tuple(pol_pk),
        ),
        MetricFamily(
            "netpath_firewall_chain_policy_bytes_total",
            "counter",
            "Bytes that reached the end of the built-in chain and met its policy.",
            pol_labels,
            tuple(pol_by),
        ),
        MetricFamily(
            "netpath_firewall_chain_rules",
            "gauge",
            "Number of rules in the chain.",
            ("family", "backend", "table", "chain"),
            plan.nrules,
        ),
        MetricFamily(
            "netpath_firewall_backend_info",
            "gauge",
            "1 for each firewall backend that holds rules on this host.",
            ("family", "backend"),
            tuple(((fam, backend), 1) for fam, backend in fw.backends),
        ),
    ]
