"""The manager-neutral meaning families, summed from the rules each series names.

What a set of meanings says (which rules feed which series) is derived once
per firewall structure and topology (:mod:`exporter.view` keeps it); this
module turns it into a *plan* of flat counter indexes, kept while the
meanings stand, so every poll only gathers the chains' counters and sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import cast

from exporter.meaning.base import (
    COUNTER_FAMILIES,
    FAMILY_LABELS,
    Meaning,
    ServicePort,
    endpoint_label,
)
from exporter.model import FirewallData, MetricFamily, Series

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Series:
    """One family's label sets, sorted, and the counters each series sums."""

    labels: tuple[Labels, ...]
    sources: tuple[tuple[int, ...], ...]  # indexes into the plan's flat counter lists
    pick: Callable[[list[int | None]], tuple[int, ...]] | None  # when each sums one rule

    def values(self, flat: list[int | None]) -> Sequence[int]:
        if self.pick is not None:
            return self.pick(flat)
        out = cast(list[int], flat)
        return [out[s[0]] if len(s) == 1 else sum([out[i] for i in s]) for s in self.sources]


def _series(items: Iterable[tuple[Labels, list[int]]]) -> _Series:
    ordered = sorted(items)  # label sets are unique: the sources are never compared
    sources = tuple(tuple(src) for _, src in ordered)
    pick = None
    if len(sources) > 1 and all(len(src) == 1 for src in sources):
        pick = cast(
            Callable[[list[int | None]], tuple[int, ...]], itemgetter(*(s[0] for s in sources))
        )
    return _Series(tuple(labels for labels, _ in ordered), sources, pick)


# Families whose byte counters are rendered too.
_WITH_BYTES = frozenset(f for f, c in COUNTER_FAMILIES.items() if c.with_bytes)


@dataclass(frozen=True, slots=True)
class _Plan:
    meanings: tuple[Meaning, ...]  # the meanings it was made from (matched by identity)
    shape: tuple[int, ...]  # chains per table of the FirewallData it was made from
    # (table index, chain index, rule count, bytes needed) of each chain feeding a series;
    # their rules' counters, concatenated, are the flat lists the sources index
    chains: tuple[tuple[int, int, int, bool], ...]
    families: dict[str, _Series]
    layouts: tuple[tuple[str, str], ...]  # (manager, layout)
    # the Service gauges, from the structure alone: netpath_service_info, _endpoints
    service_info: tuple[tuple[Labels, int], ...]
    service_endpoints: tuple[tuple[Labels, int], ...]


def _plan(fw: FirewallData, meanings: tuple[Meaning, ...]) -> _Plan:
    used: set[tuple[int, int]] = set()
    counted: set[tuple[int, int]] = set()
    for meaning in meanings:
        for s in meaning.series:
            for ref in s.rules:
                used.add((ref.table, ref.chain))
                if s.family in _WITH_BYTES:
                    counted.add((ref.table, ref.chain))
    offsets: dict[tuple[int, int], int] = {}
    chains: list[tuple[int, int, int, bool]] = []
    at = 0
    for ti, ci in sorted(used):
        offsets[ti, ci] = at
        count = len(fw.tables[ti].chains[ci].rules)
        chains.append((ti, ci, count, (ti, ci) in counted))
        at += count
    found: dict[str, dict[Labels, list[int]]] = {family: {} for family in FAMILY_LABELS}
    for meaning in meanings:
        for s in meaning.series:
            flat = found[s.family].setdefault(s.labels, [])
            flat += [offsets[r.table, r.chain] + r.rule for r in s.rules]
    return _Plan(
        meanings=meanings,
        shape=tuple(len(t.chains) for t in fw.tables),
        chains=tuple(chains),
        families={family: _series(v.items()) for family, v in found.items()},
        layouts=tuple((m.manager, m.layout) for m in meanings),
        **_service_gauges([s for m in meanings for s in m.services]),
    )


