"""Raw rtnetlink (NETLINK_ROUTE) for the per-poll path: interface counters and change events.

pyroute2 decodes every attribute of every message (420 ms for a 1000-veth link
dump); the counters need none of that. ``RTM_GETSTATS`` with only
``IFLA_STATS_LINK_64`` requested returns one small fixed-layout message per
interface, which :func:`parse_stats_messages` turns into :class:`LinkStats`
without any I/O, so captured dumps serve as test fixtures.

Sockets belong to the network namespace of the process that opens them.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Mapping
from typing import TypeVar

from exporter.model import LinkStats

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWSTATS = 92
RTM_GETSTATS = 94

IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1

IFLA_STATS_LINK_64 = 1
STATS_FILTER_LINK_64 = 1 << (IFLA_STATS_LINK_64 - 1)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")  # len, type
_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad1, pad2, ifindex, filter_mask
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_ERRNO = struct.Struct("=i")
# struct rtnl_link_stats64 (uapi linux/if_link.h) starts with these eight u64:
# rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
_STATS64_HEAD = struct.Struct("=8Q")
# nlmsghdr + if_stats_msg + nlattr + the eight u64 above, in one unpack
_FAST_STATS = struct.Struct("=IHHII4xIIHH8Q")

_RECV_SIZE = 1 << 16
_RCVBUF = 1 << 20


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


Buffer = bytes | bytearray | memoryview


def _align(n: int) -> int:
    return (n + 3) & ~3


def _need(length: int, body: int, off: int, what: str) -> None:
    """Refuse a message too short for its fixed header (a clean error, never struct.error)."""
    if length < 16 + body:
        raise ValueError(f"truncated {what} at offset {off}: {length} bytes")


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
    stats: dict[int, LinkStats] = {}
    done = False
    fast = _FAST_STATS.unpack_from
    fast_size = _FAST_STATS.size
    prev = previous or {}
    end = len(data)
    off = 0
    while off + 16 <= end:
        if off + fast_size <= end:
            # The usual message: header, if_stats_msg, IFLA_STATS_LINK_64 first.
            (length, mtype, flags, mseq, _pid, ifindex, _mask, alen, atype,
             rxp, txp, rxb, txb, rxe, txe, rxd, txd) = fast(data, off)  # fmt: skip
            if (
                mtype == RTM_NEWSTATS
                and atype & 0x3FFF == IFLA_STATS_LINK_64
                and alen >= 68
                and fast_size <= length
                and off + length <= end
                and not flags & NLM_F_DUMP_INTR
                and (seq is None or mseq == seq)
            ):
                old = prev.get(ifindex)
                if (
                    old is not None
                    and old.rx_packets == rxp
                    and old.tx_packets == txp
                    and old.rx_bytes == rxb
                    and old.tx_bytes == txb
                    and old.rx_errors == rxe
                    and old.tx_errors == txe
                    and old.rx_dropped == rxd
                    and old.tx_dropped == txd
                ):
                    stats[ifindex] = old
                else:
                    stats[ifindex] = LinkStats(rxb, rxp, rxe, rxd, txb, txp, txe, txd)
                off += (length + 3) & ~3
                continue
        length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is not None and mseq != seq:
            off += _align(length)
            continue
        if flags & NLM_F_DUMP_INTR:
            raise InterruptedError("netlink dump interrupted by a concurrent change")
        if mtype == NLMSG_DONE:
            done = True
        elif mtype == NLMSG_ERROR:
            _need(length, _ERRNO.size, off, "NLMSG_ERROR")
            (err,) = _ERRNO.unpack_from(data, off + 16)
            if err:
                raise NetlinkError(-err, os.strerror(-err))
        elif mtype == RTM_NEWSTATS:
            _need(length, _IF_STATS_MSG.size, off, "RTM_NEWSTATS")
            ifindex = _IF_STATS_MSG.unpack_from(data, off + 16)[3]
            a = off + 16 + _IF_STATS_MSG.size
            while a + 4 <= off + length:
                alen, atype = _NLATTR.unpack_from(data, a)
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
                a += _align(alen)
        off += _align(length)
    return stats, done


def build_stats_request(seq: int) -> bytes:
    """An RTM_GETSTATS dump request for IFLA_STATS_LINK_64 of every interface."""
    body = _IF_STATS_MSG.pack(socket.AF_UNSPEC, 0, 0, 0, STATS_FILTER_LINK_64)
    hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + body


def _attr(atype: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def build_link_dump_request(seq: int, kind: str | None = None) -> bytes:
    """An RTM_GETLINK dump request, filtered by the kernel to one link kind when given."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0)
    if kind:
        body += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, kind.encode() + b"\0"))
    hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + body


