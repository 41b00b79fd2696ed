"""What a walk knows of the host (pure).

The view, the Docker manager's choice of backend, what each rule means, and the
earlier reading the rates come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.model import (
    FirewallData,
    LinksData,
    Network,
    RoutesData,
    Table,
)
from exporter.paths.figures import (
    RuleKey,
    rule_counters,
)
from exporter.paths.rules import (
    RuleKeyRef,
    RuleMeaning,
    build_rule_meanings,
)
from exporter.paths.views import (
    Baseline,
)
from exporter.view import HostView


@dataclass(frozen=True, slots=True)
class PathContext:
    networks: tuple[Network, ...]
    links: LinksData
    firewall: FirewallData | None
    routes: RoutesData | None
    before: Baseline | None
    layout: str
    backend: str
    chosen: tuple[tuple[int, Table], ...]
    # manager -> (layout, backend) of every manager with rules here
    layouts: Mapping[str, tuple[str, str]]
    meanings: Mapping[RuleKeyRef, tuple[RuleMeaning, ...]]
    counters: Mapping[RuleKey, tuple[int | None, int | None]]
    policies: Mapping[tuple[str, ...], tuple[int, int]]
    ifnames: Mapping[tuple[int, int], str]

    @property
    def seconds(self) -> float:
        return self.before.seconds if self.before is not None else 0.0


def path_context(
    view: HostView,
    links: LinksData,
    *,
    before: Baseline | None,
    ifnames: Mapping[tuple[int, int], str],
) -> PathContext:
    firewall = view.firewall
    layout, backend = "unknown", ""
    chosen: tuple[tuple[int, Table], ...] = ()
    meanings: Mapping[RuleKeyRef, tuple[RuleMeaning, ...]] = {}
    layouts: dict[str, tuple[str, str]] = {}
    if firewall is not None:
        docker = next((m for m in view.meanings if m.manager == "docker"), None)
        if docker is not None:
            layout, backend = docker.layout, docker.backend
        # The rules of every manager's backend (Docker's and netavark's share theirs).
        shown = sorted({i for m in view.meanings for i in m.tables})
        chosen = tuple((i, firewall.tables[i]) for i in shown)
        layouts = {m.manager: (m.layout, m.backend) for m in view.meanings}
        meanings = build_rule_meanings(firewall, view.meanings)
    counters, policies = rule_counters(before.firewall if before is not None else None)
    return PathContext(
        tuple(net for src in view.sources for net in src.networks),
        links,
        firewall,
        view.routes,
        before,
        layout,
        backend,
        chosen,
        layouts,
        meanings,
        counters,
        policies,
        ifnames,
    )
