"""The NETLINK_NETFILTER socket: read-only nf_tables queries (I/O).

Read-only: it sends only GET requests (``NFT_MSG_GETGEN``, ``GETTABLE``,
``GETCHAIN``, ``GETRULE``; never the ``*_RESET`` variants, which zero
counters).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from typing import TypeVar

from exporter.netlink import core
from exporter.netlink.core import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_ERROR, NetlinkError
from exporter.netlink.netfilter.chains import (
    NftChainInfo,
    build_getchain,
    parse_chain_message,
    parse_chain_messages,
)
from exporter.netlink.netfilter.layout import DumpLayout, RuleColumns
from exporter.netlink.netfilter.messages import (
    NETLINK_NETFILTER,
    NFPROTO_UNSPEC,
    T_GETCHAIN,
    T_GETGEN,
    T_GETTABLE,
    T_NEWCHAIN,
    build_request,
    messages,
)
from exporter.netlink.netfilter.rules import RuleCounter, build_getrule_dump, parse_rule_messages
from exporter.netlink.netfilter.ruleset import NftTableInfo, parse_gen_message, parse_table_messages

_T = TypeVar("_T")

RCVBUF = 1 << 21
LAYOUT_MIN_RULES = 64  # a one-chain dump with fewer rules is parsed in full every time
RETRIES = 4  # after the first attempt, on an interrupted dump or lost replies (ENOBUFS)


class NftReader:
    """A NETLINK_NETFILTER socket for read-only nf_tables queries.

    Opened lazily; any error closes it so the next call starts clean.
    Raises :class:`~exporter.netlink.core.NetlinkError` naming the request
    (errno EPERM without CAP_NET_ADMIN).
    """

    def __init__(self) -> None:
        self._nl = core.NetlinkSocket(NETLINK_NETFILTER, rcvbuf=RCVBUF)
        self._names: dict[bytes, str] = {}
        self._layouts: dict[tuple[int, str, str | None], DumpLayout] = {}
        self._buf = bytearray(core.RECV_SIZE)
        self.layout_reads = 0  # GETRULE dumps read with a learnt layout (for tests and benches)

    def close(self) -> None:
        self._nl.close()
        self._layouts.clear()

    def generation(self) -> int:
        """The ruleset generation id (NFT_MSG_GETGEN); changes with every commit."""

        def run(sock: socket.socket, seq: int) -> int:
            sock.send(build_request(T_GETGEN, NLM_F_REQUEST, seq))
            found: list[int] = []

            def take(data: bytes) -> bool:
                gen = parse_gen_message(data, seq)
                if gen is not None:
                    found.append(gen)
                return gen is not None

            core.receive(sock, take)
            return found[0]

        return self._nl.exchange("NFT_MSG_GETGEN", run, RETRIES)

    def _dump(
        self,
        request: str,
        msg_type: int,
        family: int,
        parse: Callable[[bytes, list[_T], int], bool],
    ) -> list[_T]:
        """A ``msg_type`` dump (of ``family``), its replies read with ``parse``."""

        def run(sock: socket.socket, seq: int) -> list[_T]:
            out: list[_T] = []
            sock.send(build_request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, family))
            core.receive(sock, lambda data: parse(data, out, seq))
            return out

        return self._nl.exchange(request, run, RETRIES)

    def tables(self, family: int = NFPROTO_UNSPEC) -> list[NftTableInfo]:
        return self._dump("NFT_MSG_GETTABLE", T_GETTABLE, family, parse_table_messages)

    def chains(self, family: int = NFPROTO_UNSPEC) -> list[NftChainInfo]:
        """Every chain (of ``family``): a GETCHAIN dump."""
        return self._dump("NFT_MSG_GETCHAIN", T_GETCHAIN, family, parse_chain_messages)

    def chain_infos(self, keys: Sequence[tuple[int, str, str]]) -> list[NftChainInfo | None]:
        """GETCHAIN for each (family, table, chain), sent as one batch; None where absent."""
        if not keys:
            return []

        def run(sock: socket.socket, seq0: int) -> list[NftChainInfo | None]:
            seqs = [seq0 + i for i in range(len(keys))]
            self._nl.seq = seqs[-1]
            sock.send(
                b"".join(
                    build_getchain(s, f, t, c) for s, (f, t, c) in zip(seqs, keys, strict=True)
                )
            )
            by_seq: dict[int, NftChainInfo | None] = {}
            wanted = set(seqs)

            def take(data: bytes) -> bool:
                for mtype, off, mlen, mseq in messages(data, raise_errors=False):
                    if mseq not in wanted:
                        continue
                    if mtype == T_NEWCHAIN:
                        by_seq[mseq] = parse_chain_message(data, off, mlen)
                    elif mtype == NLMSG_ERROR:
                        exc = core.error_of(data, off, mlen)
                        if exc is not None and exc.errno != errno.ENOENT:
                            raise exc
                        by_seq[mseq] = None
                return len(by_seq) >= len(seqs)

            core.receive(sock, take)
            return [by_seq[s] for s in seqs]

        return self._nl.exchange("NFT_MSG_GETCHAIN", run, RETRIES)

    def rules(
        self, family: int, table: str | None = None, chain: str | None = None
    ) -> list[RuleCounter]:
        """A GETRULE dump (of one table, or one chain of it): per rule its counter."""
        names = self._names
        if len(names) > 100_000:
            names.clear()

        def run(sock: socket.socket, seq: int) -> list[RuleCounter]:
            out: list[RuleCounter] = []
            sock.send(build_getrule_dump(seq, family, table, chain))
            core.receive(sock, lambda data: parse_rule_messages(data, out, seq, names))
            return out

        return self._nl.exchange("NFT_MSG_GETRULE", run, RETRIES)

    def counters(self, family: int, table: str, chain: str | None = None) -> RuleColumns:
        """A GETRULE dump's handles and counters, in columns.

        A dump that fits the layout of the previous one of the same
        (family, table, chain) is read with that layout (:mod:`.layout`);
        any other is parsed in full and gives the next layout.
        """
        key = (family, table, chain)
        if len(self._names) > 100_000:  # chain names come and go (kube-proxy's hashed ones)
            self._names.clear()
        layout = self._layouts.pop(key, None)
        if layout is not None:

            def fast(sock: socket.socket, seq: int) -> RuleColumns | None:
                sock.send(build_getrule_dump(seq, family, table, chain))
                return layout.receive(sock, seq, self._buf)

            columns = self._nl.exchange("NFT_MSG_GETRULE", fast, RETRIES)
            if columns is not None:
                self._layouts[key] = layout
                self.layout_reads += 1
                return columns

        def slow(sock: socket.socket, seq: int) -> RuleColumns:
            sock.send(build_getrule_dump(seq, family, table, chain))
            out: list[RuleCounter] = []
            datagrams: list[bytes] = []
            spots: list[list[tuple[int, int, int]]] = []

            def take(data: bytes) -> bool:
                datagrams.append(data)
                spots.append([])
                return parse_rule_messages(data, out, seq, self._names, spots[-1])

            core.receive(sock, take)
            # Small chains (kube-proxy has tens of thousands) cost more memory as
            # layouts than their parse costs time.
            learn = chain is None or len(out) >= LAYOUT_MIN_RULES
            learnt = DumpLayout.of(datagrams, spots, seq) if learn else None
            if learnt is not None:
                self._layouts[key] = learnt
            return RuleColumns(
                tuple([r[2] for r in out]), tuple([r[3] for r in out]), tuple([r[4] for r in out])
            )

        return self._nl.exchange("NFT_MSG_GETRULE", slow, RETRIES)

    def has_rules(self, family: int, table: str) -> bool:
        """Whether ``table`` holds any rule: reads only the first datagram of its dump.

        On a socket of its own, closed after that datagram (the rest of the
        dump would confuse the reader's next exchange).
        """
        sock = core.open_socket(NETLINK_NETFILTER)
        out: list[RuleCounter] = []
        try:
            seq = self._nl.next_seq()
            sock.send(build_getrule_dump(seq, family, table))
            core.receive(
                sock, lambda data: parse_rule_messages(data, out, seq, self._names) or bool(out)
            )
            return bool(out)
        except NetlinkError as exc:
            exc.request = exc.request or "NFT_MSG_GETRULE"
            raise
        finally:
            sock.close()
