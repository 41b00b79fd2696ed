"""Raw NETLINK_NETFILTER client for nf_tables: generation, tables, chains, rule counters.

Read-only: it sends only GET requests (``NFT_MSG_GETGEN``, ``GETTABLE``,
``GETCHAIN``, ``GETRULE``; never the ``*_RESET`` variants, which zero
counters). pyroute2 decodes every attribute of every message, too slow for a
10k-rule dump each poll; here a rule message yields only (table, chain,
handle, packets, bytes), the counter found with one ``bytes.find`` of the
encoded ``counter`` expression. The ``parse_*`` functions are pure and take
received datagrams, so literal messages serve as test fixtures.

Uapi: linux/include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h.
Sockets belong to the network namespace of the process that opens them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300

NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFT_MSG_NEWCHAIN = 3
NFT_MSG_GETCHAIN = 4
NFT_MSG_NEWRULE = 6
NFT_MSG_GETRULE = 7
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16


def _msgtype(msg: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg


T_NEWTABLE = _msgtype(NFT_MSG_NEWTABLE)
T_GETTABLE = _msgtype(NFT_MSG_GETTABLE)
T_NEWCHAIN = _msgtype(NFT_MSG_NEWCHAIN)
T_GETCHAIN = _msgtype(NFT_MSG_GETCHAIN)
T_NEWRULE = _msgtype(NFT_MSG_NEWRULE)
T_GETRULE = _msgtype(NFT_MSG_GETRULE)
T_NEWGEN = _msgtype(NFT_MSG_NEWGEN)
T_GETGEN = _msgtype(NFT_MSG_GETGEN)

NFPROTO_UNSPEC = 0
NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_ARP = 3
NFPROTO_NETDEV = 5
NFPROTO_BRIDGE = 7
NFPROTO_IPV6 = 10

FAMILY_NAMES = {
    NFPROTO_INET: "inet",
    NFPROTO_IPV4: "ip",
    NFPROTO_ARP: "arp",
    NFPROTO_NETDEV: "netdev",
    NFPROTO_BRIDGE: "bridge",
    NFPROTO_IPV6: "ip6",
}
FAMILY_NUMBERS = {v: k for k, v in FAMILY_NAMES.items()}

NFTA_TABLE_NAME = 1
NFTA_TABLE_FLAGS = 2
NFTA_TABLE_USE = 3
NFTA_TABLE_HANDLE = 4

NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_HANDLE = 2
NFTA_CHAIN_NAME = 3
NFTA_CHAIN_HOOK = 4
NFTA_CHAIN_POLICY = 5
NFTA_CHAIN_USE = 6
NFTA_CHAIN_TYPE = 7
NFTA_CHAIN_COUNTERS = 8
NFTA_HOOK_HOOKNUM = 1
NFTA_HOOK_PRIORITY = 2
NFTA_HOOK_DEV = 3

NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NFTA_RULE_HANDLE = 3
NFTA_RULE_EXPRESSIONS = 4
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2

NFTA_GEN_ID = 1

NF_DROP = 0
NF_ACCEPT = 1

# Hook numbers by family (linux/netfilter.h, netfilter_bridge.h, netfilter_arp.h)
_INET_HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress")
HOOK_NAMES: dict[int, tuple[str, ...]] = {
    NFPROTO_INET: _INET_HOOKS,
    NFPROTO_IPV4: _INET_HOOKS,
    NFPROTO_IPV6: _INET_HOOKS,
    NFPROTO_BRIDGE: _INET_HOOKS[:5],
    NFPROTO_NETDEV: ("ingress", "egress"),
    NFPROTO_ARP: ("input", "output", "forward"),
}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big endian, unused here)
_NLATTR = struct.Struct("=HH")  # len, type (host order)
_ERRNO = struct.Struct("=i")
_BE32 = struct.Struct(">I")
_BE32S = struct.Struct(">i")
_BE64 = struct.Struct(">Q")
_BE64_SKIP4_BE64 = struct.Struct(">Q4xQ")
_NLA_TYPE_MASK = 0x3FFF

# An anonymous counter expression as the kernel encodes it (no 64-bit padding
# attributes, as on every arch with efficient unaligned access):
#   NFTA_EXPR_NAME "counter\0"
#   NFTA_EXPR_DATA { NFTA_COUNTER_BYTES be64, NFTA_COUNTER_PACKETS be64 }
_COUNTER_NAME = b"counter\0"
_COUNTER_PATTERN = (
    _NLATTR.pack(12, NFTA_EXPR_NAME)
    + _COUNTER_NAME
    + _NLATTR.pack(28, NFTA_EXPR_DATA)
    + _NLATTR.pack(12, NFTA_COUNTER_BYTES)
)
_PACKETS_HEADER = _NLATTR.pack(12, NFTA_COUNTER_PACKETS)

_RECV_SIZE = 1 << 16
_RCVBUF = 1 << 21
_RETRIES = 5

# (table, chain, handle, packets, bytes); packets/bytes None: the rule has no counter
RuleCounter = tuple[str, str, int, int | None, int | None]


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set).

    ``request`` names the request ("NFT_MSG_GETGEN", ...) once :class:`NftReader`
    has seen the error; "" from the pure parsers.
    """

    request: str = ""


