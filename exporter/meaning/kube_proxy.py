"""kube-proxy's meaning of the firewall rules: Kubernetes Services (``manager="kube-proxy"``).

Pure. Names come only from what kube-proxy writes: its comments
(``"ns/svc:port"``, ``"ns/svc:port -> IP:port"``, ``"ns/svc:port cluster IP"``)
and its chain names; never from the API server.

iptables mode (iptables-nft or -legacy, IPv4 and IPv6; ``layout="iptables"``):

``netpath_service_endpoint_connections_total`` {namespace, service, port, protocol, endpoint}
    Each endpoint has a ``KUBE-SEP-<hash>`` chain in nat whose ``-j DNAT
    --to-destination IP:PORT`` rule rewrites the first packet of each
    connection the Service sends there. The Service port is the one whose
    chains jump there (from its commented ``KUBE-SERVICES``/``KUBE-NODEPORTS``
    rules through ``KUBE-EXT``/``KUBE-FW``/``KUBE-SVC``/``KUBE-SVL``): with
    over 1000 endpoints kube-proxy leaves the comments off the ``KUBE-SEP``
    rules and the jumps into them. The packet counters of the jumps into the
    chain (one per endpoint, more with session affinity) sum to the DNAT
    rule's: the endpoint's connection count, read without reading the
    ``KUBE-SEP`` chains' counters (three in four of a node's chains; config
    ``firewall.chains_text_only``). A ``KUBE-SEP`` chain nothing jumps to is
    named by its comment (``ns/svc:port``) and counted by its DNAT rule.
``netpath_service_rejected_packets_total`` {..., reason}
    filter ``KUBE-SERVICES`` / ``KUBE-EXTERNAL-SERVICES`` rules commented
    ``ns/svc:port has no endpoints`` (``-j REJECT``/``DROP``: ``no_endpoints``)
    or ``has no local endpoints`` (``no_local_endpoints``), and filter
    ``KUBE-PROXY-FIREWALL`` drops (``traffic not accepted by KUBE-FW-*``:
    ``source_range``).
``netpath_service_external_connections_total`` {..., via}
    nat ``KUBE-NODEPORTS`` jumps into ``KUBE-EXT-*`` (``nodeport``), nat
    ``KUBE-SERVICES`` rules commented ``ns/svc:port external IP``
    (``external_ip``) and ``ns/svc:port loadbalancer IP`` (``load_balancer``).
``netpath_dropped_{packets,bytes}_total`` {manager="kube-proxy", reason="invalid"}
    filter ``KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP``.
``netpath_masquerade_connections_total`` {manager="kube-proxy"}
    nat ``KUBE-POSTROUTING -j MASQUERADE`` (traffic marked by ``KUBE-MARK-MASQ``).

nftables mode (the ``kube-proxy`` table of family ip / ip6; ``layout="nftables"``):
kube-proxy writes no counters there, so only the structure's families come
from it. Chains are named ``service-<hash>-NS/SVC/PROTO/PORT`` (``local-`` for the
Local traffic policy), ``endpoint-<hash>-NS/SVC/PROTO/PORT__IP/PORT`` (an
IPv6 address with dots for colons), ``external-<hash>-...`` and
``firewall-<hash>-...``: a Service port and its endpoints are read from the
names alone (the endpoint chain's ``dnat to`` agrees). The ClusterIP sits in
the ``service-ips`` map, which the firewall reader skips; a service chain's
``ip daddr CLUSTER_IP PROTO dport PORT ... jump mark-for-masquerade`` rule
(written when kube-proxy knows the cluster CIDR) names it where present.

Both modes: :attr:`Meaning.services` lists the Service ports
(:class:`~exporter.meaning.base.ServicePort`), from which the renderer makes
``netpath_service_info`` and ``netpath_service_endpoints``, and the conntrack
renderer the active connections (:func:`active_per_endpoint`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exporter.meaning.base import (
    DROPPED,
    FAMILY_LABELS,
    MASQUERADE,
    SERVICE_ENDPOINT,
    SERVICE_EXTERNAL,
    SERVICE_REJECTED,
    Meaning,
    RuleRef,
    Series,
    ServicePort,
    Topology,
    endpoint_label,
    plain_ip,
)
from exporter.meaning.ruletext import iptables_comment, parse_iptables_rule, split_host_port
from exporter.model import BACKEND_NFTABLES, FirewallData, Table

MANAGER = "kube-proxy"
LAYOUT_IPTABLES = "iptables"
LAYOUT_NFTABLES = "nftables"
NFT_TABLE = "kube-proxy"

REASON_NO_ENDPOINTS = "no_endpoints"
REASON_NO_LOCAL_ENDPOINTS = "no_local_endpoints"
REASON_SOURCE_RANGE = "source_range"
REASON_INVALID = "invalid"
VIA_NODEPORT = "nodeport"
VIA_EXTERNAL_IP = "external_ip"
VIA_LOAD_BALANCER = "load_balancer"

SERVICES = "KUBE-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
POSTROUTING = "KUBE-POSTROUTING"
SEP_PREFIX = "KUBE-SEP-"
# chains a Service's traffic enters from KUBE-SERVICES / KUBE-NODEPORTS
_ENTRY_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-")
_KUBE_CHAINS = frozenset({SERVICES, NODEPORTS, EXTERNAL_SERVICES, FORWARD, POSTROUTING})

# "ns/svc:port" (port name optional: a Service's one unnamed port), then what follows
_COMMENT = re.compile(r"^(?P<ns>[^/\s]+)/(?P<svc>[^:\s/]+)(?::(?P<port>\S*))?(?: (?P<rest>.*))?$")
_NFT_SERVICE = re.compile(
    r"^(?P<kind>service|local|external|firewall)-[A-Z0-9]{8}-"
    r"(?P<ns>[^/]+)/(?P<svc>[^/]+)/(?P<proto>[a-z]+)/(?P<port>[^/]*)$"
)
_NFT_ENDPOINT = re.compile(
    r"^endpoint-[A-Z0-9]{8}-(?P<ns>[^/]+)/(?P<svc>[^/]+)/(?P<proto>[a-z]+)/(?P<port>[^/]*)"
    r"__(?P<ip>.+)/(?P<eport>\d+)$"
)
_NFT_DADDR = re.compile(
    r"\bip6? daddr (?P<ip>[0-9a-fA-F.:]+) (?P<proto>tcp|udp|sctp) dport (?P<port>\d+)\b"
)

SvcKey = tuple[str, str, str, str]  # namespace, service, port, protocol


@dataclass
class _Svc:
    cluster_ips: set[str] = field(default_factory=set)
    addresses: set[tuple[str, int]] = field(default_factory=set)
    node_ports: set[int] = field(default_factory=set)
    endpoints: set[tuple[str, int]] = field(default_factory=set)

    def freeze(self, key: SvcKey) -> ServicePort:
        return ServicePort(
            *key,
            cluster_ips=tuple(sorted(self.cluster_ips)),
            addresses=tuple(sorted(self.addresses)),
            node_ports=tuple(sorted(self.node_ports)),
            endpoints=tuple(sorted(self.endpoints)),
        )


@dataclass
class _Found:
    services: dict[SvcKey, _Svc] = field(default_factory=dict)
    series: dict[tuple[str, tuple[str, ...]], list[RuleRef]] = field(default_factory=dict)
    tables: set[int] = field(default_factory=set)

    def svc(self, key: SvcKey) -> _Svc:
        found = self.services.get(key)
        if found is None:
            found = self.services[key] = _Svc()
        return found

    def add(self, family: str, labels: tuple[str, ...], ref: RuleRef) -> None:
        self.series.setdefault((family, labels), []).append(ref)
        self.tables.add(ref.table)


def parse_comment(comment: str) -> tuple[str, str, str, str] | None:
    """``ns/svc:port REST`` -> (ns, svc, port, REST); None if not a Service's comment."""
    m = _COMMENT.match(comment)
    if m is None:
        return None
    return m["ns"], m["svc"], m["port"] or "", m["rest"] or ""


