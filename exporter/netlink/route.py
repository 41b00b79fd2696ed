"""Raw rtnetlink (NETLINK_ROUTE): interface counters, topology, routes, namespace ids, events.

pyroute2 decodes every attribute of every message into objects (420 ms and
~30 MB that stay for a 1000-veth link dump); the exporter needs a handful of
attributes. ``RTM_GETSTATS`` with only ``IFLA_STATS_LINK_64`` requested returns
one small fixed-layout message per interface (:func:`parse_stats_messages`);
the link and route dumps are walked attribute by attribute, decoding only what
:class:`Link` and the routes need (:func:`parse_link_messages`,
:func:`parse_route_messages`). Parsers do no I/O, so captured dumps serve as
test fixtures; they raise ``ValueError`` on malformed input.

Sockets belong to the network namespace of the process that opens them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from exporter.model import Link, LinkStats

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTM_NEWNSID = 88
RTM_GETNSID = 90
RTM_NEWSTATS = 92
RTM_GETSTATS = 94

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_LINK_NETNSID = 37

IFF_LOOPBACK = 0x8
_LINK_ATTRS = frozenset(
    (IFLA_IFNAME, IFLA_ADDRESS, IFLA_OPERSTATE, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID,
     IFLA_LINKINFO)
)  # fmt: skip
# IF_OPER_* (uapi linux/if.h) by number, lower case
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
_ROUTE_ATTRS = frozenset((RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA))

NETNSA_NSID = 1
NETNSA_FD = 3

IFLA_STATS_LINK_64 = 1
STATS_FILTER_LINK_64 = 1 << (IFLA_STATS_LINK_64 - 1)

SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12

RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")  # len, type
_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad1, pad2, ifindex, filter_mask
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
# type, flags
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_RTGENMSG = struct.Struct("=B3x")  # family
_ERRNO = struct.Struct("=i")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
# struct rtnl_link_stats64 (uapi linux/if_link.h) starts with these eight u64:
# rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
_STATS64_HEAD = struct.Struct("=8Q")
# nlmsghdr + if_stats_msg + nlattr + the eight u64 above, in one unpack
_FAST_STATS = struct.Struct("=IHHII4xIIHH8Q")

_RECV_SIZE = 1 << 16
_RCVBUF = 1 << 20


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


Buffer = bytes | bytearray | memoryview


def _align(n: int) -> int:
    return (n + 3) & ~3


def _need(length: int, body: int, off: int, what: str) -> None:
    """Refuse a message too short for its fixed header (a clean error, never struct.error)."""
    if length < 16 + body:
        raise ValueError(f"truncated {what} at offset {off}: {length} bytes")


def _kernel_error(err: int) -> NetlinkError:
    """The NetlinkError for an NLMSG_ERROR's (negative) errno, whatever its value."""
    code = -err
    try:
        text = os.strerror(code)
    except (OverflowError, ValueError):
        text = f"Unknown error {code}"
    return NetlinkError(code, text)


def _messages(data: Buffer, seq: int | None) -> Iterator[tuple[int, int, int]]:
    """(type, offset, length) of each message of ``seq`` (of any when None).

    NLMSG_DONE is yielded like any other type; an NLMSG_ERROR carrying an errno
    raises :class:`NetlinkError` (an acknowledgement is skipped), an
    interrupted dump ``InterruptedError``, a message overrunning ``data``
    ``ValueError``. Bytes after the last whole header are ignored.
    """
    end = len(data)
    off = 0
    while off + 16 <= end:
        length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is None or mseq == seq:
            if flags & NLM_F_DUMP_INTR:
                raise InterruptedError("netlink dump interrupted by a concurrent change")
            if mtype == NLMSG_ERROR:
                _need(length, _ERRNO.size, off, "NLMSG_ERROR")
                (err,) = _ERRNO.unpack_from(data, off + 16)
                if err:
                    raise _kernel_error(err)
            else:
                yield mtype, off, length
        off += _align(length)


