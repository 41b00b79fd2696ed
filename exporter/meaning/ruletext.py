"""Rule text, parsed into the parts the managers read.

Pure. ``parse_iptables_rule`` reads one ``iptables-save`` rule (without the
``-A CHAIN`` prefix and counters) and ``parse_nft_rule`` one native nftables
rule's statement text; both return None for text they cannot read, and every
manager (Docker, netavark, the CNI plugins, kube-proxy) reads rules through
them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import lru_cache

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


_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')


@lru_cache(maxsize=_PARSE_CACHE)
def iptables_comment(text: str) -> str:
    """The ``-m comment --comment`` text of an iptables rule, unquoted ("" if none)."""
    m = _COMMENT.search(text)
    if m is None:
        return ""
    if m.group(1) is not None:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    return m.group(2)


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


def split_host_port(dest: str) -> tuple[str, str]:
    """``1.2.3.4:80`` / ``[fd00::2]:80`` / ``1.2.3.4`` -> (address, port or "")."""
    if dest.startswith("["):
        addr, _, rest = dest[1:].partition("]")
        return addr, rest.removeprefix(":")
    if dest.count(":") == 1:
        addr, _, port = dest.partition(":")
        return addr, port
    return dest, ""