def _port(text: str) -> int:
    return int(text) if text.isdigit() else 0


def is_kube_proxy_chain(table: Table, chain: str) -> bool:
    """A chain of kube-proxy's: ``KUBE-*`` in an iptables table, any chain of its nftables
    table. A workload's path leaves them out (thousands on a node, each about a Service,
    which ``explain svc/NAMESPACE/NAME`` walks)."""
    if table.backend == BACKEND_NFTABLES:
        return table.name == NFT_TABLE
    return chain.startswith("KUBE-") and chain != "KUBE-FIREWALL"


# --------------------------------------------------------------------------
# iptables mode
# --------------------------------------------------------------------------


def _is_kube_table(table: Table) -> bool:
    if table.backend == BACKEND_NFTABLES or table.name not in ("nat", "filter"):
        return False
    return any(
        c.name in _KUBE_CHAINS or c.name.startswith(("KUBE-SVC-", SEP_PREFIX)) for c in table.chains
    )


def _iptables_nat(ti: int, table: Table, found: _Found) -> None:
    owner: dict[str, SvcKey] = {}  # a Service port's chain (KUBE-SVC/SVL/EXT/FW/SEP) -> it
    seps: list[int] = []
    for ci, chain in enumerate(table.chains):
        name = chain.name
        if name == SERVICES:
            _nat_services(ti, ci, table, found, owner)
        elif name == NODEPORTS:
            for ri, rule in enumerate(chain.rules):
                r = parse_iptables_rule(rule.text)
                c = parse_comment(iptables_comment(rule.text))
                if r is None or c is None or not r.target.startswith(_ENTRY_PREFIXES):
                    continue
                key = (c[0], c[1], c[2], r.protocol)
                owner.setdefault(r.target, key)
                if r.target.startswith("KUBE-SVC-") and c[3]:
                    continue  # not the jump of this Service's NodePort
                found.svc(key).node_ports.add(_port(r.dport))
                if rule.packets is not None:
                    found.add(SERVICE_EXTERNAL, (*key, VIA_NODEPORT), RuleRef(ti, ci, ri))
        elif name.startswith(SEP_PREFIX):
            seps.append(ci)
        elif name == POSTROUTING:
            for ri, rule in enumerate(chain.rules):
                r = parse_iptables_rule(rule.text)
                if r is not None and r.target == "MASQUERADE" and rule.packets is not None:
                    masq = (MANAGER, "", "", "", "", "", "")
                    found.add(MASQUERADE, masq, RuleRef(ti, ci, ri))
    jumps = _follow_jumps(ti, table, owner)
    for ci in seps:
        name = table.chains[ci].name
        _endpoint_chain(ti, ci, table, found, key=owner.get(name), jumps=jumps.get(name, []))