def _attrs(data: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flag bits, payload offset, payload size) of each attribute in [start, end)."""
    a = start
    while a + 4 <= end:
        alen, atype = _NLATTR.unpack_from(data, a)
        if alen < 4 or a + alen > end:
            raise ValueError(f"truncated netlink attribute at offset {a}")
        yield atype & 0x3FFF, a + 4, alen - 4
        a += (alen + 3) & ~3


def _find(data: Buffer, start: int, end: int, wanted: frozenset[int]) -> dict[int, tuple[int, int]]:
    """{type: (payload offset, size)} of the first attribute of each ``wanted`` type in
    [start, end); one quick pass, the rest skipped."""
    at: dict[int, tuple[int, int]] = {}
    unpack = _NLATTR.unpack_from
    a = start
    while a + 4 <= end:
        alen, atype = unpack(data, a)
        if alen < 4 or a + alen > end:
            raise ValueError(f"truncated netlink attribute at offset {a}")
        atype &= 0x3FFF
        if atype in wanted and atype not in at:
            at[atype] = (a + 4, alen - 4)
        a += (alen + 3) & ~3
    return at


def _u32(data: Buffer, off: int, size: int, what: str) -> int:
    if size < 4:
        raise ValueError(f"truncated {what}: {size} bytes")
    return int(_U32.unpack_from(data, off)[0])


def _string(data: Buffer, off: int, size: int) -> str:
    """A NUL-terminated string attribute (up to its first NUL; invalid UTF-8 replaced)."""
    return bytes(data[off : off + size]).split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_stats_messages(
    data: Buffer, seq: int | None = None, previous: Mapping[int, LinkStats] | None = None
) -> tuple[dict[int, LinkStats], bool]:
    """Turn received RTM_NEWSTATS messages into counters by ifindex.

    ``data`` is one or more netlink datagrams as received (concatenated).
    Returns the counters and whether NLMSG_DONE was seen. Messages whose
    sequence number differs from ``seq`` (when given) are ignored; an
    NLMSG_ERROR raises :class:`NetlinkError`; an interrupted dump
    (NLM_F_DUMP_INTR) raises ``InterruptedError`` so the caller retries.
    An interface whose counters equal those in ``previous`` gets that same
    object back (building a frozen dataclass costs more than parsing).
    """
    stats: dict[int, LinkStats] = {}
    done = False
    fast = _FAST_STATS.unpack_from
    fast_size = _FAST_STATS.size
    prev = previous or {}
    end = len(data)
    off = 0
    while off + 16 <= end:
        if off + fast_size <= end:
            # The usual message: header, if_stats_msg, IFLA_STATS_LINK_64 first.
            (length, mtype, flags, mseq, _pid, ifindex, _mask, alen, atype,
             rxp, txp, rxb, txb, rxe, txe, rxd, txd) = fast(data, off)  # fmt: skip
            if (
                mtype == RTM_NEWSTATS
                and atype & 0x3FFF == IFLA_STATS_LINK_64
                and alen >= 68
                and fast_size <= length
                and off + length <= end
                and not flags & NLM_F_DUMP_INTR
                and (seq is None or mseq == seq)
            ):
                old = prev.get(ifindex)
                if (
                    old is not None
                    and old.rx_packets == rxp
                    and old.tx_packets == txp
                    and old.rx_bytes == rxb
                    and old.tx_bytes == txb
                    and old.rx_errors == rxe
                    and old.tx_errors == txe
                    and old.rx_dropped == rxd
                    and old.tx_dropped == txd
                ):
                    stats[ifindex] = old
                else:
                    stats[ifindex] = LinkStats(rxb, rxp, rxe, rxd, txb, txp, txe, txd)
                off += (length + 3) & ~3
                continue
        length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is not None and mseq != seq:
            off += _align(length)
            continue
        if flags & NLM_F_DUMP_INTR:
            raise InterruptedError("netlink dump interrupted by a concurrent change")
        if mtype == NLMSG_DONE:
            done = True
        elif mtype == NLMSG_ERROR:
            _need(length, _ERRNO.size, off, "NLMSG_ERROR")
            (err,) = _ERRNO.unpack_from(data, off + 16)
            if err:
                raise _kernel_error(err)
        elif mtype == RTM_NEWSTATS:
            _need(length, _IF_STATS_MSG.size, off, "RTM_NEWSTATS")
            ifindex = _IF_STATS_MSG.unpack_from(data, off + 16)[3]
            a = off + 16 + _IF_STATS_MSG.size
            while a + 4 <= off + length:
                alen, atype = _NLATTR.unpack_from(data, a)
                if alen < 4:
                    break
                if (
                    atype & 0x3FFF == IFLA_STATS_LINK_64
                    and alen >= 4 + 64
                    and a + alen <= off + length
                ):
                    rxp, txp, rxb, txb, rxe, txe, rxd, txd = _STATS64_HEAD.unpack_from(data, a + 4)
                    stats[ifindex] = LinkStats(rxb, rxp, rxe, rxd, txb, txp, txe, txd)
                    break
                a += _align(alen)
        off += _align(length)
    return stats, done


def build_stats_request(seq: int) -> bytes:
    """An RTM_GETSTATS dump request for IFLA_STATS_LINK_64 of every interface."""
    body = _IF_STATS_MSG.pack(socket.AF_UNSPEC, 0, 0, 0, STATS_FILTER_LINK_64)
    hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + body


def _attr(atype: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def build_link_dump_request(seq: int, kind: str | None = None) -> bytes:
    """An RTM_GETLINK dump request, filtered by the kernel to one link kind when given."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0)
    if kind:
        body += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, kind.encode() + b"\0"))
    hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + body


