"""Docker's meaning of the firewall rules: drops, published ports, NAT and forwarding per network.

Pure: :class:`DockerManager` reads a :class:`~exporter.model.FirewallData`
snapshot and the host's :class:`~exporter.meaning.base.Topology` and says which
of Docker's rules feed which manager-neutral series (``manager="docker"``).
Which backend and layout it reads is :mod:`exporter.meaning.docker_layout`'s
choice; only that backend's rules count. IPv4 and IPv6 tables of the chosen
backend are both read and summed into one series per label set.

What each family counts (BR is the network's bridge):

``netpath_dropped_packets_total`` / ``_bytes_total`` {manager="docker", network, bridge, reason}
    The DROP rules Docker installs for traffic *into* BR (for ``internal``
    also out of it):

    - ``isolation``: DOCKER-ISOLATION-STAGE-2 ``-o BR -j DROP`` (classic,
      forward-chains): traffic from another Docker network.
    - ``unpublished``: DOCKER ``! -i BR -o BR -j DROP`` (forward-chains, v29)
      or nftables ``UNPUBLISHED PORT DROP``: traffic routed into BR that no
      per-port ACCEPT let through. On Docker 29 this includes traffic from
      other Docker networks; there, traffic from outside and from another
      network share this one counter (and ``direct_access``).
    - ``direct_access``: raw PREROUTING ``-d IP ! -i BR ... -j DROP`` or
      nftables ``DROP DIRECT ACCESS``: packets addressed straight to a
      container IP from anywhere but BR; the network is the one in ``! -i BR``.
    - ``icc``: ``-i BR -o BR -j DROP`` in FORWARD / DOCKER-FORWARD, or the
      nftables ``ICC`` drop (icc disabled). Intra-bridge traffic reaches
      iptables only when br_netfilter's bridge-nf-call is on.
    - ``internal``: the ``--internal`` drops (DOCKER-ISOLATION-STAGE-1 or
      DOCKER-INTERNAL ``! -s SUBNET -o BR`` / ``! -d SUBNET -i BR``, nftables
      ``INTERNAL NETWORK INGRESS`` / ``EGRESS``), both directions together.

    Drops by the FORWARD chain's policy (classic: outside -> unpublished port)
    are not attributable to a network and are left to
    ``netpath_firewall_chain_policy_*``.

``netpath_published_port_connections_total`` {manager="docker", ...}
    The packet counter of each DNAT rule (nat DOCKER chain, nftables
    ``nat-prerouting-and-output``). The nat table sees only the first packet of
    each connection, so this counts new connections (or UDP flows) to the
    published port, from outside and from the host itself. ``host_ip`` is the
    rule's ``-d`` address, or ``0.0.0.0`` / ``::`` when the port is published on
    all addresses; ``container`` is the container holding the DNAT target
    address ("" when unknown).

``netpath_masquerade_connections_total`` {manager="docker", network, bridge, subnet}
    The packet counter of the network's MASQUERADE rule
    (``-s SUBNET ! -o BR -j MASQUERADE``, nftables ``MASQUERADE``): new
    connections from the network leaving through another interface.

``netpath_forwarded_packets_total`` / ``_bytes_total``
    {manager="docker", network, bridge, direction}
    The per-network ACCEPT rules of the forward path:

    - ``inbound``: into BR, RELATED,ESTABLISHED (FORWARD / DOCKER-CT,
      nftables ``ct state`` in filter-forward-in) plus the per-port ACCEPTs of
      published ports (DOCKER, nftables filter-forward-in).
    - ``outbound``: out of BR to elsewhere: FORWARD ``-i BR ! -o BR``
      (classic); DOCKER-FORWARD ``-i BR -j ACCEPT`` (forward-chains, v29; it
      also accepts intra-network traffic that br_netfilter hands to iptables);
      nftables filter-forward-out (established replies and ``OUTGOING``).
    - ``internal``: within BR: FORWARD ``-i BR -o BR -j ACCEPT`` (classic),
      nftables ``ICC`` accept.

On 28.0.0 (classic here) the RELATED,ESTABLISHED accept and the jump to DOCKER
match an ipset instead of a bridge, so they count towards no network.

Interface names that Docker's own chains do not mention (and SourceData does
not list as bridges) are ignored in the shared chains (FORWARD, raw
PREROUTING, nat POSTROUTING). Rules that do not parse are skipped. The network
label comes from SourceData's bridge -> network map; without it (Docker not
reachable) it is the bridge name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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
from exporter.meaning.docker_layout import (
    DOCKER_CHAINS,
    LAYOUT_UNKNOWN,
    choose,
)
from exporter.meaning.ruletext import (
    IptablesRule,
    NftRule,
    parse_iptables_rule,
    parse_nft_rule,
    split_host_port,
)
from exporter.model import BACKEND_NFTABLES, FirewallData, Table

MANAGER = "docker"

REASON_ISOLATION = "isolation"
REASON_UNPUBLISHED = "unpublished"
REASON_DIRECT_ACCESS = "direct_access"
REASON_ICC = "icc"
REASON_INTERNAL = "internal"

INBOUND = "inbound"
OUTBOUND = "outbound"
INTERNAL = "internal"


# --------------------------------------------------------------------------
# Interpretation
# --------------------------------------------------------------------------


_Src = RuleRef


@dataclass(slots=True)
class _Sources:
    """Collects the rules whose counters each derived series sums, while the rules are walked."""

    topo: Topology
    bridges: set[str]  # interfaces known to be Docker bridges
    dropped: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, reason)
    forwarded: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, dir)
    masquerade: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, subnet)
    # (container, namespace, pod, network, protocol, host_ip, host_port, container_port)
    published: dict[tuple[str, ...], list[_Src]] = field(default_factory=dict)

    def drop(self, bridge: str, reason: str, src: _Src) -> None:
        self.dropped.setdefault((bridge, reason), []).append(src)

    def forward(self, bridge: str, direction: str, src: _Src) -> None:
        self.forwarded.setdefault((bridge, direction), []).append(src)

    def masq(self, bridge: str, subnet: str, src: _Src) -> None:
        self.masquerade.setdefault((bridge, subnet), []).append(src)

    def dnat(
        self,
        bridge: str,
        target: str,
        *,
        protocol: str,
        host_ip: str,
        host_port: str,
        src: _Src,
    ) -> None:
        """One DNAT rule to ``target`` (``IP:PORT``); ``bridge`` "" if the rule names none."""
        container_ip, container_port = split_host_port(target)
        owner = self.topo.workloads.get(container_ip)
        name, namespace, pod, network = (
            (owner.name, owner.namespace, owner.pod, owner.network) if owner else ("", "", "", "")
        )
        if not network:
            network = self.topo.network(bridge or self.topo.bridge_of_ip(container_ip))
        key = (
            name,
            namespace,
            pod,
            network,
            protocol,
            host_ip,
            host_port,
            container_port or host_port,
        )
        self.published.setdefault(key, []).append(src)


def _known_bridges(tables: Iterable[Table], topo: Topology) -> set[str]:
    """Interfaces Docker's own chains name, plus SourceData's bridges."""
    bridges = set(topo.networks)
    for table in tables:
        if table.backend == BACKEND_NFTABLES:
            for chain in table.chains:
                for prefix in ("filter-forward-in__", "filter-forward-out__"):
                    if chain.name.startswith(prefix):
                        bridges.add(chain.name.removeprefix(prefix))
            continue
        for chain in table.chains:
            docker_chain = chain.name in DOCKER_CHAINS
            for rule in chain.rules:
                r = parse_iptables_rule(rule.text)
                if r is None:
                    continue
                if docker_chain or (chain.name == "FORWARD" and r.target == "DOCKER"):
                    bridges.update(x for x in (r.in_iface, r.out_iface) if x and "+" not in x)
    return bridges


_CT_ESTABLISHED = frozenset({"RELATED", "ESTABLISHED"})
_NFT_CT_ESTABLISHED = frozenset({"established", "related"})
_PORT_CONDS = frozenset({"d", "!i", "p", "dport"})


def _iptables_filter(sums: _Sources, chain: str, r: IptablesRule, src: _Src) -> None:
    c, i, o, t = r.conds, r.in_iface, r.out_iface, r.target
    known = sums.bridges
    if chain == "DOCKER-ISOLATION-STAGE-2" and t == "DROP" and c == {"o"}:
        sums.drop(o, REASON_ISOLATION, src)
    elif chain in ("DOCKER-ISOLATION-STAGE-1", "DOCKER-INTERNAL") and t == "DROP":
        if c == {"o", "!s"}:
            sums.drop(o, REASON_INTERNAL, src)
        elif c == {"i", "!d"}:
            sums.drop(i, REASON_INTERNAL, src)
    elif chain in ("FORWARD", "DOCKER-FORWARD") and c == {"i", "o"} and i == o and i in known:
        if t == "DROP":
            sums.drop(i, REASON_ICC, src)
        elif t == "ACCEPT" and chain == "FORWARD":
            sums.forward(i, INTERNAL, src)
    elif chain == "DOCKER" and c == {"!i", "o"} and i == o and t == "DROP":
        sums.drop(o, REASON_UNPUBLISHED, src)
    elif chain == "DOCKER" and t == "ACCEPT" and {"!i", "o"} <= c <= _PORT_CONDS | {"o"}:
        if i == o:
            sums.forward(o, INBOUND, src)
    elif chain in ("FORWARD", "DOCKER-CT") and t == "ACCEPT" and c == {"o", "ctstate"}:
        if frozenset(r.ctstate.split(",")) == _CT_ESTABLISHED and o in known:
            sums.forward(o, INBOUND, src)
    elif (
        t == "ACCEPT"
        and i in known
        and (
            (chain == "FORWARD" and c == {"i", "!o"} and i == o)
            or (chain == "DOCKER-FORWARD" and c == {"i"})
        )
    ):
        sums.forward(i, OUTBOUND, src)


def _iptables_rule(sums: _Sources, table: Table, chain: str, r: IptablesRule, src: _Src) -> None:
    c, t = r.conds, r.target
    if table.name == "filter":
        _iptables_filter(sums, chain, r, src)
    elif table.name == "raw":
        if (
            chain == "PREROUTING"
            and t == "DROP"
            and {"d", "!i"} <= c <= _PORT_CONDS
            and r.in_iface in sums.bridges
        ):
            sums.drop(r.in_iface, REASON_DIRECT_ACCESS, src)
    elif table.name == "nat":
        if chain == "DOCKER" and t == "DNAT" and r.to_destination and "dport" in c <= _PORT_CONDS:
            default_ip = "::" if table.family in ("ipv6", "ip6") else "0.0.0.0"
            sums.dnat(
                r.in_iface if "!i" in c else "",
                r.to_destination,
                protocol=r.protocol,
                host_ip=plain_ip(r.destination) if r.destination else default_ip,
                host_port=r.dport,
                src=src,
            )
        elif (
            chain == "POSTROUTING"
            and t == "MASQUERADE"
            and c == {"s", "!o"}
            and r.out_iface in sums.bridges
        ):
            sums.masq(r.out_iface, r.source, src)


_NFT_DROP_REASONS = {
    "UNPUBLISHED PORT DROP": REASON_UNPUBLISHED,
    "ICC": REASON_ICC,
    "INTERNAL NETWORK INGRESS": REASON_INTERNAL,
}


def _nft_rule(sums: _Sources, table: Table, chain: str, r: NftRule, src: _Src) -> None:
    v, cm = r.verdict, r.comment
    established = r.conds == {"ct"} and frozenset(r.ct_state.split(",")) == _NFT_CT_ESTABLISHED
    if chain.startswith("filter-forward-in__"):
        bridge = chain.removeprefix("filter-forward-in__")
        if v == "drop" and cm in _NFT_DROP_REASONS:
            sums.drop(bridge, _NFT_DROP_REASONS[cm], src)
        elif v == "accept" and cm == "ICC":
            sums.forward(bridge, INTERNAL, src)
        elif v == "accept" and not cm and (established or "daddr" in r.conds <= {"daddr", "dport"}):
            sums.forward(bridge, INBOUND, src)
    elif chain.startswith("filter-forward-out__"):
        bridge = chain.removeprefix("filter-forward-out__")
        if v == "drop" and cm == "INTERNAL NETWORK EGRESS":
            sums.drop(bridge, REASON_INTERNAL, src)
        elif v == "accept" and (cm == "OUTGOING" or (established and not cm)):
            sums.forward(bridge, OUTBOUND, src)
    elif chain == "raw-PREROUTING":
        if v == "drop" and "!iif" in r.conds <= {"daddr", "!iif", "dport"}:
            sums.drop(r.iif, REASON_DIRECT_ACCESS, src)
    elif chain == "nat-prerouting-and-output":
        if v == "dnat" and "dport" in r.conds <= {"daddr", "!iif", "dport"}:
            sums.dnat(
                r.iif if "!iif" in r.conds else "",
                r.target,
                protocol=r.l4proto,
                host_ip=r.daddr or ("::" if table.family == "ip6" else "0.0.0.0"),
                host_port=r.dport,
                src=src,
            )
    elif (
        chain.startswith("nat-postrouting-out__")
        and v == "masquerade"
        and r.conds == {"!oif", "saddr"}
        and cm in ("", "MASQUERADE")
    ):
        sums.masq(chain.removeprefix("nat-postrouting-out__"), r.saddr, src)


# The iptables chains whose rules this module interprets, per table.
_IPTABLES_CHAINS = {
    "filter": DOCKER_CHAINS | {"FORWARD"},
    "raw": frozenset({"PREROUTING"}),
    "nat": frozenset({"DOCKER", "POSTROUTING"}),
}


def _interpret(fw: FirewallData, tables: tuple[Table, ...], topo: Topology) -> _Sources:
    """Walk the rules of ``tables`` (some of ``fw.tables``) that Docker's series count."""
    sums = _Sources(topo, _known_bridges(tables, topo))
    for ti, table in enumerate(fw.tables):
        if not any(table is t for t in tables):
            continue
        nft = table.backend == BACKEND_NFTABLES
        wanted = _IPTABLES_CHAINS.get(table.name, frozenset())
        for ci, chain in enumerate(table.chains):
            if not nft and chain.name not in wanted:
                continue
            for ri, rule in enumerate(chain.rules):
                if rule.packets is None or rule.bytes is None:
                    continue
                if nft:
                    n = parse_nft_rule(rule.text)
                    if n is not None:
                        _nft_rule(sums, table, chain.name, n, RuleRef(ti, ci, ri))
                else:
                    r = parse_iptables_rule(rule.text)
                    if r is not None:
                        _iptables_rule(sums, table, chain.name, r, RuleRef(ti, ci, ri))
    return sums


