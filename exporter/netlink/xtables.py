"""Legacy x_tables (iptables-legacy) reader: ``IPT_SO_GET_INFO`` / ``IPT_SO_GET_ENTRIES``.

Python's ``socket.getsockopt`` cannot pass the table name in, hence ctypes.
Read-only, and only for tables already listed in ``/proc/net/ip_tables_names``
(``ip6_tables_names``): asking the kernel for a table that does not exist yet
*creates* it, so :func:`read_table_names` must always come first.

:func:`parse_xt_entries` (pure) walks the entries blob: per entry its counters,
the chain it belongs to (``hook_entry``/``underflow`` offsets for built-in
chains, ``ERROR`` targets naming user chains), policies from the underflow
entries. Its ``skeleton`` (the blob with every counter zeroed) changes exactly
when the ruleset's structure changes; :class:`XtCounterLayout` re-reads the
counters of an unchanged structure in one ``struct.unpack`` and checks the
skeleton by its CRC-32.

Layouts (uapi linux/netfilter_ipv4/ip_tables.h, netfilter_ipv6/ip6_tables.h,
x_tables.h), checked with a C compiler on x86_64: ``ipt_entry`` is 112 bytes,
counters at 96, target_offset at 88, next_offset at 90; ``ip6t_entry`` 168
bytes, counters at 152, target_offset at 140, next_offset at 142;
``ipt_getinfo`` 84 bytes; ``ipt_get_entries`` header 40 bytes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass

try:  # ISA-L's CRC-32: 0.03 ms for 2 MB here, zlib's 0.45 ms
    from isal import isal_zlib as _zlib
except ImportError:  # no isal wheel for this platform
    import zlib as _zlib  # type: ignore[no-redef]

IPT_SO_GET_INFO = 64
IPT_SO_GET_ENTRIES = 65
IP6T_SO_GET_INFO = 64
IP6T_SO_GET_ENTRIES = 65
SOL_IP = 0
IPPROTO_IPV6 = 41

NF_INET_NUMHOOKS = 5
HOOK_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
XT_ERROR_TARGET = b"ERROR"
XT_STANDARD_TARGET = b""
XT_RETURN = -5  # -NF_REPEAT - 1
_VERDICTS = {-1: "DROP", -2: "ACCEPT", -4: "QUEUE", -5: "RETURN"}

_GETINFO = struct.Struct("=32sI5I5III")  # name, valid_hooks, hook_entry, underflow, num, size
_GET_ENTRIES_HDR = struct.Struct("=32sI4x")  # name, size; entrytable is 8-aligned
_OFFSETS = struct.Struct("=HH")  # target_offset, next_offset
_TARGET_HDR = struct.Struct("=H29sB")  # target_size, name, revision
_VERDICT = struct.Struct("=i")
_COUNTERS = struct.Struct("=QQ")


@dataclass(frozen=True, slots=True)
class XtFamily:
    name: str  # "ipv4" / "ipv6"
    af: int
    level: int
    names_path: str
    entry_size: int
    counters_offset: int
    target_offset_field: int  # where target_offset/next_offset (u16 each) sit
    opt_prefix: str = "IPT"  # the getsockopt names' prefix in the uapi: IPT_SO_*, IP6T_SO_*


IPV4 = XtFamily("ipv4", socket.AF_INET, SOL_IP, "/proc/net/ip_tables_names", 112, 96, 88)
IPV6 = XtFamily(
    "ipv6", socket.AF_INET6, IPPROTO_IPV6, "/proc/net/ip6_tables_names", 168, 152, 140, "IP6T"
)
FAMILIES = {"ipv4": IPV4, "ipv6": IPV6}


@dataclass(frozen=True, slots=True)
class XtInfo:
    name: str
    valid_hooks: int
    hook_entry: tuple[int, ...]
    underflow: tuple[int, ...]
    num_entries: int
    size: int


@dataclass(frozen=True, slots=True)
class XtChain:
    name: str
    builtin: bool
    first: int  # index of its first rule entry
    count: int  # number of rules; its rules are entries [first, first + count)
    policy: str | None = None  # built-in chains: "ACCEPT", "DROP", ...
    policy_entry: int | None = None  # built-in chains: index of the underflow entry


@dataclass(frozen=True, slots=True)
class XtTable:
    family: str  # "ipv4" / "ipv6"
    name: str
    info: XtInfo
    chains: tuple[XtChain, ...]  # in blob order
    offsets: tuple[int, ...]  # byte offset of every entry
    packets: tuple[int, ...]  # per entry
    byte_counts: tuple[int, ...]
    skeleton: bytes  # the blob with every counter zeroed

    def chain(self, name: str) -> XtChain | None:
        for c in self.chains:
            if c.name == name:
                return c
        return None


# --------------------------------------------------------------------------
# Pure parsing
# --------------------------------------------------------------------------


def parse_table_names(text: str) -> list[str]:
    """Contents of /proc/net/ip_tables_names -> table names."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_xt_info(raw: bytes) -> XtInfo:
    """An ``ipt_getinfo`` / ``ip6t_getinfo`` reply (84 bytes)."""
    if len(raw) < _GETINFO.size:
        raise ValueError(f"getinfo reply too short: {len(raw)} bytes")
    v = _GETINFO.unpack_from(raw)
    return XtInfo(
        name=v[0].split(b"\0", 1)[0].decode(errors="replace"),
        valid_hooks=v[1],
        hook_entry=tuple(v[2:7]),
        underflow=tuple(v[7:12]),
        num_entries=v[12],
        size=v[13],
    )


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def parse_xt_entries(family: XtFamily, info: XtInfo, blob: bytes) -> XtTable:
    """Walk an entries blob (``ipt_get_entries.entrytable``) into chains and counters."""
    if len(blob) != info.size:
        raise ValueError(f"entries blob is {len(blob)} bytes, getinfo said {info.size}")
    hook_at: dict[int, int] = {}
    under_at: dict[int, int] = {}
    for h in range(NF_INET_NUMHOOKS):
        if info.valid_hooks & (1 << h):
            hook_at[info.hook_entry[h]] = h
            under_at[info.underflow[h]] = h
    offsets: list[int] = []
    packets: list[int] = []
    nbytes: list[int] = []
    targets: list[tuple[bytes, int | None, bytes]] = []  # (name, verdict, error name)
    off = 0
    size = len(blob)
    while off < size:
        if off + family.entry_size > size:
            raise ValueError(f"truncated entry at offset {off}")
        target_offset, next_offset = _OFFSETS.unpack_from(blob, off + family.target_offset_field)
        if next_offset < family.entry_size or off + next_offset > size:
            raise ValueError(f"bad next_offset {next_offset} at offset {off}")
        if target_offset < family.entry_size or target_offset + 32 > next_offset:
            raise ValueError(f"bad target_offset {target_offset} at offset {off}")
        t = off + target_offset
        _tsize, tname_raw, _rev = _TARGET_HDR.unpack_from(blob, t)
        tname = _cstr(tname_raw)
        verdict: int | None = None
        errname = b""
        if tname == XT_STANDARD_TARGET and t + 36 <= off + next_offset:
            (verdict,) = _VERDICT.unpack_from(blob, t + 32)
        elif tname == XT_ERROR_TARGET:
            errname = _cstr(blob[t + 32 : min(t + 64, off + next_offset)])
        pk, by = _COUNTERS.unpack_from(blob, off + family.counters_offset)
        offsets.append(off)
        packets.append(pk)
        nbytes.append(by)
        targets.append((tname, verdict, errname))
        off += next_offset
    if len(offsets) != info.num_entries:
        raise ValueError(f"walked {len(offsets)} entries, getinfo said {info.num_entries}")

    chains: list[XtChain] = []
    current: tuple[str, bool, int] | None = None  # name, builtin, first rule index
    for i, off in enumerate(offsets):
        tname, verdict, errname = targets[i]
        if off in hook_at:
            if current is not None:
                chains.append(_close_user_chain(current, i, targets))
            current = (HOOK_CHAINS[hook_at[off]], True, i)
        if current is not None and current[1] and off in under_at:
            if hook_at.get(_start_offset(current, offsets)) != under_at[off]:
                raise ValueError(f"underflow at offset {off} does not end chain {current[0]}")
            policy = _VERDICTS.get(verdict, str(verdict)) if verdict is not None else "?"
            chains.append(
                XtChain(current[0], True, current[2], i - current[2], policy=policy, policy_entry=i)
            )
            current = None
            continue
        if tname == XT_ERROR_TARGET:
            if current is not None:
                chains.append(_close_user_chain(current, i, targets))
                current = None
            if i == len(offsets) - 1:
                break  # the table's final ERROR entry
            current = (errname.decode(errors="replace"), False, i + 1)
    if current is not None:
        raise ValueError(f"chain {current[0]!r} is not terminated")
    return XtTable(
        family=family.name,
        name=info.name,
        info=info,
        chains=tuple(chains),
        offsets=tuple(offsets),
        packets=tuple(packets),
        byte_counts=tuple(nbytes),
        skeleton=make_skeleton(family, blob, offsets),
    )