def parse_link_names(data: Buffer, seq: int | None = None) -> tuple[dict[int, str], bool]:
    """RTM_NEWLINK messages -> {ifindex: name}, and whether NLMSG_DONE was seen."""
    names: dict[int, str] = {}
    done = False
    for mtype, off, length in _messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
        elif mtype == RTM_NEWLINK:
            _need(length, _IFINFOMSG.size, off, "RTM_NEWLINK")
            index = _IFINFOMSG.unpack_from(data, off + 16)[3]
            for atype, a, size in _attrs(data, off + 16 + _IFINFOMSG.size, off + length):
                if atype == IFLA_IFNAME:
                    names[index] = _string(data, a, size)
                    break
    return names, done


def parse_link_dump(data: Buffer, seq: int | None = None) -> tuple[dict[int, Link], bool]:
    """RTM_NEWLINK messages -> {ifindex: Link}, and whether NLMSG_DONE was seen.

    Decodes only IFLA_IFNAME, IFLA_LINKINFO/IFLA_INFO_KIND (missing or empty:
    "loopback" for IFF_LOOPBACK, else "physical"), IFLA_MASTER (0: none),
    IFLA_ADDRESS (hex bytes joined by ":"), IFLA_OPERSTATE (IF_OPER_* name),
    IFLA_LINK (none when it is the link's own index) and IFLA_LINK_NETNSID; of
    an attribute given twice the first counts. The values equal what pyroute2's
    decoding gives for the links a kernel reports.
    """
    links: dict[int, Link] = {}
    done = False
    kinds: dict[bytes, str] = {}
    for mtype, off, length in _messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
            continue
        if mtype != RTM_NEWLINK:
            continue
        _need(length, _IFINFOMSG.size, off, "RTM_NEWLINK")
        _family, _pad, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, off + 16)
        # where the wanted ones of its ~40 attributes are, then decode those alone
        at = _find(data, off + 16 + _IFINFOMSG.size, off + length, _LINK_ATTRS)
        name = mac = ""
        kind = ""
        operstate = "unknown"
        master = peer = 0
        netnsid: int | None = None
        if IFLA_IFNAME in at:
            name = _string(data, *at[IFLA_IFNAME])
        if IFLA_ADDRESS in at:
            a, size = at[IFLA_ADDRESS]
            mac = bytes(data[a : a + size]).hex(":")
        if IFLA_OPERSTATE in at:
            a, size = at[IFLA_OPERSTATE]
            if size < 1:
                raise ValueError("truncated IFLA_OPERSTATE")
            code = data[a]
            operstate = OPERSTATES[code] if code < len(OPERSTATES) else "unknown"
        if IFLA_MASTER in at:
            master = _u32(data, *at[IFLA_MASTER], "IFLA_MASTER")
        if IFLA_LINK in at:
            peer = _u32(data, *at[IFLA_LINK], "IFLA_LINK")
        if IFLA_LINK_NETNSID in at:
            a, size = at[IFLA_LINK_NETNSID]
            if size < 4:
                raise ValueError(f"truncated IFLA_LINK_NETNSID: {size} bytes")
            netnsid = int(_S32.unpack_from(data, a)[0])
        if IFLA_LINKINFO in at:
            a, size = at[IFLA_LINKINFO]
            for itype, i, isize in _attrs(data, a, a + size):
                if itype == IFLA_INFO_KIND:
                    raw = bytes(data[i : i + isize])
                    kind = kinds.get(raw) or kinds.setdefault(raw, _string(raw, 0, isize))
                    break
        if not kind:
            kind = "loopback" if flags & IFF_LOOPBACK else "physical"
        links[index] = Link(
            index=index,
            name=name,
            kind=kind,
            master=master or None,
            mac=mac,
            operstate=operstate,
            peer_index=peer if peer and peer != index else None,
            peer_netnsid=netnsid,
        )
    return links, done


