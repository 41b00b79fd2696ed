"""Pure tests of the RTM_GETROUTE parser (exporter/netlink/route/routes.py); pyroute2 the oracle.

``pyroute2_route_entries`` is the oracle test_links_lab runs inside lab namespaces.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from exporter.collectors.links import RT_TABLE_MAIN, build_routes
from exporter.model import Route
from exporter.netlink import route as rtnetlink

FIXTURES = Path(__file__).parent / "fixtures" / "links"

# -- the oracle: pyroute2, as the exporter read routes before the raw parser -----------------


def _pyroute2_via(via: Any) -> str:
    return str(via.get("addr", "")) if isinstance(via, Mapping) else ""


def pyroute2_route_entry(msg: Any) -> rtnetlink.RouteEntry:
    """One pyroute2-decoded RTM_NEWROUTE message -> (dst, dst_len, table, type, hops)."""
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        hops = [
            (
                hop.get("oif"),
                str(hop.get_attr("RTA_GATEWAY") or _pyroute2_via(hop.get_attr("RTA_VIA"))),
            )
            for hop in multipath
        ]
    else:
        gateway = msg.get_attr("RTA_GATEWAY") or _pyroute2_via(msg.get_attr("RTA_VIA"))
        hops = [(msg.get_attr("RTA_OIF"), str(gateway))]
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    return (
        str(msg.get_attr("RTA_DST") or ""),
        int(msg["dst_len"]),
        int(table),
        int(msg["type"]),
        hops,
    )


def pyroute2_route_entries() -> list[rtnetlink.RouteEntry]:
    """pyroute2's get_routes(table=254) of this process's namespace, IPv4 then IPv6."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - the oracle, run inside lab namespaces

    with IPRoute() as ipr:
        return [
            pyroute2_route_entry(msg)
            for family in (socket.AF_INET, socket.AF_INET6)
            for msg in ipr.get_routes(family=family, table=RT_TABLE_MAIN)
        ]


def _messages(data: bytes) -> list[bytes]:
    out = []
    off = 0
    while off + 16 <= len(data):
        (length,) = struct.unpack_from("=I", data, off)
        out.append(data[off : off + length])
        off += (length + 3) & ~3
    return out


def pyroute2_routes_of(data: bytes) -> list[rtnetlink.RouteEntry]:
    """The oracle's entry of every RTM_NEWROUTE message of a captured dump."""
    entries = []
    for raw in _messages(data):
        if struct.unpack_from("=H", raw, 4)[0] == rtnetlink.RTM_NEWROUTE:
            msg = rtmsg(raw)
            msg.decode()
            entries.append(pyroute2_route_entry(msg))
    return entries


# -- RTM_GETROUTE parsing -------------------------------------------------------------------

VARIED = {
    family: (FIXTURES / f"varied-routes-{family}.bin").read_bytes() for family in ("inet", "inet6")
}


@pytest.mark.parametrize("family", ["inet", "inet6"])
def test_parse_varied_routes_equals_pyroute2(family: str) -> None:
    """Every route of every table (see test_links_lab.build_varied_host) as pyroute2 decodes it."""
    data = VARIED[family]
    entries = rtnetlink.parse_route_messages(data)
    assert entries == pyroute2_routes_of(data)
    assert len(entries) > 10
    entries_, done = rtnetlink.parse_route_dump(data, struct.unpack_from("=IHHI", data)[3])
    assert done and entries_ == entries


def test_varied_routes_selected() -> None:
    links = json.loads((FIXTURES / "varied-links.json").read_text())
    index = {d["ifname"]: d["ifindex"] for d in links}
    bridges = {index[d["ifname"]]: d["ifname"] for d in links if d.get("linkinfo", {}).get(
        "info_kind") == "bridge"}  # fmt: skip
    names = {index[n]: n for n in ("up0", "up1")}
    entries = rtnetlink.parse_route_messages(VARIED["inet"] + VARIED["inet6"])
    assert {e[2] for e in entries} >= {RT_TABLE_MAIN, 255, 100, 1000}  # local, 100 and 1000 too
    assert build_routes(entries, bridges, names).routes == (
        Route("default", "up0", "10.250.0.1"),  # multipath: one per hop
        Route("default", "up0", "fd25::1"),
        Route("default", "up1", "10.251.0.1"),  # in the multipath and on its own
        Route("default", "up1", "fd26::1"),
        Route("10.80.0.0/16", "br0", "172.30.0.9"),
        Route("10.91.0.0/16", "br0", "fd30::9"),  # RTA_VIA: an IPv6 gateway for IPv4
        Route("10.92.0.0/16", "br0", "172.30.0.9"),  # the bridge's hop of a multipath route
        Route("10.94.0.0/16", "br0", ""),  # nexthop object
        Route("172.30.0.0/24", "br0", ""),
        Route("fd30::/64", "br0", ""),
        Route("fd31::/64", "br0", "fd30::9"),
        Route("fe80::/64", "br0", ""),
    )


