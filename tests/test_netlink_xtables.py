"""Pure tests of the x_tables parser (exporter/netlink/xtables.py): captured x_tables blobs.

The fixtures were captured in a lab namespace together with the tools' own
view (``iptables-legacy-save -c``) at the same moment, so the raw parse must agree with the tools
number for number.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.netlink import xtables as xt

FIX = Path(__file__).parent / "fixtures" / "firewall"


def _bin(name: str) -> bytes:
    return (FIX / name).read_bytes()


# --------------------------------------------------------------------------
# x_tables
# --------------------------------------------------------------------------


def _xt(family: xt.XtFamily, table: str) -> tuple[xt.XtTable, bytes]:
    info = xt.parse_xt_info(_bin(f"xt-{family.name}-{table}.info.bin"))
    blob = _bin(f"xt-{family.name}-{table}.bin")
    return xt.parse_xt_entries(family, info, blob), blob


@pytest.mark.parametrize("family", [xt.IPV4, xt.IPV6], ids=lambda f: f.name)
@pytest.mark.parametrize("table", ["filter", "nat"])
def test_entries_match_legacy_save(family: xt.XtFamily, table: str) -> None:
    parsed, _blob = _xt(family, table)
    save = "iptables" if family is xt.IPV4 else "ip6tables"
    text = (FIX / f"xt-{family.name}.{save}-legacy-save-c.txt").read_text()
    (saved,) = [t for t in parse_iptables_save(text, family.name, "x") if t.name == table]
    assert parsed.name == table
    assert [c.name for c in parsed.chains] == [c.name for c in saved.chains]
    for c in saved.chains:
        xc = parsed.chain(c.name)
        assert xc is not None
        assert xc.builtin == (c.policy is not None)
        assert xc.count == len(c.rules)
        got = list(
            zip(
                parsed.packets[xc.first : xc.first + xc.count],
                parsed.byte_counts[xc.first : xc.first + xc.count],
                strict=True,
            )
        )
        assert got == [(r.packets, r.bytes) for r in c.rules]
        if xc.builtin:
            assert xc.policy == c.policy
            assert xc.policy_entry is not None
            pe = xc.policy_entry
            assert (parsed.packets[pe], parsed.byte_counts[pe]) == (
                c.policy_packets,
                c.policy_bytes,
            )


def test_ipv4_nat_counters_are_nonzero_where_traffic_went() -> None:
    parsed, _ = _xt(xt.IPV4, "nat")
    out = parsed.chain("OUTPUT")
    assert out is not None
    assert (parsed.packets[out.first], parsed.byte_counts[out.first]) == (1, 84)


def test_skeleton_ignores_counters_but_sees_structure() -> None:
    parsed, blob = _xt(xt.IPV4, "filter")
    layout = xt.XtCounterLayout(xt.IPV4, parsed, blob)
    fwd = parsed.chain("FORWARD")
    assert fwd is not None
    # bump the packet counter of FORWARD's 3rd rule
    off = parsed.offsets[fwd.first + 2] + xt.IPV4.counters_offset
    bumped = bytearray(blob)
    struct.pack_into("=QQ", bumped, off, 17, 1700)
    reparsed = xt.parse_xt_entries(xt.IPV4, parsed.info, bytes(bumped))
    assert reparsed.skeleton == parsed.skeleton
    counts = layout.read(parsed.info, bumped)
    assert counts is not None
    assert counts[0][fwd.first + 2] == 17 and counts[1][fwd.first + 2] == 1700
    assert counts[0] == reparsed.packets and counts[1] == reparsed.byte_counts
    # change an interface name byte (structure): skeleton and layout notice
    changed = bytearray(blob)
    changed[parsed.offsets[fwd.first + 2] + 40] ^= 0x01
    assert xt.parse_xt_entries(xt.IPV4, parsed.info, bytes(changed)).skeleton != parsed.skeleton
    assert layout.read(parsed.info, changed) is None
    # so does a change in the first and last bytes (before the first counters, after the last)
    for where in (0, len(blob) - 1):
        edge = bytearray(blob)
        edge[where] ^= 0x80
        assert layout.read(parsed.info, edge) is None, where
    # the layout reads at an offset (the get_entries header before the blob)
    assert layout.read(parsed.info, b"\0" * 40 + blob, 40) == (parsed.packets, parsed.byte_counts)


def test_malformed_blobs_are_value_errors() -> None:
    parsed, blob = _xt(xt.IPV4, "filter")
    with pytest.raises(ValueError, match="getinfo said"):
        xt.parse_xt_entries(xt.IPV4, parsed.info, blob[:-8])
    broken = bytearray(blob)
    struct.pack_into("=H", broken, xt.IPV4.target_offset_field + 2, 4)  # next_offset of entry 0
    with pytest.raises(ValueError, match="next_offset"):
        xt.parse_xt_entries(xt.IPV4, parsed.info, bytes(broken))
    with pytest.raises(ValueError):
        xt.parse_xt_info(b"\0" * 10)


def test_table_names() -> None:
    assert xt.parse_table_names("nat\nfilter\n\n") == ["nat", "filter"]
