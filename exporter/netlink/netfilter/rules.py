"""Rules (NFT_MSG_GETRULE): per rule its handle and counter, read fast.

A rule message yields only (table, chain, handle, packets, bytes): the counter
is found with one ``bytes.find`` of the encoded ``counter`` expression. This
is the firewall collector's per-poll hot path (a 10k-rule dump each poll): its
loop stays unrolled over the netlink layout of :mod:`exporter.netlink.core`.
"""

from __future__ import annotations

import struct

from exporter.netlink import core
from exporter.netlink.core import (
    NLA_TYPE_MASK,
    NLATTR,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    align,
)
from exporter.netlink.netfilter.chains import (
    NFTA_COUNTER_BYTES,
    NFTA_COUNTER_PACKETS,
    parse_counters,
)
from exporter.netlink.netfilter.messages import T_GETRULE, T_NEWRULE, build_request, encode_attr_str

NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_HANDLE = 3
NFTA_RULE_EXPRESSIONS = 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2

_BE64 = struct.Struct(">Q")
_BE64_SKIP4_BE64 = struct.Struct(">Q4xQ")

# (table, chain, handle, packets, bytes); packets/bytes None: the rule has no counter
RuleCounter = tuple[str, str, int, int | None, int | None]

# An anonymous counter expression as the kernel encodes it (no 64-bit padding
# attributes, as on every arch with efficient unaligned access):
#   NFTA_EXPR_NAME "counter\0"
#   NFTA_EXPR_DATA { NFTA_COUNTER_BYTES be64, NFTA_COUNTER_PACKETS be64 }
_COUNTER_NAME = b"counter\0"
_COUNTER_PATTERN = (
    NLATTR.pack(12, NFTA_EXPR_NAME)
    + _COUNTER_NAME
    + NLATTR.pack(28, NFTA_EXPR_DATA)
    + NLATTR.pack(12, NFTA_COUNTER_BYTES)
)
_PACKETS_HEADER = NLATTR.pack(12, NFTA_COUNTER_PACKETS)


def build_getrule_dump(
    seq: int, family: int, table: str | None = None, chain: str | None = None
) -> bytes:
    """GETRULE dump, optionally limited to one table (and one chain of it)."""
    attrs = b""
    if table is not None:
        attrs += encode_attr_str(NFTA_RULE_TABLE, table)
        if chain is not None:
            attrs += encode_attr_str(NFTA_RULE_CHAIN, chain)
    return build_request(T_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, family, attrs)


