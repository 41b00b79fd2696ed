"""Parser of ``nft -s -a list table FAMILY NAME`` / ``nft -s -a list ruleset`` text.

Pure: text in, :class:`NftTable` out. Only what the firewall collector needs:
tables, chains (base-chain type, hook, policy), rules with their handle. A
rule's text is the statement as nft prints it minus the ``# handle N`` suffix;
``counter packets N bytes M`` (listing without ``-s``) becomes plain
``counter`` so the text is stable, and the values are kept on the rule. Sets,
maps, flowtables and stateful objects are skipped. Malformed input raises a
``ValueError`` naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TABLE_RE = re.compile(r'^table\s+(\S+)\s+("[^"]*"|\S+)\s*\{(?:\s*#\s*handle\s+(\d+))?$')
_CHAIN_RE = re.compile(r'^chain\s+("[^"]*"|\S+)\s*\{(?:\s*#\s*handle\s+(\d+))?$')
_HANDLE_SUFFIX_RE = re.compile(r"\s*#\s*handle\s+(\d+)$")
_TYPE_RE = re.compile(r"^type\s+(\S+)\s+hook\s+(\S+)\b(.*)$")
_PRIORITY_RE = re.compile(r"\bpriority\s+([^;]+);")
_POLICY_RE = re.compile(r"\bpolicy\s+(\w+)\s*;")
# a quoted string (kept as is) or an anonymous counter with values
_COUNTER_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\bcounter packets (\d+) bytes (\d+)')
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True, slots=True)
class NftRule:
    handle: int | None  # None when listed without -a
    text: str
    packets: int | None  # only when the listing printed counter values
    bytes: int | None
    has_counter: bool  # the rule has an anonymous `counter` statement


@dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    handle: int | None
    rules: tuple[NftRule, ...]
    type: str | None = None  # base chains only: "filter", "nat", "route"
    hook: str | None = None  # base chains only: "forward", "prerouting", ...
    priority: str | None = None
    policy: str | None = None  # base chains only: "accept" / "drop"


@dataclass(frozen=True, slots=True)
class NftTable:
    family: str  # "ip", "ip6", "inet", "bridge", "netdev", "arp"
    name: str
    handle: int | None
    chains: tuple[NftChain, ...]


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        return name[1:-1]
    return name


def _brace_delta(line: str) -> int:
    """Opening minus closing braces outside quoted strings and trailing comments."""
    bare = _QUOTED_RE.sub("", line)
    hash_at = bare.find("#")
    if hash_at >= 0:
        bare = bare[:hash_at]
    return bare.count("{") - bare.count("}")


def parse_nft_rule_text(statement: str) -> tuple[str, int | None, int | None, bool]:
    """Rule statement (no handle suffix) -> (stable text, packets, bytes, has_counter)."""
    values: list[int] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)
        if not values:
            values.extend((int(m.group(1)), int(m.group(2))))
        return "counter"

    text = _COUNTER_RE.sub(repl, statement)
    has_counter = (
        bool(values) or re.search(r"(^|\s)counter(\s|$)", _QUOTED_RE.sub('""', text)) is not None
    )
    if values:
        return text, values[0], values[1], True
    return text, None, None, has_counter


class _ChainBuilder:
    __slots__ = ("handle", "hook", "name", "policy", "priority", "rules", "type")

    def __init__(self, name: str, handle: int | None) -> None:
        self.name = name
        self.handle = handle
        self.rules: list[NftRule] = []
        self.type: str | None = None
        self.hook: str | None = None
        self.priority: str | None = None
        self.policy: str | None = None

    def build(self) -> NftChain:
        return NftChain(
            name=self.name,
            handle=self.handle,
            rules=tuple(self.rules),
            type=self.type,
            hook=self.hook,
            priority=self.priority,
            policy=self.policy,
        )


def parse_nft_text(text: str) -> list[NftTable]:
    """Parse nft's listing of one table or the whole ruleset, tables in listing order."""
    tables: list[NftTable] = []
    table: tuple[str, str, int | None] | None = None
    chains: list[NftChain] = []
    chain: _ChainBuilder | None = None
    skip_depth = 0  # >0 while inside a set/map/flowtable/object block
    lineno = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if skip_depth:
            skip_depth += _brace_delta(line)
            if skip_depth < 0:
                raise ValueError(f"line {lineno}: unbalanced '}}'")
            continue
        if table is None:
            if line.startswith("#"):
                continue
            m = _TABLE_RE.match(line)
            if not m:
                raise ValueError(
                    f"line {lineno}: expected 'table FAMILY NAME {{', got {line[:60]!r}"
                )
            table = (m.group(1), _unquote(m.group(2)), int(m.group(3)) if m.group(3) else None)
            chains = []
            continue
        if chain is None:
            if line == "}":
                tables.append(
                    NftTable(family=table[0], name=table[1], handle=table[2], chains=tuple(chains))
                )
                table = None
                continue
            if line.startswith("chain "):
                m = _CHAIN_RE.match(line)
                if not m:
                    raise ValueError(f"line {lineno}: malformed chain header {line[:60]!r}")
                chain = _ChainBuilder(_unquote(m.group(1)), int(m.group(2)) if m.group(2) else None)
                continue
            delta = _brace_delta(line)
            if delta > 0:  # set, map, flowtable, counter, quota, ct helper ... block
                skip_depth = delta
            elif delta < 0:
                raise ValueError(f"line {lineno}: unbalanced '}}' in table {table[1]!r}")
            continue  # table flags / comment
        if line == "}":
            chains.append(chain.build())
            chain = None
            continue
        if _brace_delta(line) != 0:
            raise ValueError(
                f"line {lineno}: unbalanced braces in chain {chain.name!r}: {line[:60]!r}"
            )
        m = _HANDLE_SUFFIX_RE.search(line)
        if m is None:
            if _parse_chain_property(chain, line):
                continue
            handle = None
            statement = line
        else:
            handle = int(m.group(1))
            statement = line[: m.start()]
        rule_text, packets, nbytes, has_counter = parse_nft_rule_text(statement)
        chain.rules.append(NftRule(handle, rule_text, packets, nbytes, has_counter))
    if skip_depth or chain is not None or table is not None:
        raise ValueError(f"line {lineno}: unexpected end of input (missing '}}')")
    return tables


def _parse_chain_property(chain: _ChainBuilder, line: str) -> bool:
    """Consume a chain's ``type ... hook ...; policy ...;``, comment or devices line."""
    m = _TYPE_RE.match(line)
    if m:
        chain.type = m.group(1)
        chain.hook = m.group(2)
        rest = m.group(3)
        if pm := _PRIORITY_RE.search(rest):
            chain.priority = pm.group(1).strip()
        if pm := _POLICY_RE.search(rest):
            chain.policy = pm.group(1)
        else:
            chain.policy = "accept"
        return True
    if line.startswith(("comment ", "policy ", "devices ", "flags ")):
        if pm := _POLICY_RE.match(line):
            chain.policy = pm.group(1)
        return True
    return False
