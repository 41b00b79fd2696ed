"""The ctnetlink parsers fuzzed as tests/test_fuzz.py fuzzes the others.

Arbitrary bytes, messages shaped like ctnetlink's (nested tuples of random
attributes) and the real captures of tests/fixtures/conntrack mutated: the
datagram parsers give a result or a clean error (``ValueError``; for an
NLMSG_ERROR ``NetlinkError``, for an interrupted dump ``InterruptedError``),
and the one-entry parser ``parse_entry`` only ever raises ``ValueError``.
"""

from __future__ import annotations

import struct

from hypothesis import example, given
from hypothesis import strategies as st
from test_fuzz import (
    FUZZ,
    NETLINK_CLEAN,
    bin_fixture,
    clean,
    mutated_bytes,
    netlink_shaped,
    nlattr,
    nlmsg,
)

from exporter.netlink import conntrack as ct

CT_SEEDS = [bin_fixture("conntrack", n) for n in ("dump.bin", "stats.bin", "stats-cpu.bin")]


def ct_parse(data: bytes) -> None:
    clean(lambda: ct.parse_ct_messages(data, []), *NETLINK_CLEAN)
    clean(lambda: ct.parse_ct_messages(data, [], seq=7), *NETLINK_CLEAN)
    clean(lambda: ct.parse_stats_reply(data), *NETLINK_CLEAN)
    clean(lambda: ct.parse_stats_cpu_messages(data, {}), *NETLINK_CLEAN)
    if len(data) >= 20:
        n = min(len(data), struct.unpack_from("=I", data)[0])
        # one message, whatever its header says: only ValueError
        clean(lambda: ct.parse_entry(data, 0, max(n, 20)), ValueError)


def _entry(attrs: bytes) -> bytes:
    return nlmsg(ct.T_CT_NEW, 2, 0, b"\x02\x00\x00\x00" + attrs)


# A conntrack entry's attributes: tuples nested two levels with random leaves of the
# types the parser reads, protoinfo nested likewise, and anything else.
leaf = st.builds(
    nlattr,
    st.integers(0, 6) | st.sampled_from([0x8001, 0x8002, 0x4001]),
    st.binary(max_size=20),
    st.one_of(st.none(), st.integers(0, 40)),
)
nest = st.builds(
    nlattr,
    st.sampled_from([1, 2, 3, 0x8001, 0x8002]),
    st.lists(leaf, max_size=4).map(b"".join),
    st.one_of(st.none(), st.integers(0, 80)),
)
top = st.builds(
    nlattr,
    st.sampled_from([1, 2, 3, 4, 7, 12, 0x8001, 0x8002, 0x8004]),
    st.lists(nest, max_size=3).map(b"".join),
    st.one_of(st.none(), st.integers(0, 200)),
)
ct_shaped = st.lists(
    st.one_of(
        st.lists(top, max_size=5).map(lambda a: _entry(b"".join(a))),
        st.builds(
            lambda attrs: nlmsg(ct.T_CT_STATS_CPU, 2, 0, b"\0\0\0\1" + attrs),
            st.lists(st.builds(nlattr, st.integers(0, 16), st.binary(max_size=6)), max_size=6).map(
                b"".join
            ),
        ),
        st.builds(
            lambda attrs: nlmsg(ct.T_CT_STATS, 0, 0, b"\0\0\0\0" + attrs),
            st.lists(st.builds(nlattr, st.integers(0, 3), st.binary(max_size=6)), max_size=3).map(
                b"".join
            ),
        ),
        st.just(nlmsg(3, 2, 0, b"\0\0\0\0")),
    ),
    max_size=4,
).map(b"".join)


@FUZZ
@given(st.one_of(st.binary(max_size=512), netlink_shaped))
@example(nlmsg(ct.T_CT_NEW, 0, 0, b"", length=0))
@example(nlmsg(ct.T_CT_NEW, 0, 0, b"\x02\x00\x00\x00", length=20))
@example(_entry(nlattr(0x8001, nlattr(0x8001, nlattr(1, b"\x01\x02\x03")))))  # 3-byte address
def test_conntrack_arbitrary_bytes(data: bytes) -> None:
    ct_parse(data)


@FUZZ
@given(ct_shaped)
def test_conntrack_attribute_shaped(data: bytes) -> None:
    ct_parse(data)


@FUZZ
@given(st.sampled_from(range(len(CT_SEEDS))).flatmap(lambda i: mutated_bytes(CT_SEEDS[i])))
def test_conntrack_mutated_captures(data: bytes) -> None:
    ct_parse(data)
