"""The counters-only read of an unchanged nf_tables ruleset (exporter/netlink/netfilter/layout.py).

Pure tests feed a recorded GETRULE dump through a socket pair, changed the way
a later dump of the same ruleset changes (counters) or of a changed one
(handles, sizes, flags, the end); a lab test reads a real ruleset whose
counters move and which then changes.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest

from exporter.netlink import netfilter as nl
from exporter.netlink.netfilter.layout import DumpLayout, RuleColumns

DUMP = (Path(__file__).parent / "fixtures" / "firewall" / "nft-rules-ip-nat.bin").read_bytes()
SEQ = 5


def _learn(
    data: bytes = DUMP,
) -> tuple[DumpLayout, list[tuple[int, int, int]], list[nl.RuleCounter]]:
    out: list[nl.RuleCounter] = []
    spots: list[tuple[int, int, int]] = []
    assert nl.parse_rule_messages(data, out, SEQ, None, spots)
    layout = DumpLayout.of([data], [spots], SEQ)
    assert layout is not None
    return layout, spots, out


def _with_counters(spots: list[tuple[int, int, int]], counters: list[tuple[int, int]]) -> bytes:
    data = bytearray(DUMP)
    for (_, _, cpos), (packets, nbytes) in zip(spots, counters, strict=True):
        struct.pack_into(">Q", data, cpos + 20, nbytes)
        struct.pack_into(">Q", data, cpos + 32, packets)
    return bytes(data)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    yield a, b
    a.close()
    b.close()


def _receive(
    layout: DumpLayout, pair: tuple[socket.socket, socket.socket], *datagrams: bytes
) -> RuleColumns | None:
    sender, receiver = pair
    for d in datagrams:
        sender.send(d)
    return layout.receive(receiver, SEQ, bytearray(1 << 16))


def test_a_dump_of_the_same_ruleset_reads_its_new_counters(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    layout, spots, out = _learn()
    counters = [(10**12 + i, 7 * i + 2**40) for i in range(len(spots))]
    got = _receive(layout, pair, _with_counters(spots, counters))
    assert got == RuleColumns(
        tuple(r[2] for r in out), tuple(p for p, _ in counters), tuple(b for _, b in counters)
    )
    # and the full parse of the same bytes agrees
    full: list[nl.RuleCounter] = []
    nl.parse_rule_messages(_with_counters(spots, counters), full, SEQ)
    assert [(r[2], r[3], r[4]) for r in full] == list(zip(*got, strict=True))


def test_a_changed_handle_size_flag_or_end_does_not_fit(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    layout, spots, _ = _learn()
    handle = bytearray(DUMP)
    struct.pack_into(">Q", handle, spots[3][1], 999)
    intr = bytearray(DUMP)
    struct.pack_into("=H", intr, spots[2][0] + 6, nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR)
    failed = bytearray(DUMP)
    struct.pack_into("=i", failed, len(DUMP) - 4, -1)  # NLMSG_DONE carrying an error
    other_seq = bytearray(DUMP)
    struct.pack_into("=I", other_seq, len(DUMP) - 12, SEQ + 1)
    done = DUMP[-20:]
    for bad in (handle, intr, failed, DUMP + done):
        assert _receive(layout, pair, bytes(bad)) is None
    # not the end of this dump: its rest (up to its NLMSG_DONE) is read and dropped
    for bad in (other_seq, DUMP[:-20]):
        assert _receive(layout, pair, bytes(bad), DUMP[:100], done) is None
        assert _receive(layout, pair, DUMP) is not None
    # a misfit's rest is received and dropped: the next dump reads cleanly
    sender, receiver = pair
    buf = bytearray(1 << 16)
    two = DumpLayout(layout.datagrams * 2)  # expects a first datagram without the end
    sender.send(DUMP)
    assert two.receive(receiver, SEQ, buf) is None
    sender.send(DUMP[:100])  # a datagram that does not end the dump, then the end
    sender.send(DUMP)
    assert layout.receive(receiver, SEQ, buf) is None
    sender.send(DUMP)
    assert layout.receive(receiver, SEQ, buf) is not None


def test_a_refused_dump_ends_without_blocking(pair: tuple[socket.socket, socket.socket]) -> None:
    layout, _, _ = _learn()
    err = struct.pack("=IHHIIi", 36, nl.NLMSG_ERROR, 0, SEQ, 0, -1) + b"\0" * 16
    assert _receive(layout, pair, err) is None
    # a failed dump: NLMSG_DONE with an error where the layout had a clean one
    failed = bytearray(DUMP)
    struct.pack_into("=i", failed, len(DUMP) - 4, -4)
    assert _receive(layout, pair, bytes(failed)) is None


def test_no_layout_for_a_rule_without_a_plainly_encoded_counter() -> None:
    out: list[nl.RuleCounter] = []
    spots: list[tuple[int, int, int]] = []
    data = (Path(__file__).parent / "fixtures" / "firewall" / "nft-rules-all.bin").read_bytes()
    assert nl.parse_rule_messages(data, out, 4, None, spots)
    assert (None, None) in [(r[3], r[4]) for r in out]  # table t2 has a rule without counter
    assert DumpLayout.of([data], [spots], 4) is None
    # nor for a dump cut before its NLMSG_DONE, or with a message of another dump
    _, nat_spots, _ = _learn()
    assert DumpLayout.of([DUMP[:-20]], [nat_spots], SEQ) is None
    assert DumpLayout.of([DUMP], [nat_spots], SEQ + 1) is None


@pytest.mark.lab
def test_counters_of_a_real_ruleset_through_changes() -> None:
    lab.need_root()
    with lab.netns("nlay") as ns:
        rules = "".join(f"-A INPUT -p udp --dport {9000 + i} -j ACCEPT\n" for i in range(400))
        small = "".join(f"-A OUTPUT -p udp --dport {9500 + i} -j ACCEPT\n" for i in range(3))
        ns.exec(
            "iptables-nft-restore",
            input=f"*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}{small}COMMIT\n",
        )
        code = r"""