def _follow_jumps(ti: int, table: Table, owner: dict[str, SvcKey]) -> dict[str, list[RuleRef]]:
    """Give the chains a Service port's chains jump to (KUBE-EXT -> KUBE-SVC -> KUBE-SEP,
    ...) that Service port: the jumps into KUBE-SEP chains carry no comment in kube-proxy's
    large cluster mode (over 1000 endpoints), so only the way in says whose they are.
    Returns, per KUBE-SEP chain, the counted rules that jump into it."""
    by_name = {c.name: ci for ci, c in enumerate(table.chains)}
    jumps: dict[str, list[RuleRef]] = {}
    todo = list(owner)
    while todo:
        ci = by_name.get(todo.pop(), -1)
        if ci < 0 or table.chains[ci].name.startswith(SEP_PREFIX):
            continue
        chain = table.chains[ci]
        key = owner[chain.name]
        for ri, rule in enumerate(chain.rules):
            r = parse_iptables_rule(rule.text)
            if r is None or not r.target.startswith((*_ENTRY_PREFIXES, SEP_PREFIX)):
                continue
            if r.target.startswith(SEP_PREFIX) and rule.packets is not None:
                jumps.setdefault(r.target, []).append(RuleRef(ti, ci, ri))
            if r.target not in owner:
                owner[r.target] = key
                todo.append(r.target)
    return jumps


def _endpoint_chain(
    ti: int, ci: int, table: Table, found: _Found, *, key: SvcKey | None, jumps: list[RuleRef]
) -> None:
    """A KUBE-SEP chain: its DNAT rule names the endpoint. The Service port is the one
    whose chains jump here, and the jumps count its connections: every packet that
    enters reaches the DNAT rule (KUBE-MARK-MASQ only marks), so their packets sum to
    its counter, and KUBE-SEP chains are read for their text only (``chains_text_only``).
    A chain nothing jumps to is named by its rules' comment and counted by its DNAT rule."""
    for ri, rule in enumerate(table.chains[ci].rules):
        r = parse_iptables_rule(rule.text)
        if r is None or r.target != "DNAT" or not r.to_destination:
            continue
        svc, refs = key, jumps
        if svc is None:  # per rule: a chain nothing jumps to may hold any comments
            c = parse_comment(iptables_comment(rule.text))
            if c is None:
                continue
            svc = (c[0], c[1], c[2], r.protocol)
            refs = [RuleRef(ti, ci, ri)] if rule.packets is not None else []
        ip, port = split_host_port(r.to_destination)
        endpoint = (ip, _port(port))
        found.svc(svc).endpoints.add(endpoint)
        for ref in refs:
            found.add(SERVICE_ENDPOINT, (*svc, endpoint_label(*endpoint)), ref)


