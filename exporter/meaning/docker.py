"""Docker's meaning of the firewall rules: drops, published ports, NAT and forwarding per network.

Pure: reads a :class:`~exporter.model.FirewallData` snapshot (plus, when
available, Docker's networks and containers) and renders the ``netpath_docker_*``
families of the metric contract. Every series is a sum of rule counters the
kernel keeps; nothing is accumulated here.

Layouts (see ``shared/design/docker-firewall-layouts.md``) and how they are
detected, from the jumps in the built-in FORWARD chain (chain names alone when
FORWARD is not exported):

* ``classic`` (Docker 20.10-27, and the one-release 28.0.0 ipset variant):
  FORWARD jumps to DOCKER-ISOLATION-STAGE-1 or DOCKER.
* ``forward-chains`` (28.0.1-28.5): FORWARD jumps to DOCKER-FORWARD, which
  jumps to DOCKER-ISOLATION-STAGE-1.
* ``v29-iptables``: FORWARD jumps to DOCKER-FORWARD, which does not jump to
  DOCKER-ISOLATION-STAGE-1 (it jumps to DOCKER-INTERNAL instead).
* ``v29-nftables``: a native ``docker-bridges`` table (``ip`` / ``ip6``).
* ``unknown``: Docker chains whose shape is none of the above, or no Docker
  rules at all. Rules of a recognisable shape in Docker's chains are still
  interpreted (see below); the raw ``netpath_firewall_rule_*`` metrics flow
  regardless.

When several backends hold Docker rules (e.g. a leftover iptables-legacy
ruleset beside the iptables-nft one after ``update-alternatives``, or old
iptables chains beside Docker 29's nftables table), exactly one is used, the
one Docker most likely drives now: a backend whose chains are hooked into the
built-in FORWARD chain (or an nftables forward hook) beats one that merely
holds chains; then the newest layout wins (v29-nftables, v29-iptables,
forward-chains, classic), then nftables over iptables-nft over
iptables-legacy. Rules of the other backends are never added in.

IPv4 and IPv6: the ipv4 and ipv6 tables (``ip`` and ``ip6`` for nftables) of
the chosen backend are both read and their counters summed into one series per
label set; the contract has no family label. Published-port and masquerade
series stay apart anyway through their ``host_ip`` and ``subnet`` labels.

What each family counts (BR is the network's bridge):

``netpath_docker_dropped_packets_total`` / ``_bytes_total`` {network, bridge, reason}
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

``netpath_docker_published_port_connections_total``
    The packet counter of each DNAT rule (nat DOCKER chain, nftables
    ``nat-prerouting-and-output``). The nat table sees only the first packet of
    each connection, so this counts new connections (or UDP flows) to the
    published port, from outside and from the host itself. ``host_ip`` is the
    rule's ``-d`` address, or ``0.0.0.0`` / ``::`` when the port is published on
    all addresses; ``container`` is the container holding the DNAT target
    address ("" when unknown).

``netpath_docker_masquerade_connections_total`` {network, bridge, subnet}
    The packet counter of the network's MASQUERADE rule
    (``-s SUBNET ! -o BR -j MASQUERADE``, nftables ``MASQUERADE``): new
    connections from the network leaving through another interface.

``netpath_docker_forwarded_packets_total`` / ``_bytes_total`` {network, bridge, direction}
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

Interface names that Docker's own chains do not mention (and DockerData does
not list as bridges) are ignored in the shared chains (FORWARD, raw
PREROUTING, nat POSTROUTING). Rules that do not parse are skipped. The network
label comes from DockerData's bridge -> network map; without it (Docker not
reachable) it is the bridge name.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import cast

from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    DockerData,
    DockerNetwork,
    FirewallData,
    LinksData,
    MetricFamily,
    Table,
)

LAYOUT_CLASSIC = "classic"
LAYOUT_FORWARD_CHAINS = "forward-chains"
LAYOUT_V29_IPTABLES = "v29-iptables"
LAYOUT_V29_NFTABLES = "v29-nftables"
LAYOUT_UNKNOWN = "unknown"

NFT_TABLE = "docker-bridges"

REASON_ISOLATION = "isolation"
REASON_UNPUBLISHED = "unpublished"
REASON_DIRECT_ACCESS = "direct_access"
REASON_ICC = "icc"
REASON_INTERNAL = "internal"

INBOUND = "inbound"
OUTBOUND = "outbound"
INTERNAL = "internal"

_LAYOUT_RANK = {
    LAYOUT_UNKNOWN: 0,
    LAYOUT_CLASSIC: 1,
    LAYOUT_FORWARD_CHAINS: 2,
    LAYOUT_V29_IPTABLES: 3,
    LAYOUT_V29_NFTABLES: 4,
}
_BACKEND_RANK = {BACKEND_IPTABLES_LEGACY: 0, BACKEND_IPTABLES_NFT: 1, BACKEND_NFTABLES: 2}

# Docker's own iptables chains: every interface they name is a Docker bridge.
_DOCKER_CHAINS = frozenset(
    {
        "DOCKER",
        "DOCKER-ISOLATION-STAGE-1",
        "DOCKER-ISOLATION-STAGE-2",
        "DOCKER-FORWARD",
        "DOCKER-CT",
        "DOCKER-BRIDGE",
        "DOCKER-INTERNAL",
    }
)

# --------------------------------------------------------------------------
# iptables rule text
# --------------------------------------------------------------------------

_IPT_ALIASES = {
    "--in-interface": "-i",
    "--out-interface": "-o",
    "--source": "-s",
    "--src": "-s",
    "--destination": "-d",
    "--dst": "-d",
    "--protocol": "-p",
    "--match": "-m",
    "--jump": "-j",
    "--destination-port": "--dport",
    "--goto": "-g",
}
# Options whose value this module reads; "!" may precede them.
_IPT_CONDS = {"-i": "i", "-o": "o", "-s": "s", "-d": "d", "-p": "p", "--dport": "dport"}


@dataclass(frozen=True, slots=True)
class IptablesRule:
    """The parts of one iptables rule that Docker's rules use.

    ``conds`` names every match present, ``!``-negated ones with a leading
    ``!`` (e.g. ``{"!i", "o"}``); options this parser does not read appear
    there by their option name (e.g. ``--dst-type``), so a shape check on
    ``conds`` is exact.
    """

    conds: frozenset[str] = frozenset()
    in_iface: str = ""
    out_iface: str = ""
    source: str = ""
    destination: str = ""
    protocol: str = ""
    dport: str = ""
    ctstate: str = ""
    target: str = ""
    to_destination: str = ""


_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def _tokens(text: str) -> list[str] | None:
    """Words of a rule; a double-quoted string is one word. None if a quote is unbalanced."""
    if '"' not in text:
        return text.split()
    words: list[str] = []
    for m in _WORD.finditer(text):
        quoted, bare = m.group(1), m.group(2)
        if bare is not None:
            if '"' in bare:
                return None
            words.append(bare)
        else:
            words.append(re.sub(r"\\(.)", r"\1", quoted))
    return words


# Rule texts change only when the ruleset does: parse each text once. The
# parsed rules stay in the cache, so they share what they repeat: the few
# distinct condition sets and (interned) interface names, protocols, targets.
_PARSE_CACHE = 1 << 16
_CONDS: dict[frozenset[str], frozenset[str]] = {}


def _shared_conds(conds: set[str]) -> frozenset[str]:
    key = frozenset(conds)
    if len(_CONDS) >= _PARSE_CACHE:
        return key
    return _CONDS.setdefault(key, key)


@lru_cache(maxsize=_PARSE_CACHE)
def parse_iptables_rule(text: str) -> IptablesRule | None:
    """Parse ``iptables-save`` rule text (without ``-A CHAIN`` and counters); None if malformed."""
    tokens = _tokens(text)
    if tokens is None:
        return None
    values: dict[str, str] = {}
    conds: set[str] = set()
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "!":
            if negate:
                return None
            negate = True
            continue
        if not tok.startswith("-"):
            return None
        opt = _IPT_ALIASES.get(tok, tok)
        args: list[str] = []
        while i < len(tokens) and tokens[i] != "!" and not tokens[i].startswith("-"):
            args.append(tokens[i])
            i += 1
        if opt in _IPT_CONDS:
            if len(args) != 1:
                return None
            key = _IPT_CONDS[opt]
            values[key] = args[0]
            conds.add(("!" if negate else "") + key)
        elif opt in {"--ctstate", "--state"}:
            if len(args) != 1 or negate:
                return None
            values["ctstate"] = args[0]
            conds.add("ctstate")
        elif opt in ("-j", "-g"):
            if len(args) != 1 or negate:
                return None
            values["target"] = args[0]
        elif opt == "--to-destination":
            if len(args) != 1:
                return None
            values["to"] = args[0]
        elif opt in ("-m", "--comment"):
            pass  # match modules are implied by their options; comments don't match
        else:
            conds.add(("!" if negate else "") + opt)
        negate = False
    if negate:
        return None
    return IptablesRule(
        conds=_shared_conds(conds),
        in_iface=sys.intern(values.get("i", "")),
        out_iface=sys.intern(values.get("o", "")),
        source=values.get("s", ""),
        destination=values.get("d", ""),
        protocol=sys.intern(values.get("p", "")),
        dport=values.get("dport", ""),
        ctstate=sys.intern(values.get("ctstate", "")),
        target=sys.intern(values.get("target", "")),
        to_destination=values.get("to", ""),
    )


# --------------------------------------------------------------------------
# nftables statement text
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NftRule:
    """The parts of one nftables rule that Docker's ``docker-bridges`` rules use.

    ``conds`` as for :class:`IptablesRule` (keys ``iif``, ``oif``, ``saddr``,
    ``daddr``, ``dport``, ``ct``; unread expressions by their first word).
    ``verdict`` is ``accept``, ``drop``, ``return``, ``jump``, ``goto``,
    ``masquerade`` or ``dnat`` ("" if none).
    """

    conds: frozenset[str] = frozenset()
    iif: str = ""
    oif: str = ""
    saddr: str = ""
    daddr: str = ""
    l4proto: str = ""
    dport: str = ""
    ct_state: str = ""
    verdict: str = ""
    target: str = ""  # jump/goto chain, dnat address
    comment: str = ""
    counter: bool = False


@lru_cache(maxsize=_PARSE_CACHE)
def parse_nft_rule(text: str) -> NftRule | None:
    """Parse one rule's statement text as ``nft list`` prints it; None if malformed."""
    tokens = _tokens(text)
    if tokens is None:
        return None
    vals: dict[str, str] = {}
    conds: set[str] = set()
    counter = False
    i = 0

    def value(key: str) -> None:
        nonlocal i
        neg = i < len(tokens) and tokens[i] == "!="
        if neg:
            i += 1
        if i >= len(tokens):
            raise IndexError(key)
        vals[key] = tokens[i]
        conds.add(("!" if neg else "") + key)
        i += 1

    try:
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            nxt = tokens[i] if i < len(tokens) else ""
            if tok in ("iifname", "oifname") and nxt != "vmap":
                value(tok[:3])
            elif tok in ("ip", "ip6") and nxt in ("saddr", "daddr"):
                i += 1
                value(nxt)
            elif tok in ("tcp", "udp", "sctp") and nxt == "dport":
                i += 1
                vals["l4proto"] = tok
                value("dport")
            elif tok == "ct" and nxt == "state":
                i += 1
                value("ct")
            elif tok == "counter":
                counter = True
                if nxt == "packets":  # "counter packets N bytes M"
                    i += 4
            elif tok in ("accept", "drop", "return", "masquerade") and "verdict" not in vals:
                vals["verdict"] = tok
            elif tok in ("jump", "goto"):
                vals["verdict"] = tok
                vals["target"] = tokens[i]
                i += 1
            elif tok == "dnat":
                if nxt in ("ip", "ip6"):
                    i += 1
                if tokens[i] != "to":
                    return None
                vals["verdict"] = "dnat"
                vals["target"] = tokens[i + 1]
                i += 2
            elif tok == "comment":
                vals["comment"] = tokens[i]
                i += 1
            else:
                conds.add(tok)
    except IndexError:
        return None
    return NftRule(
        conds=_shared_conds(conds),
        iif=sys.intern(vals.get("iif", "")),
        oif=sys.intern(vals.get("oif", "")),
        saddr=vals.get("saddr", ""),
        daddr=vals.get("daddr", ""),
        l4proto=sys.intern(vals.get("l4proto", "")),
        dport=vals.get("dport", ""),
        ct_state=sys.intern(vals.get("ct", "")),
        verdict=sys.intern(vals.get("verdict", "")),
        target=vals.get("target", ""),
        comment=sys.intern(vals.get("comment", "")),
        counter=counter,
    )


