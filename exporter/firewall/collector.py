"""The firewall collector: every rule and chain-policy counter, on every backend, read-only.

Backends, per family: ``iptables-legacy`` (tables listed in
/proc/net/ip(6)_tables_names; :mod:`exporter.firewall.legacy`),
``iptables-nft`` (nf_tables tables of family ip/ip6 named
filter/nat/mangle/raw/security, as ``iptables-nft-save`` prints them) and
``nftables`` (every other nf_tables table, any family); both nf_tables ones
in :mod:`exporter.firewall.nftables`.

What makes a poll cheap: rule *text* (the series' identity) is read only when
the ruleset changed — for nf_tables when the ``NFT_MSG_GETGEN`` generation
moved, for legacy when a table's skeleton (entries with counters zeroed)
changed. Text comes from ``iptables-{nft,legacy}-save -c`` and ``nft -s -a
list table`` (:mod:`exporter.firewall.commands`), read between two generation
(or skeleton) reads so it is known to be consistent. On every other poll the
counters come from raw reads: one nfnetlink GETRULE dump per exported table
(or chain) mapped to the text by rule handle, or one getsockopt per legacy
table mapped by position. When a mapping does not line up the text is
re-read: a counter is never exported under the wrong rule.

Nothing here writes: no ``nft`` command that changes anything, no
python-iptables (opening a legacy table creates it), getsockopt only on tables
the kernel already lists.
"""

from __future__ import annotations

from exporter.collector import CollectorError
from exporter.config import Config, FirewallConfig
from exporter.firewall.commands import Runner, read_command
from exporter.firewall.legacy import LegacyBackend
from exporter.firewall.nftables import NftBackend
from exporter.firewall.plans import ChainCache
from exporter.firewall.selection import reading, select_chain
from exporter.metrics.firewall import render_firewall
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    FirewallData,
    MetricFamily,
    Table,
)

_BACKEND_ORDER = {BACKEND_IPTABLES_NFT: 0, BACKEND_IPTABLES_LEGACY: 1, BACKEND_NFTABLES: 2}


class FirewallCollector:
    """Reads every firewall backend's rules and chain-policy counters (see module doc)."""

    name = "firewall"

    def __init__(self, cfg: FirewallConfig, *, runner: Runner = read_command) -> None:
        self._cfg = cfg
        self._selected: dict[tuple[str, str, bool], int] = {}
        self._cache = ChainCache()
        # how often rule text was (re-)read, per backend kind; for tests and benchmarks
        self.text_reads = {"nf_tables": 0, "iptables-legacy": 0}
        args = (runner, cfg.command_timeout, self._select, self._cache, self.text_reads)
        self._nft = NftBackend(*args)
        self._legacy = LegacyBackend(*args)

    def close(self) -> None:
        self._nft.close()
        self._legacy.close()

    def _select(self, table: str, chain: str, builtin: bool) -> int:
        key = (table, chain, builtin)
        hit = self._selected.get(key)
        if hit is None:
            if len(self._selected) > 100_000:
                self._selected.clear()
            hit = self._selected[key] = reading(self._cfg, table, chain, builtin)
        return hit

    def collect(self) -> FirewallData:
        """Every backend's exported tables; a backend that fails adds an error, not a failure.

        Raises :class:`CollectorError` only when nothing could be read at all.
        """
        errors: list[str] = []
        holds: set[tuple[str, str]] = set()
        self._cache.begin()
        tables: list[Table] = self._nft.collect(errors, holds)
        tables += self._legacy.collect(errors, holds)
        self._cache.end()
        if errors and not tables and not holds:
            raise CollectorError("; ".join(errors))
        return FirewallData(
            backends=tuple(sorted(holds, key=lambda fb: (_BACKEND_ORDER.get(fb[1], 9), fb[0]))),
            tables=tuple(tables),
            errors=tuple(errors),
            structure=self._cache.structure_of(tables),
        )


def make_firewall(cfg: Config) -> FirewallCollector:
    """The registry's factory (see exporter.registry)."""
    return FirewallCollector(cfg.firewall)


# Per FirewallData.structure: for each table, the indexes of its exported chains
# (None: all of them); a few, for several collectors in one process.
_EXPORTED: dict[int, tuple[tuple[int, ...] | None, ...]] = {}
_EXPORTED_KEPT = 4


def _exported_chains(data: FirewallData, cfg: FirewallConfig) -> tuple[tuple[int, ...] | None, ...]:
    found = _EXPORTED.get(data.structure) if data.structure else None
    if found is not None and len(found) == len(data.tables):
        return found
    out: list[tuple[int, ...] | None] = []
    for t in data.tables:
        keep = tuple(
            i
            for i, c in enumerate(t.chains)
            if select_chain(cfg, t.name, c.name, c.policy is not None or c.hook is not None)
        )
        out.append(None if len(keep) == len(t.chains) else keep)
    found = tuple(out)
    if data.structure:
        if len(_EXPORTED) >= _EXPORTED_KEPT:
            _EXPORTED.pop(next(iter(_EXPORTED)), None)
        _EXPORTED[data.structure] = found
    return found


def exported_only(data: FirewallData, cfg: FirewallConfig) -> FirewallData:
    """``data`` without the chains read only for the managers' meaning (``chains_interpret``)."""
    keep = _exported_chains(data, cfg)
    if all(k is None for k in keep):
        return data
    tables = tuple(
        t if k is None else Table(t.family, t.backend, t.name, tuple(t.chains[i] for i in k))
        for t, k in zip(data.tables, keep, strict=True)
    )
    return FirewallData(data.backends, tables, data.errors, data.structure)


def render_firewall_rules(data: FirewallData, poll: object, cfg: Config) -> list[MetricFamily]:
    """The registry's renderer: :func:`~exporter.metrics.firewall.render_firewall` of the
    exported chains (those read only for the managers' meaning left out)."""
    return render_firewall(exported_only(data, cfg.firewall))
