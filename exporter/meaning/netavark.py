"""netavark's meaning of the firewall rules (Podman 4+, iptables driver): ``manager="netavark"``.

Pure: reads a :class:`~exporter.model.FirewallData` snapshot plus Podman's
networks and workloads, and says which rules feed which manager-neutral series
of the metric contract (2026-12-07). Every series is a sum of counters the
kernel keeps. What netavark 1.4 installs (``design/podman-lab.md``), BR being a
network's bridge (``network_interface``) and HASH the first 13 hex digits, upper
case, of sha512 of the network's name:

``dropped`` {network, bridge, reason="isolation"}
    filter ``NETAVARK_ISOLATION_2`` (and ``_3``, netavark 1.6+'s strict mode)
    ``-o BR -j DROP``: traffic from another Podman network into BR. netavark
    installs it only for networks created with ``--opt isolate=true``; without
    it traffic between Podman networks passes (masqueraded by the source
    network), so no other drop is counted here.
``published`` {container, network, protocol, host_ip, host_port, container_port}
    nat ``NETAVARK-DN-HASH`` ``[-d HOSTIP] -p P --dport HP -j DNAT
    --to-destination IP:CP`` (one chain per network; ``NETAVARK-HOSTPORT-DNAT``
    jumps there with the comment ``dnat name: NET id: CONTAINER``). nat sees the
    first packet of each connection: this counts new connections, from outside
    and from the host. ``host_ip`` is ``-d`` or ``0.0.0.0``/``::``; the container
    is the workload holding the DNAT target address on that network.
``masquerade`` {network, bridge, subnet} (container, namespace, pod empty: per network)
    nat ``POSTROUTING -s SUBNET -j NETAVARK-HASH`` -> ``! -d 224.0.0.0/4 -j
    MASQUERADE``: new connections from the network to anywhere but itself.
``forwarded`` {network, bridge, direction}
    filter ``NETAVARK_FORWARD`` ``-d SUBNET ... --ctstate RELATED,ESTABLISHED -j
    ACCEPT`` (inbound) and ``-s SUBNET -j ACCEPT`` (outbound).

The rules of one backend are used: the one whose built-in chains jump into
netavark's (iptables-nft before iptables-legacy); its IPv4 and IPv6 tables are
summed per label set. Networks whose subnet or hash matches no Podman network
are left out rather than summed under an empty name (a sum of rules that vanish
one by one would read as counter resets).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from exporter.meaning.base import (
    DROPPED,
    FAMILY_LABELS,
    FORWARDED,
    MASQUERADE,
    PUBLISHED,
    Meaning,
    RuleRef,
    Series,
    Topology,
    plain_ip,
)
from exporter.meaning.ruletext import iptables_comment, parse_iptables_rule, split_host_port
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    FirewallData,
    Table,
)
from exporter.model.workloads import RUNTIME_PODMAN, Network, Workload

MANAGER = "netavark"
LAYOUT_IPTABLES = "iptables"
LAYOUT_NFTABLES = "nftables"

FORWARD_CHAIN = "NETAVARK_FORWARD"
ISOLATION_PREFIX = "NETAVARK_ISOLATION_"
HOSTPORT_DNAT = "NETAVARK-HOSTPORT-DNAT"
DN_PREFIX = "NETAVARK-DN-"
CHAIN_PREFIX = "NETAVARK-"
NFT_TABLE = "netavark"

REASON_ISOLATION = "isolation"
INBOUND = "inbound"
OUTBOUND = "outbound"

_DNAT_COMMENT = re.compile(r"^dnat name: (\S+) id: ([0-9a-f]+)$")


def chain_hash(network: str) -> str:
    """netavark's per-network chain suffix: sha512 of the name, 13 hex digits, upper case."""
    import hashlib  # noqa: PLC0415 - loads OpenSSL's libcrypto (3.4 MB resident): Podman hosts only

    return hashlib.sha512(network.encode()).hexdigest()[:13].upper()


