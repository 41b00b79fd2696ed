"""Pure tests of the links collector: captured netlink dumps and literal topologies."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from exporter.collectors.links import render_interfaces
from exporter.model import Link, LinksData, LinkStats, MetricFamily
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


# -- RTM_GETSTATS parsing ------------------------------------------------------


def test_parse_captured_stats_dump_matches_ip_s_link() -> None:
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    expected = json.loads((FIXTURES / "stats-dump.json").read_text())
    stats, done = rtnetlink.parse_stats_messages(data, _seq(data))
    assert done
    assert {str(i): s for i, s in stats.items()}.keys() == expected.keys()
    for index, want in expected.items():
        assert stats[int(index)] == LinkStats(**{k: v for k, v in want.items() if k != "name"})
    # the veth really carried the pings: the capture is not all zeros
    assert stats[3].tx_packets > 0
    assert stats[3].rx_bytes > 0


def test_parse_ignores_other_sequence_numbers() -> None:
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    assert rtnetlink.parse_stats_messages(data, _seq(data) + 1) == ({}, False)


def test_parse_stats_in_pieces_equals_whole() -> None:
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    merged: dict[int, LinkStats] = {}
    for msg in _split(data):
        merged.update(rtnetlink.parse_stats_messages(msg)[0])
    assert merged == rtnetlink.parse_stats_messages(data)[0]


def test_parse_stats_reuses_unchanged_objects() -> None:
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    first, _ = rtnetlink.parse_stats_messages(data)
    again, _ = rtnetlink.parse_stats_messages(data, previous=first)
    assert again == first
    assert all(again[i] is first[i] for i in first)
    moved = {i: dataclasses.replace(s, tx_dropped=s.tx_dropped + 1) for i, s in first.items()}
    fresh, _ = rtnetlink.parse_stats_messages(data, previous=moved)
    assert fresh == first
    assert all(fresh[i] is not moved[i] for i in first)


def test_parse_stats_attribute_not_first() -> None:
    """The general path: a pad attribute before IFLA_STATS_LINK_64 (as on some architectures)."""
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    out = b""
    for raw in _split(data):
        msg = raw
        length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
        if mtype == rtnetlink.RTM_NEWSTATS:
            pad = struct.pack("=HH", 4, 0)
            msg = (
                struct.pack("=IHHII", length + 4, mtype, flags, seq, pid)
                + msg[16:28]
                + pad
                + msg[28:]
            )
        out += msg + b"\0" * (-len(msg) % 4)
    assert rtnetlink.parse_stats_messages(out) == rtnetlink.parse_stats_messages(data)


def test_parse_stats_kernel_error_raises() -> None:
    err = struct.pack("=IHHII", 36, rtnetlink.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", -95)
    err += struct.pack("=IHHII", 16, rtnetlink.RTM_GETSTATS, 0, 7, 0)
    with pytest.raises(rtnetlink.NetlinkError) as info:
        rtnetlink.parse_stats_messages(err, 7)
    assert info.value.errno == 95


def test_parse_stats_interrupted_dump_raises() -> None:
    data = bytearray((FIXTURES / "stats-dump.bin").read_bytes())
    flags = struct.unpack_from("=H", data, 6)[0]
    struct.pack_into("=H", data, 6, flags | rtnetlink.NLM_F_DUMP_INTR)
    with pytest.raises(InterruptedError):
        rtnetlink.parse_stats_messages(bytes(data))


def test_parse_stats_truncated_raises() -> None:
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        rtnetlink.parse_stats_messages(data[:100])


def test_stats_request_layout() -> None:
    req = rtnetlink.build_stats_request(42)
    assert struct.unpack("=IHHII", req[:16]) == (
        28,
        rtnetlink.RTM_GETSTATS,
        rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP,
        42,
        0,
    )
    assert struct.unpack("=BBHII", req[16:]) == (0, 0, 0, 0, 1)  # filter: IFLA_STATS_LINK_64


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


# -- rendering ---------------------------------------------------------------------


def _stats(n: int) -> LinkStats:
    return LinkStats(
        rx_bytes=n * 1000 + 1,
        rx_packets=n * 10 + 2,
        rx_errors=n + 3,
        rx_dropped=n + 4,
        tx_bytes=n * 1000 + 5,
        tx_packets=n * 10 + 6,
        tx_errors=n + 7,
        tx_dropped=n + 8,
    )


LINKS = LinksData(
    links=(
        Link(3, "docker0", "bridge", None, "02:42:ac:11:00:01", "up"),
        Link(2, "eth0", "physical", None, "52:54:00:12:34:56", "up"),
        Link(1, "lo", "loopback", None, "00:00:00:00:00:00", "unknown"),
        Link(7, "veth1a2b3c4", "veth", 3, "6a:1f:00:00:00:07", "up", peer_index=2, peer_netnsid=0),
    ),
    stats={1: _stats(1), 2: _stats(2), 3: _stats(3), 7: _stats(7)},
)


def _family(families: list[MetricFamily], name: str) -> MetricFamily:
    found = [f for f in families if f.name == name]
    assert len(found) == 1, name
    return found[0]


def test_render_interfaces_info_and_bridge_ports() -> None:
    families = render_interfaces(LINKS)
    info = _family(families, "netpath_interface_info")
    assert info.type == "gauge"
    assert info.labels == ("interface", "kind", "bridge", "mac", "operstate")
    assert info.samples == (
        (("docker0", "bridge", "", "02:42:ac:11:00:01", "up"), 1),
        (("eth0", "physical", "", "52:54:00:12:34:56", "up"), 1),
        (("veth1a2b3c4", "veth", "docker0", "6a:1f:00:00:00:07", "up"), 1),
    )
    ports = _family(families, "netpath_bridge_ports")
    assert (ports.type, ports.labels, ports.samples) == ("gauge", ("bridge",), ((("docker0",), 1),))


def test_render_interfaces_counters() -> None:
    families = render_interfaces(LINKS)
    names = [f.name for f in families]
    assert len(names) == len(set(names)) == 10
    want = {
        "receive_bytes": "rx_bytes",
        "receive_packets": "rx_packets",
        "receive_errors": "rx_errors",
        "receive_dropped": "rx_dropped",
        "transmit_bytes": "tx_bytes",
        "transmit_packets": "tx_packets",
        "transmit_errors": "tx_errors",
        "transmit_dropped": "tx_dropped",
    }
    for metric, field in want.items():
        fam = _family(families, f"netpath_interface_{metric}_total")
        assert fam.type == "counter"
        assert fam.labels == ("interface",)
        assert fam.samples == (
            (("docker0",), getattr(_stats(3), field)),
            (("eth0",), getattr(_stats(2), field)),
            (("veth1a2b3c4",), getattr(_stats(7), field)),
        )
    assert _family(families, "netpath_interface_receive_bytes_total").samples[2] == (
        ("veth1a2b3c4",),
        7001,
    )


def test_render_interfaces_with_loopback() -> None:
    families = render_interfaces(LINKS, include_loopback=True)
    info = _family(families, "netpath_interface_info")
    assert (("lo", "loopback", "", "00:00:00:00:00:00", "unknown"), 1) in info.samples
    rx = _family(families, "netpath_interface_receive_packets_total")
    assert (("lo",), 12) in rx.samples


def test_render_interfaces_link_without_stats_has_info_only() -> None:
    data = LinksData(links=LINKS.links, stats={3: _stats(3)})
    families = render_interfaces(data)
    assert len(_family(families, "netpath_interface_info").samples) == 3
    assert _family(families, "netpath_interface_transmit_bytes_total").samples == (
        (("docker0",), 3005),
    )


def test_render_interfaces_bridge_label_only_for_bridge_masters() -> None:
    data = LinksData(
        links=(
            Link(4, "bond0", "bond", None, "52:54:00:00:00:04", "up"),
            Link(3, "br-1", "bridge", None, "02:42:00:00:00:03", "down"),
            Link(5, "eth1", "physical", 4, "52:54:00:00:00:04", "up"),
        ),
        stats={},
    )
    families = render_interfaces(data)
    info = _family(families, "netpath_interface_info")
    assert (("eth1", "physical", "", "52:54:00:00:00:04", "up"), 1) in info.samples
    assert _family(families, "netpath_bridge_ports").samples == ((("br-1",), 0),)


def test_help_texts_are_one_sentence() -> None:
    for fam in render_interfaces(LINKS):
        assert fam.help.endswith(".") and fam.help.count(". ") == 0, fam.name
