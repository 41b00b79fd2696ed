"""Pure tests of the nfnetlink parsers (exporter/netlink/netfilter/): captured nfnetlink dumps.

The fixtures were captured in a lab namespace together with the tools' own
view (``nft -a list ruleset``) at the same moment, so the raw parse must agree with the tools
number for number.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_text
from exporter.netlink import netfilter as nl

FIX = Path(__file__).parent / "fixtures" / "firewall"


def _bin(name: str) -> bytes:
    return (FIX / name).read_bytes()


# --------------------------------------------------------------------------
# nfnetlink
# --------------------------------------------------------------------------


def test_requests_are_plain_gets() -> None:
    req = nl.build_getrule_dump(7, nl.NFPROTO_IPV4, "filter", "FORWARD")
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert length == len(req)
    assert mtype == 0x0A07  # NFT_MSG_GETRULE, never NFT_MSG_GETRULE_RESET (0x0A19)
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_DUMP
    assert seq == 7
    assert req[16] == nl.NFPROTO_IPV4
    assert b"filter\0" in req and b"FORWARD\0" in req
    assert struct.unpack_from("=H", nl.build_request(nl.T_GETGEN, 1, 1), 4)[0] == 0x0A10


def test_generation() -> None:
    gen = nl.parse_gen_message(_bin("nft-gen.bin"), 1)
    assert isinstance(gen, int) and gen > 0
    assert nl.parse_gen_message(_bin("nft-gen.bin"), 99) is None


def test_tables_dump() -> None:
    out: list[nl.NftTableInfo] = []
    assert nl.parse_table_messages(_bin("nft-tables.bin"), out, 2)
    assert [(t.family, t.name) for t in out] == [
        (nl.NFPROTO_IPV4, "filter"),
        (nl.NFPROTO_IPV4, "nat"),
        (nl.NFPROTO_IPV4, "docker-bridges"),
        (nl.NFPROTO_INET, "t2"),
    ]


def test_chains_dump_matches_iptables_nft_save() -> None:
    out: list[nl.NftChainInfo] = []
    assert nl.parse_chain_messages(_bin("nft-chains.bin"), out, 3)
    chains = {(c.table, c.name): c for c in out}
    fwd = chains[("filter", "FORWARD")]
    assert (fwd.hook_name, fwd.policy_name, fwd.type, fwd.priority) == (
        "forward",
        "drop",
        "filter",
        0,
    )
    assert not chains[("filter", "DOCKER")].is_base
    assert chains[("filter", "DOCKER")].policy is None
    # iptables-nft base chains carry policy counters; compare with the tool's
    saved = parse_iptables_save((FIX / "iptables-nft-save-c.txt").read_text(), "ipv4", "x")
    n = 0
    for table in saved:
        for c in table.chains:
            if c.policy is not None:
                info = chains[(table.name, c.name)]
                assert (info.packets, info.bytes) == (c.policy_packets, c.policy_bytes)
                assert info.policy_name == c.policy.lower()
                n += 1
    assert n == 7
    assert chains[("filter", "OUTPUT")].packets == 3
    # native nft base chains have no counters
    assert chains[("docker-bridges", "filter-FORWARD")].packets is None
    assert chains[("t2", "c")].hook_name == "input"


def test_rule_dump_counters_match_nft_listing() -> None:
    out: list[nl.RuleCounter] = []
    assert nl.parse_rule_messages(_bin("nft-rules-all.bin"), out, 4)
    listed = {
        (t.name, r.handle): (r.packets, r.bytes)
        for t in parse_nft_text((FIX / "nft-a-ruleset.txt").read_text())
        for c in t.chains
        for r in c.rules
    }
    got = {(table, handle): (pk, by) for table, _chain, handle, pk, by in out}
    assert got == listed
    assert len(out) == 33
    assert got[("nat", 7)] == (1, 84)
    assert got[("t2", 2)] == (None, None)  # no counter statement
    # rules of one chain are contiguous and in order
    fwd = [h for t, c, h, _p, _b in out if (t, c) == ("filter", "FORWARD")]
    assert fwd == list(range(8, 18))


def test_rule_dump_of_one_table() -> None:
    out: list[nl.RuleCounter] = []
    assert nl.parse_rule_messages(_bin("nft-rules-ip-nat.bin"), out, 5)
    assert {r[0] for r in out} == {"nat"}
    assert len(out) == 8


def _attr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _rule_msg(exprs: bytes, flags: int = nl.NLM_F_MULTI, seq: int = 9, extra: bytes = b"") -> bytes:
    body = (
        struct.pack("=BBH", 2, 0, 0)
        + _attr(nl.NFTA_RULE_TABLE, b"filter\0")
        + _attr(nl.NFTA_RULE_CHAIN, b"FORWARD\0")
        + _attr(nl.NFTA_RULE_HANDLE, struct.pack(">Q", 42))
        + _attr(nl.NFTA_RULE_EXPRESSIONS | 0x8000, exprs)
        + extra
    )
    return struct.pack("=IHHII", 16 + len(body), nl.T_NEWRULE, flags, seq, 0) + body


def _expr(name: bytes, data: bytes) -> bytes:
    return _attr(nl.NFTA_LIST_ELEM, _attr(nl.NFTA_EXPR_NAME, name) + _attr(nl.NFTA_EXPR_DATA, data))


def test_counter_with_64bit_padding_takes_the_slow_path() -> None:
    pad = _attr(3, b"")  # NFTA_COUNTER_PAD, as on arches without unaligned access
    data = (
        pad
        + _attr(nl.NFTA_COUNTER_BYTES, struct.pack(">Q", 1500))
        + pad
        + _attr(nl.NFTA_COUNTER_PACKETS, struct.pack(">Q", 3))
    )
    msg = _rule_msg(_expr(b"meta\0", b"\0" * 8) + _expr(b"counter\0", data))
    out: list[nl.RuleCounter] = []
    assert not nl.parse_rule_messages(msg, out, 9)
    assert out == [("filter", "FORWARD", 42, 3, 1500)]


def test_fast_path_counter() -> None:
    data = _attr(nl.NFTA_COUNTER_BYTES, struct.pack(">Q", 2**40 + 5)) + _attr(
        nl.NFTA_COUNTER_PACKETS, struct.pack(">Q", 7)
    )
    msg = _rule_msg(_expr(b"counter\0", data))
    out: list[nl.RuleCounter] = []
    nl.parse_rule_messages(msg, out)
    assert out == [("filter", "FORWARD", 42, 7, 2**40 + 5)]


def test_counter_word_in_userdata_is_not_a_counter() -> None:
    userdata = _attr(7, b"\x00\x08counter\0")  # NFTA_RULE_USERDATA: comment "counter"
    msg = _rule_msg(_expr(b"immediate\0", b"\0" * 8), extra=userdata)
    out: list[nl.RuleCounter] = []
    nl.parse_rule_messages(msg, out)
    assert out == [("filter", "FORWARD", 42, None, None)]


def test_interrupted_dump_raises() -> None:
    msg = _rule_msg(b"", flags=nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR)
    with pytest.raises(InterruptedError):
        nl.parse_rule_messages(msg, [], 9)


def test_error_message_raises_with_errno() -> None:
    err = struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, 9, 0) + struct.pack("=i", -errno.EPERM)
    err += b"\0" * 16
    with pytest.raises(nl.NetlinkError) as info:
        nl.parse_rule_messages(err, [], 9)
    assert info.value.errno == errno.EPERM


def test_other_sequence_numbers_are_ignored_and_done_ends() -> None:
    done = struct.pack("=IHHII", 20, nl.NLMSG_DONE, nl.NLM_F_MULTI, 9, 0) + b"\0" * 4
    stale = _rule_msg(b"", seq=8)
    out: list[nl.RuleCounter] = []
    assert nl.parse_rule_messages(stale + done, out, 9)
    assert out == []


def test_truncated_message_is_a_value_error() -> None:
    msg = _rule_msg(b"")
    with pytest.raises(ValueError):
        nl.parse_rule_messages(msg[:-3], [], 9)
    with pytest.raises(ValueError):
        nl.parse_rule_messages(msg[:10], [], 9)


@pytest.mark.parametrize("msgtype", [nl.T_NEWTABLE, nl.T_NEWCHAIN, nl.T_NEWRULE, nl.T_NEWGEN])
def test_nftables_message_without_nfgenmsg_is_a_value_error(msgtype: int) -> None:
    msg = struct.pack("=IHHII", 16, msgtype, 0, 1, 0)
    with pytest.raises(ValueError, match="without nfgenmsg"):
        if msgtype == nl.T_NEWTABLE:
            nl.parse_table_messages(msg, [])
        elif msgtype == nl.T_NEWCHAIN:
            nl.parse_chain_messages(msg, [])
        elif msgtype == nl.T_NEWRULE:
            nl.parse_rule_messages(msg, [])
        else:
            nl.parse_gen_message(msg)