import json, socket, subprocess, sys
from exporter.netlink import netfilter as nl
r = nl.NftReader()
def read():
    c = r.counters(nl.NFPROTO_IPV4, "filter")
    return {"handles": len(c.handles), "packets": sum(c.packets), "bytes": sum(c.bytes),
            "first": c.packets[0], "last": c.packets[-4], "layout_reads": r.layout_reads}
def send(port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(n):
        s.sendto(b"x" * 10, ("127.0.0.1", port))
    s.close()
out = [read()]
send(9000, 3); send(9399, 5)
out.append(read())
send(9399, 1)
out.append(read())
subprocess.run(["iptables-nft", "-I", "INPUT", "-p", "tcp", "-j", "ACCEPT"], check=True)
out.append(read())
send(9000, 2)
out.append(read())
# one chain at a time: a big chain learns a layout, a small one is parsed each time
chains = []
for _ in range(3):
    before = r.layout_reads
    big = r.counters(nl.NFPROTO_IPV4, "filter", "INPUT")
    mid = r.layout_reads
    small = r.counters(nl.NFPROTO_IPV4, "filter", "OUTPUT")
    chains.append([len(big.handles), mid - before, len(small.handles), r.layout_reads - mid])
out.append(chains)
print(json.dumps(out))
"""
        *got, chains = json.loads(ns.exec(sys.executable, "-c", code))
    # a UDP datagram of 10 bytes is 38 bytes at the filter hook
    assert [g["handles"] for g in got] == [403, 403, 403, 404, 404]
    assert [g["packets"] for g in got] == [0, 8, 9, 9, 11]
    assert [g["bytes"] for g in got] == [0, 8 * 38, 9 * 38, 9 * 38, 11 * 38]
    assert [(g["first"], g["last"]) for g in got] == [(0, 0), (3, 5), (3, 6), (0, 6), (0, 6)]
    # A new socket's first dump comes in a smaller first datagram: the second
    # read does not fit the first's layout and learns the lasting one, which
    # the third uses. The changed ruleset does not fit (a full parse learns
    # its layout), the read after it uses that.
    assert [g["layout_reads"] for g in got] == [0, 0, 1, 1, 2]
    # INPUT (401 rules) is read with its layout from its second read on; OUTPUT
    # (3 rules, under LAYOUT_MIN_RULES) never
    assert chains == [[401, 0, 3, 0], [401, 1, 3, 0], [401, 1, 3, 0]]