class DockerManager:
    """Docker's rules, on whichever layout and backend Docker drives now."""

    name = MANAGER

    def interpret(self, fw: FirewallData, topo: Topology) -> Meaning | None:
        chosen = choose(fw)
        if chosen is None and not topo.has_runtime(MANAGER):
            return None
        tables = chosen.tables if chosen is not None else ()
        sums = _interpret(fw, tables, topo)
        series: list[Series] = []

        def by_bridge(family: str, found: dict[tuple[str, str], list[_Src]]) -> None:
            for (bridge, x), refs in found.items():
                labels: tuple[str, ...] = (MANAGER, topo.network(bridge), bridge, x)
                if family == MASQUERADE:
                    labels += ("", "", "")
                series.append(Series(family, labels, tuple(refs)))

        by_bridge(DROPPED, sums.dropped)
        by_bridge(FORWARDED, sums.forwarded)
        by_bridge(MASQUERADE, sums.masquerade)
        for key, refs in sums.published.items():
            series.append(Series(PUBLISHED, (MANAGER, *key), tuple(refs)))
        assert all(len(s.labels) == len(FAMILY_LABELS[s.family]) for s in series)
        ids = {id(t) for t in tables}
        return Meaning(
            manager=MANAGER,
            layout=chosen.layout if chosen is not None else LAYOUT_UNKNOWN,
            backend=chosen.backend if chosen is not None else "",
            tables=tuple(i for i, t in enumerate(fw.tables) if id(t) in ids),
            series=tuple(sorted(series, key=lambda s: (s.family, s.labels))),
        )