def _start_offset(current: tuple[str, bool, int], offsets: list[int]) -> int:
    return offsets[current[2]]


def _close_user_chain(
    current: tuple[str, bool, int], end: int, targets: list[tuple[bytes, int | None, bytes]]
) -> XtChain:
    """A user chain ends with a RETURN footer entry just before the next chain head."""
    name, builtin, first = current
    if builtin:
        raise ValueError(f"built-in chain {name} has no underflow (policy) entry")
    footer = end - 1
    if (
        footer < first
        or targets[footer][0] != XT_STANDARD_TARGET
        or targets[footer][1] != XT_RETURN
    ):
        raise ValueError(f"user chain {name!r} does not end with its RETURN footer")
    return XtChain(name, False, first, footer - first)


def make_skeleton(family: XtFamily, blob: bytes, offsets: list[int] | tuple[int, ...]) -> bytes:
    """The blob with every entry's counters zeroed: equal exactly when the structure is."""
    ba = bytearray(blob)
    zero = bytes(16)
    c = family.counters_offset
    for off in offsets:
        ba[off + c : off + c + 16] = zero
    return bytes(ba)


# Buffers this big are kept from one poll to the next. glibc maps a block of
# cli.MMAP_THRESHOLD or more anew each time it is asked for one: a 10 MB buffer
# (50k rules) would be 2500 page faults a poll. Smaller blocks come back from the
# heap's free blocks without a fault, and keeping them would only add to RSS.
KEEP_FROM = 4 << 20