def parse_link_messages(data: Buffer) -> list[Link]:
    """The Link of every RTM_NEWLINK message in ``data``, in order (see :func:`parse_link_dump`)."""
    return list(parse_link_dump(data)[0].values())


# (destination address or "", prefix length, table, route type, [(oif, gateway), ...])
RouteEntry = tuple[str, int, int, int, list[tuple[int | None, str]]]


def _address(family: int, data: Buffer, off: int, size: int) -> str:
    """An IPv4/IPv6 address attribute of a route of ``family``, as text."""
    want = 4 if family == socket.AF_INET else 16
    if size < want:
        raise ValueError(f"truncated address: {size} bytes for family {family}")
    return socket.inet_ntop(family, bytes(data[off : off + want]))


def _via(data: Buffer, off: int, size: int) -> str:
    """RTA_VIA (struct rtvia: u16 family, address) as text; hex for other families."""
    if size < 2:
        raise ValueError(f"truncated RTA_VIA: {size} bytes")
    (family,) = _U16.unpack_from(data, off)
    addr = bytes(data[off + 2 : off + size])
    if (family == socket.AF_INET and len(addr) == 4) or (
        family == socket.AF_INET6 and len(addr) == 16
    ):
        return socket.inet_ntop(family, addr)
    return addr.hex(":")


def _gateway(family: int, data: Buffer, at: dict[int, tuple[int, int]]) -> str:
    """RTA_GATEWAY, else RTA_VIA, else "" of one route or next hop."""
    if RTA_GATEWAY in at:
        return _address(family, data, *at[RTA_GATEWAY])
    if RTA_VIA in at:
        return _via(data, *at[RTA_VIA])
    return ""


def parse_route_dump(data: Buffer, seq: int | None = None) -> tuple[list[RouteEntry], bool]:
    """IPv4/IPv6 RTM_NEWROUTE messages -> route entries, and whether NLMSG_DONE was seen.

    Each entry holds the destination (RTA_DST as text, "" if none), the prefix
    length, the table (RTA_TABLE, else rtm_table), the route type and the next
    hops: each (ifindex, gateway) of RTA_MULTIPATH, else one of RTA_OIF (None if
    missing) and RTA_GATEWAY (else RTA_VIA as text, else ""). Of an attribute
    given twice the first counts. Routes of other address families are left out.
    """
    routes: list[RouteEntry] = []
    done = False
    for mtype, off, length in _messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
            continue
        if mtype != RTM_NEWROUTE:
            continue
        _need(length, _RTMSG.size, off, "RTM_NEWROUTE")
        family, dst_len, _src, _tos, rtm_table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(
            data, off + 16
        )
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        at = _find(data, off + 16 + _RTMSG.size, off + length, _ROUTE_ATTRS)
        dst = _address(family, data, *at[RTA_DST]) if RTA_DST in at else ""
        table = _u32(data, *at[RTA_TABLE], "RTA_TABLE") if RTA_TABLE in at else 0
        hops: list[tuple[int | None, str]] = []
        if RTA_MULTIPATH in at:
            h, size = at[RTA_MULTIPATH]
            stop = h + size
            while h + _RTNEXTHOP.size <= stop:
                rtnh_len, _nhflags, _hops, ifindex = _RTNEXTHOP.unpack_from(data, h)
                if rtnh_len < _RTNEXTHOP.size or h + rtnh_len > stop:
                    raise ValueError(f"truncated rtnexthop at offset {h}")
                hop = _find(data, h + _RTNEXTHOP.size, h + rtnh_len, _ROUTE_ATTRS)
                hops.append((ifindex, _gateway(family, data, hop)))
                h += (rtnh_len + 3) & ~3
        if not hops:
            oif = _u32(data, *at[RTA_OIF], "RTA_OIF") if RTA_OIF in at else None
            hops = [(oif, _gateway(family, data, at))]
        routes.append((dst, dst_len, table or rtm_table, rtype, hops))
    return routes, done


def parse_route_messages(data: Buffer) -> list[RouteEntry]:
    """The entry of every IPv4/IPv6 RTM_NEWROUTE message, in order (see
    :func:`parse_route_dump`)."""
    return parse_route_dump(data)[0]