# --------------------------------------------------------------------------
# Layout detection
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    backend: str
    layout: str
    hooked: bool
    tables: tuple[Table, ...]


def _jumps(chain: Chain | None) -> set[str]:
    if chain is None:
        return set()
    out = set()
    for rule in chain.rules:
        parsed = parse_iptables_rule(rule.text)
        if parsed is not None and parsed.target:
            out.add(parsed.target)
    return out


def _chain(table: Table, name: str) -> Chain | None:
    for chain in table.chains:
        if chain.name == name:
            return chain
    return None


def _iptables_layout(filter_table: Table) -> tuple[str, bool] | None:
    """(layout, hooked) of one iptables filter table, None if it holds no Docker chains."""
    names = {c.name for c in filter_table.chains}
    if not names & (_DOCKER_CHAINS | {"DOCKER-USER"}):
        return None
    forward = _chain(filter_table, "FORWARD")
    jumps = _jumps(forward)
    docker_forward = _chain(filter_table, "DOCKER-FORWARD")
    if "DOCKER-FORWARD" in jumps or (forward is None and docker_forward is not None):
        if docker_forward is not None:
            staged = "DOCKER-ISOLATION-STAGE-1" in _jumps(docker_forward)
        else:
            staged = "DOCKER-ISOLATION-STAGE-1" in names and "DOCKER-INTERNAL" not in names
        layout = LAYOUT_FORWARD_CHAINS if staged else LAYOUT_V29_IPTABLES
        return layout, forward is not None
    if jumps & {"DOCKER-ISOLATION-STAGE-1", "DOCKER"}:
        return LAYOUT_CLASSIC, True
    if forward is None and "DOCKER-ISOLATION-STAGE-1" in names:
        return LAYOUT_CLASSIC, False
    return LAYOUT_UNKNOWN, False


