"""Pure tests of the RTM_GETSTATS parser (exporter/netlink/route/stats.py): a captured dump."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from exporter.model import LinkStats
from exporter.netlink import route as rtnetlink

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
    moved = {i: s._replace(tx_dropped=s.tx_dropped + 1) for i, s in first.items()}
    fresh, _ = rtnetlink.parse_stats_messages(data, previous=moved)
    assert fresh == first
    assert all(fresh[i] is not moved[i] for i in first)
    assert {type(s) for s in fresh.values()} == {LinkStats}  # made as LinkStats, not bare tuples


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


def test_a_datagram_that_is_not_uniform_is_read_message_by_message() -> None:
    """The one-unpack read takes a run of same-length messages of this dump; a message of
    another dump (seq) or another length among them sends the datagram to the general parse."""
    data = (FIXTURES / "stats-dump.bin").read_bytes()
    seq = _seq(data)
    msgs = _split(data)
    stats = [m for m in msgs if struct.unpack_from("=IHH", m)[1] == rtnetlink.RTM_NEWSTATS]
    assert len(stats) >= 3 and len({len(m) for m in stats}) == 1  # the capture is uniform
    whole = rtnetlink.parse_stats_messages(data, seq)
    # another dump's message in the middle: ignored, the rest read as before
    foreign = bytearray(stats[1])
    struct.pack_into("=I", foreign, 8, seq + 1)
    mixed = b"".join([stats[0], bytes(foreign), *stats[2:], *msgs[len(stats) :]])
    got, done = rtnetlink.parse_stats_messages(mixed, seq)
    assert done and got == {i: s for i, s in whole[0].items() if i != _ifindex(stats[1])}
    # a longer message (an attribute more) in the middle: read all the same
    longer = bytearray(stats[1] + struct.pack("=HH", 4, 0))
    struct.pack_into("=I", longer, 0, len(longer))
    mixed = b"".join([stats[0], bytes(longer), *stats[2:], *msgs[len(stats) :]])
    assert rtnetlink.parse_stats_messages(mixed, seq) == whole


def _ifindex(msg: bytes) -> int:
    return int(struct.unpack_from("=I", msg, 20)[0])


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
