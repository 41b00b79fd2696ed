"""The iptables-legacy backend: rule text on a structure change, counters by getsockopt.

Per family (ipv4, ipv6), the tables the kernel lists in
/proc/net/ip(6)_tables_names. The text (``ip(6)tables-legacy-save -c``) is
read between two raw reads of every table and accepted when their skeletons
(entries with counters zeroed) agree and it describes the same chains and
rule counts; on every other poll one getsockopt per table gives the counters,
mapped to the text by entry position, and a changed skeleton sends the
reader back to the text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from exporter.firewall.commands import CommandError, Runner, os_error_message
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.plans import (
    RETRY_AFTER,
    STRUCTURE_ATTEMPTS,
    ChainCache,
    ChainPlan,
    Restructure,
    Unsettled,
)
from exporter.firewall.selection import COUNTED, NOT_READ, Select, table_holds_rules
from exporter.model import BACKEND_IPTABLES_LEGACY, Chain, Table
from exporter.netlink import xtables
from exporter.netlink.xtables import XtCounterLayout, XtFamily, XtReader, XtTable

_LEGACY_SAVE = {"ipv4": "iptables-legacy-save", "ipv6": "ip6tables-legacy-save"}


@dataclass(slots=True)
class _LegacyTablePlan:
    name: str
    layout: XtCounterLayout
    chains: list[ChainPlan]


@dataclass(slots=True)
class _LegacyState:
    names: list[str]
    plans: list[_LegacyTablePlan]
    holds: bool


class LegacyBackend:
    """Reads the iptables-legacy tables of both families (see module doc)."""

    def __init__(
        self,
        runner: Runner,
        timeout: float,
        select: Select,
        cache: ChainCache,
        text_reads: dict[str, int],
    ) -> None:
        self._run = runner
        self._timeout = timeout
        self._select = select
        self._cache = cache
        self._text_reads = text_reads
        self._xt = XtReader()
        self._state: dict[str, _LegacyState] = {}
        self._failed: dict[str, tuple[float, str]] = {}  # family -> (retry at, error)

    def close(self) -> None:
        self._xt.close()

    def collect(self, errors: list[str], holds: set[tuple[str, str]]) -> list[Table]:
        """The exported tables of both families; failures appended to ``errors``.

        A family whose text could not be read (missing tool, bad text) is
        retried after :data:`RETRY_AFTER`; until then its error is repeated.
        """
        tables: list[Table] = []
        for fam in (xtables.IPV4, xtables.IPV6):
            failed = self._failed.get(fam.name)
            if failed is not None and time.monotonic() < failed[0]:
                errors.append(failed[1])
                continue
            try:
                legacy_tables, legacy_holds = self._collect_family(fam)
                tables.extend(legacy_tables)
                if legacy_holds:
                    holds.add((fam.name, BACKEND_IPTABLES_LEGACY))
                self._failed.pop(fam.name, None)
            except OSError as exc:
                self._state.pop(fam.name, None)
                self._xt.close()
                errors.append(os_error_message(f"iptables-legacy {fam.name}", exc))
            except Unsettled as exc:
                self._state.pop(fam.name, None)
                errors.append(f"iptables-legacy {fam.name}: {exc}")
            except (CommandError, ValueError) as exc:
                self._state.pop(fam.name, None)
                message = f"iptables-legacy {fam.name}: {exc}"
                self._failed[fam.name] = (time.monotonic() + RETRY_AFTER, message)
                errors.append(message)
        return tables

    def _collect_family(self, fam: XtFamily) -> tuple[list[Table], bool]:
        names = xtables.read_table_names(fam)
        if not names:
            self._state.pop(fam.name, None)
            return [], False
        state = self._state.get(fam.name)
        if state is not None and state.names == names:
            try:
                return self._counters(fam, state), state.holds
            except Restructure:
                pass
        tables, state = self._structure(fam, names)
        self._state[fam.name] = state
        return tables, state.holds

    def _counters(self, fam: XtFamily, state: _LegacyState) -> list[Table]:
        out: list[Table] = []
        for plan in state.plans:
            info, buf = self._xt.entries(fam, plan.name, known=state.names, reuse=True)
            counts = plan.layout.read(info, buf, xtables.ENTRIES_OFFSET)
            if counts is None:
                raise Restructure()
            if not plan.chains:
                continue  # read only to notice structure changes
            pks, bys = counts
            chains = []
            for c in plan.chains:
                first, end = c.first, c.first + len(c.texts)
                cp, cb = (pks[first:end], bys[first:end]) if c.counted else c.no_counters()
                pe = c.policy_entry
                pc = (pks[pe], bys[pe]) if pe is not None else (None, None)
                key = (BACKEND_IPTABLES_LEGACY, fam.name, plan.name, c.name)
                chains.append(self._cache.chain(key, c, (cp, cb, pc), (cp, cb), pc))
            out.append(Table(fam.name, BACKEND_IPTABLES_LEGACY, plan.name, tuple(chains)))
        return out

    def _structure(self, fam: XtFamily, names: list[str]) -> tuple[list[Table], _LegacyState]:
        """Raw read, ``*-legacy-save -c``, raw read again: accept when the skeletons agree."""
        problem = ""
        for _ in range(STRUCTURE_ATTEMPTS):
            before = {n: xtables.read_xt_table(self._xt, fam, n, names) for n in names}
            text = self._run([_LEGACY_SAVE[fam.name], "-c"], self._timeout)
            parsed = parse_iptables_save(text, fam.name, BACKEND_IPTABLES_LEGACY)
            names_after = xtables.read_table_names(fam)
            if names_after != names:
                problem = "the set of legacy tables changed while it was read"
                names = names_after or []
                continue
            after = {n: xtables.read_xt_table(self._xt, fam, n, names) for n in names}
            if any(before[n][0].skeleton != after[n][0].skeleton for n in names):
                problem = "the legacy ruleset kept changing while it was read"
                continue
            problem = _legacy_mismatch(parsed, {n: after[n][0] for n in names})
            if problem:
                continue
            self._text_reads["iptables-legacy"] += 1
            return self._build(fam, names, parsed, after)
        raise Unsettled(problem)

    def _build(
        self,
        fam: XtFamily,
        names: list[str],
        parsed: list[Table],
        raw: dict[str, tuple[XtTable, bytes]],
    ) -> tuple[list[Table], _LegacyState]:
        text_by_name = {t.name: t for t in parsed}
        plans: list[_LegacyTablePlan] = []
        out: list[Table] = []
        holds = False
        for name in names:
            xt, blob = raw[name]
            text = text_by_name[name]
            holds = holds or table_holds_rules(text)
            chain_plans: list[ChainPlan] = []
            chains: list[Chain] = []
            for c in text.chains:
                builtin = c.policy is not None
                how = self._select(name, c.name, builtin)
                if how == NOT_READ:
                    continue
                xc = xt.chain(c.name)
                assert xc is not None  # checked by _legacy_mismatch
                plan = ChainPlan(
                    name=c.name,
                    texts=tuple(r.text for r in c.rules),
                    builtin=builtin,
                    policy=c.policy,
                    first=xc.first,
                    policy_entry=xc.policy_entry,
                    counted=how == COUNTED,
                )
                chain_plans.append(plan)
                if plan.counted:
                    pks: tuple[int | None, ...] = tuple([r.packets for r in c.rules])
                    bys: tuple[int | None, ...] = tuple([r.bytes for r in c.rules])
                else:
                    pks, bys = plan.no_counters()
                pc = (c.policy_packets, c.policy_bytes)
                key = (BACKEND_IPTABLES_LEGACY, fam.name, name, c.name)
                snapshot = ("text", pks, bys, pc)
                chains.append(self._cache.chain(key, plan, snapshot, (pks, bys), pc))
            plans.append(_LegacyTablePlan(name, XtCounterLayout(fam, xt, blob), chain_plans))
            if chains:
                out.append(Table(fam.name, BACKEND_IPTABLES_LEGACY, name, tuple(chains)))
        return out, _LegacyState(names=names, plans=plans, holds=holds)


def _legacy_mismatch(parsed: list[Table], raw: dict[str, XtTable]) -> str:
    """ "" when the text and the kernel's entries describe the same chains and rule counts."""
    text_by_name = {t.name: t for t in parsed}
    if set(text_by_name) != set(raw):
        return f"tables in text {sorted(text_by_name)} differ from the kernel's {sorted(raw)}"
    for name, xt in raw.items():
        text = text_by_name[name]
        if {c.name for c in text.chains} != {c.name for c in xt.chains}:
            return f"table {name}: chains in text and kernel differ"
        for c in text.chains:
            xc = xt.chain(c.name)
            assert xc is not None
            if xc.count != len(c.rules) or xc.builtin != (c.policy is not None):
                return f"{name}/{c.name}: {len(c.rules)} rules in text, {xc.count} in the kernel"
            if xc.builtin and xc.policy != c.policy:
                return f"{name}/{c.name}: policy {c.policy} in text, {xc.policy} in the kernel"
    return ""