@dataclass(frozen=True, slots=True)
class NftTableInfo:
    family: int  # NFPROTO_*
    name: str
    handle: int
    flags: int
    use: int  # number of chains, sets, objects in the table


@dataclass(frozen=True, slots=True)
class NftChainInfo:
    family: int
    table: str
    name: str
    handle: int
    hook: int | None  # base chains only (index into HOOK_NAMES[family])
    priority: int | None
    policy: int | None  # NF_ACCEPT / NF_DROP, base chains only
    type: str | None  # "filter", "nat", "route"; base chains only
    packets: int | None  # policy counters (NFTA_CHAIN_COUNTERS), when the chain has them
    bytes: int | None

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def hook_name(self) -> str | None:
        if self.hook is None:
            return None
        names = HOOK_NAMES.get(self.family, ())
        return names[self.hook] if self.hook < len(names) else str(self.hook)

    @property
    def policy_name(self) -> str | None:
        if self.policy is None:
            return None
        return {NF_ACCEPT: "accept", NF_DROP: "drop"}.get(self.policy, str(self.policy))


# --------------------------------------------------------------------------
# Encoding requests (pure)
# --------------------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def encode_attr_str(attr_type: int, value: str) -> bytes:
    data = value.encode() + b"\0"
    attr = _NLATTR.pack(4 + len(data), attr_type) + data
    return attr + b"\0" * (_align(len(attr)) - len(attr))


def build_request(
    msg_type: int, flags: int, seq: int, family: int = NFPROTO_UNSPEC, attrs: bytes = b""
) -> bytes:
    """One nfnetlink request: nlmsghdr + nfgenmsg + attributes."""
    body = _NFGENMSG.pack(family, 0, 0) + attrs
    return _NLMSGHDR.pack(16 + len(body), msg_type, flags, seq, 0) + body


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


def build_getchain(seq: int, family: int, table: str, chain: str) -> bytes:
    attrs = encode_attr_str(NFTA_CHAIN_TABLE, table) + encode_attr_str(NFTA_CHAIN_NAME, chain)
    return build_request(T_GETCHAIN, NLM_F_REQUEST, seq, family, attrs)


