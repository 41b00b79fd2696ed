"""Raw ctnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK): the conntrack table.

Read-only: it sends only GET requests (``IPCTNL_MSG_CT_GET_STATS``,
``IPCTNL_MSG_CT_GET_STATS_CPU``, ``IPCTNL_MSG_CT_GET`` dumps; never
``GET_CTRZERO``, which zeroes counters, nor NEW/DELETE). Three reads:

- :meth:`ConntrackReader.table`: the table's size (``CTA_STATS_GLOBAL_ENTRIES``)
  and limit (``CTA_STATS_GLOBAL_MAX_ENTRIES``, i.e. ``nf_conntrack_max``; from
  /proc/sys/net/netfilter when the kernel does not say it), one message;
- :meth:`ConntrackReader.events`: the per-CPU statistics summed over CPUs, the
  figures of ``conntrack -S`` (no /proc/net/stat/nf_conntrack needed);
- :meth:`ConntrackReader.dump`: the whole table, each entry cut down to a
  compact :data:`CtEntry`, handed to the caller one datagram's batch at a
  time (nothing is kept), with a bound on the entries read.

The ``parse_*`` functions are pure, take received datagrams and raise only
``ValueError`` on malformed input (plus the protocol's own outcomes: an
NLMSG_ERROR raises :class:`NetlinkError`, an interrupted dump
``InterruptedError``). Every ctnetlink request needs CAP_NET_ADMIN in the
namespace (nfnetlink checks it for each message).

Uapi: linux/netfilter/nfnetlink_conntrack.h, nf_conntrack_tcp.h, nfnetlink.h.
Sockets belong to the network namespace of the process that opens them.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
    NetlinkError,
)
from exporter.netlink.netfilter import NETLINK_NETFILTER, build_request

NFNL_SUBSYS_CTNETLINK = 1

IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_GET_STATS_CPU = 4
IPCTNL_MSG_CT_GET_STATS = 5

T_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
T_CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
T_CT_STATS_CPU = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU
T_CT_STATS = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_PROTOINFO = 4
# enum ctattr_tuple
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
# enum ctattr_ip
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
# enum ctattr_l4proto
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
# enum ctattr_protoinfo / ctattr_protoinfo_tcp
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
# enum ctattr_stats_global
CTA_STATS_GLOBAL_ENTRIES = 1
CTA_STATS_GLOBAL_MAX_ENTRIES = 2

# enum ctattr_stats_cpu -> the names `conntrack -S` prints (and the exporter's event label).
# SEARCHED, NEW, IGNORE, DELETE and DELETE_LIST are no longer filled by the kernel.
CTA_STATS_EVENTS: Mapping[int, str] = {
    2: "found",
    4: "invalid",
    8: "insert",
    9: "insert_failed",
    10: "drop",
    11: "early_drop",
    12: "error",
    13: "search_restart",
    14: "clash_resolve",
    15: "chaintoolong",
}
EVENTS: tuple[str, ...] = tuple(CTA_STATS_EVENTS.values())

IPPROTO_TCP = 6
IPPROTO_UDP = 17
# enum tcp_conntrack (nf_conntrack_tcp.h)
TCP_STATES = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)
TCP_ESTABLISHED = 3
NO_STATE = -1  # the entry is not TCP (or the kernel gave no TCP state)

# One conntrack entry, compact: (l4 protocol, orig src, orig dst, reply src, reply dst,
# orig dst port, TCP state, reply src port). Addresses are the packed bytes (4 for IPv4,
# 16 for IPv6); ports are 0 for protocols without ports; the state NO_STATE unless TCP.
# The reply source port is the port a DNATed connection reached (a Service's endpoint).
CtEntry = tuple[int, bytes, bytes, bytes, bytes, int, int, int]

_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_NLA_F_NESTED = 0x8000

# The kernel writes an IPv4 TCP/UDP/SCTP/DCCP entry's two tuples first, in one fixed
# shape (ctnetlink_dump_tuples): per direction
#   CTA_TUPLE_x { CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SRC_PORT, DST_PORT } }
# = 52 bytes. The fast path checks every attribute header of those 104 bytes at once
# (the bytes as an integer, the payload bits and the attribute flag bits masked off) and
# unpacks the payloads with one struct; any other shape (IPv6, ICMP, zones) takes the
# attribute walk.
_TUPLE_SHAPE = (
    (52, 0),  # CTA_TUPLE_ORIG/REPLY (type filled in below)
    (20, _NLA_F_NESTED | CTA_TUPLE_IP),
    (8, CTA_IP_V4_SRC),
    (None, 4),
    (8, CTA_IP_V4_DST),
    (None, 4),
    (28, _NLA_F_NESTED | CTA_TUPLE_PROTO),
    (5, CTA_PROTO_NUM),
    (None, 4),
    (6, CTA_PROTO_SRC_PORT),
    (None, 4),
    (6, CTA_PROTO_DST_PORT),
    (None, 4),
)


def _fast_template() -> tuple[int, int]:
    want = bytearray()
    mask = bytearray()
    for direction in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY):
        for i, (length, atype) in enumerate(_TUPLE_SHAPE):
            if length is None:
                want += bytes(atype)
                mask += bytes(atype)
            else:
                kind = direction if i == 0 else atype
                want += NLATTR.pack(length, kind & NLA_TYPE_MASK)
                # the flag bits (NLA_F_NESTED, set by kernels since 5.2) left out
                mask += NLATTR.pack(0xFFFF, NLA_TYPE_MASK)
    return int.from_bytes(want, "little"), int.from_bytes(mask, "little")


_FAST_WANT, _FAST_MASK = _fast_template()
_FAST_SIZE = 104
# orig src, orig dst, l4 protocol, orig dst port, reply src, reply dst, reply src port
_FAST = struct.Struct(">12x4s4x4s8xB15xH2x12x4s4x4s16xH10x")

_RCVBUF = 1 << 20

PROC_SYS = Path("/proc/sys/net/netfilter")


@dataclass(frozen=True, slots=True)
class TableInfo:
    entries: int  # entries in the table now
    limit: int | None  # nf_conntrack_max; None if the kernel did not say it


# --------------------------------------------------------------------------
# Requests (pure)
# --------------------------------------------------------------------------


def build_stats_request(seq: int) -> bytes:
    """IPCTNL_MSG_CT_GET_STATS: the table's size and limit, one reply."""
    return build_request(T_CT_STATS, NLM_F_REQUEST, seq, AF_UNSPEC)