def _service_gauges(services: list[ServicePort]) -> dict[str, tuple[tuple[Labels, int], ...]]:
    """netpath_service_info (one per ClusterIP) and netpath_service_endpoints per Service port;
    a Service port in two rulesets (IPv4 and IPv6 of a dual-stack Service) is one port."""
    info: set[Labels] = set()
    endpoints: dict[Labels, set[str]] = {}
    for s in services:
        key: Labels = s.key
        for ip in s.cluster_ips or ("",):
            info.add((*key, ip))
        endpoints.setdefault(key, set()).update(endpoint_label(*e) for e in s.endpoints)
    return {
        "service_info": tuple((labels, 1) for labels in sorted(info)),
        "service_endpoints": tuple((k, len(v)) for k, v in sorted(endpoints.items())),
    }


def _counters(fw: FirewallData, plan: _Plan) -> tuple[list[int | None], list[int | None]] | None:
    """The flat packet and byte counters of the plan; None if ``fw`` is not its structure."""
    tables = fw.tables
    if plan.shape != tuple(len(t.chains) for t in tables):
        return None
    pk: list[int | None] = []
    by: list[int | None] = []
    for ti, ci, count, need_bytes in plan.chains:
        chain = tables[ti].chains[ci]
        if len(chain.rules) != count:
            return None
        cpk, cby = chain.counter_columns()
        pk += cpk
        by += cby if need_bytes else [None] * count
    return pk, by


# The plan of the last structure only: a structure that changed never comes
# back (its token is not reused) and a plan holds every rule's labels (11 MB
# more after 30 ruleset changes at 10k rules with four kept). Pollers of other
# structures in the same process rebuild theirs.
_PLANS: dict[int, _Plan] = {}
_PLANS_KEPT = 1


def render_meanings(fw: FirewallData, meanings: tuple[Meaning, ...]) -> list[MetricFamily]:
    """The manager-neutral families and ``netpath_firewall_layout_info``."""
    plan = _PLANS.get(fw.structure) if fw.structure else None
    counters = _counters(fw, plan) if plan is not None and plan.meanings is meanings else None
    if plan is None or counters is None:
        plan = _plan(fw, meanings)
        counters = _counters(fw, plan)
        assert counters is not None
        if fw.structure:
            if len(_PLANS) >= _PLANS_KEPT and fw.structure not in _PLANS:
                _PLANS.pop(next(iter(_PLANS)), None)
            _PLANS[fw.structure] = plan
    pk, by = counters
    fams = plan.families

    def samples(family: str, flat: list[int | None]) -> Series:
        series = fams[family]
        return Series.counters(series.labels, series.values(flat))

    out: list[MetricFamily] = []
    for family, spec in COUNTER_FAMILIES.items():
        labels = FAMILY_LABELS[family]
        out.append(
            MetricFamily(spec.name + "_total", "counter", spec.help, labels, samples(family, pk))
        )
        if spec.with_bytes:
            help_bytes = "Bytes" + spec.help.removeprefix("Packets")
            out.append(
                MetricFamily(
                    spec.with_bytes + "_total", "counter", help_bytes, labels, samples(family, by)
                )
            )
    service_port = ("namespace", "service", "port", "protocol")
    out += [
        MetricFamily(
            "netpath_firewall_layout_info",
            "gauge",
            "The layout of each firewall manager's rules in use on this host.",
            ("manager", "layout"),
            tuple((layout, 1) for layout in plan.layouts),
        ),
        MetricFamily(
            "netpath_service_info",
            "gauge",
            "A Kubernetes Service port in kube-proxy's rules, with its ClusterIP (1).",
            (*service_port, "cluster_ip"),
            plan.service_info,
        ),
        MetricFamily(
            "netpath_service_endpoints",
            "gauge",
            "Endpoints of the Service port in kube-proxy's rules.",
            service_port,
            plan.service_endpoints,
        ),
    ]
    return out
