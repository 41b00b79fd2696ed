"""Pure tests of the RTM_GETLINK parser (exporter/netlink/route/links.py); pyroute2 the oracle.

``pyroute2_topology`` and ``pyroute2_netnsid`` are the oracles test_links_lab runs inside
lab namespaces.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from exporter.model import Link
from exporter.netlink import route as rtnetlink

FIXTURES = Path(__file__).parent / "fixtures" / "links"

# -- the oracle: pyroute2, as the exporter read links before the raw parser ------------------


def pyroute2_link(msg: Any) -> Link:
    """One pyroute2-decoded RTM_NEWLINK message -> Link."""
    index = int(msg["index"])
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None
    if not kind:
        kind = "loopback" if int(msg["flags"]) & rtnetlink.IFF_LOOPBACK else "physical"
    master = msg.get_attr("IFLA_MASTER")
    peer = msg.get_attr("IFLA_LINK")
    netnsid = msg.get_attr("IFLA_LINK_NETNSID")
    return Link(
        index=index,
        name=str(msg.get_attr("IFLA_IFNAME") or ""),
        kind=str(kind),
        master=int(master) if master else None,
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or "unknown").lower(),
        peer_index=int(peer) if peer and int(peer) != index else None,
        peer_netnsid=int(netnsid) if netnsid is not None else None,
    )


def pyroute2_topology() -> list[Link]:
    """pyroute2's IPRoute().get_links() of this process's namespace, sorted by name."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - the oracle, run inside lab namespaces

    with IPRoute() as ipr:
        return sorted((pyroute2_link(m) for m in ipr.get_links()), key=lambda link: link.name)


def pyroute2_netnsid(path: str) -> int | None:
    """pyroute2's get_netnsid(fd=...) of a namespace file; None when unassigned."""
    from pyroute2 import IPRoute  # noqa: PLC0415
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            reply = ipr.get_netnsid(fd=fd)
    except NetlinkError as exc:
        raise OSError(exc.code, os.strerror(exc.code)) from exc
    finally:
        os.close(fd)
    nsid = reply.get("nsid") if reply else None
    return None if nsid is None or int(nsid) in (0xFFFFFFFF, -1) else int(nsid)


def pyroute2_links_of(data: bytes) -> list[Link]:
    """The oracle's Link of every RTM_NEWLINK message of a captured dump."""
    links = []
    for raw in _split(data):
        if struct.unpack_from("=H", raw, 4)[0] == rtnetlink.RTM_NEWLINK:
            msg = ifinfmsg(raw)
            msg.decode()
            links.append(pyroute2_link(msg))
    return links


def _split(data: bytes) -> list[bytes]:
    out = []
    off = 0
    while off + 16 <= len(data):
        (length,) = struct.unpack_from("=I", data, off)
        out.append(data[off : off + length])
        off += (length + 3) & ~3
    return out


def _seq(data: bytes) -> int:
    return int(struct.unpack_from("=IHHII", data)[3])


# -- RTM_GETLINK -----------------------------------------------------------------


def test_parse_link_names_of_bridge_filtered_dump() -> None:
    data = (FIXTURES / "bridge-dump.bin").read_bytes()
    assert rtnetlink.parse_link_names(data, _seq(data)) == ({2: "br0"}, True)


def test_parse_link_names_of_full_dump() -> None:
    data = (FIXTURES / "link-dump.bin").read_bytes()
    assert rtnetlink.parse_link_names(data)[0] == {1: "lo", 2: "br0", 3: "veth0"}


