"""ctnetlink parsers on captured kernel replies, checked against ``conntrack -L/-C/-S``.

The captures (tests/fixtures/conntrack, see capture.py there) hold entries of
many shapes: IPv4 and IPv6, TCP in several states, UDP, ICMP, SCTP, a zone, a
NATed entry whose reply source is not its original destination.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from conntrack_text import parse_list, parse_stats

from exporter.netlink import conntrack as ct
from exporter.netlink.netfilter import NetlinkError

FIX = Path(__file__).resolve().parent / "fixtures" / "conntrack"


def fixture(name: str) -> bytes:
    return FIX.joinpath(name).read_bytes()


def test_dump_equals_conntrack_list() -> None:
    out: list[ct.CtEntry] = []
    assert ct.parse_ct_messages(fixture("dump.bin"), out) is True
    expected = parse_list(FIX.joinpath("dump.txt").read_text())
    assert len(out) == len(expected) == 11
    assert Counter(out) == Counter(expected)


def test_dump_fast_and_walked_paths_agree() -> None:
    """Every IPv4 TCP/UDP entry takes the fixed-shape fast path; the walk gives the same."""
    data = fixture("dump.bin")
    off = 0
    fast = 0
    while off < len(data):
        mlen, mtype = struct.unpack_from("=IH", data, off)
        if mtype == ct.T_CT_NEW:
            entry = ct.parse_entry(data, off, mlen)
            a = off + 20
            shaped = int.from_bytes(data[a : a + 104], "little") & ct._FAST_MASK == ct._FAST_WANT
            fast += shaped
            # the same message with its fast-path shape broken (a zero-length padding
            # attribute in front is legal netlink) must read the same
            broken = (
                struct.pack("=IHHII", mlen + 4, mtype, 0, 0, 0)
                + data[off + 16 : off + 20]
                + struct.pack("=HH", 4, 0)
                + data[off + 20 : off + mlen]
            )
            assert ct.parse_entry(broken, 0, mlen + 4) == entry
            if shaped:
                # as kernels before 5.2 write it: nests without NLA_F_NESTED
                noflag = bytearray(data[off : off + mlen])
                for rel in (0, 4, 24, 52, 56, 76):
                    noflag[20 + rel + 3] &= 0x7F
                assert int.from_bytes(noflag[20:124], "little") & ct._FAST_MASK == ct._FAST_WANT
                assert ct.parse_entry(bytes(noflag), 0, mlen) == entry
        off += (mlen + 3) & ~3
    assert fast == 7  # the IPv4 entries with ports: 4 TCP, 2 UDP (one in a zone), SCTP


def test_dump_keys_and_states() -> None:
    out: list[ct.CtEntry] = []
    ct.parse_ct_messages(fixture("dump.bin"), out)
    tcp4 = sorted(ct.TCP_STATES[e[6]] for e in out if e[0] == 6 and len(e[1]) == 4)
    assert tcp4 == ["ESTABLISHED", "ESTABLISHED", "SYN_SENT", "TIME_WAIT"]
    by_port = {(e[0], e[5], e[1]): e for e in out}
    natted = by_port[(6, 8080, bytes([10, 9, 0, 7]))]
    assert natted[3] == bytes([10, 1, 0, 4])  # reply source: the DNAT target
    assert natted[2] == bytes([192, 168, 5, 1])
    icmp = [e for e in out if e[0] == 1]
    assert len(icmp) == 1
    assert icmp[0][5] == 0
    assert icmp[0][6] == ct.NO_STATE


def test_sums_over_entries() -> None:
    out: list[ct.CtEntry] = []
    ct.parse_ct_messages(fixture("dump.bin"), out)
    pairs: ct.SourcePairs = {}
    active: ct.ActiveKeys = {}
    ct.add_entries(out, pairs, active)
    assert sum(pairs.values()) == 11
    a = bytes([10, 1, 0, 2])
    assert sum(n for (o, r), n in pairs.items() if a in (o, r)) == 4
    # active: the 2 ESTABLISHED IPv4/IPv6 TCP entries, the natted one, and the 3 UDP entries
    assert sum(active.values()) == 6
    assert active[(6, bytes([192, 168, 5, 1]), 8080, bytes([10, 1, 0, 4]), 80)] == 1
    assert active[(17, bytes([10, 9, 0, 53]), 53, bytes([10, 9, 0, 53]), 53)] == 2


def test_stats_reply_equals_conntrack_count() -> None:
    info = ct.parse_stats_reply(fixture("stats.bin"))
    assert info is not None
    assert info.entries == int(FIX.joinpath("stats.txt").read_text()) == 11
    assert info.limit == 262144
    assert ct.parse_stats_reply(fixture("stats.bin"), seq=99) is None


def test_stats_cpu_equals_conntrack_stats() -> None:
    totals: dict[str, int] = {}
    assert ct.parse_stats_cpu_messages(fixture("stats-cpu.bin"), totals) is True
    assert totals == parse_stats(FIX.joinpath("stats-cpu.txt").read_text())
    assert set(totals) == set(ct.EVENTS)
    assert totals["insert"] == 11


def nlmsg(mtype: int, payload: bytes, seq: int = 0, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


def test_kernel_error_raises_netlink_error() -> None:
    err = nlmsg(2, struct.pack("=i", -1) + bytes(16))
    with pytest.raises(NetlinkError) as info:
        ct.parse_ct_messages(err, [])
    assert info.value.errno == 1
    with pytest.raises(NetlinkError):
        ct.parse_stats_cpu_messages(err, {})
    # an acknowledgement is not an error
    assert ct.parse_stats_reply(nlmsg(2, bytes(20))) is None


def test_malformed_is_value_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        ct.parse_ct_messages(b"\x10\x00", [])
    with pytest.raises(ValueError, match="without its tuples"):
        ct.parse_ct_messages(nlmsg(ct.T_CT_NEW, b"\x02\x00\x00\x00"), [])
    with pytest.raises(ValueError, match="CTA_STATS_GLOBAL_ENTRIES"):
        ct.parse_stats_reply(nlmsg(ct.T_CT_STATS, b"\x00\x00\x00\x00"))


def test_requests() -> None:
    req = ct.build_dump_request(5)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, mtype, flags, seq) == (20, 0x101, 0x301, 5)
    assert struct.unpack_from("=IHH", ct.build_stats_cpu_request(1))[1:] == (0x104, 0x301)
    assert struct.unpack_from("=IHH", ct.build_stats_request(1))[1:] == (0x105, 0x1)
