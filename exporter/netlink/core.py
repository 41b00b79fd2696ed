"""Netlink framing, once: message and attribute layout, the reply walk, the socket.

Shared by the rtnetlink readers (:mod:`exporter.netlink.route`) and the
nfnetlink reader (:mod:`exporter.netlink.netfilter`). Pure parts first
(:func:`messages`, :func:`attrs`, :func:`find_attrs`, request encoding), then
the socket (:class:`NetlinkSocket`): opened lazily, one request/reply exchange
at a time, closed on any error so the rest of an answer cannot confuse the
next exchange, retried while a dump is interrupted.

The two poll hot paths (the ``RTM_GETSTATS`` dump and the ``NFT_MSG_GETRULE``
counter dump) walk their messages with their own unrolled loops over the same
layout (:data:`NLMSGHDR`, :data:`NLATTR`), for speed; everything else uses the
walkers here. Parsers raise ``ValueError`` on malformed input,
:class:`NetlinkError` on an ``NLMSG_ERROR`` carrying an errno and
``InterruptedError`` on an interrupted dump (``NLM_F_DUMP_INTR``).

Uapi: linux/include/uapi/linux/netlink.h. Sockets belong to the network
namespace of the process that opens them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import TypeVar

_T = TypeVar("_T")

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # an attribute's type without NLA_F_NESTED / NLA_F_NET_BYTEORDER

SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type
_ERRNO = struct.Struct("=i")
_U32 = _SEQ = struct.Struct("=I")

RECV_SIZE = 1 << 16  # one datagram of a dump reply at most

Buffer = bytes | bytearray | memoryview


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set).

    ``request`` names the request ("NFT_MSG_GETGEN", "RTM_GETLINK", ...) once
    a :class:`NetlinkSocket` exchange has seen the error; "" from the pure
    parsers.
    """

    request: str = ""


# --------------------------------------------------------------------------
# Parsing (pure)
# --------------------------------------------------------------------------


def align(n: int) -> int:
    """``n`` rounded up to netlink's 4-byte alignment (NLMSG_ALIGN, NLA_ALIGN)."""
    return (n + 3) & ~3


def need(length: int, body: int, off: int, what: str) -> None:
    """Refuse a message too short for its fixed header (a clean error, never struct.error)."""
    if length < 16 + body:
        raise ValueError(f"truncated {what} at offset {off}: {length} bytes")


def kernel_error(err: int) -> NetlinkError:
    """The NetlinkError for an NLMSG_ERROR's (negative) errno, whatever its value."""
    code = -err
    try:
        text = os.strerror(code)
    except (OverflowError, ValueError):
        text = f"Unknown error {code}"
    return NetlinkError(code, text)


def error_of(data: Buffer, off: int, length: int) -> NetlinkError | None:
    """The error an NLMSG_ERROR message at ``off`` carries; None for an acknowledgement."""
    need(length, _ERRNO.size, off, "NLMSG_ERROR")
    (err,) = _ERRNO.unpack_from(data, off + 16)
    return kernel_error(err) if err else None


def done_error(data: Buffer, off: int, length: int) -> NetlinkError | None:
    """The error a dump's NLMSG_DONE at ``off`` carries (its payload: an int, negative
    errno when the dump failed, e.g. EINVAL for an unknown IFLA_TARGET_NETNSID); None if none."""
    if length < 20:
        return None
    (err,) = _ERRNO.unpack_from(data, off + 16)
    return kernel_error(err) if err < 0 else None


def messages(
    data: Buffer, seq: int | None = None, *, raise_errors: bool = True
) -> Iterator[tuple[int, int, int, int]]:
    """(type, offset, length, seq) of each message of ``seq`` (of any when None).

    NLMSG_DONE is yielded like any other type, unless it carries an error
    (:func:`done_error`). An NLMSG_ERROR carrying an errno, too, raises
    :class:`NetlinkError`, and an acknowledgement is skipped;
    with ``raise_errors`` False both are yielded instead (see
    :func:`error_of`). An interrupted dump raises ``InterruptedError``; a
    message overrunning ``data`` or a partial header ``ValueError``.
    """
    end = len(data)
    off = 0
    while off < end:
        if off + 16 > end:
            raise ValueError(f"truncated netlink header at offset {off}")
        length, mtype, flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        if seq is None or mseq == seq:
            if flags & NLM_F_DUMP_INTR:
                raise InterruptedError("netlink dump interrupted by a concurrent change")
            if mtype == NLMSG_DONE and (exc := done_error(data, off, length)) is not None:
                raise exc
            if mtype != NLMSG_ERROR or not raise_errors:
                yield mtype, off, length, mseq
            elif (exc := error_of(data, off, length)) is not None:
                raise exc
        off += align(length)