def _candidates(fw: FirewallData) -> list[_Candidate]:
    out: list[_Candidate] = []
    for backend in (BACKEND_IPTABLES_NFT, BACKEND_IPTABLES_LEGACY):
        tables = tuple(t for t in fw.tables if t.backend == backend)
        found = [
            found
            for t in tables
            if t.name == "filter" and (found := _iptables_layout(t)) is not None
        ]
        if not found:
            if any(c.name in _DOCKER_CHAINS for t in tables for c in t.chains):
                found = [(LAYOUT_UNKNOWN, False)]
            else:
                continue
        layout, hooked = max(found, key=lambda lh: (lh[1], _LAYOUT_RANK[lh[0]]))
        out.append(_Candidate(backend, layout, hooked, tables))
    nft = tuple(t for t in fw.tables if t.backend == BACKEND_NFTABLES and t.name == NFT_TABLE)
    if nft:
        hooked = any(
            c.hook == "forward" or c.name == "filter-FORWARD" for t in nft for c in t.chains
        )
        out.append(_Candidate(BACKEND_NFTABLES, LAYOUT_V29_NFTABLES, hooked, nft))
    return out


def _choose(fw: FirewallData) -> _Candidate | None:
    cands = _candidates(fw)
    if not cands:
        return None
    return max(cands, key=lambda c: (c.hooked, _LAYOUT_RANK[c.layout], _BACKEND_RANK[c.backend]))