def test_parse_link_messages_of_captured_dump() -> None:
    data = (FIXTURES / "link-dump.bin").read_bytes()
    links = rtnetlink.parse_link_messages(data)
    assert links == pyroute2_links_of(data)
    ip = {d["ifindex"]: d for d in json.loads((FIXTURES / "link-dump.json").read_text())}
    assert [link.name for link in links] == ["lo", "br0", "veth0"]
    lo, br0, veth0 = links
    assert lo == Link(1, "lo", "loopback", None, "00:00:00:00:00:00", "unknown")
    assert br0 == Link(2, "br0", "bridge", None, ip[2]["address"], "up")
    assert veth0 == Link(
        index=3,
        name="veth0",
        kind="veth",
        master=2,
        mac=ip[3]["address"],
        operstate="up",
        peer_index=ip[3]["link_index"],
        peer_netnsid=ip[3]["link_netnsid"],
    )


def test_parse_link_dump_seq_and_done() -> None:
    data = (FIXTURES / "link-dump.bin").read_bytes()
    links, done = rtnetlink.parse_link_dump(data, _seq(data))
    assert done
    assert list(links) == [1, 2, 3]
    assert rtnetlink.parse_link_dump(data, _seq(data) + 1) == ({}, False)
    merged: dict[int, Link] = {}
    for msg in _split(data):
        merged.update(rtnetlink.parse_link_dump(msg)[0])
    assert merged == links


def test_parse_varied_links_equals_pyroute2_and_ip() -> None:
    """Links of many kinds and states (see test_links_lab.build_varied_host)."""
    data = (FIXTURES / "varied-links.bin").read_bytes()
    links = rtnetlink.parse_link_messages(data)
    assert links == pyroute2_links_of(data)
    ip = json.loads((FIXTURES / "varied-links.json").read_text())
    index = {d["ifname"]: d["ifindex"] for d in ip}
    expected = [
        Link(
            index=d["ifindex"],
            name=d["ifname"],
            kind=d.get("linkinfo", {}).get("info_kind")
            or ("loopback" if "LOOPBACK" in d["flags"] else "physical"),
            master=index[d["master"]] if "master" in d else None,
            mac=d.get("address", ""),
            operstate=d["operstate"].lower(),
            # ip names a peer in the same namespace ("link"), gives the index of others
            peer_index=d.get("link_index") or index.get(d.get("link", "")),
            peer_netnsid=d.get("link_netnsid"),
        )
        for d in ip
    ]
    assert links == expected
    by_name = {link.name: link for link in links}
    assert by_name["vpair0"].peer_index == by_name["vpair1"].index  # same-namespace peer
    assert by_name["vpair0"].peer_netnsid is None
    assert {link.operstate for link in links} == {
        "unknown", "up", "down", "lowerlayerdown", "dormant"
    }  # fmt: skip
    assert by_name["tun0"].mac == ""
    assert "ifbé" in by_name


def _attr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _newlink(*attrs: bytes, index: int = 5, flags: int = 0, seq: int = 0) -> bytes:
    body = struct.pack("=BBHiII", 0, 0, 1, index, flags, 0) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), rtnetlink.RTM_NEWLINK, 2, seq, 0) + body


def _link(*attrs: bytes, index: int = 5, flags: int = 0) -> Link:
    (link,) = rtnetlink.parse_link_messages(_newlink(*attrs, index=index, flags=flags))
    return link


NAME = _attr(rtnetlink.IFLA_IFNAME, b"x0\0")