def attrs(data: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flag bits, payload offset, payload size) of each attribute in [start, end)."""
    a = start
    while a + 4 <= end:
        alen, atype = NLATTR.unpack_from(data, a)
        if alen < 4 or a + alen > end:
            raise ValueError(f"truncated netlink attribute at offset {a}")
        yield atype & NLA_TYPE_MASK, a + 4, alen - 4
        a += (alen + 3) & ~3


def find_attrs(
    data: Buffer, start: int, end: int, wanted: frozenset[int] | None = None
) -> dict[int, tuple[int, int]]:
    """{type: (payload offset, size)} of the first attribute of each type in [start, end).

    Only the ``wanted`` types when given; one quick pass, the rest skipped.
    """
    at: dict[int, tuple[int, int]] = {}
    unpack = NLATTR.unpack_from
    a = start
    while a + 4 <= end:
        alen, atype = unpack(data, a)
        if alen < 4 or a + alen > end:
            raise ValueError(f"truncated netlink attribute at offset {a}")
        atype &= NLA_TYPE_MASK
        if (wanted is None or atype in wanted) and atype not in at:
            at[atype] = (a + 4, alen - 4)
        a += (alen + 3) & ~3
    return at


def u32(data: Buffer, off: int, size: int, what: str) -> int:
    """A host-order u32 attribute of payload ``size`` at ``off``; ``what`` names it in errors."""
    if size < 4:
        raise ValueError(f"truncated {what}: {size} bytes")
    return int(_U32.unpack_from(data, off)[0])


def s32(data: Buffer, off: int, size: int, what: str) -> int:
    """A host-order s32 attribute (see :func:`u32`)."""
    if size < 4:
        raise ValueError(f"truncated {what}: {size} bytes")
    return int(_ERRNO.unpack_from(data, off)[0])


def string(data: Buffer, off: int, size: int) -> str:
    """A NUL-terminated string attribute (up to its first NUL; invalid UTF-8 replaced)."""
    return bytes(data[off : off + size]).split(b"\0", 1)[0].decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Encoding requests (pure)
# --------------------------------------------------------------------------


def attr(atype: int, payload: bytes) -> bytes:
    """One attribute, padded to the alignment."""
    raw = NLATTR.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * (align(len(raw)) - len(raw))


def attr_str(atype: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(atype, value.encode() + b"\0")


def message(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: the header, then ``body`` (family header and attributes)."""
    return NLMSGHDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def with_seq(request: bytes, seq: int) -> bytes:
    """``request`` (one message) with its sequence number set to ``seq``."""
    return request[:8] + _SEQ.pack(seq) + request[12:]


# --------------------------------------------------------------------------
# The socket (I/O)
# --------------------------------------------------------------------------


def open_socket(
    protocol: int,
    *,
    rcvbuf: int = 0,
    groups: int = 0,
    timeout: float | None = None,
    blocking: bool = True,
    strict: bool = False,
) -> socket.socket:
    """A bound AF_NETLINK socket of ``protocol`` (on multicast ``groups`` when given).

    ``rcvbuf``: SO_RCVBUF (the kernel clamps it); ``strict``: ask for
    NETLINK_GET_STRICT_CHK, so dump filters are heeded (Linux 4.20+; older
    kernels send unfiltered dumps).
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, groups))
        if not blocking:
            sock.setblocking(False)
        elif timeout is not None:
            sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    if strict:
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    return sock


def receive(sock: socket.socket, consume: Callable[[bytes], bool]) -> None:
    """Hand each received datagram (as bytes) to ``consume`` until it says the answer is whole.

    Received into one buffer and copied out at its size: ``recv(RECV_SIZE)``
    would allocate (and fault in) a fresh 64 KiB for every datagram of a dump.
    """
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    recv_into = sock.recv_into
    while True:
        n = recv_into(buf)
        if n == 0:
            raise NetlinkError(errno.EIO, "netlink socket closed")
        if consume(view[:n].tobytes()):
            return


def receive_into(
    sock: socket.socket, buf: bytearray, consume: Callable[[memoryview], bool]
) -> None:
    """:func:`receive` into one reused buffer: ``consume`` gets a view valid until it returns."""
    view = memoryview(buf)
    recv_into = sock.recv_into
    while True:
        n = recv_into(buf)
        if n == 0:
            raise NetlinkError(errno.EIO, "netlink socket closed")
        if consume(view[:n]):
            return


class NetlinkSocket:
    """One netlink socket of one protocol for request/reply exchanges, opened lazily.

    :meth:`exchange` runs one exchange on it with a fresh sequence number,
    closes it on any error (the next exchange starts on a clean socket) and
    retries while a dump is interrupted (``InterruptedError``) or replies
    were lost (ENOBUFS). Raises :class:`NetlinkError` (errno EPERM where a
    capability is missing) and socket errors.
    """

    def __init__(
        self,
        protocol: int,
        *,
        rcvbuf: int = 0,
        timeout: float | None = None,
        strict: bool = False,
    ) -> None:
        self._protocol = protocol
        self._rcvbuf = rcvbuf
        self._timeout = timeout
        self._strict = strict
        self._sock: socket.socket | None = None
        self.seq = 0

    def open(self) -> socket.socket:
        """The socket, opened now if it is not open."""
        if self._sock is None:
            self._sock = open_socket(
                self._protocol, rcvbuf=self._rcvbuf, timeout=self._timeout, strict=self._strict
            )
        return self._sock

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0x7FFFFFFF or 1
        return self.seq

    def exchange(
        self, request: str, run: Callable[[socket.socket, int], _T], retries: int = 3
    ) -> _T:
        """``run(socket, seq)``: one exchange named ``request``, retried up to ``retries`` times.

        A :class:`NetlinkError` raised by it carries the request's name.
        """
        for attempt in range(retries + 1):
            try:
                return run(self.open(), self.next_seq())
            except InterruptedError:
                self.close()
                if attempt == retries:
                    raise
            except OSError as exc:
                self.close()
                if isinstance(exc, NetlinkError) and not exc.request:
                    exc.request = request
                if exc.errno != errno.ENOBUFS or attempt == retries:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
