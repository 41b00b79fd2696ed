"""``explain svc/NAMESPACE/NAME``: a Service's chain walk through kube-proxy's rules.

Pure. From one :class:`~exporter.view.HostView` (and, for rates, the
firewall of the poll before it) it walks kube-proxy's rules for one Service
the way a packet does: in iptables mode from ``KUBE-SERVICES`` (and
``KUBE-NODEPORTS``) through the Service's ``KUBE-SVC``/``KUBE-EXT``/``KUBE-FW``
chains to each endpoint's ``KUBE-SEP`` chain and its DNAT rule, every rule
with its live packet counter; the filter table's rejects for the Service; and
the Service's endpoints with their active connections from the last conntrack
dump. In nftables mode (no counters) the walk is the Service's own chains.
The rules are those kube-proxy's meaning (:mod:`exporter.meaning.kube_proxy`)
read, so the walk agrees with the ``netpath_service_*`` families.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.meaning.base import Meaning, ServicePort, endpoint_label
from exporter.meaning.kube_proxy import MANAGER, NODEPORTS, SERVICES, parse_comment
from exporter.meaning.ruletext import iptables_comment, parse_iptables_rule
from exporter.model import FirewallData, Table

# Chains not followed: they only mark packets (and would repeat under every Service).
_NOT_FOLLOWED = frozenset({"KUBE-MARK-MASQ", "KUBE-MARK-DROP", "mark-for-masquerade"})
_MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class WalkStep:
    depth: int
    table: str
    chain: str
    rule: str
    packets: int | None
    rate: float | None  # packets per second against the poll before; None without one


@dataclass(frozen=True, slots=True)
class ServiceWalk:
    namespace: str
    name: str
    layout: str
    backend: str
    ports: tuple[ServicePort, ...]
    steps: tuple[WalkStep, ...]
    active: Mapping[str, int] | None  # endpoint label -> active connections; None: no dump


def _of_service(text: str, namespace: str, name: str) -> bool:
    c = parse_comment(iptables_comment(text))
    if c is not None:
        return c[0] == namespace and c[1] == name
    # "masquerade traffic for ns/svc:port external destinations", "other traffic to ns/svc..."
    comment = iptables_comment(text)
    return f" {namespace}/{name}:" in comment or f" {namespace}/{name} " in comment


def _counter(
    before: FirewallData | None, ti: int, ci: int, ri: int, fw: FirewallData
) -> int | None:
    if before is None or ti >= len(before.tables):
        return None
    table, now = before.tables[ti], fw.tables[ti]
    if ci >= len(table.chains) or table.chains[ci].name != now.chains[ci].name:
        return None
    rules = table.chains[ci].rules
    return rules[ri].packets if ri < len(rules) else None


def _walk_table(
    fw: FirewallData,
    ti: int,
    service: tuple[str, str],
    *,
    before: FirewallData | None,
    seconds: float,
) -> list[WalkStep]:
    namespace, name = service
    table: Table = fw.tables[ti]
    chains = {c.name: ci for ci, c in enumerate(table.chains)}
    steps: list[WalkStep] = []

    def step(depth: int, ci: int, ri: int) -> WalkStep:
        chain = table.chains[ci]
        rule = chain.rules[ri]
        old = _counter(before, ti, ci, ri, fw)
        rate = None
        if rule.packets is not None and old is not None and seconds > 0 and rule.packets >= old:
            rate = (rule.packets - old) / seconds
        return WalkStep(depth, table.name, chain.name, rule.text, rule.packets, rate)

    def follow(target: str, depth: int, seen: frozenset[str]) -> None:
        ci = chains.get(target)
        if ci is None or depth > _MAX_DEPTH or target in seen:
            return
        for ri, rule in enumerate(table.chains[ci].rules):
            steps.append(step(depth, ci, ri))
            parsed = parse_iptables_rule(rule.text)
            if parsed is not None and parsed.target not in _NOT_FOLLOWED:
                follow(parsed.target, depth + 1, seen | {target})

    for entry in (SERVICES, NODEPORTS, "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL"):
        ci = chains.get(entry)
        if ci is None:
            continue
        for ri, rule in enumerate(table.chains[ci].rules):
            if not _of_service(rule.text, namespace, name):
                continue
            steps.append(step(0, ci, ri))
            parsed = parse_iptables_rule(rule.text)
            if parsed is not None and parsed.target not in _NOT_FOLLOWED:
                follow(parsed.target, 1, frozenset({entry}))
    return steps


def _nft_steps(fw: FirewallData, ti: int, namespace: str, name: str) -> list[WalkStep]:
    table = fw.tables[ti]
    marker = f"-{namespace}/{name}/"
    steps = []
    for chain in table.chains:
        if marker not in chain.name:
            continue
        depth = 1 if chain.name.startswith("endpoint-") else 0
        steps += [
            WalkStep(depth, table.name, chain.name, r.text, r.packets, None) for r in chain.rules
        ]
    return steps


def build_service_walk(
    fw: FirewallData,
    meaning: Meaning,
    namespace: str,
    name: str,
    *,
    before: FirewallData | None = None,
    seconds: float = 0.0,
    active: Mapping[tuple[str, str, str, str, str], int] | None = None,
) -> ServiceWalk | None:
    """The walk of Service ``namespace/name``; None if kube-proxy's rules do not name it."""
    ports = tuple(s for s in meaning.services if s.namespace == namespace and s.service == name)
    if not ports:
        return None
    steps: list[WalkStep] = []
    for ti in meaning.tables:
        if meaning.layout == "nftables":
            steps += _nft_steps(fw, ti, namespace, name)
        else:
            steps += _walk_table(fw, ti, (namespace, name), before=before, seconds=seconds)
    per_endpoint = None
    if active is not None:
        per_endpoint = {
            f"{key[2] or '-'}/{key[3]} {key[4]}": n
            for key, n in sorted(active.items())
            if key[0] == namespace and key[1] == name
        }
    return ServiceWalk(
        namespace, name, meaning.layout, meaning.backend, ports, tuple(steps), per_endpoint
    )