def build_stats_cpu_request(seq: int) -> bytes:
    """IPCTNL_MSG_CT_GET_STATS_CPU: a dump, one message per possible CPU."""
    return build_request(T_CT_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, seq, AF_UNSPEC)


def build_dump_request(seq: int, family: int = AF_UNSPEC) -> bytes:
    """IPCTNL_MSG_CT_GET with NLM_F_DUMP: every entry (of ``family``; AF_UNSPEC: all)."""
    return build_request(T_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family)


# --------------------------------------------------------------------------
# Parsing replies (pure)
# --------------------------------------------------------------------------


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute type -> (payload start, payload end) in [start, end); first one wins."""
    return {t: (off, off + size) for t, (off, size) in core.find_attrs(data, start, end).items()}


def _be32(data: bytes, span: tuple[int, int], what: str) -> int:
    if span[1] - span[0] < 4:
        raise ValueError(f"truncated {what}: {span[1] - span[0]} bytes")
    return int(_BE32.unpack_from(data, span[0])[0])


def _reply_messages(
    data: bytes, seq: int | None, wanted: int
) -> tuple[list[tuple[int, int]], bool]:
    """(offset, length) of each ``wanted`` message of ``seq``; whether NLMSG_DONE was seen."""
    out: list[tuple[int, int]] = []
    for mtype, off, mlen, _seq in core.messages(data, seq):
        if mtype == NLMSG_DONE:
            return out, True
        if mtype == wanted:
            if mlen < 20:
                raise ValueError(f"ctnetlink message without nfgenmsg at offset {off}")
            out.append((off, mlen))
    return out, False


def parse_stats_reply(data: bytes, seq: int | None = None) -> TableInfo | None:
    """The reply to IPCTNL_MSG_CT_GET_STATS; None if ``data`` holds no reply to ``seq``."""
    msgs, _done = _reply_messages(data, seq, T_CT_STATS)
    if not msgs:
        return None
    off, mlen = msgs[0]
    a = _attrs(data, off + 20, off + mlen)
    span = a.get(CTA_STATS_GLOBAL_ENTRIES)
    if span is None:
        raise ValueError("IPCTNL_MSG_CT_GET_STATS reply without CTA_STATS_GLOBAL_ENTRIES")
    entries = _be32(data, span, "CTA_STATS_GLOBAL_ENTRIES")
    mspan = a.get(CTA_STATS_GLOBAL_MAX_ENTRIES)
    limit = None if mspan is None else _be32(data, mspan, "CTA_STATS_GLOBAL_MAX_ENTRIES")
    return TableInfo(entries, limit)


def parse_stats_cpu_messages(data: bytes, totals: dict[str, int], seq: int | None = None) -> bool:
    """Add each per-CPU statistics message's counters to ``totals`` (by event name).

    Returns True once NLMSG_DONE was seen. Counters the kernel does not send
    (older kernels lack clash_resolve, chaintoolong) are left out of ``totals``.
    """
    msgs, done = _reply_messages(data, seq, T_CT_STATS_CPU)
    for off, mlen in msgs:
        for atype, span in _attrs(data, off + 20, off + mlen).items():
            name = CTA_STATS_EVENTS.get(atype)
            if name is not None:
                totals[name] = totals.get(name, 0) + _be32(data, span, f"CTA_STATS {name}")
    return done


def _parse_tuple(data: bytes, start: int, end: int) -> tuple[bytes, bytes, int, int, int]:
    """A CTA_TUPLE_* nest -> (src, dst, l4 protocol, dst port, src port); protocol -1 if absent."""
    src = dst = b""
    proto = -1
    dport = sport = 0
    a = _attrs(data, start, end)
    if (ip := a.get(CTA_TUPLE_IP)) is not None:
        for atype, (s, e) in _attrs(data, ip[0], ip[1]).items():
            if atype in (CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST):
                size = 4 if atype <= CTA_IP_V4_DST else 16
                if e - s != size:
                    raise ValueError(f"conntrack address of {e - s} bytes (want {size})")
                if atype in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    src = data[s:e]
                else:
                    dst = data[s:e]
    if (l4 := a.get(CTA_TUPLE_PROTO)) is not None:
        p = _attrs(data, l4[0], l4[1])
        if (num := p.get(CTA_PROTO_NUM)) is not None:
            if num[1] <= num[0]:
                raise ValueError("empty CTA_PROTO_NUM")
            proto = data[num[0]]
        if (port := p.get(CTA_PROTO_DST_PORT)) is not None:
            if port[1] - port[0] < 2:
                raise ValueError("truncated CTA_PROTO_DST_PORT")
            dport = int(_BE16.unpack_from(data, port[0])[0])
        if (port := p.get(CTA_PROTO_SRC_PORT)) is not None:
            if port[1] - port[0] < 2:
                raise ValueError("truncated CTA_PROTO_SRC_PORT")
            sport = int(_BE16.unpack_from(data, port[0])[0])
    return bytes(src), bytes(dst), proto, dport, sport


def _tcp_state(data: bytes, start: int, end: int) -> int:
    """The TCP state in the CTA_PROTOINFO among the attributes in [start, end), or NO_STATE."""
    unpack = NLATTR.unpack_from
    a = start
    while a + 4 <= end:
        alen, atype = unpack(data, a)
        if alen < 4 or a + alen > end:
            raise ValueError(f"malformed netlink attribute at offset {a}")
        if atype & NLA_TYPE_MASK == CTA_PROTOINFO:
            tcp = _attrs(data, a + 4, a + alen).get(CTA_PROTOINFO_TCP)
            if tcp is None:
                return NO_STATE
            state = _attrs(data, tcp[0], tcp[1]).get(CTA_PROTOINFO_TCP_STATE)
            if state is None or state[1] <= state[0]:
                return NO_STATE
            return data[state[0]]
        a += (alen + 3) & ~3
    return NO_STATE


def parse_entry(data: bytes, off: int, mlen: int) -> CtEntry:
    """One IPCTNL_MSG_CT_NEW message at ``off`` (of length ``mlen``) -> a compact entry."""
    end = off + mlen
    a = off + 20
    if a + _FAST_SIZE <= end and (
        int.from_bytes(data[a : a + _FAST_SIZE], "little") & _FAST_MASK == _FAST_WANT
    ):
        osrc, odst, proto, dport, rsrc, rdst, rsport = _FAST.unpack_from(data, a)
        state = _tcp_state(data, a + _FAST_SIZE, end) if proto == IPPROTO_TCP else NO_STATE
        return proto, osrc, odst, rsrc, rdst, dport, state, rsport
    top = _attrs(data, a, end)
    orig = top.get(CTA_TUPLE_ORIG)
    reply = top.get(CTA_TUPLE_REPLY)
    if orig is None or reply is None:
        raise ValueError(f"conntrack entry without its tuples at offset {off}")
    osrc, odst, proto, dport, _osport = _parse_tuple(data, orig[0], orig[1])
    rsrc, rdst, _rproto, _rdport, rsport = _parse_tuple(data, reply[0], reply[1])
    if not osrc or not odst or not rsrc or not rdst:
        raise ValueError(f"conntrack entry without its addresses at offset {off}")
    state = NO_STATE
    if proto == IPPROTO_TCP and (info := top.get(CTA_PROTOINFO)) is not None:
        state = _tcp_state(data, info[0] - 4, info[1])
    return proto, osrc, odst, rsrc, rdst, dport, state, rsport


def parse_ct_messages(data: bytes, out: list[CtEntry], seq: int | None = None) -> bool:
    """Append a :data:`CtEntry` per IPCTNL_MSG_CT_NEW message of a dump datagram to ``out``.

    Returns True once NLMSG_DONE was seen.
    """
    unpack_hdr = NLMSGHDR.unpack_from
    append = out.append
    off, n = 0, len(data)
    while off < n:
        if off + 16 > n:
            raise ValueError(f"truncated netlink header at offset {off}")
        mlen, mtype, mflags, mseq, _pid = unpack_hdr(data, off)
        if mlen < 16 or off + mlen > n:
            raise ValueError(f"malformed netlink message length {mlen} at offset {off}")
        if seq is None or mseq == seq:
            if mtype == T_CT_NEW:
                if mlen < 20:
                    raise ValueError(f"ctnetlink message without nfgenmsg at offset {off}")
                append(parse_entry(data, off, mlen))
            elif mtype == NLMSG_DONE:
                if (err := core.done_error(data, off, mlen)) is not None:
                    raise err
                return True
            elif mtype == NLMSG_ERROR and (err := core.error_of(data, off, mlen)) is not None:
                raise err
            if mflags & NLM_F_DUMP_INTR:
                raise InterruptedError("conntrack dump interrupted")
        off += (mlen + 3) & ~3
    return False


# --------------------------------------------------------------------------
# Sums over entries (pure)
# --------------------------------------------------------------------------

# (orig src, reply src) -> entries
SourcePairs = dict[tuple[bytes, bytes], int]
# (l4 protocol, orig dst, orig dst port, reply src, reply src port) -> entries
ActiveKeys = dict[tuple[int, bytes, int, bytes, int], int]


def add_entries(entries: list[CtEntry], pairs: SourcePairs, active: ActiveKeys | None) -> None:
    """Count ``entries`` into ``pairs`` (every entry) and ``active`` (TCP ESTABLISHED, all UDP).

    The two sums are what attribution (by source address) and the services'
    active connections (by original destination and the replying endpoint)
    need. ``pairs`` stays small on a large table (one key per talking pair);
    ``active`` has a key per destination port too, so it is kept only when
    asked for (``active`` not None).
    """
    get = pairs.get
    if active is None:
        for entry in entries:
            key = (entry[1], entry[3])
            pairs[key] = get(key, 0) + 1
        return
    for proto, osrc, odst, rsrc, _rdst, dport, state, rsport in entries:
        key = (osrc, rsrc)
        pairs[key] = get(key, 0) + 1
        if (proto == IPPROTO_TCP and state == TCP_ESTABLISHED) or proto == IPPROTO_UDP:
            akey = (proto, odst, dport, rsrc, rsport)
            active[akey] = active.get(akey, 0) + 1


@dataclass(frozen=True, slots=True)
class DumpResult:
    entries: int  # entries read (at most the bound)
    truncated: bool  # the bound was hit: the table holds more than was read
    pairs: SourcePairs
    active: ActiveKeys


# --------------------------------------------------------------------------
# The socket (I/O)
# --------------------------------------------------------------------------


def read_proc_value(name: str, root: Path = PROC_SYS) -> int | None:
    """An integer from /proc/sys/net/netfilter/NAME, or None if unreadable."""
    try:
        return int((root / name).read_text().strip())
    except (OSError, ValueError):
        return None


class ConntrackReader:
    """ctnetlink reads of the namespace this process runs in.

    Raises :class:`NetlinkError` with ``request`` set (errno EPERM without
    CAP_NET_ADMIN; EOPNOTSUPP or ENOENT where nf_conntrack_netlink is absent).
    Any error closes the socket, so the next call starts clean.
    """

    def __init__(self) -> None:
        self._nl = core.NetlinkSocket(NETLINK_NETFILTER, rcvbuf=_RCVBUF)

    def close(self) -> None:
        self._nl.close()

    def table(self) -> TableInfo:
        """The table's size and limit (limit from /proc when the kernel does not send it)."""

        def run(sock: socket.socket, seq: int) -> TableInfo:
            sock.send(build_stats_request(seq))
            got: list[TableInfo] = []

            def consume(data: bytes) -> bool:
                info = parse_stats_reply(data, seq)
                if info is not None:
                    got.append(info)
                return bool(got)

            core.receive(sock, consume)
            return got[0]

        info = self._nl.exchange("IPCTNL_MSG_CT_GET_STATS", run)
        if info.limit is None:
            return TableInfo(info.entries, read_proc_value("nf_conntrack_max"))
        return info

    def events(self) -> dict[str, int]:
        """The per-CPU statistics summed over CPUs, by event name (``conntrack -S``)."""

        def run(sock: socket.socket, seq: int) -> dict[str, int]:
            totals: dict[str, int] = {}
            sock.send(build_stats_cpu_request(seq))
            core.receive(sock, lambda data: parse_stats_cpu_messages(data, totals, seq))
            return totals

        return self._nl.exchange("IPCTNL_MSG_CT_GET_STATS_CPU", run)

    def dump(
        self,
        visit: Callable[[list[CtEntry]], None],
        max_entries: int,
        family: int = AF_UNSPEC,
    ) -> tuple[int, bool]:
        """Dump the table, calling ``visit`` with each datagram's entries (at most ``max_entries``
        in all). Returns (entries read, whether the bound stopped the dump).

        The dump runs on a socket of its own, closed at the end: a dump
        stopped at the bound leaves nothing behind on the reader's socket.
        """
        sock = core.open_socket(NETLINK_NETFILTER, rcvbuf=_RCVBUF)
        try:
            seq = self._nl.next_seq()
            sock.send(build_dump_request(seq, family))
            read = 0
            recv = sock.recv
            while True:
                batch: list[CtEntry] = []
                data = recv(core.RECV_SIZE)
                if not data:
                    raise NetlinkError(errno.EIO, "netlink socket closed")
                done = parse_ct_messages(data, batch, seq)
                room = max_entries - read
                if len(batch) > room:
                    del batch[room:]
                    visit(batch)
                    return max_entries, True
                if batch:
                    visit(batch)
                    read += len(batch)
                if done:
                    return read, False
        except NetlinkError as exc:
            exc.request = exc.request or "IPCTNL_MSG_CT_GET"
            raise
        finally:
            sock.close()

    def dump_sums(self, max_entries: int, active: bool = False) -> DumpResult:
        """A dump counted into (orig src, reply src) pairs and, if ``active``, active
        connection keys (else ``DumpResult.active`` stays empty)."""
        pairs: SourcePairs = {}
        keys: ActiveKeys | None = {} if active else None
        read, truncated = self.dump(lambda batch: add_entries(batch, pairs, keys), max_entries)
        return DumpResult(read, truncated, pairs, keys or {})