def _nat_services(ti: int, ci: int, table: Table, found: _Found, owner: dict[str, SvcKey]) -> None:
    for ri, rule in enumerate(table.chains[ci].rules):
        r = parse_iptables_rule(rule.text)
        c = parse_comment(iptables_comment(rule.text))
        if r is None or c is None or not r.target.startswith(_ENTRY_PREFIXES):
            continue
        key = (c[0], c[1], c[2], r.protocol)
        owner.setdefault(r.target, key)
        svc = found.svc(key)
        ip = plain_ip(r.destination)
        if ip and r.dport:
            svc.addresses.add((ip, _port(r.dport)))
        rest = c[3]
        if rest == "cluster IP":
            if ip:
                svc.cluster_ips.add(ip)
            continue
        via = {"external IP": VIA_EXTERNAL_IP, "loadbalancer IP": VIA_LOAD_BALANCER}.get(rest)
        if via is not None and rule.packets is not None:
            found.add(SERVICE_EXTERNAL, (*key, via), RuleRef(ti, ci, ri))


def _iptables_filter(ti: int, table: Table, found: _Found) -> None:
    for ci, chain in enumerate(table.chains):
        name = chain.name
        if name in (SERVICES, EXTERNAL_SERVICES, PROXY_FIREWALL):
            for ri, rule in enumerate(chain.rules):
                r = parse_iptables_rule(rule.text)
                c = parse_comment(iptables_comment(rule.text))
                if r is None or c is None or r.target not in ("REJECT", "DROP"):
                    continue
                rest = c[3]
                if rest == "has no endpoints":
                    reason = REASON_NO_ENDPOINTS
                elif rest == "has no local endpoints":
                    reason = REASON_NO_LOCAL_ENDPOINTS
                elif name == PROXY_FIREWALL and rest.startswith("traffic not accepted by"):
                    reason = REASON_SOURCE_RANGE
                else:
                    continue
                key = (c[0], c[1], c[2], r.protocol)
                svc = found.svc(key)
                ip = plain_ip(r.destination)
                if rest == "has no endpoints" and name == SERVICES and ip:
                    svc.cluster_ips.add(ip)
                if ip and r.dport:
                    svc.addresses.add((ip, _port(r.dport)))
                elif r.dport and "--dst-type" in r.conds:
                    svc.node_ports.add(_port(r.dport))
                if rule.packets is not None:
                    found.add(SERVICE_REJECTED, (*key, reason), RuleRef(ti, ci, ri))
        elif name == FORWARD:
            for ri, rule in enumerate(chain.rules):
                r = parse_iptables_rule(rule.text)
                if r is None or r.target != "DROP" or r.ctstate != "INVALID":
                    continue
                if rule.packets is not None:
                    found.add(DROPPED, (MANAGER, "", "", REASON_INVALID), RuleRef(ti, ci, ri))


# --------------------------------------------------------------------------
# nftables mode
# --------------------------------------------------------------------------


