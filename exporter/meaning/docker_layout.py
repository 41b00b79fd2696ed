"""Which of Docker's firewall layouts a ruleset holds, and on which backend.

Pure. Layouts (``docs/docker-firewall-layouts.md``), detected from the jumps in
the built-in FORWARD chain (chain names alone when FORWARD is not exported):

* ``classic`` (Docker 20.10-27, and the one-release 28.0.0 ipset variant):
  FORWARD jumps to DOCKER-ISOLATION-STAGE-1 or DOCKER.
* ``forward-chains`` (28.0.1-28.5): FORWARD jumps to DOCKER-FORWARD, which
  jumps to DOCKER-ISOLATION-STAGE-1.
* ``v29-iptables``: FORWARD jumps to DOCKER-FORWARD, which does not jump to
  DOCKER-ISOLATION-STAGE-1 (it jumps to DOCKER-INTERNAL instead).
* ``v29-nftables``: a native ``docker-bridges`` table (``ip`` / ``ip6``).
* ``unknown``: Docker chains whose shape is none of the above.

When several backends hold Docker rules (a leftover iptables-legacy ruleset
beside the iptables-nft one, old iptables chains beside Docker 29's nftables
table), exactly one is used, the one Docker most likely drives now: a backend
whose chains are hooked into the built-in FORWARD chain (or an nftables
forward hook) beats one that merely holds chains; then the newest layout wins,
then nftables over iptables-nft over iptables-legacy.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.meaning.ruletext import parse_iptables_rule
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    Network,
    Table,
)

LAYOUT_CLASSIC = "classic"
LAYOUT_FORWARD_CHAINS = "forward-chains"
LAYOUT_V29_IPTABLES = "v29-iptables"
LAYOUT_V29_NFTABLES = "v29-nftables"
LAYOUT_UNKNOWN = "unknown"

NFT_TABLE = "docker-bridges"

_LAYOUT_RANK = {
    LAYOUT_UNKNOWN: 0,
    LAYOUT_CLASSIC: 1,
    LAYOUT_FORWARD_CHAINS: 2,
    LAYOUT_V29_IPTABLES: 3,
    LAYOUT_V29_NFTABLES: 4,
}
_BACKEND_RANK = {BACKEND_IPTABLES_LEGACY: 0, BACKEND_IPTABLES_NFT: 1, BACKEND_NFTABLES: 2}

# Docker's own iptables chains: every interface they name is a Docker bridge.
DOCKER_CHAINS = frozenset(
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


@dataclass(frozen=True, slots=True)
class Candidate:
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
    if not names & (DOCKER_CHAINS | {"DOCKER-USER"}):
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


def _candidates(fw: FirewallData) -> list[Candidate]:
    out: list[Candidate] = []
    for backend in (BACKEND_IPTABLES_NFT, BACKEND_IPTABLES_LEGACY):
        tables = tuple(t for t in fw.tables if t.backend == backend)
        found = [
            found
            for t in tables
            if t.name == "filter" and (found := _iptables_layout(t)) is not None
        ]
        if not found:
            if any(c.name in DOCKER_CHAINS for t in tables for c in t.chains):
                found = [(LAYOUT_UNKNOWN, False)]
            else:
                continue
        layout, hooked = max(found, key=lambda lh: (lh[1], _LAYOUT_RANK[lh[0]]))
        out.append(Candidate(backend, layout, hooked, tables))
    nft = tuple(t for t in fw.tables if t.backend == BACKEND_NFTABLES and t.name == NFT_TABLE)
    if nft:
        hooked = any(
            c.hook == "forward" or c.name == "filter-FORWARD" for t in nft for c in t.chains
        )
        out.append(Candidate(BACKEND_NFTABLES, LAYOUT_V29_NFTABLES, hooked, nft))
    return out


def choose(fw: FirewallData) -> Candidate | None:
    cands = _candidates(fw)
    if not cands:
        return None
    return max(cands, key=lambda c: (c.hooked, _LAYOUT_RANK[c.layout], _BACKEND_RANK[c.backend]))


def detect_layout(fw: FirewallData) -> str:
    """The Docker firewall layout Docker is actively using on this host (see module doc)."""
    chosen = choose(fw)
    return chosen.layout if chosen is not None else LAYOUT_UNKNOWN


def network_bridge(net: Network) -> str:
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
