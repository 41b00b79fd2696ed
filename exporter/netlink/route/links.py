"""RTM_GETLINK: the interfaces of a namespace, walked attribute by attribute.

The link dump is decoded only as far as :class:`Link` needs (a handful of
its ~40 attributes per link); the values equal what pyroute2's decoding gives.
"""

from __future__ import annotations

import socket
import struct

from exporter.model import Link
from exporter.netlink import core
from exporter.netlink.core import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    Buffer,
    attr,
    find_attrs,
    need,
    s32,
    string,
    u32,
)
from exporter.netlink.route.requester import Requester

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_LINK_NETNSID = 37
IFLA_TARGET_NETNSID = 46

IFF_LOOPBACK = 0x8
_LINK_ATTRS = frozenset(
    (IFLA_IFNAME, IFLA_ADDRESS, IFLA_OPERSTATE, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID,
     IFLA_LINKINFO)
)  # fmt: skip
# IF_OPER_* (uapi linux/if.h) by number, lower case
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_S32 = struct.Struct("=i")


def build_link_dump_request(seq: int, kind: str | None = None, netnsid: int | None = None) -> bytes:
    """An RTM_GETLINK dump request, filtered by the kernel to one link kind when given.

    With ``netnsid``, the links of the namespace this one knows by that id
    (IFLA_TARGET_NETNSID, Linux 4.20+): no namespace is entered.
    """
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0)
    if kind:
        body += attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, kind.encode() + b"\0"))
    if netnsid is not None:
        body += attr(IFLA_TARGET_NETNSID, _S32.pack(netnsid))
    return core.message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def parse_link_names(data: Buffer, seq: int | None = None) -> tuple[dict[int, str], bool]:
    """RTM_NEWLINK messages -> {ifindex: name}, and whether NLMSG_DONE was seen."""
    names: dict[int, str] = {}
    done = False
    for mtype, off, length, _seq in core.messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
        elif mtype == RTM_NEWLINK:
            need(length, _IFINFOMSG.size, off, "RTM_NEWLINK")
            index = _IFINFOMSG.unpack_from(data, off + 16)[3]
            for atype, a, size in core.attrs(data, off + 16 + _IFINFOMSG.size, off + length):
                if atype == IFLA_IFNAME:
                    names[index] = string(data, a, size)
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
    for mtype, off, length, _seq in core.messages(data, seq):
        if mtype == NLMSG_DONE:
            done = True
            continue
        if mtype != RTM_NEWLINK:
            continue
        need(length, _IFINFOMSG.size, off, "RTM_NEWLINK")
        _family, _pad, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, off + 16)
        # where the wanted ones of its ~40 attributes are, then decode those alone
        at = find_attrs(data, off + 16 + _IFINFOMSG.size, off + length, _LINK_ATTRS)
        name = mac = ""
        kind = ""
        operstate = "unknown"
        master = peer = 0
        netnsid: int | None = None
        if IFLA_IFNAME in at:
            name = string(data, *at[IFLA_IFNAME])
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
            master = u32(data, *at[IFLA_MASTER], "IFLA_MASTER")
        if IFLA_LINK in at:
            peer = u32(data, *at[IFLA_LINK], "IFLA_LINK")
        if IFLA_LINK_NETNSID in at:
            netnsid = s32(data, *at[IFLA_LINK_NETNSID], "IFLA_LINK_NETNSID")
        if IFLA_LINKINFO in at:
            a, size = at[IFLA_LINKINFO]
            for itype, i, isize in core.attrs(data, a, a + size):
                if itype == IFLA_INFO_KIND:
                    raw = bytes(data[i : i + isize])
                    kind = kinds.get(raw) or kinds.setdefault(raw, string(raw, 0, isize))
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


def read_link_names(
    kind: str | None = None, *, netnsid: int | None = None, timeout: float = 5.0
) -> dict[int, str]:
    """{ifindex: name} of the interfaces of one kind ("bridge", ...), or of all.

    With ``netnsid``: of the namespace this one knows by that id, read with one
    RTM_GETLINK dump with IFLA_TARGET_NETNSID (no namespace is entered).
    """
    req = Requester(timeout)
    try:
        return req.dump(build_link_dump_request(0, kind, netnsid), parse_link_names)
    finally:
        req.close()


def read_link_dump_raw(kind: str | None = None) -> bytes:
    """The received bytes of one RTM_GETLINK dump (for capturing fixtures)."""
    req = Requester()
    raw: list[bytes] = []
    try:
        req.dump(build_link_dump_request(0, kind), parse_link_names, raw=raw)
    finally:
        req.close()
    return b"".join(raw)


def read_links() -> list[Link]:
    """The Link of every interface of this process's network namespace, in ifindex order."""
    req = Requester()
    try:
        return list(req.dump(build_link_dump_request(0), parse_link_dump).values())
    finally:
        req.close()
