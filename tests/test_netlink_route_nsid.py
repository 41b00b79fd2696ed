"""Pure tests of RTM_GETNSID (exporter/netlink/route/nsid.py): request layout and reply parsing."""

from __future__ import annotations

import struct

import pytest

from exporter.netlink import route as rtnetlink


def _attr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


# -- RTM_GETNSID -----------------------------------------------------------------------


def _newnsid(*attrs: bytes, seq: int = 0) -> bytes:
    body = b"\0\0\0\0" + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), rtnetlink.RTM_NEWNSID, 0, seq, 0) + body


def test_nsid_request_layout() -> None:
    req = rtnetlink.build_nsid_request(4, 17)
    assert struct.unpack("=IHHII", req[:16]) == (28, rtnetlink.RTM_GETNSID, 1, 4, 0)
    assert req[16:] == b"\0\0\0\0" + struct.pack("=HHI", 8, rtnetlink.NETNSA_FD, 17)


def test_parse_nsid_reply() -> None:
    nsid = struct.Struct("=i").pack
    assert rtnetlink.parse_nsid_reply(_newnsid(_attr(rtnetlink.NETNSA_NSID, nsid(3)))) == (3, True)
    unassigned = _newnsid(_attr(rtnetlink.NETNSA_NSID, nsid(-1)))
    assert rtnetlink.parse_nsid_reply(unassigned) == (None, True)
    assert rtnetlink.parse_nsid_reply(_newnsid()) == (None, True)
    assert rtnetlink.parse_nsid_reply(_newnsid(seq=2), seq=1) == (None, False)
    assert rtnetlink.parse_nsid_reply(b"") == (None, False)
    err = struct.pack("=IHHII", 20, rtnetlink.NLMSG_ERROR, 0, 0, 0) + struct.pack("=i", -22)
    with pytest.raises(rtnetlink.NetlinkError) as info:
        rtnetlink.parse_nsid_reply(err)
    assert info.value.errno == 22
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_nsid_reply(_newnsid(_attr(rtnetlink.NETNSA_NSID, b"\1")))