def _in_subnets(ip: str, net: Network) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for subnet in net.subnets:
        try:
            if addr in ipaddress.ip_network(subnet, strict=False):
                return True
        except ValueError:
            continue
    return False


def _jumps_into_netavark(tables: Sequence[Table]) -> bool:
    for t in tables:
        for chain in t.chains:
            if chain.name in ("FORWARD", "PREROUTING", "POSTROUTING", "OUTPUT"):
                for r in chain.rules:
                    if f"-j {FORWARD_CHAIN}" in r.text or f"-j {CHAIN_PREFIX}" in r.text:
                        return True
    return False


def _choose(fw: FirewallData) -> tuple[str, list[int]] | None:
    """The backend netavark drives and the indexes of its tables holding netavark chains."""
    by_backend: dict[str, list[int]] = {}
    for i, t in enumerate(fw.tables):
        if t.backend == BACKEND_NFTABLES:
            continue
        if any(c.name.startswith(("NETAVARK", "NETAVARK_")) for c in t.chains):
            by_backend.setdefault(t.backend, []).append(i)
    if not by_backend:
        return None
    rank = {BACKEND_IPTABLES_NFT: 1, BACKEND_IPTABLES_LEGACY: 0}

    def key(backend: str) -> tuple[bool, int]:
        hooked = _jumps_into_netavark(
            [fw.tables[i] for i, t in enumerate(fw.tables) if t.backend == backend]
        )
        return hooked, rank.get(backend, -1)

    backend = max(by_backend, key=key)
    return backend, [i for i, t in enumerate(fw.tables) if t.backend == backend]


class NetavarkManager:
    """netavark's rules (iptables driver), read with Podman's networks and containers."""

    name = MANAGER

    def interpret(self, fw: FirewallData, topo: Topology) -> Meaning | None:
        podman = [src for src in topo.sources if src.runtime == RUNTIME_PODMAN]
        return analyse(
            fw,
            [n for src in podman for n in src.networks],
            [w for src in podman for w in src.workloads],
        )


