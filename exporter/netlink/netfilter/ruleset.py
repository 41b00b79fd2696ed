"""The ruleset's generation (NFT_MSG_GETGEN) and its tables (NFT_MSG_GETTABLE)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from exporter.netlink import core
from exporter.netlink.core import NLMSG_DONE, Buffer
from exporter.netlink.netfilter.messages import T_NEWGEN, T_NEWTABLE, be32, be64, messages, text

_T = TypeVar("_T")

NFTA_TABLE_NAME = 1
NFTA_TABLE_FLAGS = 2
NFTA_TABLE_USE = 3
NFTA_TABLE_HANDLE = 4

NFTA_GEN_ID = 1


@dataclass(frozen=True, slots=True)
class NftTableInfo:
    family: int  # NFPROTO_*
    name: str
    handle: int
    flags: int
    use: int  # number of chains, sets, objects in the table


def parse_gen_message(data: Buffer, seq: int | None = None) -> int | None:
    """The generation id from a NEWGEN reply to GETGEN; None if ``data`` has no reply to ``seq``."""
    for mtype, off, mlen, _seq in messages(data, seq):
        if mtype == T_NEWGEN:
            gen = be32(data, core.find_attrs(data, off + 20, off + mlen).get(NFTA_GEN_ID))
            if gen is None:
                raise ValueError("NEWGEN without NFTA_GEN_ID")
            return gen
    return None


def parse_dump_messages(
    data: Buffer,
    out: list[_T],
    seq: int | None,
    wanted: int,
    parse_one: Callable[[Buffer, int, int], _T],
) -> bool:
    """Append ``parse_one`` of each ``wanted`` message to ``out``; True once NLMSG_DONE was seen."""
    for mtype, off, mlen, _seq in messages(data, seq):
        if mtype == NLMSG_DONE:
            return True
        if mtype == wanted:
            out.append(parse_one(data, off, mlen))
    return False


def parse_table_message(data: Buffer, off: int, mlen: int) -> NftTableInfo:
    """One NEWTABLE message at ``off``."""
    a = core.find_attrs(data, off + 20, off + mlen)
    return NftTableInfo(
        family=data[off + 16],
        name=text(data, a.get(NFTA_TABLE_NAME)),
        handle=be64(data, a.get(NFTA_TABLE_HANDLE)) or 0,
        flags=be32(data, a.get(NFTA_TABLE_FLAGS)) or 0,
        use=be32(data, a.get(NFTA_TABLE_USE)) or 0,
    )


def parse_table_messages(data: Buffer, out: list[NftTableInfo], seq: int | None = None) -> bool:
    """Append the tables of NEWTABLE dump messages to ``out``; True once NLMSG_DONE was seen."""
    return parse_dump_messages(data, out, seq, T_NEWTABLE, parse_table_message)