def parse_link_names(data: Buffer, seq: int | None = None) -> tuple[dict[int, str], bool]:
    """RTM_NEWLINK messages -> {ifindex: name}, and whether NLMSG_DONE was seen."""
    names: dict[int, str] = {}
    done = False
    end = len(data)
    off = 0
    while off + 16 <= end:
        length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is not None and mseq != seq:
            off += _align(length)
            continue
        if flags & NLM_F_DUMP_INTR:
            raise InterruptedError("netlink dump interrupted by a concurrent change")
        if mtype == NLMSG_DONE:
            done = True
        elif mtype == NLMSG_ERROR:
            _need(length, _ERRNO.size, off, "NLMSG_ERROR")
            (err,) = _ERRNO.unpack_from(data, off + 16)
            if err:
                raise NetlinkError(-err, os.strerror(-err))
        elif mtype == RTM_NEWLINK:
            _need(length, _IFINFOMSG.size, off, "RTM_NEWLINK")
            index = _IFINFOMSG.unpack_from(data, off + 16)[3]
            a = off + 16 + _IFINFOMSG.size
            while a + 4 <= off + length:
                alen, atype = _NLATTR.unpack_from(data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == IFLA_IFNAME:
                    names[index] = bytes(data[a + 4 : a + alen]).split(b"\0", 1)[0].decode()
                    break
                a += _align(alen)
        off += _align(length)
    return names, done


_T = TypeVar("_T")
Parser = Callable[[Buffer, int], tuple[dict[int, _T], bool]]


class _Requester:
    """One NETLINK_ROUTE socket for dump round trips, parsing each datagram as it arrives."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._timeout = timeout
        self._buf = bytearray(_RECV_SIZE)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, 0))
                sock.settimeout(self._timeout)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def dump(
        self, request: bytes, parse: Parser[_T], retries: int = 3, raw: list[bytes] | None = None
    ) -> dict[int, _T]:
        """Send a dump request (its seq field is set here) and merge the parsed replies.

        An interrupted dump is retried up to ``retries`` times. When ``raw`` is
        given, the received datagrams are appended to it.
        """
        for attempt in range(retries + 1):
            try:
                return self._dump_once(request, parse, raw)
            except InterruptedError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    def _dump_once(
        self, request: bytes, parse: Parser[_T], raw: list[bytes] | None
    ) -> dict[int, _T]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        sock = self._socket()
        result: dict[int, _T] = {}
        view = memoryview(self._buf)
        try:
            sock.send(request[:8] + struct.pack("=I", seq) + request[12:])
            while True:
                n = sock.recv_into(self._buf)
                if n == 0:
                    raise NetlinkError(errno.EIO, "netlink socket closed")
                if raw is not None:
                    raw.append(bytes(view[:n]))
                part, done = parse(view[:n], seq)
                result.update(part)
                if done:
                    return result
        except BaseException:
            self.close()  # the rest of the dump would confuse the next round trip
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StatsReader:
    """Reads every interface's counters with one RTM_GETSTATS dump per call."""

    def __init__(self) -> None:
        self._req = _Requester()
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


def read_link_names(kind: str | None = None) -> dict[int, str]:
    """{ifindex: name} of the interfaces of one kind ("bridge", ...), or of all."""
    req = _Requester()
    try:
        return req.dump(build_link_dump_request(0, kind), parse_link_names)
    finally:
        req.close()


def read_link_dump_raw(kind: str | None = None) -> bytes:
    """The received bytes of one RTM_GETLINK dump (for capturing fixtures)."""
    req = _Requester()
    raw: list[bytes] = []
    try:
        req.dump(build_link_dump_request(0, kind), parse_link_names, raw=raw)
    finally:
        req.close()
    return b"".join(raw)


class ChangeMonitor:
    """A non-blocking socket on rtnetlink multicast groups (default: link changes).

    :meth:`changed` drains it and says whether anything arrived since the last
    call, counting a receive-buffer overflow (ENOBUFS, events lost) as a change.
    Open it before the first full read so no change falls between the two.
    """

    def __init__(self, groups: int = RTMGRP_LINK, rcvbuf: int = _RCVBUF) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((0, groups))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._buf = bytearray(_RECV_SIZE)

    def changed(self) -> bool:
        """Drain pending notifications; True if there were any (or some were lost)."""
        sock = self._sock
        if sock is None:
            raise ValueError("monitor is closed")
        seen = False
        while True:
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                return seen
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    seen = True
                    continue
                raise
            if n >= 16:
                seen = True

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("monitor is closed")
        return self._sock.fileno()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
