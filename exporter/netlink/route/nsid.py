"""RTM_GETNSID: the id this network namespace gives another one."""

from __future__ import annotations

import socket
import struct

from exporter.netlink import core
from exporter.netlink.core import NLM_F_REQUEST, Buffer, attr, need, s32
from exporter.netlink.route.requester import Requester

RTM_NEWNSID = 88
RTM_GETNSID = 90
NETNSA_NSID = 1
NETNSA_FD = 3

_RTGENMSG = struct.Struct("=B3x")  # family
_U32 = struct.Struct("=I")


def build_nsid_request(seq: int, fd: int) -> bytes:
    """An RTM_GETNSID request: the id this namespace gives the namespace of file ``fd``."""
    body = _RTGENMSG.pack(socket.AF_UNSPEC) + attr(NETNSA_FD, _U32.pack(fd))
    return core.message(RTM_GETNSID, NLM_F_REQUEST, seq, body)


def parse_nsid_reply(data: Buffer, seq: int | None = None) -> tuple[int | None, bool]:
    """An RTM_NEWNSID reply -> (the id, or None if none is assigned; whether it was seen)."""
    for mtype, off, length, _seq in core.messages(data, seq):
        if mtype != RTM_NEWNSID:
            continue
        need(length, _RTGENMSG.size, off, "RTM_NEWNSID")
        for atype, a, size in core.attrs(data, off + 16 + _RTGENMSG.size, off + length):
            if atype == NETNSA_NSID:
                nsid = s32(data, a, size, "NETNSA_NSID")
                return (nsid if nsid >= 0 else None), True
        return None, True
    return None, False


def read_netnsid_of_fd(fd: int) -> int | None:
    """The id this process's network namespace gives the namespace of file ``fd``.

    None if none is assigned; :class:`NetlinkError` (an OSError) if the kernel
    refuses, e.g. EINVAL when ``fd`` is not a network namespace.
    """
    req = Requester()
    found: list[int | None] = []

    def take(view: memoryview, seq: int) -> bool:
        nsid, seen = parse_nsid_reply(view, seq)
        if seen:
            found.append(nsid)
        return seen

    try:
        req.round_trip(build_nsid_request(0, fd), take, None)
    finally:
        req.close()
    return found[0]
