"""RTM_GETROUTE: the IPv4/IPv6 routes, decoded only as far as the path view needs."""

from __future__ import annotations

import socket
import struct

from exporter.netlink import core
from exporter.netlink.core import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    Buffer,
    attr,
    find_attrs,
    need,
    u32,
)
from exporter.netlink.route.requester import Requester

RTM_NEWROUTE = 24
RTM_GETROUTE = 26

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
_ROUTE_ATTRS = frozenset((RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA))

_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
# type, flags
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")

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
    for mtype, off, length, _seq in core.messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
            continue
        if mtype != RTM_NEWROUTE:
            continue
        need(length, _RTMSG.size, off, "RTM_NEWROUTE")
        family, dst_len, _src, _tos, rtm_table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(
            data, off + 16
        )
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        at = find_attrs(data, off + 16 + _RTMSG.size, off + length, _ROUTE_ATTRS)
        dst = _address(family, data, *at[RTA_DST]) if RTA_DST in at else ""
        table = u32(data, *at[RTA_TABLE], "RTA_TABLE") if RTA_TABLE in at else 0
        hops: list[tuple[int | None, str]] = []
        if RTA_MULTIPATH in at:
            h, size = at[RTA_MULTIPATH]
            stop = h + size
            while h + _RTNEXTHOP.size <= stop:
                rtnh_len, _nhflags, _hops, ifindex = _RTNEXTHOP.unpack_from(data, h)
                if rtnh_len < _RTNEXTHOP.size or h + rtnh_len > stop:
                    raise ValueError(f"truncated rtnexthop at offset {h}")
                hop = find_attrs(data, h + _RTNEXTHOP.size, h + rtnh_len, _ROUTE_ATTRS)
                hops.append((ifindex, _gateway(family, data, hop)))
                h += (rtnh_len + 3) & ~3
        if not hops:
            oif = u32(data, *at[RTA_OIF], "RTA_OIF") if RTA_OIF in at else None
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
        body += attr(RTA_TABLE, _U32.pack(table))
    return core.message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def read_route_entries(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6), table: int = 0
) -> list[RouteEntry]:
    """The route entries (:func:`parse_route_dump`), one dump per family.

    With ``table``, the kernel sends that table's routes alone where it can
    filter (see :func:`build_route_dump_request`): the caller still selects.
    """
    req = Requester(strict=bool(table))
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
    req = Requester()
    raw: list[bytes] = []

    def keep(view: memoryview, seq: int) -> bool:
        return parse_route_dump(view, seq)[1]

    try:
        req.round_trip(build_route_dump_request(0, family), keep, raw)
    finally:
        req.close()
    return b"".join(raw)