def detect_layout(fw: FirewallData) -> str:
    """The Docker firewall layout Docker is actively using on this host (see module doc)."""
    chosen = _choose(fw)
    return chosen.layout if chosen is not None else LAYOUT_UNKNOWN


# --------------------------------------------------------------------------
# Topology: bridge -> network, IP -> container
# --------------------------------------------------------------------------


def network_bridge(net: DockerNetwork) -> str:
    """The host bridge of a Docker bridge network ("" if it has none)."""
    if net.bridge:
        return net.bridge
    if net.driver != "bridge":
        return ""
    named = net.options.get("com.docker.network.bridge.name", "")
    if named:
        return named
    if net.name == "bridge":
        return "docker0"
    return "br-" + net.id[:12]


@dataclass(frozen=True, slots=True)
class _Topology:
    networks: Mapping[str, str] = field(default_factory=dict)  # bridge -> network name
    containers: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # ip -> (name, net)
    subnets: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = ()

    def network(self, bridge: str) -> str:
        return self.networks.get(bridge, bridge)

    def bridge_of_ip(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        for net, bridge in self.subnets:
            if addr.version == net.version and addr in net:
                return bridge
        return ""


def _topology(docker: DockerData | None) -> _Topology:
    if docker is None:
        return _Topology()
    networks: dict[str, str] = {}
    by_name: dict[str, str] = {}
    subnets = []
    for net in docker.networks:
        bridge = network_bridge(net)
        if not bridge:
            continue
        networks[bridge] = net.name
        by_name[net.name] = bridge
        for sub in net.subnets:
            try:
                subnets.append((ipaddress.ip_network(sub, strict=False), bridge))
            except ValueError:
                continue
    containers: dict[str, tuple[str, str]] = {}
    for ctr in docker.containers:
        for ep in ctr.endpoints:
            for ip in (ep.ip, ep.ipv6):
                if ip:
                    containers[_plain_ip(ip)] = (ctr.name, ep.network)
    return _Topology(networks, containers, tuple(subnets))


def _plain_ip(addr: str) -> str:
    """``172.18.0.2/32`` -> ``172.18.0.2``; ``fd00::2/128`` -> ``fd00::2``."""
    return addr.split("/", 1)[0]


def _split_host_port(dest: str) -> tuple[str, str]:
    """``1.2.3.4:80`` / ``[fd00::2]:80`` / ``1.2.3.4`` -> (address, port or "")."""
    if dest.startswith("["):
        addr, _, rest = dest[1:].partition("]")
        return addr, rest.removeprefix(":")
    if dest.count(":") == 1:
        addr, _, port = dest.partition(":")
        return addr, port
    return dest, ""


# --------------------------------------------------------------------------
# Interpretation
# --------------------------------------------------------------------------


# A rule feeding a series: (number of its chain in the walk, index in the chain).
_Src = tuple[int, int]


@dataclass(slots=True)
class _Sources:
    """Collects the rules whose counters each derived series sums, while the rules are walked."""

    topo: _Topology
    bridges: set[str]  # interfaces known to be Docker bridges
    dropped: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, reason)
    forwarded: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, dir)
    masquerade: dict[tuple[str, str], list[_Src]] = field(default_factory=dict)  # (bridge, subnet)
    # (container, network, protocol, host_ip, host_port, container_port)
    published: dict[tuple[str, str, str, str, str, str], list[_Src]] = field(default_factory=dict)

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
        container_ip, container_port = _split_host_port(target)
        name, network = self.topo.containers.get(container_ip, ("", ""))
        if not network:
            network = self.topo.network(bridge or self.topo.bridge_of_ip(container_ip))
        key = (name, network, protocol, host_ip, host_port, container_port or host_port)
        self.published.setdefault(key, []).append(src)