def _attr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _route(
    *attrs: bytes, family: int = socket.AF_INET, dst_len: int = 0, table: int = 254
) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 3, 0, 1, 0) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), rtnetlink.RTM_NEWROUTE, 2, 0, 0) + body


def _hop(oif: int, *attrs: bytes) -> bytes:
    body = b"".join(attrs)
    return struct.pack("=HBBi", 8 + len(body), 0, 0, oif) + body


V4 = socket.inet_aton
U32 = struct.Struct("=I").pack


def test_parse_route_attributes() -> None:
    (entry,) = rtnetlink.parse_route_messages(_route())
    assert entry == ("", 0, 254, 1, [(None, "")])
    (entry,) = rtnetlink.parse_route_messages(
        _route(_attr(rtnetlink.RTA_DST, V4("10.1.0.0")), _attr(rtnetlink.RTA_OIF, U32(3)),
               _attr(rtnetlink.RTA_GATEWAY, V4("10.0.0.1")),
               _attr(rtnetlink.RTA_TABLE, U32(1000)), dst_len=16, table=252)
    )  # fmt: skip
    assert entry == ("10.1.0.0", 16, 1000, 1, [(3, "10.0.0.1")])
    via6 = _attr(rtnetlink.RTA_VIA, struct.pack("=H", socket.AF_INET6) + socket.inet_pton(
        socket.AF_INET6, "fe80::1"))  # fmt: skip
    (entry,) = rtnetlink.parse_route_messages(_route(via6, _attr(rtnetlink.RTA_OIF, U32(2))))
    assert entry[4] == [(2, "fe80::1")]
    mpls = _attr(rtnetlink.RTA_VIA, struct.pack("=H", 28) + b"\x01\x02\x03")  # AF_MPLS
    assert rtnetlink.parse_route_messages(_route(mpls))[0][4] == [(None, "01:02:03")]
    multipath = _attr(
        rtnetlink.RTA_MULTIPATH,
        _hop(2, _attr(rtnetlink.RTA_GATEWAY, V4("10.0.0.1"))) + _hop(4) + _hop(7, via6),
    )
    assert rtnetlink.parse_route_messages(_route(multipath))[0][4] == [
        (2, "10.0.0.1"),
        (4, ""),
        (7, "fe80::1"),
    ]
    empty = _attr(rtnetlink.RTA_MULTIPATH, b"")  # no hops: the route's own RTA_OIF counts
    assert rtnetlink.parse_route_messages(_route(empty, _attr(rtnetlink.RTA_OIF, U32(3))))[0][
        4
    ] == [(3, "")]
    v6 = _route(
        _attr(rtnetlink.RTA_DST, socket.inet_pton(socket.AF_INET6, "fd00::")),
        family=socket.AF_INET6,
        dst_len=8,
    )
    assert rtnetlink.parse_route_messages(v6)[0][:2] == ("fd00::", 8)
    assert rtnetlink.parse_route_messages(_route(family=28)) == []  # not IPv4/IPv6: left out


def test_parse_route_malformed_raises_value_error() -> None:
    for bad in (
        _route(_attr(rtnetlink.RTA_DST, b"\x0a\x00")),  # short address
        _route(_attr(rtnetlink.RTA_OIF, b"\x01")),
        _route(_attr(rtnetlink.RTA_VIA, b"\x02")),
        _route(_attr(rtnetlink.RTA_MULTIPATH, struct.pack("=HBBi", 4, 0, 0, 1))),
        _route(_attr(rtnetlink.RTA_MULTIPATH, struct.pack("=HBBi", 40, 0, 0, 1))),
        _route()[:20],
    ):
        with pytest.raises(ValueError, match="truncated"):
            rtnetlink.parse_route_messages(bad)


def test_route_dump_request_layout() -> None:
    req = rtnetlink.build_route_dump_request(3, socket.AF_INET6)
    assert struct.unpack("=IHHII", req[:16]) == (
        28,
        rtnetlink.RTM_GETROUTE,
        rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP,
        3,
        0,
    )
    assert req[16] == socket.AF_INET6
    req = rtnetlink.build_route_dump_request(3, socket.AF_INET, table=1000)
    assert struct.unpack_from("=I", req)[0] == len(req) == 36
    assert req[28:] == struct.pack("=HHI", 8, rtnetlink.RTA_TABLE, 1000)
