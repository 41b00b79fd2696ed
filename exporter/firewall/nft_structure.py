"""The nf_tables structure: tables, chains, rule text and handles, read on a generation change.

iptables-nft tables (family ip/ip6, named filter/nat/mangle/raw/security) take
their text from ``ip(6)tables-nft-save -c``, every other table from ``nft -s
-a list table``; each chain's rules are matched to the kernel's GETRULE dump
(by count and order for iptables-nft, by handle for native tables). What
comes out is a plan per exported table (:class:`NftTablePlan`): which dumps to
read on later polls and which handles they must show, so counters are never
exported under the wrong rule. A table iptables-nft-save cannot render
faithfully (made with nft, e.g. with sets) is read as a native table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.firewall.commands import CommandError, Runner
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import NftTable, parse_nft_text
from exporter.firewall.plans import ChainCache, ChainPlan
from exporter.firewall.selection import (
    COUNTED,
    NOT_READ,
    Select,
    backend_families,
    table_holds_rules,
)
from exporter.model import BACKEND_IPTABLES_NFT, BACKEND_NFTABLES, Chain, Table
from exporter.netlink import netfilter as nfnetlink
from exporter.netlink.netfilter import NftChainInfo, NftReader, RuleCounter

IPTABLES_NFT_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
IPT_NFT_FAMILIES = {nfnetlink.NFPROTO_IPV4: "ipv4", nfnetlink.NFPROTO_IPV6: "ipv6"}
_NFT_SAVE = {"ipv4": "iptables-nft-save", "ipv6": "ip6tables-nft-save"}


# Above this many rules a table's counters are read chain by chain: the
# kernel resumes a dump by walking the table from its start for every
# datagram, so one dump of a big table costs about rules^2 (6.3 s of kernel
# time for kube-proxy's 105k rules), while one dump per chain costs about
# the rules plus tens of microseconds a chain.
WHOLE_TABLE_MAX_RULES = 20_000


def dump_whole(selected: int, total: int) -> bool:
    """Whether one dump of the whole table beats one dump per selected chain."""
    return selected * 2 >= total and total <= WHOLE_TABLE_MAX_RULES


@dataclass(slots=True)
class NftTablePlan:
    family: int
    label: str  # Table.family
    backend: str
    name: str
    chains: list[ChainPlan]
    whole: bool  # one dump of the whole table (else one per chain)
    flat_handles: tuple[int, ...] = ()  # whole: every rule handle of the table in dump order


@dataclass(slots=True)
class NftState:
    gen: int
    plans: list[NftTablePlan]
    holds: set[tuple[str, str]]
    errors: list[str]
    base_keys: list[tuple[int, str, str]] = field(default_factory=list)
    retry_at: float = 0.0  # monotonic time after which failed text reads are retried


@dataclass(frozen=True, slots=True)
class StructureReads:
    """What reading the structure needs: the socket, the tools, the selection, the cache."""

    reader: NftReader
    run: Runner
    timeout: float
    select: Select
    cache: ChainCache


def read_structure(ctx: StructureReads, gen: int) -> tuple[list[Table], NftState]:
    """Tables, chains, rule text and handles: the exported tables and their plans.

    The caller checks that the generation ``gen`` held throughout.
    """
    reader = ctx.reader
    errors: list[str] = []
    table_infos = reader.tables()
    chain_infos = reader.chains()
    by_table: dict[tuple[int, str], list[NftChainInfo]] = {}
    for ci in chain_infos:
        by_table.setdefault((ci.family, ci.table), []).append(ci)
    keys = [(t.family, t.name) for t in table_infos]

    def has_selected(key: tuple[int, str]) -> bool:
        return any(ctx.select(key[1], c.name, c.is_base) for c in by_table.get(key, ()))

    # iptables-nft: the -save text of each family that has such a table.
    ipt_text: dict[tuple[int, str], Table] = {}
    ipt_failed: set[tuple[int, str]] = set()
    for fam_num, label in IPT_NFT_FAMILIES.items():
        cands = [k for k in keys if k[0] == fam_num and k[1] in IPTABLES_NFT_TABLES]
        if not cands:
            continue
        cmd = _NFT_SAVE[label]
        try:
            text = ctx.run([cmd, "-c"], ctx.timeout)
            parsed = parse_iptables_save(text, label, BACKEND_IPTABLES_NFT)
        except (CommandError, ValueError) as exc:
            errors.append(f"iptables-nft {label}: {exc}")
            ipt_failed.update(cands)
            continue
        for t in parsed:
            ipt_text[(fam_num, t.name)] = t

    plans: list[NftTablePlan] = []
    tables: list[Table] = []
    holds: set[tuple[str, str]] = set()
    for key in keys:
        fam_num, tname = key
        if key in ipt_failed:
            continue
        chains = by_table.get(key, [])
        text_table = ipt_text.get(key)
        if text_table is not None:
            label = IPT_NFT_FAMILIES[fam_num]
            if not has_selected(key):
                if table_holds_rules(text_table):
                    holds.add((label, BACKEND_IPTABLES_NFT))
                continue
            try:
                plan, table = _plan_iptables_nft(ctx, fam_num, label, text_table, chains)
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
            if _holds(reader, fam_num, tname, chains):
                for f in backend_families(fam_name, BACKEND_NFTABLES):
                    holds.add((f, BACKEND_NFTABLES))
            if not selected:
                continue
            try:
                text = ctx.run(
                    ["nft", "-s", "-a", "list", "table", fam_name, tname],
                    ctx.timeout,
                )
                parsed_nft = [
                    t for t in parse_nft_text(text) if t.family == fam_name and t.name == tname
                ]
                if len(parsed_nft) != 1:
                    raise ValueError(f"nft did not list table {fam_name} {tname}")
            except (CommandError, ValueError) as exc:
                errors.append(f"nftables {fam_name} {tname}: {exc}")
                continue
            plan, table = _plan_native(ctx, fam_num, fam_name, parsed_nft[0], chains)
        plans.append(plan)
        tables.append(table)
    base_keys = [(p.family, p.name, c.name) for p in plans for c in p.chains if c.builtin]
    state = NftState(gen=gen, plans=plans, holds=holds, errors=errors, base_keys=base_keys)
    return tables, state


def _holds(reader: NftReader, fam: int, table: str, chains: list[NftChainInfo]) -> bool:
    for c in chains:
        if not c.is_base or c.policy != nfnetlink.NF_ACCEPT:
            return True
    if not chains:
        return False
    return reader.has_rules(fam, table)


def _dump_table(
    reader: NftReader, fam: int, table: str
) -> tuple[list[RuleCounter], dict[str, tuple[int, int]]]:
    """Every rule of the table and each chain's slice of the dump."""
    rules = reader.rules(fam, table)
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
    ctx: StructureReads, fam: int, label: str, text: Table, chains: list[NftChainInfo]
) -> tuple[NftTablePlan, Table]:
    rules, spans = _dump_table(ctx.reader, fam, text.name)
    info_by_name = {c.name: c for c in chains}
    if set(info_by_name) - {c.name for c in text.chains}:
        raise ValueError(f"iptables-nft {label} {text.name}: text and kernel chains differ")
    plans: list[ChainPlan] = []
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
        how = ctx.select(text.name, c.name, builtin)
        if how == NOT_READ:
            continue
        plan = ChainPlan(
            name=c.name,
            texts=tuple(r.text for r in c.rules),
            builtin=builtin,
            policy=c.policy,
            handles=tuple(r[2] for r in rules[span[0] : span[1]]),
            span=span,
            counted=how == COUNTED,
        )
        plans.append(plan)
        key = (BACKEND_IPTABLES_NFT, label, text.name, c.name)
        if plan.counted:
            selected_rules += len(c.rules)
            pks: tuple[int | None, ...] = tuple([r.packets for r in c.rules])
            bys: tuple[int | None, ...] = tuple([r.bytes for r in c.rules])
        else:
            pks, bys = plan.no_counters()
        pc = (c.policy_packets, c.policy_bytes)
        out.append(ctx.cache.chain(key, plan, ("text", pks, bys, pc), (pks, bys), pc))
    whole = dump_whole(selected_rules, len(rules))
    table_plan = NftTablePlan(
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
    ctx: StructureReads, fam: int, fam_name: str, text: NftTable, chains: list[NftChainInfo]
) -> tuple[NftTablePlan, Table]:
    rules, spans = _dump_table(ctx.reader, fam, text.name)
    info_by_name = {c.name: c for c in chains}
    plans: list[ChainPlan] = []
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
                f"nftables {fam_name} {text.name}/{c.name}: rule handles in text and kernel differ"
            )
        how = ctx.select(text.name, c.name, builtin)
        if how == NOT_READ:
            continue
        plan = ChainPlan(
            name=c.name,
            texts=tuple(r.text for r in c.rules),
            builtin=builtin,
            policy=(c.policy or info.policy_name) if builtin else None,
            hook=(c.hook or info.hook_name) if builtin else None,
            handles=handles,
            span=span,
            counted=how == COUNTED,
        )
        plans.append(plan)
        pc = (info.packets, info.bytes) if builtin else (None, None)
        key = (BACKEND_NFTABLES, fam_name, text.name, c.name)
        if plan.counted:
            selected_rules += len(dumped)
            pks: tuple[int | None, ...] = tuple([r[3] for r in dumped])
            bys: tuple[int | None, ...] = tuple([r[4] for r in dumped])
        else:
            pks, bys = plan.no_counters()
        out.append(ctx.cache.chain(key, plan, (pks, bys, pc), (pks, bys), pc))
    whole = dump_whole(selected_rules, len(rules))
    table_plan = NftTablePlan(
        family=fam,
        label=fam_name,
        backend=BACKEND_NFTABLES,
        name=text.name,
        chains=plans,
        whole=whole,
        flat_handles=tuple(r[2] for r in rules) if whole else (),
    )
    return table_plan, Table(fam_name, BACKEND_NFTABLES, text.name, tuple(out))
