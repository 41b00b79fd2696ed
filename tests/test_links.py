"""Pure tests of the links collector: captured netlink dumps and literal topologies."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from exporter import rtnetlink
from exporter.links import parse_link_message, render_interfaces
from exporter.model import Link, LinksData, LinkStats, MetricFamily

FIXTURES = Path(__file__).parent / "fixtures" / "links"


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


def test_parse_link_message_of_captured_dump() -> None:
    links = []
    for raw in _split((FIXTURES / "link-dump.bin").read_bytes()):
        if struct.unpack_from("=H", raw, 4)[0] == rtnetlink.RTM_NEWLINK:
            msg = ifinfmsg(raw)
            msg.decode()
            links.append(parse_link_message(msg))
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
