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

_RECV_SIZE = 1 << 16
_RCVBUF = 1 << 20


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_stats_messages(data: bytes, seq: int | None = None) -> tuple[dict[int, LinkStats], bool]:
    """Turn received RTM_NEWSTATS messages into counters by ifindex.

    ``data`` is one or more netlink datagrams as received (concatenated).
    Returns the counters and whether NLMSG_DONE was seen. Messages whose
    sequence number differs from ``seq`` (when given) are ignored; an
    NLMSG_ERROR raises :class:`NetlinkError`; an interrupted dump
    (NLM_F_DUMP_INTR) raises ``InterruptedError`` so the caller retries.
    """
    stats: dict[int, LinkStats] = {}
    done = False
    unpack_hdr = _NLMSGHDR.unpack_from
    unpack_attr = _NLATTR.unpack_from
    unpack_counters = _STATS64_HEAD.unpack_from
    end = len(data)
    off = 0
    while off + 16 <= end:
        length, mtype, flags, mseq, _pid = unpack_hdr(data, off)
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
            (err,) = _ERRNO.unpack_from(data, off + 16)
            if err:
                raise NetlinkError(-err, os.strerror(-err))
        elif mtype == RTM_NEWSTATS:
            _fam, _p1, _p2, ifindex, _mask = _IF_STATS_MSG.unpack_from(data, off + 16)
            a = off + 16 + 12
            msg_end = off + length
            while a + 4 <= msg_end:
                alen, atype = unpack_attr(data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == IFLA_STATS_LINK_64 and alen >= 4 + 64:
                    rxp, txp, rxb, txb, rxe, txe, rxd, txd = unpack_counters(data, a + 4)
                    stats[ifindex] = LinkStats(
                        rx_bytes=rxb,
                        rx_packets=rxp,
                        rx_errors=rxe,
                        rx_dropped=rxd,
                        tx_bytes=txb,
                        tx_packets=txp,
                        tx_errors=txe,
                        tx_dropped=txd,
                    )
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


def parse_link_names(data: bytes, seq: int | None = None) -> tuple[dict[int, str], bool]:
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
            (err,) = _ERRNO.unpack_from(data, off + 16)
            if err:
                raise NetlinkError(-err, os.strerror(-err))
        elif mtype == RTM_NEWLINK:
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


class _Requester:
    """One NETLINK_ROUTE socket for request/dump round trips."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._buf = bytearray(_RECV_SIZE)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, 0))
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def dump(self, request: bytes) -> bytes:
        """Send a dump request (its seq field is overwritten) and return all replies."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        sock = self._socket()
        try:
            sock.send(request[:8] + struct.pack("=I", seq) + request[12:])
            chunks: list[bytes] = []
            view = memoryview(self._buf)
            while True:
                n = sock.recv_into(self._buf)
                if n == 0:
                    raise NetlinkError(errno.EIO, "netlink socket closed")
                chunk = bytes(view[:n])
                chunks.append(chunk)
                if _ends_dump(chunk, seq):
                    return b"".join(chunks)
        except BaseException:
            self.close()  # leftover replies would confuse the next round trip
            raise

    @property
    def seq(self) -> int:
        return self._seq

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _ends_dump(chunk: bytes, seq: int) -> bool:
    """Whether this datagram carries the end of dump ``seq`` (DONE or ERROR)."""
    off = 0
    end = len(chunk)
    while off + 16 <= end:
        length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(chunk, off)
        if length < 16:
            return True  # malformed: stop reading, the parser reports it
        if mseq == seq and mtype in (NLMSG_DONE, NLMSG_ERROR):
            return True
        off += _align(length)
    return False


class StatsReader:
    """Reads every interface's counters with one RTM_GETSTATS dump per call."""

    def __init__(self, retries: int = 3) -> None:
        self._req = _Requester()
        self._retries = retries

    def read(self) -> dict[int, LinkStats]:
        """{ifindex: LinkStats} for every interface of this process's network namespace."""
        for attempt in range(self._retries + 1):
            data = self._req.dump(build_stats_request(0))
            try:
                stats, _done = parse_stats_messages(data, self._req.seq)
            except InterruptedError:
                if attempt == self._retries:
                    raise
                continue
            return stats
        raise AssertionError("unreachable")

    def read_raw(self) -> bytes:
        """The received bytes of one dump (for capturing fixtures)."""
        return self._req.dump(build_stats_request(0))

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
        for attempt in range(4):
            data = req.dump(build_link_dump_request(0, kind))
            try:
                return parse_link_names(data, req.seq)[0]
            except InterruptedError:
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")
    finally:
        req.close()


class ChangeMonitor:
    """A non-blocking socket on rtnetlink multicast groups (default: link changes).

    :meth:`changed` drains it and says whether anything arrived since the last
    call, counting a receive-buffer overflow (ENOBUFS, events lost) as a change.
    Open it before the first full read so no change falls between the two.
    """

    def __init__(self, groups: int = RTMGRP_LINK) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
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
