"""rtnetlink multicast notifications: has anything changed since the last look?"""

from __future__ import annotations

import errno
import socket

from exporter.netlink import core
from exporter.netlink.route.requester import NETLINK_ROUTE, RCVBUF

RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400


class ChangeMonitor:
    """A non-blocking socket on rtnetlink multicast groups (default: link changes).

    :meth:`changed` drains it and says whether anything arrived since the last
    call, counting a receive-buffer overflow (ENOBUFS, events lost) as a change.
    Open it before the first full read so no change falls between the two.
    """

    def __init__(self, groups: int = RTMGRP_LINK, rcvbuf: int = RCVBUF) -> None:
        sock = core.open_socket(NETLINK_ROUTE, rcvbuf=rcvbuf, groups=groups, blocking=False)
        self._sock: socket.socket | None = sock
        self._buf = bytearray(core.RECV_SIZE)

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