def _known_bridges(tables: Iterable[Table], topo: _Topology) -> set[str]:
    """Interfaces Docker's own chains name, plus DockerData's bridges."""
    bridges = set(topo.networks)
    for table in tables:
        if table.backend == BACKEND_NFTABLES:
            for chain in table.chains:
                for prefix in ("filter-forward-in__", "filter-forward-out__"):
                    if chain.name.startswith(prefix):
                        bridges.add(chain.name.removeprefix(prefix))
            continue
        for chain in table.chains:
            docker_chain = chain.name in _DOCKER_CHAINS
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
                host_ip=_plain_ip(r.destination) if r.destination else default_ip,
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
    "filter": _DOCKER_CHAINS | {"FORWARD"},
    "raw": frozenset({"PREROUTING"}),
    "nat": frozenset({"DOCKER", "POSTROUTING"}),
}


def _interpret(
    fw: FirewallData, tables: tuple[Table, ...], topo: _Topology
) -> tuple[_Sources, list[tuple[int, int]]]:
    """Walk the rules of ``tables`` (some of ``fw.tables``) that Docker's series count.

    Also returns the (table index, chain index) in ``fw`` of each walked chain:
    the chain numbers of the sources.
    """
    sums = _Sources(topo, _known_bridges(tables, topo))
    walked: list[tuple[int, int]] = []
    for ti, table in enumerate(fw.tables):
        if not any(table is t for t in tables):
            continue
        nft = table.backend == BACKEND_NFTABLES
        wanted = _IPTABLES_CHAINS.get(table.name, frozenset())
        for ci, chain in enumerate(table.chains):
            if not nft and chain.name not in wanted:
                continue
            number = len(walked)
            walked.append((ti, ci))
            for ri, rule in enumerate(chain.rules):
                if rule.packets is None or rule.bytes is None:
                    continue
                if nft:
                    n = parse_nft_rule(rule.text)
                    if n is not None:
                        _nft_rule(sums, table, chain.name, n, (number, ri))
                else:
                    r = parse_iptables_rule(rule.text)
                    if r is not None:
                        _iptables_rule(sums, table, chain.name, r, (number, ri))
    return sums, walked