def analyse(
    fw: FirewallData, networks: Iterable[Network], workloads: Iterable[Workload]
) -> Meaning | None:
    """Which of ``fw``'s rules feed which netavark series; None if it has no rules here."""
    nets = [n for n in networks if n.runtime == RUNTIME_PODMAN]
    by_bridge = {n.bridge: n for n in nets if n.bridge}
    by_hash = {chain_hash(n.name): n for n in nets}
    by_name = {n.name: n for n in nets}
    has_nft = any(t.backend == BACKEND_NFTABLES and t.name == NFT_TABLE for t in fw.tables)
    chosen = _choose(fw)
    if chosen is None:
        if not has_nft:
            return None
        # netavark 1.9+'s nftables driver: its table is seen, its rules not read yet
        return Meaning(MANAGER, LAYOUT_NFTABLES, BACKEND_NFTABLES, (), ())
    backend, table_ids = chosen
    found: dict[tuple[str, tuple[str, ...]], list[RuleRef]] = {}
    wl = list(workloads)

    def add(family: str, labels: tuple[str, ...], ref: RuleRef) -> None:
        found.setdefault((family, labels), []).append(ref)

    def subnet_network(subnet: str) -> Network | None:
        for n in nets:
            if subnet in n.subnets:
                return n
        return None

    for ti in table_ids:
        table = fw.tables[ti]
        for ci, chain in enumerate(table.chains):
            name = chain.name
            for ri, rule in enumerate(chain.rules):
                ref = RuleRef(ti, ci, ri)
                r = parse_iptables_rule(rule.text)
                if r is None:
                    continue
                if table.name == "filter" and name.startswith(ISOLATION_PREFIX):
                    if r.target == "DROP" and r.conds == frozenset({"o"}):
                        net = by_bridge.get(r.out_iface)
                        dropped = (MANAGER, net.name if net else "", r.out_iface, REASON_ISOLATION)
                        add(DROPPED, dropped, ref)
                elif table.name == "filter" and name == FORWARD_CHAIN:
                    if r.target != "ACCEPT":
                        continue
                    if r.conds == frozenset({"d", "ctstate"}) and "ESTABLISHED" in r.ctstate:
                        net, direction = subnet_network(r.destination), INBOUND
                    elif r.conds == frozenset({"s"}):
                        net, direction = subnet_network(r.source), OUTBOUND
                    else:
                        continue
                    if net is not None:
                        add(FORWARDED, (MANAGER, net.name, net.bridge, direction), ref)
                elif table.name == "nat" and name == "POSTROUTING":
                    # -s SUBNET -j NETAVARK-HASH: the network's own masquerade chain
                    if r.conds != frozenset({"s"}) or not r.target.startswith(CHAIN_PREFIX):
                        continue
                    net = by_hash.get(r.target[len(CHAIN_PREFIX) :])
                    if net is None:
                        continue
                    target = _chain_index(table, r.target)
                    if target is None:
                        continue
                    for mi, m in enumerate(table.chains[target].rules):
                        mr = parse_iptables_rule(m.text)
                        if mr is not None and mr.target == "MASQUERADE":
                            masq = (MANAGER, net.name, net.bridge, r.source, "", "", "")
                            add(MASQUERADE, masq, RuleRef(ti, target, mi))
                elif table.name == "nat" and name.startswith(DN_PREFIX):
                    if r.target != "DNAT" or not r.to_destination or not r.dport:
                        continue
                    net = by_hash.get(name[len(DN_PREFIX) :])
                    ip, cport = split_host_port(r.to_destination)
                    if net is None:
                        net = _network_of_ip(nets, ip)
                    if net is None:
                        continue
                    owner = _owner(wl, net, ip) or _commented_owner(table, r.dport, wl, by_name)
                    v6 = ":" in ip
                    host_ip = (
                        plain_ip(r.destination) if r.destination else ("::" if v6 else "0.0.0.0")
                    )
                    published = (
                        MANAGER,
                        owner.name if owner else "",
                        owner.namespace if owner else "",
                        owner.pod if owner else "",
                        net.name,
                        r.protocol or "tcp",
                        host_ip,
                        r.dport,
                        cport,
                    )
                    add(PUBLISHED, published, ref)
    series = tuple(
        Series(family, labels, tuple(refs)) for (family, labels), refs in sorted(found.items())
    )
    assert all(len(s.labels) == len(FAMILY_LABELS[s.family]) for s in series)
    return Meaning(MANAGER, LAYOUT_IPTABLES, backend, tuple(table_ids), series)


def _chain_index(table: Table, name: str) -> int | None:
    for i, c in enumerate(table.chains):
        if c.name == name:
            return i
    return None


def _network_of_ip(nets: Sequence[Network], ip: str) -> Network | None:
    for n in nets:
        if _in_subnets(ip, n):
            return n
    return None


def _owner(workloads: Sequence[Workload], net: Network, ip: str) -> Workload | None:
    for w in workloads:
        for ep in w.endpoints:
            if ep.network == net.name and ip in (ep.ip, ep.ipv6):
                return w
    return None


def _commented_owner(
    table: Table, dport: str, workloads: Sequence[Workload], by_name: Mapping[str, Network]
) -> Workload | None:
    """The container named in ``NETAVARK-HOSTPORT-DNAT``'s comment for this host port."""
    i = _chain_index(table, HOSTPORT_DNAT)
    if i is None:
        return None
    for rule in table.chains[i].rules:
        r = parse_iptables_rule(rule.text)
        if r is None or r.dport != dport:
            continue
        m = _DNAT_COMMENT.match(iptables_comment(rule.text))
        if m and m.group(1) in by_name:
            for w in workloads:
                if w.id == m.group(2):
                    return w
    return None