def find_rule_counter(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(packets, bytes) of the first ``counter`` expression in a rule's attributes, or None.

    ``start``/``end`` bound the rule's attributes. Fast path: one ``find`` of
    the counter expression's exact encoding; otherwise a walk of
    NFTA_RULE_EXPRESSIONS (e.g. with 64-bit padding attributes).
    """
    i = data.find(_COUNTER_PATTERN, start, end)
    if i >= 0 and i + 36 <= end and data.startswith(_PACKETS_HEADER, i + 28):
        nbytes, packets = _BE64_SKIP4_BE64.unpack_from(data, i + 20)
        return packets, nbytes
    if data.find(_COUNTER_NAME, start, end) < 0:
        return None
    exprs = core.find_attrs(data, start, end).get(NFTA_RULE_EXPRESSIONS)
    if exprs is None:
        return None
    pos, stop = exprs[0], exprs[0] + exprs[1]
    while pos + 4 <= stop:
        alen, atype = NLATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > stop:
            raise ValueError(f"malformed expression list at offset {pos}")
        if atype & NLA_TYPE_MASK == NFTA_LIST_ELEM:
            e = core.find_attrs(data, pos + 4, pos + alen)
            name = e.get(NFTA_EXPR_NAME)
            if name is not None and data[name[0] : name[0] + name[1]] == _COUNTER_NAME:
                span = e.get(NFTA_EXPR_DATA)
                if span is None:
                    return None
                packets, nbytes = parse_counters(data, span[0], span[0] + span[1])
                if packets is None or nbytes is None:
                    return None
                return packets, nbytes
        pos += align(alen)
    return None


def parse_rule_messages(
    data: bytes,
    out: list[RuleCounter],
    seq: int | None = None,
    names: dict[bytes, str] | None = None,
    spots: list[tuple[int, int, int]] | None = None,
) -> bool:
    """Append (table, chain, handle, packets, bytes) per NEWRULE message to ``out``.

    Returns True once NLMSG_DONE was seen. ``names`` caches decoded table and
    chain names across calls. ``spots``, when given, gets per NEWRULE message
    the offsets of the message, its handle and its counter expression (-1
    where the counter is not in the kernel's plain encoding): what a
    :class:`DumpLayout` is built from. Raises ``InterruptedError`` on
    NLM_F_DUMP_INTR and :class:`NetlinkError` on an NLMSG_ERROR.
    """
    if names is None:
        names = {}
    unpack_hdr = NLMSGHDR.unpack_from
    unpack_attr = NLATTR.unpack_from
    unpack_be64 = _BE64.unpack_from
    unpack_ctr = _BE64_SKIP4_BE64.unpack_from
    find = data.find
    startswith = data.startswith
    append = out.append
    pattern = _COUNTER_PATTERN
    pk_header = _PACKETS_HEADER
    prefix = b""  # the previous rule's table and chain attributes plus the handle's header
    ptable = pchain = ""
    off, n = 0, len(data)
    while off < n:
        if off + 16 > n:
            raise ValueError(f"truncated netlink header at offset {off}")
        mlen, mtype, mflags, mseq, _ = unpack_hdr(data, off)
        end = off + mlen
        if mlen < 16 or end > n:
            raise ValueError(f"malformed netlink message length {mlen} at offset {off}")
        if seq is not None and mseq != seq:
            off += (mlen + 3) & ~3
            continue
        if mflags & NLM_F_DUMP_INTR:
            raise InterruptedError("nf_tables dump interrupted by a ruleset change")
        if mtype == T_NEWRULE:
            if mlen < 20:
                raise ValueError(f"NEWRULE without nfgenmsg at offset {off}")
            a = off + 20
            if prefix and startswith(prefix, a) and a + len(prefix) + 8 <= end:
                # same table and chain attributes as the previous rule: handle follows
                table, chain = ptable, pchain
                a += len(prefix)
                hpos = a
                handle = unpack_be64(data, a)[0]
                a += 8
            else:
                table = chain = ""
                handle = hpos = -1
                seen = 0
                while a + 4 <= end:
                    alen, atype = unpack_attr(data, a)
                    if alen < 4 or a + alen > end:
                        raise ValueError(f"malformed netlink attribute at offset {a}")
                    atype &= NLA_TYPE_MASK
                    if atype in (NFTA_RULE_TABLE, NFTA_RULE_CHAIN):
                        raw = data[a + 4 : a + alen]
                        name = names.get(raw)
                        if name is None:
                            name = names[raw] = raw.split(b"\0", 1)[0].decode(errors="replace")
                        if atype == NFTA_RULE_TABLE:
                            table = name
                            seen |= 1 if seen == 0 else 4
                        else:
                            chain = name
                            seen |= 2 if seen == 1 else 4
                    elif atype == NFTA_RULE_HANDLE:
                        if alen >= 12:
                            hpos = a + 4
                            handle = unpack_be64(data, hpos)[0]
                            if seen == 3 and alen == 12:
                                prefix = data[off + 20 : a + 4]
                                ptable, pchain = table, chain
                        a += (alen + 3) & ~3
                        break
                    else:
                        seen |= 4
                    a += (alen + 3) & ~3
            i = find(pattern, a, end)
            if i >= 0 and startswith(pk_header, i + 28) and i + 36 <= end:
                nbytes, packets = unpack_ctr(data, i + 20)
                append((table, chain, handle, packets, nbytes))
                if spots is not None:
                    spots.append((off, hpos, i))
            else:
                if spots is not None:
                    spots.append((off, hpos, -1))
                ctr = find_rule_counter(data, off + 20, end)
                if ctr is None:
                    append((table, chain, handle, None, None))
                else:
                    append((table, chain, handle, ctr[0], ctr[1]))
        elif mtype == NLMSG_DONE:
            if (exc := core.done_error(data, off, mlen)) is not None:
                raise exc
            return True
        elif mtype == NLMSG_ERROR and (exc := core.error_of(data, off, mlen)) is not None:
            raise exc
        off += (mlen + 3) & ~3
    return False