# --------------------------------------------------------------------------
# Plans: what the structure says, kept while it stands
# --------------------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class _DockerPlan:
    """Everything :func:`render_docker` derives from the rules' structure and from DockerData."""

    docker: DockerData | None  # the DockerData it was made with (matched by identity)
    shape: tuple[int, ...]  # chains per table of the FirewallData it was made from
    layout: str
    # (table index, chain index, rule count, bytes needed) of each chain feeding a series;
    # their rules' counters, concatenated, are the flat lists the sources index
    chains: tuple[tuple[int, int, int, bool], ...]
    dropped: _Series
    forwarded: _Series
    published: _Series
    masquerade: _Series


# Plans by FirewallData.structure; a few, for several collectors in one process.
_PLANS: dict[int, _DockerPlan] = {}
_PLANS_KEPT = 4


def _docker_plan(fw: FirewallData, docker: DockerData | None) -> _DockerPlan:
    chosen = _choose(fw)
    topo = _topology(docker)
    sums, walked = _interpret(fw, chosen.tables if chosen is not None else (), topo)
    counted = {n for found in (sums.dropped, sums.forwarded) for v in found.values() for n, _ in v}
    used = sorted(
        {n for found in (sums.masquerade, sums.published) for v in found.values() for n, _ in v}
        | counted
    )
    offsets: dict[int, int] = {}
    chains: list[tuple[int, int, int, bool]] = []
    at = 0
    for n in used:
        ti, ci = walked[n]
        offsets[n] = at
        count = len(fw.tables[ti].chains[ci].rules)
        chains.append((ti, ci, count, n in counted))
        at += count

    def flat(srcs: list[_Src]) -> list[int]:
        return [offsets[n] + ri for n, ri in srcs]

    def by_bridge(found: Mapping[tuple[str, str], list[_Src]]) -> _Series:
        return _series(((topo.network(b), b, x), flat(v)) for (b, x), v in found.items())

    return _DockerPlan(
        docker=docker,
        shape=tuple(len(t.chains) for t in fw.tables),
        layout=chosen.layout if chosen is not None else LAYOUT_UNKNOWN,
        chains=tuple(chains),
        dropped=by_bridge(sums.dropped),
        forwarded=by_bridge(sums.forwarded),
        published=_series((k, flat(v)) for k, v in sums.published.items()),
        masquerade=by_bridge(sums.masquerade),
    )


