"""nfnetlink framing for nf_tables: message types, families, the nfgenmsg header.

Every nf_tables message is a netlink message (:mod:`exporter.netlink.core`)
whose type is ``NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`` and whose body starts
with a 4-byte ``nfgenmsg`` (family, version, resource id). Attribute payloads
are big endian.

Uapi: linux/include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from exporter.netlink import core
from exporter.netlink.core import Buffer

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10

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

NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big endian, unused here)
_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")


def build_request(
    msg_type: int, flags: int, seq: int, family: int = NFPROTO_UNSPEC, attrs: bytes = b""
) -> bytes:
    """One nfnetlink request: nlmsghdr + nfgenmsg + attributes."""
    return core.message(msg_type, flags, seq, NFGENMSG.pack(family, 0, 0) + attrs)


def encode_attr_str(attr_type: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return core.attr_str(attr_type, value)


def messages(
    data: Buffer, seq: int | None = None, *, raise_errors: bool = True
) -> Iterator[tuple[int, int, int, int]]:
    """:func:`core.messages`, refusing nf_tables messages without nfgenmsg."""
    for mtype, off, mlen, mseq in core.messages(data, seq, raise_errors=raise_errors):
        if mlen < 20 and mtype >> 8 == NFNL_SUBSYS_NFTABLES:
            raise ValueError(f"nf_tables message without nfgenmsg at offset {off}")
        yield mtype, off, mlen, mseq


def be32(data: Buffer, span: tuple[int, int] | None) -> int | None:
    """A big-endian u32 attribute at (payload offset, size); None if absent or short."""
    if span is None or span[1] < 4:
        return None
    return int(_BE32.unpack_from(data, span[0])[0])


def be64(data: Buffer, span: tuple[int, int] | None) -> int | None:
    """A big-endian u64 attribute at (payload offset, size); None if absent or short."""
    if span is None or span[1] < 8:
        return None
    return int(_BE64.unpack_from(data, span[0])[0])


def text(data: Buffer, span: tuple[int, int] | None) -> str:
    """A string attribute at (payload offset, size); "" if absent."""
    if span is None:
        return ""
    return core.string(data, *span)
