"""The CNI reference plugins' meaning of the firewall rules (``manager="cni"``).

Pure: :class:`CniManager` reads a :class:`~exporter.model.FirewallData` snapshot
and the :class:`~exporter.meaning.base.Topology` and says which of the rules the
plugins wrote for each pod feed which series. The plugins (``portmap`` for
hostPorts, ``bridge``/``ptp`` with ``ipMasq``) write only to the nat table, via
the ``iptables`` command (iptables-nft or -legacy, IPv4 and IPv6), and name
every per-pod rule with the pod's network and sandbox id in a comment. The
chains are named by a hash of both, so the comments are what ties a rule to a
pod:

``netpath_published_port_connections_total`` {manager="cni", container, namespace, pod, ...}
    ``CNI-HOSTPORT-DNAT`` jumps to the pod's ``CNI-DN-<hash>`` chain with the
    comment ``dnat name: "NET" id: "SANDBOX"``; each ``-j DNAT
    --to-destination POD_IP:PORT`` rule there is one hostPort mapping, and its
    packet counter counts the connections to it (the nat table sees the first
    packet of each connection), from outside and from the node itself.
    ``host_ip`` is the rule's ``-d`` (a hostIP), else ``0.0.0.0`` / ``::``.

``netpath_masquerade_connections_total`` {manager="cni", ..., container, namespace, pod}
    ``POSTROUTING -s POD_IP -j CNI-<hash>`` (comment ``name: "NET" id:
    "SANDBOX"``) leads to the pod's own chain: ``-d SUBNET -j ACCEPT`` (traffic
    to other pods: not masqueraded, not counted) then ``! -d 224.0.0.0/4 -j
    MASQUERADE``, whose packet counter counts the pod's connections leaving
    the pod network. One series per pod, never summed per network: the chain
    goes with the pod, and a per-network sum would fall when a pod left and
    read as a counter reset.

A rule counts only when its sandbox belongs to a pod the sources know (by
sandbox id, else by the pod IP the rule names): without the pod's labels,
several pods' rules would collapse into one series. While the CRI source is
down these series are therefore absent; they return, with the same labels and
the kernel's counters, when it answers again. The raw rules are served by the
firewall collector all along.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from exporter.meaning.base import (
    FAMILY_LABELS,
    MASQUERADE,
    PUBLISHED,
    Meaning,
    RuleRef,
    Series,
    Topology,
    WorkloadAddress,
    plain_ip,
)
from exporter.meaning.ruletext import iptables_comment, parse_iptables_rule, split_host_port
from exporter.model import BACKEND_NFTABLES, FirewallData, Table

MANAGER = "cni"
LAYOUT_IPTABLES = "iptables"

HOSTPORT_DNAT = "CNI-HOSTPORT-DNAT"
DN_PREFIX = "CNI-DN-"
POD_CHAIN_PREFIX = "CNI-"

# The plugins' comments (libcni's network name and the container = sandbox id).
_POD_COMMENT = re.compile(r'^name: "(?P<net>[^"]*)" id: "(?P<id>[^"]*)"$')
_DNAT_COMMENT = re.compile(r'^dnat name: "(?P<net>[^"]*)" id: "(?P<id>[^"]*)"$')


def _owners(topo: Topology) -> dict[str, WorkloadAddress]:
    """Sandbox id -> the pod's labels, from the sources' workloads."""
    out: dict[str, WorkloadAddress] = {}
    for src in topo.sources:
        for w in src.workloads:
            if w.namespace or w.pod:
                net = w.endpoints[0].network if w.endpoints else ""
                out[w.id] = WorkloadAddress(w.name, w.namespace, w.pod, net)
    return out


def _owner(
    owners: dict[str, WorkloadAddress], topo: Topology, sandbox: str, ip: str
) -> WorkloadAddress | None:
    found = owners.get(sandbox)
    if found is None and ip:
        found = topo.workloads.get(plain_ip(ip))
        if found is not None and not (found.namespace or found.pod):
            found = None  # a Docker container at that address, not this pod
    return found


def _holds_cni_rules(table: Table) -> bool:
    if table.backend == BACKEND_NFTABLES or table.name != "nat":
        return False
    return any(
        c.name == HOSTPORT_DNAT or c.name.startswith(DN_PREFIX) for c in table.chains
    ) or any(
        r.text and _POD_COMMENT.match(iptables_comment(r.text))
        for c in table.chains
        if c.name == "POSTROUTING"
        for r in c.rules
    )


def _bridges(topo: Topology) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Network name -> (bridge, subnets) of the sources' networks."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for src in topo.sources:
        for net in src.networks:
            out.setdefault(net.name, (net.bridge, net.subnets))
    return out


def _interpret_table(
    *,
    ti: int,
    table: Table,
    topo: Topology,
    owners: dict[str, WorkloadAddress],
    published: dict[tuple[str, ...], list[RuleRef]],
    masquerade: dict[tuple[str, ...], list[RuleRef]],
) -> None:
    chains = {c.name: (ci, c) for ci, c in enumerate(table.chains)}
    nets = _bridges(topo)
    ipv6 = table.family in ("ipv6", "ip6")

    # hostPorts: CNI-HOSTPORT-DNAT -> CNI-DN-<hash> (comment: network, sandbox)
    dn_chains: dict[str, tuple[str, str]] = {}
    if HOSTPORT_DNAT in chains:
        for rule in chains[HOSTPORT_DNAT][1].rules:
            m = _DNAT_COMMENT.match(iptables_comment(rule.text))
            r = parse_iptables_rule(rule.text)
            if m and r is not None and r.target.startswith(DN_PREFIX):
                dn_chains.setdefault(r.target, (m["net"], m["id"]))
    for dn, (network, sandbox) in sorted(dn_chains.items()):
        if dn not in chains:
            continue
        ci, chain = chains[dn]
        for ri, rule in enumerate(chain.rules):
            r = parse_iptables_rule(rule.text)
            if r is None or r.target != "DNAT" or not r.to_destination or not r.dport:
                continue
            if rule.packets is None:
                continue
            pod_ip, pod_port = split_host_port(r.to_destination)
            owner = _owner(owners, topo, sandbox, pod_ip)
            if owner is None:
                continue
            host_ip = plain_ip(r.destination) if r.destination else ("::" if ipv6 else "0.0.0.0")
            key: tuple[str, ...] = (
                MANAGER,
                owner.name,
                owner.namespace,
                owner.pod,
                network,
                r.protocol,
                host_ip,
                r.dport,
                pod_port or r.dport,
            )
            published.setdefault(key, []).append(RuleRef(ti, ci, ri))

    # Masquerade: POSTROUTING -s POD_IP -j CNI-<hash> (comment: network, sandbox)
    if "POSTROUTING" not in chains:
        return
    for rule in chains["POSTROUTING"][1].rules:
        m = _POD_COMMENT.match(iptables_comment(rule.text))
        r = parse_iptables_rule(rule.text)
        if not m or r is None or not r.target.startswith(POD_CHAIN_PREFIX):
            continue
        if r.target not in chains:
            continue
        owner = _owner(owners, topo, m["id"], r.source)
        if owner is None:
            continue
        network = m["net"]
        bridge, subnets = nets.get(network, ("", ()))
        ci, chain = chains[r.target]
        accepted = [
            p.destination
            for p in (parse_iptables_rule(x.text) for x in chain.rules)
            if p is not None and p.target == "ACCEPT" and p.conds == {"d"}
        ]
        subnet = accepted[0] if accepted else (subnets[0] if subnets else "")
        for ri, inner in enumerate(chain.rules):
            p = parse_iptables_rule(inner.text)
            if p is None or p.target != "MASQUERADE" or inner.packets is None:
                continue
            masq_key: tuple[str, ...] = (
                MANAGER,
                network,
                bridge,
                subnet,
                owner.name,
                owner.namespace,
                owner.pod,
            )
            masquerade.setdefault(masq_key, []).append(RuleRef(ti, ci, ri))


class CniManager:
    """The CNI reference plugins' per-pod nat rules (portmap, bridge/ptp ``ipMasq``)."""

    name = MANAGER

    def interpret(self, fw: FirewallData, topo: Topology) -> Meaning | None:
        tables = [(ti, t) for ti, t in enumerate(fw.tables) if _holds_cni_rules(t)]
        if not tables:
            return None
        owners = _owners(topo)
        published: dict[tuple[str, ...], list[RuleRef]] = {}
        masquerade: dict[tuple[str, ...], list[RuleRef]] = {}
        for ti, table in tables:
            _interpret_table(
                ti=ti,
                table=table,
                topo=topo,
                owners=owners,
                published=published,
                masquerade=masquerade,
            )
        series = [
            Series(family, labels, tuple(refs))
            for family, found in ((PUBLISHED, published), (MASQUERADE, masquerade))
            for labels, refs in found.items()
        ]
        assert all(len(s.labels) == len(FAMILY_LABELS[s.family]) for s in series)
        return Meaning(
            manager=MANAGER,
            layout=LAYOUT_IPTABLES,
            backend=_backend(t for _, t in tables),
            tables=tuple(ti for ti, _ in tables),
            series=tuple(sorted(series, key=lambda s: (s.family, s.labels))),
        )


def _backend(tables: Iterable[Table]) -> str:
    """The backend holding the most CNI chains (the one the plugins' ``iptables`` drives)."""
    count: dict[str, int] = {}
    for t in tables:
        n = sum(1 for c in t.chains if c.name.startswith(POD_CHAIN_PREFIX))
        count[t.backend] = count.get(t.backend, 0) + n
    return max(sorted(count), key=lambda b: count[b]) if count else ""
