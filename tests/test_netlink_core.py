"""Tests of the shared netlink framing: message and attribute walks, errors, the socket."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from exporter.netlink import core
from exporter.netlink import netfilter as nl
from exporter.netlink import route as rtnetlink

HDR = struct.Struct("=IHHII")


def msg(mtype: int, body: bytes = b"", *, seq: int = 0, flags: int = 0) -> bytes:
    raw = HDR.pack(16 + len(body), mtype, flags, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def error(err: int, seq: int = 0) -> bytes:
    return msg(core.NLMSG_ERROR, struct.pack("=i", err) + b"\0" * 16, seq=seq)


def done(err: int | None = 0, seq: int = 0) -> bytes:
    return msg(core.NLMSG_DONE, b"" if err is None else struct.pack("=i", err), seq=seq)


# -- messages ---------------------------------------------------------------------


def test_messages_yields_type_offset_length_seq_and_done() -> None:
    data = msg(16, b"abcd", seq=5) + msg(16, b"xy", seq=6) + done(seq=5)
    assert list(core.messages(data)) == [(16, 0, 20, 5), (16, 20, 18, 6), (3, 40, 20, 5)]
    assert [m[3] for m in core.messages(data, 5)] == [5, 5]


def test_messages_skips_acks_and_raises_kernel_errors() -> None:
    assert list(core.messages(error(0) + done())) == [(core.NLMSG_DONE, 36, 20, 0)]
    with pytest.raises(core.NetlinkError) as info:
        list(core.messages(msg(16) + error(-errno.EPERM)))
    assert info.value.errno == errno.EPERM
    assert info.value.request == ""
    # an error of another request's sequence number is not this one's
    assert list(core.messages(error(-errno.EPERM, seq=2), 1)) == []


def test_messages_without_raising_yields_errors_and_acks() -> None:
    data = error(0, seq=1) + error(-errno.ENOENT, seq=2)
    got = list(core.messages(data, raise_errors=False))
    assert [(m[0], m[3]) for m in got] == [(core.NLMSG_ERROR, 1), (core.NLMSG_ERROR, 2)]
    assert core.error_of(data, got[0][1], got[0][2]) is None
    exc = core.error_of(data, got[1][1], got[1][2])
    assert exc is not None
    assert exc.errno == errno.ENOENT


def test_done_carrying_an_errno_is_an_error() -> None:
    # the kernel ends a failed dump (e.g. an unknown IFLA_TARGET_NETNSID) with NLMSG_DONE
    # whose payload is the negative errno
    with pytest.raises(core.NetlinkError) as info:
        list(core.messages(done(-errno.EINVAL)))
    assert info.value.errno == errno.EINVAL
    assert list(core.messages(done(None))) == [(core.NLMSG_DONE, 0, 16, 0)]
    assert core.done_error(done(5), 0, 20) is None
    for parse in (
        rtnetlink.parse_link_names,
        rtnetlink.parse_stats_messages,
        rtnetlink.parse_route_dump,
        lambda d: nl.parse_rule_messages(d, []),
        lambda d: nl.parse_table_messages(d, []),
    ):
        with pytest.raises(core.NetlinkError) as info:
            parse(done(-errno.EINVAL))
        assert info.value.errno == errno.EINVAL


def test_interrupted_dump_raises() -> None:
    with pytest.raises(InterruptedError):
        list(core.messages(msg(16, flags=core.NLM_F_DUMP_INTR)))


@pytest.mark.parametrize(
    "data",
    [
        msg(16)[:10],  # a partial header
        msg(16, b"abcd") + b"\0" * 8,  # bytes after the last message, short of a header
        HDR.pack(0, 16, 0, 0, 0),  # zero length: must not loop
        HDR.pack(15, 16, 0, 0, 0),
        HDR.pack(40, 16, 0, 0, 0),  # longer than the data
    ],
)
def test_malformed_messages_are_value_errors(data: bytes) -> None:
    with pytest.raises(ValueError, match="truncated"):
        list(core.messages(data))


def test_kernel_error_of_any_errno() -> None:
    assert core.kernel_error(-errno.EPERM).errno == errno.EPERM
    odd = core.kernel_error(-(2**31))
    assert odd.errno == 2**31
    assert odd.strerror == f"Unknown error {2**31}"


# -- attributes -------------------------------------------------------------------


def test_attrs_and_find_attrs() -> None:
    data = core.attr(3, b"eth0\0") + core.attr(0x8012, b"xy") + core.attr(3, b"second\0")
    assert list(core.attrs(data, 0, len(data))) == [(3, 4, 5), (0x12, 16, 2), (3, 24, 7)]
    assert core.find_attrs(data, 0, len(data)) == {3: (4, 5), 0x12: (16, 2)}
    assert core.find_attrs(data, 0, len(data), frozenset({0x12})) == {0x12: (16, 2)}
    assert core.string(data, 4, 5) == "eth0"
    with pytest.raises(ValueError, match="truncated"):
        core.find_attrs(data, 0, len(data) - 4)
    with pytest.raises(ValueError, match="truncated"):
        list(core.attrs(struct.pack("=HH", 2, 1), 0, 4))


def test_u32_s32() -> None:
    data = struct.pack("=Ii", 7, -1)
    assert core.u32(data, 0, 4, "X") == 7
    assert core.s32(data, 4, 4, "X") == -1
    with pytest.raises(ValueError, match="truncated IFLA_MASTER: 2 bytes"):
        core.u32(data, 0, 2, "IFLA_MASTER")


# -- encoding ---------------------------------------------------------------------


def test_attr_message_and_seq_encoding() -> None:
    assert core.attr(1, b"abcde") == struct.pack("=HH", 9, 1) + b"abcde\0\0\0"
    assert core.attr_str(3, "lo") == struct.pack("=HH", 7, 3) + b"lo\0\0"
    m = core.message(18, core.NLM_F_REQUEST | core.NLM_F_DUMP, 9, b"\1\2\3\4")
    assert HDR.unpack_from(m) == (20, 18, 0x301, 9, 0)
    assert HDR.unpack_from(core.with_seq(m, 77)) == (20, 18, 0x301, 77, 0)
    assert core.with_seq(m, 77)[16:] == b"\1\2\3\4"


# -- the socket -------------------------------------------------------------------


def test_exchange_on_a_real_socket_dumps_links() -> None:
    nls = core.NetlinkSocket(rtnetlink.NETLINK_ROUTE, rcvbuf=1 << 20, timeout=5.0)
    names: dict[int, str] = {}

    def run(sock: socket.socket, seq: int) -> int:
        sock.send(rtnetlink.build_link_dump_request(seq))

        def take(data: bytes) -> bool:
            part, finished = rtnetlink.parse_link_names(data, seq)
            names.update(part)
            return finished

        core.receive(sock, take)
        return seq

    try:
        first = nls.exchange("RTM_GETLINK", run)
        second = nls.exchange("RTM_GETLINK", run)
    finally:
        nls.close()
    assert names[1] == "lo"  # every network namespace's first link
    assert second == first + 1


def test_exchange_retries_interrupted_dumps_and_lost_replies_on_a_fresh_socket() -> None:
    nls = core.NetlinkSocket(rtnetlink.NETLINK_ROUTE)
    seen: list[tuple[int, int]] = []
    failures: list[BaseException] = [
        InterruptedError("dump interrupted"),
        OSError(errno.ENOBUFS, "lost"),
    ]

    def run(sock: socket.socket, seq: int) -> str:
        seen.append((sock.fileno(), seq))
        if failures:
            raise failures.pop(0)
        return "ok"

    try:
        assert nls.exchange("RTM_GETLINK", run, retries=2) == "ok"
    finally:
        nls.close()
    assert [s for _, s in seen] == [1, 2, 3]


def test_exchange_gives_up_and_names_the_request() -> None:
    nls = core.NetlinkSocket(rtnetlink.NETLINK_ROUTE)
    calls = 0

    def interrupted(sock: socket.socket, seq: int) -> None:
        nonlocal calls
        calls += 1
        raise InterruptedError("again")

    with pytest.raises(InterruptedError):
        nls.exchange("RTM_GETSTATS", interrupted, retries=3)
    assert calls == 4

    def refused(sock: socket.socket, seq: int) -> None:
        nonlocal calls
        calls += 1
        raise core.kernel_error(-errno.EPERM)

    calls = 0
    with pytest.raises(core.NetlinkError) as info:
        nls.exchange("NFT_MSG_GETGEN", refused, retries=3)
    assert calls == 1  # a refusal is not retried
    assert info.value.request == "NFT_MSG_GETGEN"
    assert info.value.errno == errno.EPERM