def _counters(
    fw: FirewallData, plan: _DockerPlan
) -> tuple[list[int | None], list[int | None]] | None:
    """The flat packet and byte counters of the plan; None if ``fw`` is not its structure."""
    tables = fw.tables
    if plan.shape != tuple(len(t.chains) for t in tables):
        return None
    pk: list[int | None] = []
    by: list[int | None] = []
    for ti, ci, count, need_bytes in plan.chains:
        rules = tables[ti].chains[ci].rules
        if len(rules) != count:
            return None
        pk += [r.packets for r in rules]
        by += [r.bytes for r in rules] if need_bytes else [None] * count
    return pk, by


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def render_docker(
    fw: FirewallData, docker: DockerData | None, links: LinksData | None = None
) -> list[MetricFamily]:
    """The ``netpath_docker_*`` families and ``netpath_docker_firewall_layout_info``.

    ``links`` is accepted for the renderer's common signature and not needed:
    the bridges come from the rules and from ``docker``. What the structure
    and ``docker`` decide (layout, series, which rules each sums) is derived
    once per ``FirewallData.structure`` and DockerData; every poll sums the
    counters afresh.
    """
    del links
    plan = _PLANS.get(fw.structure) if fw.structure else None
    counters = _counters(fw, plan) if plan is not None and plan.docker is docker else None
    if plan is None or counters is None:
        plan = _docker_plan(fw, docker)
        counters = _counters(fw, plan)
        assert counters is not None
        if fw.structure:
            if len(_PLANS) >= _PLANS_KEPT and fw.structure not in _PLANS:
                _PLANS.pop(next(iter(_PLANS)), None)
            _PLANS[fw.structure] = plan
    pk, by = counters

    def samples(series: _Series, flat: list[int | None]) -> tuple[tuple[Labels, int], ...]:
        return tuple(zip(series.labels, series.values(flat), strict=True))

    return [
        MetricFamily(
            "netpath_docker_dropped_packets_total",
            "counter",
            "Packets dropped by Docker's DROP rules, per destination network and reason.",
            ("network", "bridge", "reason"),
            samples(plan.dropped, pk),
        ),
        MetricFamily(
            "netpath_docker_dropped_bytes_total",
            "counter",
            "Bytes dropped by Docker's DROP rules, per destination network and reason.",
            ("network", "bridge", "reason"),
            samples(plan.dropped, by),
        ),
        MetricFamily(
            "netpath_docker_published_port_connections_total",
            "counter",
            "New connections to a published port (packets of its DNAT rule; nat sees "
            "the first packet of each connection).",
            ("container", "network", "protocol", "host_ip", "host_port", "container_port"),
            samples(plan.published, pk),
        ),
        MetricFamily(
            "netpath_docker_masquerade_connections_total",
            "counter",
            "New connections from the network masqueraded on their way out (packets of "
            "its MASQUERADE rule).",
            ("network", "bridge", "subnet"),
            samples(plan.masquerade, pk),
        ),
        MetricFamily(
            "netpath_docker_forwarded_packets_total",
            "counter",
            "Packets accepted by Docker's per-network forward rules, per direction.",
            ("network", "bridge", "direction"),
            samples(plan.forwarded, pk),
        ),
        MetricFamily(
            "netpath_docker_forwarded_bytes_total",
            "counter",
            "Bytes accepted by Docker's per-network forward rules, per direction.",
            ("network", "bridge", "direction"),
            samples(plan.forwarded, by),
        ),
        MetricFamily(
            "netpath_docker_firewall_layout_info",
            "gauge",
            "The layout of Docker's firewall rules in use on this host.",
            ("layout",),
            (((plan.layout,), 1),),
        ),
    ]