def test_parse_link_attributes_one_by_one() -> None:
    u32 = struct.Struct("=I").pack
    assert _link() == Link(5, "", "physical", None, "", "unknown")
    assert _link(NAME, flags=rtnetlink.IFF_LOOPBACK).kind == "loopback"
    kind = _attr(rtnetlink.IFLA_LINKINFO, _attr(rtnetlink.IFLA_INFO_KIND, b"veth\0"))
    assert _link(NAME, kind).kind == "veth"
    empty_kind = _attr(rtnetlink.IFLA_LINKINFO, _attr(rtnetlink.IFLA_INFO_KIND, b"\0"))
    assert _link(NAME, empty_kind, flags=rtnetlink.IFF_LOOPBACK).kind == "loopback"
    no_kind = _attr(rtnetlink.IFLA_LINKINFO, _attr(2, b"data"))  # IFLA_INFO_DATA only
    assert _link(NAME, no_kind).kind == "physical"
    nested = _attr(rtnetlink.IFLA_LINKINFO | 0x8000, _attr(rtnetlink.IFLA_INFO_KIND, b"bridge\0"))
    assert _link(NAME, nested).kind == "bridge"  # NLA_F_NESTED set
    assert _link(_attr(rtnetlink.IFLA_MASTER, u32(0))).master is None
    assert _link(_attr(rtnetlink.IFLA_MASTER, u32(9))).master == 9
    assert _link(_attr(rtnetlink.IFLA_LINK, u32(5)), index=5).peer_index is None  # itself
    assert _link(_attr(rtnetlink.IFLA_LINK, u32(0))).peer_index is None
    assert _link(_attr(rtnetlink.IFLA_LINK, u32(12))).peer_index == 12
    assert _link(_attr(rtnetlink.IFLA_LINK_NETNSID, struct.pack("=i", 0))).peer_netnsid == 0
    assert _link(_attr(rtnetlink.IFLA_LINK_NETNSID, struct.pack("=i", -1))).peer_netnsid == -1
    assert _link(_attr(rtnetlink.IFLA_ADDRESS, bytes.fromhex("02420a000002"))).mac == (
        "02:42:0a:00:00:02"
    )
    # not a MAC (an ipip tunnel's IPv4 address): every byte, no more (pyroute2 read six)
    assert _link(_attr(rtnetlink.IFLA_ADDRESS, bytes([10, 0, 0, 1]))).mac == "0a:00:00:01"
    assert _link(_attr(rtnetlink.IFLA_IFNAME, b"ifb\xc3\xa9\0")).name == "ifbé"
    assert _link(_attr(rtnetlink.IFLA_IFNAME, b"bad\xff\0")).name == "bad\ufffd"
    assert _link(_attr(rtnetlink.IFLA_IFNAME, b"x0\0junk")).name == "x0"
    assert _link(NAME, _attr(rtnetlink.IFLA_IFNAME, b"x1\0")).name == "x0"  # the first counts


@pytest.mark.parametrize(
    ("code", "name"),
    [(0, "unknown"), (1, "notpresent"), (2, "down"), (3, "lowerlayerdown"), (4, "testing"),
     (5, "dormant"), (6, "up"), (7, "unknown"), (255, "unknown")],
)  # fmt: skip
def test_parse_link_operstate_names(code: int, name: str) -> None:
    assert _link(NAME, _attr(rtnetlink.IFLA_OPERSTATE, bytes([code]))).operstate == name


def test_parse_link_malformed_raises_value_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_link_messages(_newlink(_attr(rtnetlink.IFLA_MASTER, b"\1\0")))
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_link_messages(_newlink(NAME)[:-2])
    over = bytearray(_newlink(NAME))
    struct.pack_into("=H", over, 32, 200)  # the attribute claims more than its message
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_link_messages(bytes(over))
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_link_messages(struct.pack("=IHHII", 20, rtnetlink.RTM_NEWLINK, 0, 0, 0)
                                      + b"\0" * 4)  # fmt: skip


def test_parse_link_dump_kernel_error_and_interrupted() -> None:
    for err in (-95, -(2**31)):
        msg = struct.pack("=IHHII", 20, rtnetlink.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", err)
        with pytest.raises(rtnetlink.NetlinkError) as info:
            rtnetlink.parse_link_dump(msg, 7)
        assert info.value.errno == -err
    data = bytearray(_newlink(NAME))
    struct.pack_into("=H", data, 6, rtnetlink.NLM_F_DUMP_INTR)
    with pytest.raises(InterruptedError):
        rtnetlink.parse_link_dump(bytes(data))


def test_link_dump_request_layout() -> None:
    req = rtnetlink.build_link_dump_request(9)
    assert struct.unpack("=IHHII", req[:16]) == (
        32,
        rtnetlink.RTM_GETLINK,
        rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP,
        9,
        0,
    )