def _packets(s: WalkStep) -> str:
    if s.packets is None:
        return "no counter"
    rate = f" ({s.rate:.1f}/s)" if s.rate is not None else ""
    return f"{s.packets} packet{'' if s.packets == 1 else 's'}{rate}"


def format_service_walk(walk: ServiceWalk) -> str:
    """The walk as text: the Service's ports, then each rule indented by its depth."""
    out = [
        f"Service {walk.namespace}/{walk.name} "
        f"({MANAGER}, {walk.layout} mode, {walk.backend or 'no backend'})"
    ]
    for p in walk.ports:
        where = ", ".join(f"{ip}:{port}" for ip, port in p.addresses) or "address not in the rules"
        nodeports = f"; NodePort {', '.join(map(str, p.node_ports))}" if p.node_ports else ""
        eps = ", ".join(endpoint_label(*e) for e in p.endpoints) or "none"
        out.append(f"  port {p.port or '-'}/{p.protocol}: {where}{nodeports}")
        out.append(f"    endpoints: {eps}")
    out.append("")
    out.append("Rules, in the order a packet meets them:")
    table = ""
    for s in walk.steps:
        if s.depth == 0 and s.table != table:
            table = s.table
            out.append(f"  table {table}")
        indent = "    " + "  " * s.depth
        out.append(f"{indent}{s.chain}: {s.rule}")
        out.append(f"{indent}  -> {_packets(s)}")
    if walk.active is not None:
        out.append("")
        out.append("Active connections (last conntrack dump):")
        if not walk.active:
            out.append("  none")
        for key, n in walk.active.items():
            out.append(f"  {key}: {n}")
    return "\n".join(out) + "\n"


def parse_service_query(query: str) -> tuple[str, str] | None:
    """``svc/NAMESPACE/NAME`` -> (namespace, name); None for any other query."""
    parts = query.split("/")
    if len(parts) == 3 and parts[0] in ("svc", "service") and parts[1] and parts[2]:
        return parts[1], parts[2]
    return None
