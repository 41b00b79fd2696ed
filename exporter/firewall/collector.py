"""The firewall collector: every rule and chain-policy counter, on every backend, read-only.

Backends, per family: ``iptables-legacy`` (tables listed in
/proc/net/ip(6)_tables_names), ``iptables-nft`` (nf_tables tables of family
ip/ip6 named filter/nat/mangle/raw/security, as ``iptables-nft-save`` prints
them) and ``nftables`` (every other nf_tables table, any family).

What makes a poll cheap: rule *text* (the series' identity) is read only when
the ruleset changed — for nf_tables when the ``NFT_MSG_GETGEN`` generation
moved, for legacy when a table's skeleton (entries with counters zeroed)
changed. Text comes from ``iptables-{nft,legacy}-save -c`` and ``nft -s -a
list table``, read between two generation (or skeleton) reads so it is known
to be consistent. On every other poll the counters come from raw reads: one
nfnetlink GETRULE dump per exported table (or chain) mapped to the text by
rule handle, or one getsockopt per legacy table mapped by position. When a
mapping does not line up the text is re-read: a counter is never exported
under the wrong rule.

Nothing here writes: no ``nft`` command that changes anything, no
python-iptables (opening a legacy table creates it), getsockopt only on tables
the kernel already lists.
"""

from __future__ import annotations

import errno
import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import cast

from exporter.collector import CollectorError
from exporter.config import Config, FirewallConfig
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import NftTable, parse_nft_text
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    FirewallData,
    MetricFamily,
    Rule,
    Table,
)
from exporter.netlink import netfilter as nfnetlink
from exporter.netlink import xtables
from exporter.netlink.netfilter import NftChainInfo, NftReader, RuleCounter
from exporter.netlink.xtables import XtCounterLayout, XtFamily, XtReader, XtTable

IPTABLES_NFT_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
_IPT_NFT_FAMILIES = {nfnetlink.NFPROTO_IPV4: "ipv4", nfnetlink.NFPROTO_IPV6: "ipv6"}
_NFT_SAVE = {"ipv4": "iptables-nft-save", "ipv6": "ip6tables-nft-save"}
_LEGACY_SAVE = {"ipv4": "iptables-legacy-save", "ipv6": "ip6tables-legacy-save"}
_PACKAGE = {"nft": "nftables"}
_STRUCTURE_ATTEMPTS = 3
RETRY_AFTER = 60.0  # seconds before a failed text read (missing tool, timeout) is retried


class CommandError(Exception):
    """An external read command could not be run or failed; the message says why."""


def read_command(argv: Sequence[str], timeout: float) -> str:
    """Run a read-only command (stdin closed, C locale, bounded); its stdout."""
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except FileNotFoundError:
        pkg = _PACKAGE.get(argv[0], "iptables")
        raise CommandError(f"{argv[0]} not found: install the {pkg} package") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv)} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise CommandError(f"{argv[0]} could not be run: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = err[-1] if err else "no error output"
        detail += permission_hint(argv[0], detail)
        raise CommandError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail}")
    return proc.stdout.decode(errors="replace")


_REFUSED = ("Permission denied", "must be root", "Operation not permitted")


def permission_hint(tool: str, detail: str) -> str:
    """What grants a read tool what it was refused (its last stderr line ``detail``), or "".

    ``iptables-legacy-save`` reads /proc/net/ip(6)_tables_names (mode 0440
    root:root), then entries through a raw socket (CAP_NET_RAW) with
    getsockopt (CAP_NET_ADMIN); ``iptables-nft-save`` and ``nft`` talk
    nf_tables netlink (CAP_NET_ADMIN).
    """
    if not any(word in detail for word in _REFUSED):
        return ""
    if "_tables_names" in detail:
        return f" ({xtables.NAMES_FILE_ACCESS})"
    if "legacy" in os.path.basename(tool):
        return " (needs CAP_NET_RAW and CAP_NET_ADMIN)"
    return f" ({xtables.NEEDS_NET_ADMIN})"


def os_error_message(backend: str, exc: OSError, step: str = "", grant: str = "") -> str:
    """``BACKEND (STEP): REASON (WHAT GRANTS IT)`` for a failed raw read.

    :class:`~exporter.netlink.xtables.XtError` carries its own step and grant, a
    :class:`~exporter.netlink.netfilter.NetlinkError` its request; ``step`` and
    ``grant`` stand in for the rest. The grant is named only when the kernel
    refused (EACCES, EPERM).
    """
    if isinstance(exc, xtables.XtError):
        step, grant = exc.step, exc.grant
    elif isinstance(exc, nfnetlink.NetlinkError) and exc.request:
        step = f"netlink {exc.request}"
    refused = exc.errno in (errno.EPERM, errno.EACCES)
    reason = "permission denied" if refused else (exc.strerror or str(exc))
    head = f"{backend} ({step})" if step else backend
    return f"{head}: {reason}" + (f" ({grant})" if refused and grant else "")