# --------------------------------------------------------------------------
# Parsing replies (pure)
# --------------------------------------------------------------------------


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute type -> (payload start, payload end), first occurrence wins."""
    found: dict[int, tuple[int, int]] = {}
    unpack = _NLATTR.unpack_from
    while start + 4 <= end:
        alen, atype = unpack(data, start)
        if alen < 4 or start + alen > end:
            raise ValueError(f"malformed netlink attribute at offset {start}")
        found.setdefault(atype & _NLA_TYPE_MASK, (start + 4, start + alen))
        start += _align(alen)
    return found


def _str(data: bytes, span: tuple[int, int] | None) -> str:
    if span is None:
        return ""
    raw = data[span[0] : span[1]]
    nul = raw.find(b"\0")
    return (raw if nul < 0 else raw[:nul]).decode(errors="replace")


def _check_header(data: bytes, off: int, n: int) -> tuple[int, int, int, int]:
    if off + 16 > n:
        raise ValueError(f"truncated netlink header at offset {off}")
    mlen, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, off)
    if mlen < 16 or off + mlen > n:
        raise ValueError(f"malformed netlink message length {mlen} at offset {off}")
    if mlen < 20 and mtype >> 8 == NFNL_SUBSYS_NFTABLES:
        raise ValueError(f"nf_tables message without nfgenmsg at offset {off}")
    return mlen, mtype, mflags, mseq


def _raise_error(data: bytes, off: int, mlen: int) -> None:
    """NLMSG_ERROR: raise unless it is an ACK (error 0)."""
    if mlen < 20:
        raise ValueError("truncated NLMSG_ERROR")
    (err,) = _ERRNO.unpack_from(data, off + 16)
    if err:
        raise NetlinkError(-err, os.strerror(-err))


def parse_gen_message(data: bytes, seq: int | None = None) -> int | None:
    """The generation id from a NEWGEN reply to GETGEN; None if ``data`` has no reply to ``seq``."""
    off, n = 0, len(data)
    while off < n:
        mlen, mtype, _flags, mseq = _check_header(data, off, n)
        if seq is None or mseq == seq:
            if mtype == NLMSG_ERROR:
                _raise_error(data, off, mlen)
            elif mtype == T_NEWGEN:
                span = _attrs(data, off + 20, off + mlen).get(NFTA_GEN_ID)
                if span is None or span[1] - span[0] < 4:
                    raise ValueError("NEWGEN without NFTA_GEN_ID")
                return int(_BE32.unpack_from(data, span[0])[0])
        off += _align(mlen)
    return None


def _parse_table_message(data: bytes, off: int, mlen: int) -> NftTableInfo:
    """One NEWTABLE message at ``off``."""
    a = _attrs(data, off + 20, off + mlen)
    return NftTableInfo(
        family=data[off + 16],
        name=_str(data, a.get(NFTA_TABLE_NAME)),
        handle=_be64(data, a.get(NFTA_TABLE_HANDLE)) or 0,
        flags=_be32(data, a.get(NFTA_TABLE_FLAGS)) or 0,
        use=_be32(data, a.get(NFTA_TABLE_USE)) or 0,
    )


def _parse_dump_messages(
    data: bytes,
    out: list[_T],
    seq: int | None,
    wanted: int,
    parse_one: Callable[[bytes, int, int], _T],
) -> bool:
    """Append ``parse_one`` of each ``wanted`` message to ``out``; True once NLMSG_DONE was seen."""
    off, n = 0, len(data)
    while off < n:
        mlen, mtype, mflags, mseq = _check_header(data, off, n)
        if seq is None or mseq == seq:
            if mflags & NLM_F_DUMP_INTR:
                raise InterruptedError("nf_tables dump interrupted by a ruleset change")
            if mtype == NLMSG_DONE:
                return True
            if mtype == NLMSG_ERROR:
                _raise_error(data, off, mlen)
            elif mtype == wanted:
                out.append(parse_one(data, off, mlen))
        off += _align(mlen)
    return False


def parse_table_messages(data: bytes, out: list[NftTableInfo], seq: int | None = None) -> bool:
    """Append the tables of NEWTABLE dump messages to ``out``; True once NLMSG_DONE was seen."""
    return _parse_dump_messages(data, out, seq, T_NEWTABLE, _parse_table_message)


def _be32(data: bytes, span: tuple[int, int] | None) -> int | None:
    if span is None or span[1] - span[0] < 4:
        return None
    return int(_BE32.unpack_from(data, span[0])[0])


def _be64(data: bytes, span: tuple[int, int] | None) -> int | None:
    if span is None or span[1] - span[0] < 8:
        return None
    return int(_BE64.unpack_from(data, span[0])[0])


def _parse_counters(data: bytes, start: int, end: int) -> tuple[int | None, int | None]:
    """Nested NFTA_COUNTER_* -> (packets, bytes)."""
    a = _attrs(data, start, end)
    return _be64(data, a.get(NFTA_COUNTER_PACKETS)), _be64(data, a.get(NFTA_COUNTER_BYTES))


def parse_chain_message(data: bytes, off: int, mlen: int) -> NftChainInfo:
    """One NEWCHAIN message at ``off``."""
    a = _attrs(data, off + 20, off + mlen)
    hook = priority = None
    if (span := a.get(NFTA_CHAIN_HOOK)) is not None:
        h = _attrs(data, span[0], span[1])
        hook = _be32(data, h.get(NFTA_HOOK_HOOKNUM))
        if (p := h.get(NFTA_HOOK_PRIORITY)) is not None and p[1] - p[0] >= 4:
            priority = int(_BE32S.unpack_from(data, p[0])[0])
    packets = nbytes = None
    if (span := a.get(NFTA_CHAIN_COUNTERS)) is not None:
        packets, nbytes = _parse_counters(data, span[0], span[1])
    ctype = a.get(NFTA_CHAIN_TYPE)
    return NftChainInfo(
        family=data[off + 16],
        table=_str(data, a.get(NFTA_CHAIN_TABLE)),
        name=_str(data, a.get(NFTA_CHAIN_NAME)),
        handle=_be64(data, a.get(NFTA_CHAIN_HANDLE)) or 0,
        hook=hook,
        priority=priority,
        policy=_be32(data, a.get(NFTA_CHAIN_POLICY)) if hook is not None else None,
        type=_str(data, ctype) if ctype is not None else None,
        packets=packets,
        bytes=nbytes,
    )


def parse_chain_messages(data: bytes, out: list[NftChainInfo], seq: int | None = None) -> bool:
    """Append the chains of NEWCHAIN messages to ``out``; True once NLMSG_DONE was seen."""
    return _parse_dump_messages(data, out, seq, T_NEWCHAIN, parse_chain_message)


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
    exprs = _attrs(data, start, end).get(NFTA_RULE_EXPRESSIONS)
    if exprs is None:
        return None
    pos, stop = exprs
    while pos + 4 <= stop:
        alen, atype = _NLATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > stop:
            raise ValueError(f"malformed expression list at offset {pos}")
        if atype & _NLA_TYPE_MASK == NFTA_LIST_ELEM:
            e = _attrs(data, pos + 4, pos + alen)
            name = e.get(NFTA_EXPR_NAME)
            if name is not None and data[name[0] : name[1]] == _COUNTER_NAME:
                span = e.get(NFTA_EXPR_DATA)
                if span is None:
                    return None
                packets, nbytes = _parse_counters(data, span[0], span[1])
                if packets is None or nbytes is None:
                    return None
                return packets, nbytes
        pos += _align(alen)
    return None


def parse_rule_messages(
    data: bytes,
    out: list[RuleCounter],
    seq: int | None = None,
    names: dict[bytes, str] | None = None,
) -> bool:
    """Append (table, chain, handle, packets, bytes) per NEWRULE message to ``out``.

    Returns True once NLMSG_DONE was seen. ``names`` caches decoded table and
    chain names across calls. Raises ``InterruptedError`` on NLM_F_DUMP_INTR
    and :class:`NetlinkError` on an NLMSG_ERROR.
    """
    if names is None:
        names = {}
    unpack_hdr = _NLMSGHDR.unpack_from
    unpack_attr = _NLATTR.unpack_from
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
                handle = unpack_be64(data, a)[0]
                a += 8
            else:
                table = chain = ""
                handle = -1
                seen = 0
                while a + 4 <= end:
                    alen, atype = unpack_attr(data, a)
                    if alen < 4 or a + alen > end:
                        raise ValueError(f"malformed netlink attribute at offset {a}")
                    atype &= _NLA_TYPE_MASK
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
                            handle = unpack_be64(data, a + 4)[0]
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
            else:
                ctr = find_rule_counter(data, off + 20, end)
                if ctr is None:
                    append((table, chain, handle, None, None))
                else:
                    append((table, chain, handle, ctr[0], ctr[1]))
        elif mtype == NLMSG_DONE:
            return True
        elif mtype == NLMSG_ERROR:
            _raise_error(data, off, mlen)
        off += (mlen + 3) & ~3
    return False


# --------------------------------------------------------------------------
# The socket (I/O)
# --------------------------------------------------------------------------


class NftReader:
    """A NETLINK_NETFILTER socket for read-only nf_tables queries.

    Opened lazily; any error closes it so the next call starts clean.
    Raises :class:`NetlinkError` (errno EPERM without CAP_NET_ADMIN).
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._names: dict[bytes, str] = {}

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            try:
                sock.bind((0, 0))
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        return self._seq

    def _retrying(self, request: str, run: Callable[[socket.socket, int], _T]) -> _T:
        """Run one ``request``/reply exchange; retry on an interrupted dump or ENOBUFS.

        A :class:`NetlinkError` carries the request's name.
        """
        for attempt in range(_RETRIES):
            try:
                return run(self._socket(), self._next_seq())
            except InterruptedError:
                self.close()
                if attempt == _RETRIES - 1:
                    raise
            except OSError as exc:
                self.close()
                if isinstance(exc, NetlinkError) and not exc.request:
                    exc.request = request
                if exc.errno != errno.ENOBUFS or attempt == _RETRIES - 1:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def generation(self) -> int:
        """The ruleset generation id (NFT_MSG_GETGEN); changes with every commit."""

        def run(sock: socket.socket, seq: int) -> int:
            sock.send(build_request(T_GETGEN, NLM_F_REQUEST, seq))
            while (gen := parse_gen_message(sock.recv(_RECV_SIZE), seq)) is None:
                pass
            return gen

        return self._retrying("NFT_MSG_GETGEN", run)

    def _dump(
        self,
        request: str,
        msg_type: int,
        family: int,
        parse: Callable[[bytes, list[_T], int], bool],
    ) -> list[_T]:
        """A ``msg_type`` dump (of ``family``), its replies read with ``parse``."""

        def run(sock: socket.socket, seq: int) -> list[_T]:
            out: list[_T] = []
            sock.send(build_request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, family))
            while not parse(sock.recv(_RECV_SIZE), out, seq):
                pass
            return out

        return self._retrying(request, run)

    def tables(self, family: int = NFPROTO_UNSPEC) -> list[NftTableInfo]:
        return self._dump("NFT_MSG_GETTABLE", T_GETTABLE, family, parse_table_messages)

    def chains(self, family: int = NFPROTO_UNSPEC) -> list[NftChainInfo]:
        """Every chain (of ``family``): a GETCHAIN dump."""
        return self._dump("NFT_MSG_GETCHAIN", T_GETCHAIN, family, parse_chain_messages)

    def chain_infos(self, keys: Sequence[tuple[int, str, str]]) -> list[NftChainInfo | None]:
        """GETCHAIN for each (family, table, chain), sent as one batch; None where absent."""
        if not keys:
            return []

        def run(sock: socket.socket, seq0: int) -> list[NftChainInfo | None]:
            seqs = [seq0 + i for i in range(len(keys))]
            self._seq = seqs[-1]
            sock.send(
                b"".join(
                    build_getchain(s, f, t, c) for s, (f, t, c) in zip(seqs, keys, strict=True)
                )
            )
            by_seq: dict[int, NftChainInfo | None] = {}
            wanted = set(seqs)
            while len(by_seq) < len(seqs):
                data = sock.recv(_RECV_SIZE)
                off, n = 0, len(data)
                while off < n:
                    mlen, mtype, _flags, mseq = _check_header(data, off, n)
                    if mseq in wanted:
                        if mtype == T_NEWCHAIN:
                            by_seq[mseq] = parse_chain_message(data, off, mlen)
                        elif mtype == NLMSG_ERROR:
                            try:
                                _raise_error(data, off, mlen)
                            except NetlinkError as exc:
                                if exc.errno != errno.ENOENT:
                                    raise
                            by_seq[mseq] = None
                    off += _align(mlen)
            return [by_seq[s] for s in seqs]

        return self._retrying("NFT_MSG_GETCHAIN", run)

    def rules(
        self, family: int, table: str | None = None, chain: str | None = None
    ) -> list[RuleCounter]:
        """A GETRULE dump (of one table, or one chain of it): per rule its counter."""
        names = self._names
        if len(names) > 100_000:
            names.clear()

        def run(sock: socket.socket, seq: int) -> list[RuleCounter]:
            out: list[RuleCounter] = []
            sock.send(build_getrule_dump(seq, family, table, chain))
            recv = sock.recv
            while not parse_rule_messages(recv(_RECV_SIZE), out, seq, names):
                pass
            return out

        return self._retrying("NFT_MSG_GETRULE", run)

    def has_rules(self, family: int, table: str) -> bool:
        """Whether ``table`` holds any rule: reads only the first datagram of its dump."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.bind((0, 0))
            seq = self._next_seq()
            sock.send(build_getrule_dump(seq, family, table))
            out: list[RuleCounter] = []
            while not out:
                if parse_rule_messages(sock.recv(_RECV_SIZE), out, seq, self._names):
                    break
            return bool(out)
        except NetlinkError as exc:
            exc.request = exc.request or "NFT_MSG_GETRULE"
            raise
        finally:
            sock.close()
