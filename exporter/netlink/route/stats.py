"""RTM_GETSTATS: every interface's counters, one small fixed-layout message each.

pyroute2 decodes every attribute of every message into objects (420 ms and
~30 MB that stay for a 1000-veth link dump); with only ``IFLA_STATS_LINK_64``
requested the kernel sends one small message per interface, and
:func:`parse_stats_messages` reads a datagram of them with a single unpack. This is
the links collector's per-poll hot path: its loop stays unrolled (not
:func:`core.messages`).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping

from exporter.model import LinkStats
from exporter.netlink import core
from exporter.netlink.core import (
    NLATTR,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    Buffer,
    align,
    need,
)
from exporter.netlink.route.requester import Requester

RTM_NEWSTATS = 92
RTM_GETSTATS = 94
IFLA_STATS_LINK_64 = 1
STATS_FILTER_LINK_64 = 1 << (IFLA_STATS_LINK_64 - 1)

_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad1, pad2, ifindex, filter_mask
# struct rtnl_link_stats64 (uapi linux/if_link.h) starts with these eight u64:
# rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
_STATS64_HEAD = struct.Struct("=8Q")
# nlmsghdr + if_stats_msg + nlattr + the eight u64 above, in one unpack
_FAST_FORMAT = "IHHII4xIIHH8Q"
_FAST_STATS = struct.Struct("=" + _FAST_FORMAT)
_FAST_FIELDS = 17
_U32 = struct.Struct("=I")
_new_stats = tuple.__new__  # LinkStats from a tuple in LinkStats' field order, without its __new__
# (message length, messages) -> one Struct over a datagram of that many such messages
_STRIDES: dict[tuple[int, int], struct.Struct] = {}
_STRIDES_KEPT = 64


def _stride(length: int, count: int) -> struct.Struct:
    reader = _STRIDES.get((length, count))
    if reader is None:
        if len(_STRIDES) >= _STRIDES_KEPT:
            _STRIDES.clear()
        pad = length - _FAST_STATS.size
        reader = struct.Struct("=" + f"{_FAST_FORMAT}{pad}x" * count)
        _STRIDES[length, count] = reader
    return reader


def _parse_uniform(
    data: Buffer, seq: int | None, prev: Mapping[int, LinkStats]
) -> tuple[dict[int, LinkStats], int] | None:
    """The leading run of same-length RTM_NEWSTATS messages, read with one unpack.

    That is the usual datagram of the dump: one message per interface, each
    with only IFLA_STATS_LINK_64, all of one length. Returns the counters and
    how many bytes they took (what follows, such as NLMSG_DONE, is left to the
    caller); None when the datagram is not like that, for the general parse.
    """
    end = len(data)
    if end < 2 * _FAST_STATS.size:
        return None
    length = _U32.unpack_from(data, 0)[0]
    if length < _FAST_STATS.size or length & 3:
        return None
    count = end // length
    v = _stride(length, count).unpack_from(data)
    f = _FAST_FIELDS
    if (
        set(v[0::f]) != {length}
        or set(v[1::f]) != {RTM_NEWSTATS}
        or any(flags & NLM_F_DUMP_INTR for flags in set(v[2::f]))
        or (seq is not None and set(v[3::f]) != {seq})
        or any(atype & 0x3FFF != IFLA_STATS_LINK_64 for atype in set(v[8::f]))
        or min(v[7::f]) < 68
    ):
        return None
    stats: dict[int, LinkStats] = {}
    get = prev.get
    it = iter(v)
    for _, _, _, _, _, ifindex, _, _, _, rxp, txp, rxb, txb, rxe, txe, rxd, txd in zip(
        *[it] * f, strict=True
    ):
        now = (rxb, rxp, rxe, rxd, txb, txp, txe, txd)
        old = get(ifindex)
        stats[ifindex] = old if old == now else _new_stats(LinkStats, now)  # type: ignore[assignment]
    return stats, count * length


def parse_stats_messages(
    data: Buffer, seq: int | None = None, previous: Mapping[int, LinkStats] | None = None
) -> tuple[dict[int, LinkStats], bool]:
    """Turn received RTM_NEWSTATS messages into counters by ifindex.

    ``data`` is one or more netlink datagrams as received (concatenated).
    Returns the counters and whether NLMSG_DONE was seen. Messages whose
    sequence number differs from ``seq`` (when given) are ignored; an
    NLMSG_ERROR raises :class:`NetlinkError`; an interrupted dump
    (NLM_F_DUMP_INTR) raises ``InterruptedError`` so the caller retries.
    An interface whose counters equal those in ``previous`` gets that same
    object back (building a frozen dataclass costs more than parsing).
    """
    prev = previous or {}
    done = False
    end = len(data)
    off = 0
    uniform = _parse_uniform(data, seq, prev)
    if uniform is None:
        stats: dict[int, LinkStats] = {}
    else:
        stats, off = uniform
    while off + 16 <= end:
        length, mtype, flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is not None and mseq != seq:
            off += align(length)
            continue
        if flags & NLM_F_DUMP_INTR:
            raise InterruptedError("netlink dump interrupted by a concurrent change")
        if mtype == NLMSG_DONE:
            if (exc := core.done_error(data, off, length)) is not None:
                raise exc
            done = True
        elif mtype == NLMSG_ERROR:
            if (exc := core.error_of(data, off, length)) is not None:
                raise exc
        elif mtype == RTM_NEWSTATS:
            need(length, _IF_STATS_MSG.size, off, "RTM_NEWSTATS")
            ifindex = _IF_STATS_MSG.unpack_from(data, off + 16)[3]
            a = off + 16 + _IF_STATS_MSG.size
            while a + 4 <= off + length:
                alen, atype = NLATTR.unpack_from(data, a)
                if alen < 4:
                    break
                if (
                    atype & 0x3FFF == IFLA_STATS_LINK_64
                    and alen >= 4 + 64
                    and a + alen <= off + length
                ):
                    rxp, txp, rxb, txb, rxe, txe, rxd, txd = _STATS64_HEAD.unpack_from(data, a + 4)
                    stats[ifindex] = LinkStats(rxb, rxp, rxe, rxd, txb, txp, txe, txd)
                    break
                a += align(alen)
        off += align(length)
    return stats, done


def build_stats_request(seq: int) -> bytes:
    """An RTM_GETSTATS dump request for IFLA_STATS_LINK_64 of every interface."""
    body = _IF_STATS_MSG.pack(socket.AF_UNSPEC, 0, 0, 0, STATS_FILTER_LINK_64)
    return core.message(RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


class StatsReader:
    """Reads every interface's counters with one RTM_GETSTATS dump per call."""

    def __init__(self) -> None:
        self._req = Requester()
        self._previous: dict[int, LinkStats] = {}
        self._request = build_stats_request(0)

    def _parse(self, data: Buffer, seq: int) -> tuple[dict[int, LinkStats], bool]:
        return parse_stats_messages(data, seq, self._previous)

    def read(self) -> dict[int, LinkStats]:
        """{ifindex: LinkStats} for every interface of this process's network namespace."""
        stats = self._req.dump(self._request, self._parse)
        self._previous = stats
        return stats

    def read_raw(self) -> bytes:
        """The received bytes of one dump (for capturing fixtures)."""
        raw: list[bytes] = []
        self._req.dump(self._request, self._parse, raw=raw)
        return b"".join(raw)

    def close(self) -> None:
        self._req.close()


def read_link_stats() -> dict[int, LinkStats]:
    """One-shot :meth:`StatsReader.read`."""
    reader = StatsReader()
    try:
        return reader.read()
    finally:
        reader.close()