def build_route_dump_request(seq: int, family: int, table: int = 0) -> bytes:
    """An RTM_GETROUTE dump request for the routes of one address family.

    With ``table``, an RTA_TABLE attribute asks for that table's routes alone;
    the kernel heeds it on a socket with NETLINK_GET_STRICT_CHK (Linux 4.20+)
    and sends every table otherwise.
    """
    body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    if table:
        body += _attr(RTA_TABLE, _U32.pack(table))
    hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + body


def build_nsid_request(seq: int, fd: int) -> bytes:
    """An RTM_GETNSID request: the id this namespace gives the namespace of file ``fd``."""
    body = _RTGENMSG.pack(socket.AF_UNSPEC) + _attr(NETNSA_FD, _U32.pack(fd))
    return _NLMSGHDR.pack(16 + len(body), RTM_GETNSID, NLM_F_REQUEST, seq, 0) + body


def parse_nsid_reply(data: Buffer, seq: int | None = None) -> tuple[int | None, bool]:
    """An RTM_NEWNSID reply -> (the id, or None if none is assigned; whether it was seen)."""
    for mtype, off, length in _messages(data, seq):
        if mtype != RTM_NEWNSID:
            continue
        _need(length, _RTGENMSG.size, off, "RTM_NEWNSID")
        for atype, a, size in _attrs(data, off + 16 + _RTGENMSG.size, off + length):
            if atype == NETNSA_NSID:
                if size < 4:
                    raise ValueError(f"truncated NETNSA_NSID: {size} bytes")
                nsid = int(_S32.unpack_from(data, a)[0])
                return (nsid if nsid >= 0 else None), True
        return None, True
    return None, False


_T = TypeVar("_T")
Parser = Callable[[Buffer, int], tuple[dict[int, _T], bool]]
ListParser = Callable[[Buffer, int], tuple[list[_T], bool]]
# Takes one received datagram and the request's seq; says whether the answer is complete.
_Consumer = Callable[[memoryview, int], bool]


def _retrying(attempt: Callable[[], _T], retries: int) -> _T:
    """``attempt()``, again up to ``retries`` times while a dump is interrupted."""
    for n in range(retries + 1):
        try:
            return attempt()
        except InterruptedError:
            if n == retries:
                raise
    raise AssertionError("unreachable")


class _Requester:
    """One NETLINK_ROUTE socket for request round trips, parsing each datagram as it arrives."""

    def __init__(self, timeout: float = 5.0, strict: bool = False) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._timeout = timeout
        self._strict = strict
        self._buf = bytearray(_RECV_SIZE)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, 0))
                sock.settimeout(self._timeout)
            except OSError:
                sock.close()
                raise
            if self._strict:  # dump filters heeded; older kernels: unfiltered dumps
                with contextlib.suppress(OSError):
                    sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            self._sock = sock
        return self._sock

    def dump(
        self, request: bytes, parse: Parser[_T], retries: int = 3, raw: list[bytes] | None = None
    ) -> dict[int, _T]:
        """Send a dump request (its seq field is set here) and merge the parsed replies.

        An interrupted dump is retried up to ``retries`` times. When ``raw`` is
        given, the received datagrams are appended to it.
        """
        return _retrying(lambda: self._dump_dict(request, parse, raw), retries)

    def dump_list(self, request: bytes, parse: ListParser[_T], retries: int = 3) -> list[_T]:
        """:meth:`dump` for a parser that returns lists: their items in order."""
        return _retrying(lambda: self._dump_list(request, parse), retries)

    def _dump_dict(
        self, request: bytes, parse: Parser[_T], raw: list[bytes] | None
    ) -> dict[int, _T]:
        result: dict[int, _T] = {}

        def merge(view: memoryview, seq: int) -> bool:
            part, done = parse(view, seq)
            result.update(part)
            return done

        self._round_trip(request, merge, raw)
        return result

    def _dump_list(self, request: bytes, parse: ListParser[_T]) -> list[_T]:
        result: list[_T] = []

        def extend(view: memoryview, seq: int) -> bool:
            part, done = parse(view, seq)
            result.extend(part)
            return done

        self._round_trip(request, extend, None)
        return result

    def _round_trip(self, request: bytes, consume: _Consumer, raw: list[bytes] | None) -> None:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        sock = self._socket()
        view = memoryview(self._buf)
        try:
            sock.send(request[:8] + struct.pack("=I", seq) + request[12:])
            while True:
                n = sock.recv_into(self._buf)
                if n == 0:
                    raise NetlinkError(errno.EIO, "netlink socket closed")
                if raw is not None:
                    raw.append(bytes(view[:n]))
                if consume(view[:n], seq):
                    return
        except BaseException:
            self.close()  # the rest of the answer would confuse the next round trip
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StatsReader:
    """Reads every interface's counters with one RTM_GETSTATS dump per call."""

    def __init__(self) -> None:
        self._req = _Requester()
        self._previous: dict[int, LinkStats] = {}
        self._request = build_stats_request(0)

    def _parse(self, data: Buffer, seq: int) -> tuple[dict[int, LinkStats], bool]:
        return parse_stats_messages(data, seq, self._previous)

    def read(self) -> dict[int, LinkStats]:
        """{ifindex: LinkStats} for every interface of this process's network namespace."""
        stats = self._req.dump(self._request, self._parse)
        self._previous = stats
        return stats

    def read_raw(self) -> bytes:
        """The received bytes of one dump (for capturing fixtures)."""
        raw: list[bytes] = []
        self._req.dump(self._request, self._parse, raw=raw)
        return b"".join(raw)

    def close(self) -> None:
        self._req.close()