# --------------------------------------------------------------------------
# Chain selection (pure)
# --------------------------------------------------------------------------


def select_chain(cfg: FirewallConfig, table: str, chain: str, builtin: bool) -> bool:
    """Whether ``TABLE/CHAIN`` is exported (built-in rule, include and exclude patterns)."""
    key = f"{table}/{chain}"
    if any(fnmatchcase(key, p) for p in cfg.chains_exclude):
        return False
    if builtin and cfg.include_builtin_chains:
        return True
    return any(fnmatchcase(key, p) for p in cfg.chains_include)


def table_holds_rules(table: Table) -> bool:
    """A rule, a user chain or a non-ACCEPT policy (over *all* of the table's chains)."""
    return any(c.rules or c.policy is None or c.policy.upper() != "ACCEPT" for c in table.chains)


def backend_families(table_family: str, backend: str) -> tuple[str, ...]:
    """The ipv4/ipv6 families a table counts for in ``netpath_firewall_backend_info``."""
    if backend != BACKEND_NFTABLES:
        return (table_family,)
    return {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6")}.get(table_family, ())


def policy_counters(backend: str, info: NftChainInfo) -> tuple[int | None, int | None]:
    """A base chain's policy counters from its GETCHAIN reply, as its backend's listing shows them.

    The kernel keeps them only for a base chain created or updated with
    NFTA_CHAIN_COUNTERS. iptables-nft makes a built-in chain without them when
    its first rule arrives (Docker's nat PREROUTING, OUTPUT, POSTROUTING) and
    with them on ``-P`` or ``iptables-nft-restore``; without them the kernel
    does not count the policy and ``iptables-nft-save -c`` prints ``[0:0]``,
    which is what the text read exports, so here too: (0, 0). A native
    nftables base chain without them has no policy counter: (None, None).
    """
    if info.packets is not None and info.bytes is not None:
        return info.packets, info.bytes
    if backend == BACKEND_IPTABLES_NFT:
        return 0, 0
    return None, None


# --------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ChainRender:
    """What a chain's structure says about its series."""

    count: int  # its number of rules
    # None: every rule has counters and a text of its own, one series each in
    # order; else the indexes of the rules summed into each series, in order.
    groups: tuple[tuple[int, ...], ...] | None
    policy_labels: tuple[str, ...] | None  # None for a chain without a policy


@dataclass(frozen=True, slots=True)
class _FirewallPlan:
    """The structure's part of :func:`render_firewall`: all but the counter values."""

    chains: tuple[_ChainRender, ...]  # every chain of every table, in order
    rule_labels: tuple[tuple[str, ...], ...]  # one per rule series
    nrules: tuple[tuple[tuple[str, ...], int], ...]  # netpath_firewall_chain_rules, whole


# Plans by FirewallData.structure; a few, for several collectors in one process.
_PLANS: dict[int, _FirewallPlan] = {}
_PLANS_KEPT = 4


def _firewall_plan(fw: FirewallData) -> _FirewallPlan:
    chains: list[_ChainRender] = []
    rule_labels: list[tuple[str, ...]] = []
    nrules: list[tuple[tuple[str, ...], int]] = []
    for t in fw.tables:
        fam, backend, tname = t.family, t.backend, t.name
        for c in t.chains:
            chain = c.name
            nrules.append(((fam, backend, tname, chain), len(c.rules)))
            by_text: dict[str, list[int]] = {}
            for i, r in enumerate(c.rules):
                if r.packets is None or r.bytes is None:
                    continue
                group = by_text.get(r.text)
                if group is None:
                    by_text[r.text] = [i]
                else:
                    group.append(i)
            rule_labels.extend((fam, backend, tname, chain, text) for text in by_text)
            groups = None
            if len(by_text) != len(c.rules):
                groups = tuple(tuple(g) for g in by_text.values())
            policy = (fam, backend, tname, chain, c.policy) if c.policy is not None else None
            chains.append(_ChainRender(len(c.rules), groups, policy))
    return _FirewallPlan(tuple(chains), tuple(rule_labels), tuple(nrules))


def _plan_of(fw: FirewallData) -> _FirewallPlan:
    plan = _PLANS.get(fw.structure) if fw.structure else None
    counts = [len(c.rules) for t in fw.tables for c in t.chains]
    if plan is None or counts != [c.count for c in plan.chains]:
        plan = _firewall_plan(fw)
        if fw.structure:
            if len(_PLANS) >= _PLANS_KEPT:
                _PLANS.pop(next(iter(_PLANS)), None)
            _PLANS[fw.structure] = plan
    return plan


def render_firewall(fw: FirewallData) -> list[MetricFamily]:
    """The ``netpath_firewall_*`` families of metrics.md.

    Identical rules in one chain are one series with their counters summed;
    rules without a counter are not exported. Policy counters only for
    built-in/base chains that have them. What depends on the structure alone
    (labels, which rules are summed) is derived once per
    ``FirewallData.structure``; every poll sums the counters afresh.
    """
    plan = _plan_of(fw)
    pk: list[int] = []
    by: list[int] = []
    pol_pk: list[tuple[tuple[str, ...], int]] = []
    pol_by: list[tuple[tuple[str, ...], int]] = []
    chains = [c for t in fw.tables for c in t.chains]
    for c, cr in zip(chains, plan.chains, strict=True):
        rules = c.rules
        if cr.groups is None:  # no rule without counters (see _firewall_plan)
            pk += cast(list[int], [r.packets for r in rules])
            by += cast(list[int], [r.bytes for r in rules])
        else:
            for g in cr.groups:
                group = [rules[i] for i in g]
                pk.append(sum(cast(list[int], [r.packets for r in group])))
                by.append(sum(cast(list[int], [r.bytes for r in group])))
        if (
            cr.policy_labels is not None
            and c.policy_packets is not None
            and c.policy_bytes is not None
        ):
            pol_pk.append((cr.policy_labels, c.policy_packets))
            pol_by.append((cr.policy_labels, c.policy_bytes))
    rule_pk = tuple(zip(plan.rule_labels, pk, strict=True))
    rule_by = tuple(zip(plan.rule_labels, by, strict=True))
    rule_labels = ("family", "backend", "table", "chain", "rule")
    pol_labels = ("family", "backend", "table", "chain", "policy")
    return [
        MetricFamily(
            "netpath_firewall_rule_packets_total",
            "counter",
            "Packets matched by the firewall rule (identical rules in one chain summed).",
            rule_labels,
            rule_pk,
        ),
        MetricFamily(
            "netpath_firewall_rule_bytes_total",
            "counter",
            "Bytes matched by the firewall rule (identical rules in one chain summed).",
            rule_labels,
            rule_by,
        ),
        MetricFamily(
            "netpath_firewall_chain_policy_packets_total",
            "counter",
            "Packets that reached the end of the built-in chain and met its policy.",
            pol_labels,
            tuple(pol_pk),
        ),
        MetricFamily(
            "netpath_firewall_chain_policy_bytes_total",
            "counter",
            "Bytes that reached the end of the built-in chain and met its policy.",
            pol_labels,
            tuple(pol_by),
        ),
        MetricFamily(
            "netpath_firewall_chain_rules",
            "gauge",
            "Number of rules in the chain.",
            ("family", "backend", "table", "chain"),
            plan.nrules,
        ),
        MetricFamily(
            "netpath_firewall_backend_info",
            "gauge",
            "1 for each firewall backend that holds rules on this host.",
            ("family", "backend"),
            tuple(((fam, backend), 1) for fam, backend in fw.backends),
        ),
    ]


# --------------------------------------------------------------------------
# Plans: what the text said, kept until the ruleset changes
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _ChainPlan:
    name: str
    texts: tuple[str, ...]
    builtin: bool
    policy: str | None
    hook: str | None = None
    handles: tuple[int, ...] = ()  # nf_tables: rule handles in order
    first: int = 0  # legacy: index of its first rule entry
    policy_entry: int | None = None  # legacy: index of the underflow entry
    span: tuple[int, int] = (0, 0)  # nf_tables whole-table dump: its rules' slice


@dataclass(slots=True)
class _NftTablePlan:
    family: int
    label: str  # Table.family
    backend: str
    name: str
    chains: list[_ChainPlan]
    whole: bool  # one dump of the whole table (else one per chain)
    flat_handles: tuple[int, ...] = ()  # whole: every rule handle of the table in dump order


@dataclass(slots=True)
class _NftState:
    gen: int
    plans: list[_NftTablePlan]
    holds: set[tuple[str, str]]
    errors: list[str]
    base_keys: list[tuple[int, str, str]] = field(default_factory=list)
    retry_at: float = 0.0  # monotonic time after which failed text reads are retried


@dataclass(slots=True)
class _LegacyTablePlan:
    name: str
    layout: XtCounterLayout
    chains: list[_ChainPlan]


@dataclass(slots=True)
class _LegacyState:
    names: list[str]
    plans: list[_LegacyTablePlan]
    holds: bool


_CachedChain = tuple[_ChainPlan, object, Chain, tuple[int, ...]]
_STRUCTURE_TOKENS = itertools.count(1)  # FirewallData.structure, unique in the process


class _Restructure(Exception):
    """The raw read does not line up with the known structure: re-read the text."""


class _Unsettled(Exception):
    """The ruleset kept changing while its text was read; the next poll tries again."""


# --------------------------------------------------------------------------
# The collector
# --------------------------------------------------------------------------

Runner = Callable[[Sequence[str], float], str]


class FirewallCollector:
    """Reads every firewall backend's rules and chain-policy counters (see module doc)."""

    name = "firewall"

    def __init__(self, cfg: FirewallConfig, *, runner: Runner = read_command) -> None:
        self._cfg = cfg
        self._run = runner
        self._nft = NftReader()
        self._xt = XtReader()
        self._nft_state: _NftState | None = None
        self._legacy: dict[str, _LegacyState] = {}
        self._legacy_failed: dict[str, tuple[float, str]] = {}  # family -> (retry at, error)
        # per chain: (plan, raw counters snapshot, the Chain built from them,
        # indexes of its rules without counters)
        self._cache: dict[tuple[str, ...], _CachedChain] = {}
        self._new_cache: dict[tuple[str, ...], _CachedChain] = {}
        # FirewallData.structure: what it stands for, and the token
        self._shape: tuple[object, ...] = ()
        self._structure = 0
        self._selected: dict[tuple[str, str, bool], bool] = {}
        # how often rule text was (re-)read, per backend kind; for tests and benchmarks
        self.text_reads = {"nf_tables": 0, "iptables-legacy": 0}

    def close(self) -> None:
        self._nft.close()
        self._xt.close()

    def _select(self, table: str, chain: str, builtin: bool) -> bool:
        key = (table, chain, builtin)
        hit = self._selected.get(key)
        if hit is None:
            if len(self._selected) > 100_000:
                self._selected.clear()
            hit = self._selected[key] = select_chain(self._cfg, table, chain, builtin)
        return hit

    def collect(self) -> FirewallData:
        tables: list[Table] = []
        errors: list[str] = []
        holds: set[tuple[str, str]] = set()
        self._new_cache = {}
        try:
            nft_tables, nft_holds, nft_errors = self._collect_nft()
            tables.extend(nft_tables)
            holds |= nft_holds
            errors.extend(nft_errors)
        except OSError as exc:
            self._nft.close()
            self._nft_state = None
            if exc.errno not in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
                errors.append(
                    os_error_message("nf_tables", exc, "netlink", xtables.NEEDS_NET_ADMIN)
                )
        except (CommandError, ValueError, _Unsettled) as exc:
            self._nft_state = None
            errors.append(f"nf_tables: {exc}")
        for fam in (xtables.IPV4, xtables.IPV6):
            failed = self._legacy_failed.get(fam.name)
            if failed is not None and time.monotonic() < failed[0]:
                errors.append(failed[1])
                continue
            try:
                legacy_tables, legacy_holds = self._collect_legacy(fam)
                tables.extend(legacy_tables)
                if legacy_holds:
                    holds.add((fam.name, BACKEND_IPTABLES_LEGACY))
                self._legacy_failed.pop(fam.name, None)
            except OSError as exc:
                self._legacy.pop(fam.name, None)
                self._xt.close()
                errors.append(os_error_message(f"iptables-legacy {fam.name}", exc))
            except _Unsettled as exc:
                self._legacy.pop(fam.name, None)
                errors.append(f"iptables-legacy {fam.name}: {exc}")
            except (CommandError, ValueError) as exc:
                self._legacy.pop(fam.name, None)
                message = f"iptables-legacy {fam.name}: {exc}"
                self._legacy_failed[fam.name] = (time.monotonic() + RETRY_AFTER, message)
                errors.append(message)
        self._cache = self._new_cache
        if errors and not tables and not holds:
            raise CollectorError("; ".join(errors))
        order = {BACKEND_IPTABLES_NFT: 0, BACKEND_IPTABLES_LEGACY: 1, BACKEND_NFTABLES: 2}
        return FirewallData(
            backends=tuple(sorted(holds, key=lambda fb: (order.get(fb[1], 9), fb[0]))),
            tables=tuple(tables),
            errors=tuple(errors),
            structure=self._structure_of(tables),
        )

    def _structure_of(self, tables: list[Table]) -> int:
        """The token for these tables (``FirewallData.structure``).

        A new one whenever a table or chain came or went, a chain's plan (rule
        texts, policy, hook) was replaced by an unequal one, or which of its
        rules lack counters changed.
        """
        shape: list[object] = []
        for t in tables:
            shape.append((t.family, t.backend, t.name))
            for c in t.chains:
                entry = self._new_cache[(t.backend, t.family, t.name, c.name)]
                shape.append((entry[0], entry[3]))
        shape_t = tuple(shape)
        if shape_t != self._shape:
            self._shape = shape_t
            self._structure = next(_STRUCTURE_TOKENS)
        return self._structure

    # -- building model chains, reusing unchanged ones ----------------------

    def _chain(
        self,
        key: tuple[str, ...],
        plan: _ChainPlan,
        snapshot: object,
        counters: Iterable[tuple[int | None, int | None]],
        policy_counters: tuple[int | None, int | None],
    ) -> Chain:
        """The model Chain; the previous poll's object when nothing changed.

        ``snapshot`` holds the raw counters; the chain is reused only under the
        same plan (the same text), so a changed rule never keeps an old text.
        """
        prev = self._cache.get(key)
        if prev is not None and prev[0] is plan and prev[1] == snapshot:
            self._new_cache[key] = prev
            return prev[2]
        old_rules = prev[2].rules if prev is not None else ()
        rules: list[Rule] = []
        uncounted = False
        for i, (text, (pk, by)) in enumerate(zip(plan.texts, counters, strict=True)):
            if pk is None or by is None:
                uncounted = True
            if i < len(old_rules):
                old = old_rules[i]
                if old.packets == pk and old.bytes == by and old.text == text:
                    rules.append(old)
                    continue
            rules.append(Rule(text, pk, by))
        none_at: tuple[int, ...] = ()
        if uncounted:
            none_at = tuple(i for i, r in enumerate(rules) if r.packets is None or r.bytes is None)
        chain = Chain(
            name=plan.name,
            rules=tuple(rules),
            policy=plan.policy,
            policy_packets=policy_counters[0],
            policy_bytes=policy_counters[1],
            hook=plan.hook,
        )
        self._new_cache[key] = (plan, snapshot, chain, none_at)
        return chain

    # -- nf_tables -----------------------------------------------------------

    def _collect_nft(self) -> tuple[list[Table], set[tuple[str, str]], list[str]]:
        state = self._nft_state
        gen = self._nft.generation()
        # After a failed text read (missing tool, timeout) the tables that did
        # read keep their counters; the text is retried after a back-off.
        if (
            state is not None
            and state.gen == gen
            and (not state.errors or time.monotonic() < state.retry_at)
        ):
            try:
                return self._nft_counters(state), state.holds, list(state.errors)
            except _Restructure:
                pass
        tables, state = self._nft_structure()
        if state.errors:
            state.retry_at = time.monotonic() + RETRY_AFTER
        self._nft_state = state
        return tables, state.holds, list(state.errors)

    def _nft_counters(self, state: _NftState) -> list[Table]:
        """Counters of an unchanged nf_tables ruleset: GETRULE dumps mapped by handle."""
        policies = self._nft.chain_infos(state.base_keys)
        pol: dict[tuple[int, str, str], NftChainInfo] = {}
        for info in policies:
            if info is None:
                raise _Restructure()
            pol[(info.family, info.table, info.name)] = info
        out: list[Table] = []
        for plan in state.plans:
            chains: list[Chain] = []
            if plan.whole:
                rules = self._nft.rules(plan.family, plan.name)
                if len(rules) != len(plan.flat_handles) or (
                    tuple([r[2] for r in rules]) != plan.flat_handles
                ):
                    raise _Restructure()
                per_chain = [rules[c.span[0] : c.span[1]] for c in plan.chains]
            else:
                per_chain = []
                for c in plan.chains:
                    rules = self._nft.rules(plan.family, plan.name, c.name)
                    if tuple([r[2] for r in rules]) != c.handles:
                        raise _Restructure()
                    per_chain.append(rules)
            for c, rules in zip(plan.chains, per_chain, strict=True):
                info = pol.get((plan.family, plan.name, c.name)) if c.builtin else None
                pc = policy_counters(plan.backend, info) if info is not None else (None, None)
                chains.append(self._nft_chain(plan, c, rules, pc))
            out.append(Table(plan.label, plan.backend, plan.name, tuple(chains)))
        return out

    def _nft_chain(
        self,
        plan: _NftTablePlan,
        c: _ChainPlan,
        rules: Sequence[RuleCounter],
        policy_counters: tuple[int | None, int | None],
    ) -> Chain:
        key = (plan.backend, plan.label, plan.name, c.name)
        snapshot = (rules, policy_counters)
        return self._chain(key, c, snapshot, ((r[3], r[4]) for r in rules), policy_counters)

    def _nft_structure(self) -> tuple[list[Table], _NftState]:
        """Read tables, chains, rule text and handles inside one unchanged generation."""
        for _ in range(_STRUCTURE_ATTEMPTS):
            gen = self._nft.generation()
            try:
                result = self._nft_structure_once(gen)
            except ValueError:
                if self._nft.generation() == gen:
                    raise  # not a race: the text really does not match the kernel
                continue
            if self._nft.generation() == gen:
                self.text_reads["nf_tables"] += 1
                return result
        raise _Unsettled("the nf_tables ruleset kept changing while it was read")

    def _nft_structure_once(self, gen: int) -> tuple[list[Table], _NftState]:
        reader = self._nft
        errors: list[str] = []
        table_infos = reader.tables()
        chain_infos = reader.chains()
        by_table: dict[tuple[int, str], list[NftChainInfo]] = {}
        for ci in chain_infos:
            by_table.setdefault((ci.family, ci.table), []).append(ci)
        keys = [(t.family, t.name) for t in table_infos]

        def has_selected(key: tuple[int, str]) -> bool:
            return any(self._select(key[1], c.name, c.is_base) for c in by_table.get(key, ()))

        # iptables-nft: the -save text of each family that has such a table.
        ipt_text: dict[tuple[int, str], Table] = {}
        ipt_failed: set[tuple[int, str]] = set()
        for fam_num, label in _IPT_NFT_FAMILIES.items():
            cands = [k for k in keys if k[0] == fam_num and k[1] in IPTABLES_NFT_TABLES]
            if not cands:
                continue
            cmd = _NFT_SAVE[label]
            try:
                text = self._run([cmd, "-c"], self._cfg.command_timeout)
                parsed = parse_iptables_save(text, label, BACKEND_IPTABLES_NFT)
            except (CommandError, ValueError) as exc:
                errors.append(f"iptables-nft {label}: {exc}")
                ipt_failed.update(cands)
                continue
            for t in parsed:
                ipt_text[(fam_num, t.name)] = t

        plans: list[_NftTablePlan] = []
        tables: list[Table] = []
        holds: set[tuple[str, str]] = set()
        for key in keys:
            fam_num, tname = key
            if key in ipt_failed:
                continue
            chains = by_table.get(key, [])
            text_table = ipt_text.get(key)
            if text_table is not None:
                label = _IPT_NFT_FAMILIES[fam_num]
                if not has_selected(key):
                    if table_holds_rules(text_table):
                        holds.add((label, BACKEND_IPTABLES_NFT))
                    continue
                try:
                    plan, table = self._plan_iptables_nft(fam_num, label, text_table, chains)
                except ValueError:
                    # iptables-nft-save cannot render this table faithfully (made
                    # with nft, e.g. with sets): read it as a native table. A
                    # concurrent change instead shows in the generation check.
                    text_table = None
                else:
                    if table_holds_rules(text_table):
                        holds.add((label, BACKEND_IPTABLES_NFT))
            if text_table is None:
                fam_name = nfnetlink.FAMILY_NAMES.get(fam_num, str(fam_num))
                selected = has_selected(key)
                if self._nft_holds(fam_num, tname, chains):
                    for f in backend_families(fam_name, BACKEND_NFTABLES):
                        holds.add((f, BACKEND_NFTABLES))
                if not selected:
                    continue
                try:
                    text = self._run(
                        ["nft", "-s", "-a", "list", "table", fam_name, tname],
                        self._cfg.command_timeout,
                    )
                    parsed_nft = [
                        t for t in parse_nft_text(text) if t.family == fam_name and t.name == tname
                    ]
                    if len(parsed_nft) != 1:
                        raise ValueError(f"nft did not list table {fam_name} {tname}")
                except (CommandError, ValueError) as exc:
                    errors.append(f"nftables {fam_name} {tname}: {exc}")
                    continue
                plan, table = self._plan_native(fam_num, fam_name, parsed_nft[0], chains)
            plans.append(plan)
            tables.append(table)
        base_keys = [(p.family, p.name, c.name) for p in plans for c in p.chains if c.builtin]
        state = _NftState(gen=gen, plans=plans, holds=holds, errors=errors, base_keys=base_keys)
        return tables, state

    def _nft_holds(self, fam: int, table: str, chains: list[NftChainInfo]) -> bool:
        for c in chains:
            if not c.is_base or c.policy != nfnetlink.NF_ACCEPT:
                return True
        if not chains:
            return False
        return self._nft.has_rules(fam, table)

    def _dump_table(
        self, fam: int, table: str
    ) -> tuple[list[RuleCounter], dict[str, tuple[int, int]]]:
        """Every rule of the table and each chain's slice of the dump."""
        rules = self._nft.rules(fam, table)
        spans: dict[str, tuple[int, int]] = {}
        start, n = 0, len(rules)
        for i in range(1, n + 1):
            if i == n or rules[i][1] != rules[start][1]:
                name = rules[start][1]
                if name in spans:
                    raise ValueError(f"rules of chain {name!r} are not contiguous in the dump")
                spans[name] = (start, i)
                start = i
        return rules, spans

    def _plan_iptables_nft(
        self, fam: int, label: str, text: Table, chains: list[NftChainInfo]
    ) -> tuple[_NftTablePlan, Table]:
        rules, spans = self._dump_table(fam, text.name)
        info_by_name = {c.name: c for c in chains}
        if set(info_by_name) - {c.name for c in text.chains}:
            raise ValueError(f"iptables-nft {label} {text.name}: text and kernel chains differ")
        plans: list[_ChainPlan] = []
        out: list[Chain] = []
        selected_rules = 0
        for c in text.chains:
            builtin = c.policy is not None
            info = info_by_name.get(c.name)
            if info is None:
                # iptables-nft creates built-in chains only when first used, but
                # -save prints them all: an absent one holds nothing, skip it.
                if builtin and not c.rules:
                    continue
                raise ValueError(f"iptables-nft {label} {text.name}/{c.name}: not in the kernel")
            if info.is_base != builtin:
                raise ValueError(f"iptables-nft {label} {text.name}/{c.name}: chain kind differs")
            span = spans.get(c.name, (0, 0))
            if span[1] - span[0] != len(c.rules):
                raise ValueError(
                    f"iptables-nft {label} {text.name}/{c.name}: "
                    f"{len(c.rules)} rules in text, {span[1] - span[0]} in the kernel"
                )
            if not self._select(text.name, c.name, builtin):
                continue
            selected_rules += len(c.rules)
            plan = _ChainPlan(
                name=c.name,
                texts=tuple(r.text for r in c.rules),
                builtin=builtin,
                policy=c.policy,
                handles=tuple(r[2] for r in rules[span[0] : span[1]]),
                span=span,
            )
            plans.append(plan)
            key = (BACKEND_IPTABLES_NFT, label, text.name, c.name)
            counters = [(r.packets, r.bytes) for r in c.rules]
            snapshot = ("text", tuple(counters), c.policy_packets, c.policy_bytes)
            out.append(
                self._chain(key, plan, snapshot, counters, (c.policy_packets, c.policy_bytes))
            )
        whole = selected_rules * 2 >= len(rules)
        table_plan = _NftTablePlan(
            family=fam,
            label=label,
            backend=BACKEND_IPTABLES_NFT,
            name=text.name,
            chains=plans,
            whole=whole,
            flat_handles=tuple(r[2] for r in rules) if whole else (),
        )
        return table_plan, Table(label, BACKEND_IPTABLES_NFT, text.name, tuple(out))

    def _plan_native(
        self, fam: int, fam_name: str, text: NftTable, chains: list[NftChainInfo]
    ) -> tuple[_NftTablePlan, Table]:
        rules, spans = self._dump_table(fam, text.name)
        info_by_name = {c.name: c for c in chains}
        plans: list[_ChainPlan] = []
        out: list[Chain] = []
        selected_rules = 0
        for c in text.chains:
            info = info_by_name.get(c.name)
            if info is None:
                raise ValueError(f"nftables {fam_name} {text.name}: chain {c.name} not in kernel")
            builtin = info.is_base
            span = spans.get(c.name, (0, 0))
            dumped = rules[span[0] : span[1]]
            handles = tuple(r[2] for r in dumped)
            if handles != tuple(r.handle for r in c.rules):
                raise ValueError(
                    f"nftables {fam_name} {text.name}/{c.name}: "
                    "rule handles in text and kernel differ"
                )
            if not self._select(text.name, c.name, builtin):
                continue
            selected_rules += len(dumped)
            plan = _ChainPlan(
                name=c.name,
                texts=tuple(r.text for r in c.rules),
                builtin=builtin,
                policy=(c.policy or info.policy_name) if builtin else None,
                hook=(c.hook or info.hook_name) if builtin else None,
                handles=handles,
                span=span,
            )
            plans.append(plan)
            out.append(self._nft_chain_from_plan(fam_name, text.name, plan, dumped, info))
        whole = selected_rules * 2 >= len(rules)
        table_plan = _NftTablePlan(
            family=fam,
            label=fam_name,
            backend=BACKEND_NFTABLES,
            name=text.name,
            chains=plans,
            whole=whole,
            flat_handles=tuple(r[2] for r in rules) if whole else (),
        )
        return table_plan, Table(fam_name, BACKEND_NFTABLES, text.name, tuple(out))

    def _nft_chain_from_plan(
        self,
        fam_name: str,
        table: str,
        plan: _ChainPlan,
        dumped: Sequence[RuleCounter],
        info: NftChainInfo,
    ) -> Chain:
        pc = (info.packets, info.bytes) if plan.builtin else (None, None)
        key = (BACKEND_NFTABLES, fam_name, table, plan.name)
        return self._chain(key, plan, (dumped, pc), ((r[3], r[4]) for r in dumped), pc)

    # -- iptables-legacy ------------------------------------------------------

    def _collect_legacy(self, fam: XtFamily) -> tuple[list[Table], bool]:
        names = xtables.read_table_names(fam)
        if not names:
            self._legacy.pop(fam.name, None)
            return [], False
        state = self._legacy.get(fam.name)
        if state is not None and state.names == names:
            try:
                return self._legacy_counters(fam, state), state.holds
            except _Restructure:
                pass
        tables, state = self._legacy_structure(fam, names)
        self._legacy[fam.name] = state
        return tables, state.holds

    def _legacy_counters(self, fam: XtFamily, state: _LegacyState) -> list[Table]:
        out: list[Table] = []
        for plan in state.plans:
            info, buf = self._xt.entries(fam, plan.name, known=state.names)
            counts = plan.layout.read(info, buf, xtables.ENTRIES_OFFSET)
            if counts is None:
                raise _Restructure()
            if not plan.chains:
                continue  # read only to notice structure changes
            pks, bys = counts
            chains = []
            for c in plan.chains:
                first, end = c.first, c.first + len(c.texts)
                cp, cb = pks[first:end], bys[first:end]
                pe = c.policy_entry
                pc = (pks[pe], bys[pe]) if pe is not None else (None, None)
                key = (BACKEND_IPTABLES_LEGACY, fam.name, plan.name, c.name)
                chains.append(self._chain(key, c, (cp, cb, pc), zip(cp, cb, strict=True), pc))
            out.append(Table(fam.name, BACKEND_IPTABLES_LEGACY, plan.name, tuple(chains)))
        return out

    def _legacy_structure(
        self, fam: XtFamily, names: list[str]
    ) -> tuple[list[Table], _LegacyState]:
        """Raw read, ``*-legacy-save -c``, raw read again: accept when the skeletons agree."""
        problem = ""
        for _ in range(_STRUCTURE_ATTEMPTS):
            before = {n: xtables.read_xt_table(self._xt, fam, n, names) for n in names}
            text = self._run([_LEGACY_SAVE[fam.name], "-c"], self._cfg.command_timeout)
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
            self.text_reads["iptables-legacy"] += 1
            return self._legacy_build(fam, names, parsed, after)
        raise _Unsettled(problem)

    def _legacy_build(
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
            chain_plans: list[_ChainPlan] = []
            chains: list[Chain] = []
            for c in text.chains:
                builtin = c.policy is not None
                if not self._select(name, c.name, builtin):
                    continue
                xc = xt.chain(c.name)
                assert xc is not None  # checked by _legacy_mismatch
                plan = _ChainPlan(
                    name=c.name,
                    texts=tuple(r.text for r in c.rules),
                    builtin=builtin,
                    policy=c.policy,
                    first=xc.first,
                    policy_entry=xc.policy_entry,
                )
                chain_plans.append(plan)
                counters = [(r.packets, r.bytes) for r in c.rules]
                pc = (c.policy_packets, c.policy_bytes)
                key = (BACKEND_IPTABLES_LEGACY, fam.name, name, c.name)
                chains.append(self._chain(key, plan, ("text", tuple(counters), pc), counters, pc))
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


def make_firewall(cfg: Config) -> FirewallCollector:
    """The registry's factory (see exporter.registry)."""
    return FirewallCollector(cfg.firewall)


def render_firewall_rules(data: FirewallData, poll: object, cfg: Config) -> list[MetricFamily]:
    return render_firewall(data)
