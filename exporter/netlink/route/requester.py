"""Round trips on one NETLINK_ROUTE socket, each received datagram parsed as it arrives.

The datagrams are received into one reused buffer and handed to the parsers
as memory views, so a 1000-interface dump allocates no 64 KiB bytes per
datagram.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from exporter.netlink import core
from exporter.netlink.core import Buffer

NETLINK_ROUTE = 0
RCVBUF = 1 << 20

_T = TypeVar("_T")
Parser = Callable[[Buffer, int], tuple[dict[int, _T], bool]]
ListParser = Callable[[Buffer, int], tuple[list[_T], bool]]
# Takes one received datagram and the request's seq; says whether the answer is complete.
Consumer = Callable[[memoryview, int], bool]


class Requester:
    """One NETLINK_ROUTE socket for request round trips (see :class:`core.NetlinkSocket`)."""

    def __init__(self, timeout: float = 5.0, strict: bool = False) -> None:
        self._nl = core.NetlinkSocket(NETLINK_ROUTE, rcvbuf=RCVBUF, timeout=timeout, strict=strict)
        self._buf = bytearray(core.RECV_SIZE)

    def dump(
        self, request: bytes, parse: Parser[_T], retries: int = 3, raw: list[bytes] | None = None
    ) -> dict[int, _T]:
        """Send a dump request (its seq field is set here) and merge the parsed replies.

        An interrupted dump is retried up to ``retries`` times. When ``raw`` is
        given, the received datagrams are appended to it.
        """
        result: dict[int, _T] = {}

        def merge(view: memoryview, seq: int) -> bool:
            part, done = parse(view, seq)
            result.update(part)
            return done

        self.round_trip(request, merge, raw, retries, result.clear)
        return result

    def dump_list(self, request: bytes, parse: ListParser[_T], retries: int = 3) -> list[_T]:
        """:meth:`dump` for a parser that returns lists: their items in order."""
        result: list[_T] = []

        def extend(view: memoryview, seq: int) -> bool:
            part, done = parse(view, seq)
            result.extend(part)
            return done

        self.round_trip(request, extend, None, retries, result.clear)
        return result

    def round_trip(
        self,
        request: bytes,
        consume: Consumer,
        raw: list[bytes] | None = None,
        retries: int = 0,
        reset: Callable[[], None] | None = None,
    ) -> None:
        """Send ``request`` (one message; its seq set here) and feed ``consume`` the replies.

        Before each attempt ``reset`` (when given) drops what an interrupted
        one gathered, and ``raw`` (when given) is emptied.
        """
        name = _REQUEST_NAMES.get(core.NLMSGHDR.unpack_from(request)[1], "")
        buf = self._buf

        def run(sock: socket.socket, seq: int) -> None:
            if reset is not None:
                reset()
            if raw is not None:
                del raw[:]
            sock.send(core.with_seq(request, seq))

            def take(view: memoryview) -> bool:
                if raw is not None:
                    raw.append(bytes(view))
                return consume(view, seq)

            core.receive_into(sock, buf, take)

        self._nl.exchange(name, run, retries)

    def close(self) -> None:
        self._nl.close()


# names of the requests the readers send, for errors
_REQUEST_NAMES = {18: "RTM_GETLINK", 26: "RTM_GETROUTE", 90: "RTM_GETNSID", 94: "RTM_GETSTATS"}