class XtCounterLayout:
    """Re-reads counters of a table whose structure is known, checking the skeleton.

    One ``struct.unpack`` returns every counter (the bytes between them are
    skipped, not copied). The skeleton is checked by CRC-32, which is linear: the
    blob's CRC XOR the CRC of its counters alone (packed by the same Struct, zeros
    between them) equals, for every blob of this length, the skeleton's CRC XOR a
    constant. No copy of the skeleton is kept (at 10k rules it is 2 MB), and the
    check costs about 0.1 ms a poll. CRC-32 sees every change confined to 32
    consecutive bits (a port, an address, a flag) for certain; of other changes
    that keep the table's size and hooks, about one in 2**32 would pass unseen,
    until the table next changes shape.
    """

    __slots__ = ("_check", "_scratch", "_struct", "info")

    def __init__(self, family: XtFamily, table: XtTable, blob: bytes) -> None:
        fmt = ["="]
        prev = 0
        for off in table.offsets:
            start = off + family.counters_offset
            fmt.append(f"{start - prev}xQQ")
            prev = start + 16
        fmt.append(f"{len(blob) - prev}x")
        self._struct = struct.Struct("".join(fmt))
        # A big table's counters are packed into the same pages each poll (see KEEP_FROM).
        self._scratch = bytearray(self._struct.size) if self._struct.size >= KEEP_FROM else None
        self._check = self._crc(blob, 0, self._struct.unpack(blob))
        self.info = table.info

    def _crc(self, buf: bytes | bytearray, offset: int, values: tuple[int, ...]) -> int:
        whole = _zlib.crc32(memoryview(buf)[offset:] if offset else buf)
        if self._scratch is None:
            return whole ^ _zlib.crc32(self._struct.pack(*values))
        self._struct.pack_into(self._scratch, 0, *values)
        return whole ^ _zlib.crc32(self._scratch)

    def read(
        self, info: XtInfo, buf: bytes | bytearray, offset: int = 0
    ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(packets, bytes) per entry of the blob at ``buf[offset:]``; None if it changed shape."""
        if info != self.info or len(buf) - offset != self._struct.size:
            return None
        values = self._struct.unpack_from(buf, offset)
        if self._crc(buf, offset, values) != self._check:
            return None
        return values[0::2], values[1::2]


# --------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------

# What grants each step when the kernel refuses it (EACCES / EPERM).
NAMES_FILE_ACCESS = (
    "the file is mode 0440 root:root: run as root or give the exporter's user group root"
)
NEEDS_NET_RAW = "needs CAP_NET_RAW"
NEEDS_NET_ADMIN = "needs CAP_NET_ADMIN"


class XtError(OSError):
    """One step of an x_tables read failed.

    ``step`` names it ("reading /proc/net/ip_tables_names", "getsockopt
    IPT_SO_GET_INFO on table filter", ...); ``grant`` says what grants it when
    the kernel refused it (errno EACCES or EPERM).
    """

    def __init__(self, err: int, step: str, grant: str) -> None:
        super().__init__(err, os.strerror(err))
        self.step = step
        self.grant = grant


def read_table_names(family: XtFamily) -> list[str] | None:
    """Tables that exist in this namespace; None when the x_tables module is not loaded.

    Raises :class:`XtError` when the file cannot be read (a non-root user
    needs read access: it is mode 0440 root:root).
    """
    try:
        with open(family.names_path, encoding="ascii", errors="replace") as f:
            return parse_table_names(f.read())
    except FileNotFoundError:
        return None
    except OSError as exc:
        err = exc.errno if exc.errno is not None else errno.EIO
        raise XtError(err, f"reading {family.names_path}", NAMES_FILE_ACCESS) from None


_libc = ctypes.CDLL(None, use_errno=True)
_getsockopt = _libc.getsockopt
_getsockopt.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]
_getsockopt.restype = ctypes.c_int


def _getsockopt_into(fd: int, level: int, opt: int, buf: bytearray) -> int:
    length = ctypes.c_uint32(len(buf))
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    if _getsockopt(fd, level, opt, cbuf, ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return length.value


class XtReader:
    """A raw socket per family (CAP_NET_RAW) for x_tables getsockopt reads (CAP_NET_ADMIN).

    A refused socket or getsockopt raises :class:`XtError` naming the step.
    """

    def __init__(self) -> None:
        self._socks: dict[str, socket.socket] = {}
        self._bufs: dict[tuple[str, str], bytearray] = {}  # (family, table): see entries()

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
        self._bufs.clear()

    def _fd(self, family: XtFamily) -> int:
        sock = self._socks.get(family.name)
        if sock is None:
            try:
                sock = socket.socket(family.af, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except OSError as exc:
                af = "AF_INET" if family.af == socket.AF_INET else "AF_INET6"
                err = exc.errno if exc.errno is not None else errno.EIO
                step = f"opening a raw socket {af} for getsockopt"
                raise XtError(err, step, NEEDS_NET_RAW) from None
            self._socks[family.name] = sock
        return sock.fileno()

    def _getsockopt(self, family: XtFamily, opt: int, table: str, buf: bytearray) -> None:
        fd = self._fd(family)
        try:
            _getsockopt_into(fd, family.level, opt, buf)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                raise
            err = exc.errno if exc.errno is not None else errno.EIO
            name = "GET_INFO" if opt == IPT_SO_GET_INFO else "GET_ENTRIES"
            step = f"getsockopt {family.opt_prefix}_SO_{name} on table {table}"
            raise XtError(err, step, NEEDS_NET_ADMIN) from None

    def info(self, family: XtFamily, table: str, *, known: list[str] | None = None) -> XtInfo:
        """IPT_SO_GET_INFO. ``known`` is the names file just read: the table must be in it."""
        names = known if known is not None else read_table_names(family)
        if not names or table not in names:
            raise LookupError(f"{family.name} table {table!r} is not loaded; not opening it")
        buf = bytearray(_GETINFO.size)
        buf[: len(table)] = table.encode()
        self._getsockopt(family, IPT_SO_GET_INFO, table, buf)
        return parse_xt_info(bytes(buf))

    def entries(
        self, family: XtFamily, table: str, *, known: list[str] | None = None, reuse: bool = False
    ) -> tuple[XtInfo, bytearray]:
        """GET_INFO then GET_ENTRIES: the info and a buffer whose bytes [40:] are the blob.

        A new buffer, unless ``reuse`` and the table is big (KEEP_FROM): then the
        buffer of this table's last such read when its size has not changed, valid
        until the next one.
        """
        for _ in range(5):
            info = self.info(family, table, known=known)
            size = _GET_ENTRIES_HDR.size + info.size
            key = (family.name, table)
            keep = reuse and size >= KEEP_FROM
            buf = self._bufs.get(key) if keep else None
            if buf is None or len(buf) != size:
                buf = bytearray(size)
                if keep:
                    self._bufs[key] = buf
            _GET_ENTRIES_HDR.pack_into(buf, 0, table.encode(), info.size)
            try:
                self._getsockopt(family, IPT_SO_GET_ENTRIES, table, buf)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:  # the table changed size between the two calls
                    continue
                raise
            return info, buf
        raise OSError(errno.EAGAIN, f"{family.name} table {table} kept changing while read")


ENTRIES_OFFSET = _GET_ENTRIES_HDR.size


def read_xt_table(
    reader: XtReader, family: XtFamily, table: str, known: list[str]
) -> tuple[XtTable, bytes]:
    """Read and parse one table; returns the table and its blob (a copy)."""
    info, buf = reader.entries(family, table, known=known)
    blob = bytes(buf[ENTRIES_OFFSET:])
    return parse_xt_entries(family, info, blob), blob
