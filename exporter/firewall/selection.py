"""Which chains are exported, and what counts as a backend holding rules (pure)."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from exporter.config import FirewallConfig
from exporter.model import BACKEND_NFTABLES, Table

# (table, chain, built-in?) -> NOT_READ, TEXT_ONLY or COUNTED; the collector's cached
# reading()
Select = Callable[[str, str, bool], int]
NOT_READ, TEXT_ONLY, COUNTED = 0, 1, 2


def select_chain(cfg: FirewallConfig, table: str, chain: str, builtin: bool) -> bool:
    """Whether ``TABLE/CHAIN`` is exported (built-in rule, include and exclude patterns)."""
    key = f"{table}/{chain}"
    if any(fnmatchcase(key, p) for p in cfg.chains_exclude):
        return False
    if builtin and cfg.include_builtin_chains:
        return True
    return any(fnmatchcase(key, p) for p in cfg.chains_include)


def read_chain(cfg: FirewallConfig, table: str, chain: str, builtin: bool) -> bool:
    """Whether ``TABLE/CHAIN`` is read: exported, or read for the managers' meaning only
    (``chains_interpret``; not exported as raw rules, see :func:`select_chain`)."""
    if select_chain(cfg, table, chain, builtin):
        return True
    key = f"{table}/{chain}"
    if any(fnmatchcase(key, p) for p in cfg.chains_exclude):
        return False
    return any(fnmatchcase(key, p) for p in cfg.chains_interpret)


def reading(cfg: FirewallConfig, table: str, chain: str, builtin: bool) -> int:
    """How ``TABLE/CHAIN`` is read: NOT_READ, TEXT_ONLY (its rules' text for the managers'
    meaning, no counters: ``chains_text_only``, unless exported) or COUNTED."""
    if select_chain(cfg, table, chain, builtin):
        return COUNTED
    if not read_chain(cfg, table, chain, builtin):
        return NOT_READ
    key = f"{table}/{chain}"
    return TEXT_ONLY if any(fnmatchcase(key, p) for p in cfg.chains_text_only) else COUNTED


def table_holds_rules(table: Table) -> bool:
    """A rule, a user chain or a non-ACCEPT policy (over *all* of the table's chains)."""
    return any(c.rules or c.policy is None or c.policy.upper() != "ACCEPT" for c in table.chains)


def backend_families(table_family: str, backend: str) -> tuple[str, ...]:
    """The ipv4/ipv6 families a table counts for in ``netpath_firewall_backend_info``."""
    if backend != BACKEND_NFTABLES:
        return (table_family,)
    return {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6")}.get(table_family, ())