def read_link_stats() -> dict[int, LinkStats]:
    """One-shot :meth:`StatsReader.read`."""
    reader = StatsReader()
    try:
        return reader.read()
    finally:
        reader.close()


def read_link_names(kind: str | None = None) -> dict[int, str]:
    """{ifindex: name} of the interfaces of one kind ("bridge", ...), or of all."""
    req = _Requester()
    try:
        return req.dump(build_link_dump_request(0, kind), parse_link_names)
    finally:
        req.close()


def read_link_dump_raw(kind: str | None = None) -> bytes:
    """The received bytes of one RTM_GETLINK dump (for capturing fixtures)."""
    req = _Requester()
    raw: list[bytes] = []
    try:
        req.dump(build_link_dump_request(0, kind), parse_link_names, raw=raw)
    finally:
        req.close()
    return b"".join(raw)


def read_links() -> list[Link]:
    """The Link of every interface of this process's network namespace, in ifindex order."""
    req = _Requester()
    try:
        return list(req.dump(build_link_dump_request(0), parse_link_dump).values())
    finally:
        req.close()


def read_route_entries(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6), table: int = 0
) -> list[RouteEntry]:
    """The route entries (:func:`parse_route_dump`), one dump per family.

    With ``table``, the kernel sends that table's routes alone where it can
    filter (see :func:`build_route_dump_request`): the caller still selects.
    """
    req = _Requester(strict=bool(table))
    try:
        return [
            entry
            for family in families
            for entry in req.dump_list(build_route_dump_request(0, family, table), parse_route_dump)
        ]
    finally:
        req.close()


def read_route_dump_raw(family: int) -> bytes:
    """The received bytes of one RTM_GETROUTE dump (for capturing fixtures)."""
    req = _Requester()
    raw: list[bytes] = []

    def keep(view: memoryview, seq: int) -> bool:
        return parse_route_dump(view, seq)[1]

    try:
        req._round_trip(build_route_dump_request(0, family), keep, raw)
    finally:
        req.close()
    return b"".join(raw)


def read_netnsid_of_fd(fd: int) -> int | None:
    """The id this process's network namespace gives the namespace of file ``fd``.

    None if none is assigned; :class:`NetlinkError` (an OSError) if the kernel
    refuses, e.g. EINVAL when ``fd`` is not a network namespace.
    """
    req = _Requester()
    found: list[int | None] = []

    def take(view: memoryview, seq: int) -> bool:
        nsid, seen = parse_nsid_reply(view, seq)
        if seen:
            found.append(nsid)
        return seen

    try:
        req._round_trip(build_nsid_request(0, fd), take, None)
    finally:
        req.close()
    return found[0]


class ChangeMonitor:
    """A non-blocking socket on rtnetlink multicast groups (default: link changes).

    :meth:`changed` drains it and says whether anything arrived since the last
    call, counting a receive-buffer overflow (ENOBUFS, events lost) as a change.
    Open it before the first full read so no change falls between the two.
    """

    def __init__(self, groups: int = RTMGRP_LINK, rcvbuf: int = _RCVBUF) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((0, groups))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._buf = bytearray(_RECV_SIZE)

    def changed(self) -> bool:
        """Drain pending notifications; True if there were any (or some were lost)."""
        sock = self._sock
        if sock is None:
            raise ValueError("monitor is closed")
        seen = False
        while True:
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                return seen
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    seen = True
                    continue
                raise
            if n >= 16:
                seen = True

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("monitor is closed")
        return self._sock.fileno()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
