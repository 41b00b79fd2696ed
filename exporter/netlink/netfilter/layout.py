"""Rule counters of an unchanged ruleset, read at C speed from where the last dump had them.

Under one ruleset generation a GETRULE dump repeats itself byte for byte
but for the counters and the sequence number: the same rules in the same
order, in datagrams of the same sizes (every attribute keeps its size; a
counter is two be64). A :class:`DumpLayout` keeps, per datagram of a dump
read the slow way (:func:`~exporter.netlink.netfilter.rules.parse_rule_messages`),
one precompiled :class:`struct.Struct` that reads every rule's message flags,
handle, bytes and packets in one call, and what the flags and handles must
be. A later dump is accepted only when every datagram has its expected size,
flags (no NLM_F_DUMP_INTR) and rule handles, and ends in a clean NLMSG_DONE;
anything else (a changed ruleset, a counter encoded otherwise) is "no fit",
and the reader falls back to the full parse.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from exporter.netlink.core import NLMSG_DONE, NLMSG_ERROR, NLMSGHDR

_DONE = struct.Struct("=IHHIIi")  # nlmsghdr + the error code of NLMSG_DONE
_DONE_SIZE = _DONE.size
_COUNTER_AT = 20  # from the counter expression's start to NFTA_COUNTER_BYTES' value


class RuleColumns(NamedTuple):
    """A dump's rules in order: handles, packets and bytes (None: the rule has no counter)."""

    handles: tuple[int, ...]
    packets: tuple[int | None, ...]
    bytes: tuple[int | None, ...]


class _Datagram(NamedTuple):
    size: int
    reader: struct.Struct  # (flags, handle, bytes, packets) per rule, big-endian
    flags: tuple[int, ...]  # each rule message's flags as ``reader`` reads them
    handles: tuple[int, ...]


class DumpLayout:
    """Where each rule's handle and counter sit in the datagrams of one dump."""

    __slots__ = ("datagrams", "sizes")

    def __init__(self, datagrams: tuple[_Datagram, ...]) -> None:
        self.datagrams = datagrams
        self.sizes = tuple(d.size for d in datagrams)

    @classmethod
    def of(
        cls, datagrams: list[bytes], spots: list[list[tuple[int, int, int]]], seq: int
    ) -> DumpLayout | None:
        """The layout of a dump read the slow way, or None if it has no fixed one.

        ``spots``: per datagram, (message, handle, counter expression) offsets
        of its rules, as ``parse_rule_messages`` records them. No layout when a
        rule's counter is not in the plain encoding, a datagram holds anything
        but rules of this dump, or the dump does not end in a clean NLMSG_DONE.
        """
        if not datagrams or len(datagrams) != len(spots):
            return None
        out = []
        for data, rules in zip(datagrams, spots, strict=True):
            fmt = [">"]
            pos = 0
            offsets = []
            for off, hpos, cpos in rules:
                if cpos < 0 or hpos < 0:
                    return None
                offsets.append(off)
                ctr = cpos + _COUNTER_AT
                if not off + 6 < hpos < ctr:
                    return None
                fmt.append(f"{off + 6 - pos}xH{hpos - off - 8}xQ{ctr - hpos - 8}xQ4xQ")
                pos = ctr + 20
            if not _messages_are(data, offsets, seq, last=data is datagrams[-1]):
                return None
            reader = struct.Struct("".join(fmt))
            values = reader.unpack_from(data)
            out.append(_Datagram(len(data), reader, values[0::4], values[1::4]))
        return cls(tuple(out))

    def receive(self, sock: socket.socket, seq: int, buf: bytearray) -> RuleColumns | None:
        """Receive a dump into ``buf`` and read it; None when it does not fit.

        Either way the whole dump has been received when this returns (a
        misfit's rest is read and dropped), so the socket can take the next
        request at once.
        """
        handles: list[int] = []
        packets: list[int] = []
        nbytes: list[int] = []
        recv_into = sock.recv_into
        last = len(self.datagrams) - 1
        for i, d in enumerate(self.datagrams):
            n = recv_into(buf)
            ended = _ends(buf, n, seq)
            if n != d.size or ended != (i == last):
                if not ended:
                    _drain(sock, seq, buf)
                return None
            values = d.reader.unpack_from(buf)
            if values[0::4] != d.flags or values[1::4] != d.handles:
                if not ended:
                    _drain(sock, seq, buf)
                return None
            handles += d.handles
            nbytes += values[2::4]
            packets += values[3::4]
        if _DONE.unpack_from(buf, self.sizes[-1] - _DONE_SIZE)[5] != 0:
            return None  # the dump failed: the full parse raises its error
        return RuleColumns(tuple(handles), tuple(packets), tuple(nbytes))


def _ends(buf: bytearray, n: int, seq: int) -> bool:
    """Whether the datagram in ``buf[:n]`` is the last of dump ``seq``.

    A dump's last datagram ends in its NLMSG_DONE; a request refused
    outright is answered with an NLMSG_ERROR alone.
    """
    if n >= _DONE_SIZE:
        mlen, mtype, _, mseq, _, _ = _DONE.unpack_from(buf, n - _DONE_SIZE)
        if (mlen, mtype, mseq) == (_DONE_SIZE, NLMSG_DONE, seq):
            return True
    if n >= 16:
        _, mtype, _, mseq, _ = NLMSGHDR.unpack_from(buf, 0)
        return bool(mtype == NLMSG_ERROR and mseq == seq)
    return False


def _drain(sock: socket.socket, seq: int, buf: bytearray) -> None:
    """Receive and drop the rest of dump ``seq``."""
    while True:
        n = sock.recv_into(buf)
        if n == 0 or _ends(buf, n, seq):
            return


def _messages_are(data: bytes, rules: list[int], seq: int, *, last: bool) -> bool:
    """Whether ``data`` holds exactly the rule messages at ``rules`` (and, if ``last``, DONE)."""
    off, n = 0, len(data)
    found: list[int] = []
    while off + 16 <= n:
        mlen, mtype, _, mseq, _ = NLMSGHDR.unpack_from(data, off)
        if mlen < 16 or mseq != seq:
            return False
        if mtype == NLMSG_DONE:
            if not last or off + mlen != n or mlen != _DONE_SIZE:
                return False
            if _DONE.unpack_from(data, off)[5] != 0:
                return False
            return found == rules
        found.append(off)
        off += (mlen + 3) & ~3
    return not last and off == n and found == rules