def _chain_ip(text: str) -> str:
    """The endpoint address in an endpoint chain's name: kube-proxy writes an IPv6
    address with its colons as dots (``fd00.10.180..1``), as colons are not allowed."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv6Address(text.replace(".", ":")))
    except ValueError:
        return text


def _nftables(table: Table, found: _Found) -> None:
    for chain in table.chains:
        m = _NFT_ENDPOINT.match(chain.name)
        if m is not None:
            key = (m["ns"], m["svc"], m["port"], m["proto"])
            found.svc(key).endpoints.add((_chain_ip(m["ip"]), int(m["eport"])))
            continue
        m = _NFT_SERVICE.match(chain.name)
        if m is None:
            continue
        key = (m["ns"], m["svc"], m["port"], m["proto"])
        svc = found.svc(key)
        if m["kind"] != "service":
            continue
        for rule in chain.rules:
            d = _NFT_DADDR.search(rule.text)
            if d is not None and d["proto"] == m["proto"] and "mark-for-masquerade" in rule.text:
                svc.cluster_ips.add(d["ip"])
                svc.addresses.add((d["ip"], int(d["port"])))


# --------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------


class KubeProxyManager:
    """kube-proxy's Services, in iptables mode (KUBE-* chains) or nftables mode."""

    name = MANAGER

    def interpret(self, fw: FirewallData, topo: Topology) -> Meaning | None:
        del topo  # kube-proxy's rules name everything they mean
        nft = [
            (ti, t)
            for ti, t in enumerate(fw.tables)
            if t.backend == BACKEND_NFTABLES
            and t.name == NFT_TABLE
            and t.family in ("ip", "ip6")
            and any(c.name.startswith(("service-", "endpoint-")) for c in t.chains)
        ]
        ipt = [(ti, t) for ti, t in enumerate(fw.tables) if _is_kube_table(t)]
        if not nft and not ipt:
            return None
        found = _Found()
        if nft and not any(c.name.startswith("KUBE-SVC-") for _, t in ipt for c in t.chains):
            for ti, t in nft:
                _nftables(t, found)
                found.tables.add(ti)
            layout, backend = LAYOUT_NFTABLES, BACKEND_NFTABLES
        else:
            backend = _backend(ipt)
            for ti, t in ipt:
                if t.backend != backend:
                    continue  # another backend's leftovers
                found.tables.add(ti)
                if t.name == "nat":
                    _iptables_nat(ti, t, found)
                else:
                    _iptables_filter(ti, t, found)
            layout = LAYOUT_IPTABLES
        series = [Series(f, labels, tuple(refs)) for (f, labels), refs in found.series.items()]
        assert all(len(s.labels) == len(FAMILY_LABELS[s.family]) for s in series)
        return Meaning(
            manager=MANAGER,
            layout=layout,
            backend=backend,
            tables=tuple(sorted(found.tables)),
            series=tuple(sorted(series, key=lambda s: (s.family, s.labels))),
            services=tuple(
                svc.freeze(key) for key, svc in sorted(found.services.items()) if key[3]
            ),
        )


def _backend(tables: list[tuple[int, Table]]) -> str:
    """The iptables backend holding the most KUBE-SVC/SEP chains (kube-proxy's own)."""
    count: dict[str, int] = {}
    for _, t in tables:
        n = sum(1 for c in t.chains if c.name.startswith(("KUBE-SVC-", SEP_PREFIX)))
        count[t.backend] = count.get(t.backend, 0) + n + 1
    return max(sorted(count), key=lambda b: count[b])


# --------------------------------------------------------------------------
# Active connections (the join with the conntrack dump)
# --------------------------------------------------------------------------

EndpointKey = tuple[str, str, str, str, str]  # namespace, service, port, protocol, endpoint


def active_per_endpoint(
    services: Sequence[ServicePort],
    active: Mapping[tuple[str, str, int, str, int], int],
) -> dict[EndpointKey, int]:
    """Active connections per Service endpoint, from the conntrack dump's active sums.

    ``active`` is :func:`exporter.collectors.conntrack.active_connections`:
    (protocol, original destination, its port, reply source, its port) ->
    entries (TCP ESTABLISHED, UDP all). An entry is a Service's connection to
    an endpoint when it was DNATed (original destination is not the reply
    source) and its reply source is the endpoint's address and port. When
    the Service names where it is reached (ClusterIP, external and
    load-balancer IPs and ports, NodePorts), the original destination must be
    one of them, so a connection to the same pod through anything else (a
    hostPort) is not counted; an endpoint in several Service ports counts for
    the one whose address the connection was sent to. Every endpoint of every
    Service is in the result (0 when idle).
    """
    out: dict[EndpointKey, int] = {}
    by_endpoint: dict[tuple[str, str, int], list[tuple[EndpointKey, ServicePort]]] = {}
    for s in services:
        for ip, port in s.endpoints:
            key = (*s.key, endpoint_label(ip, port))
            out[key] = 0
            by_endpoint.setdefault((s.protocol, ip, port), []).append((key, s))
    for (proto, odst, oport, rsrc, rport), n in active.items():
        if odst == rsrc:
            continue  # not DNATed: straight to the pod
        cands = by_endpoint.get((proto, rsrc, rport))
        if not cands:
            continue
        for key, s in cands:
            if s.addresses or s.node_ports:
                if (odst, oport) not in s.addresses and oport not in s.node_ports:
                    continue
            elif len(cands) > 1:
                continue  # nothing tells which of the Service ports it is
            out[key] += n
            break
    return out
