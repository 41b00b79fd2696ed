"""Prometheus text exposition (format 0.0.4), rendered fast.

prometheus-client's ``generate_latest`` costs 5-7 µs a series (see
design/performance.md): 28k series would take 150-200 ms a scrape. Here each
series' ``name{labels} `` prefix is rendered once and kept as bytes for as long
as the series exists, so a poll only formats the values: one ``%`` over a
whole family of integer counters. The cache is rebuilt
from the series of each render, so it never holds a series that has gone.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence

from exporter.model import LabelValues, MetricFamily, Series

try:  # ISA-L's deflate: 1.5 ms for a 5 MB exposition at level 1, zlib's 12 ms (README)
    from isal import isal_zlib as _zlib
except ImportError:  # no isal wheel for this platform: the same format from the standard library
    import zlib as _zlib  # type: ignore[no-redef]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int) -> str:
    """Integers as integers (counters can exceed 2**53); floats as Go would print them."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_prefix(name: str, labels: tuple[str, ...], values: LabelValues) -> bytes:
    if not labels:
        return f"{name} ".encode()
    pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in zip(labels, values, strict=True))
    return f"{name}{{{pairs}}} ".encode()


BLOCK = 128  # series per block of an integer family's format
SEGMENT_MIN = 64  # a column family of at least this many series is gzipped block by block


class _FamilyCache:
    """The last render of one family: its header, its label sets and how to print their values.

    An all-integer family keeps its format in blocks of :data:`BLOCK` series
    (``blocks``: each ``name{labels} %d\\n`` joined, ``%`` escaped), so a poll
    prints a block with a single ``%``; a family with other values keeps each
    series' ``name{labels} `` prefix instead. Only one of the two is kept; each
    is derived from the other when the values change kind.

    A big column family written into a :class:`GzipMember` also keeps the
    values it was last written with and each block's compressed segment
    (``values``, ``segments``): a block whose values did not move is not
    formatted or compressed again, its segment is copied, and its format is
    kept deflated until its values move (most of a big host's series stand
    still from one poll to the next: 4 of the 5 MB of formats at 1000 veths).

    A family of pairs handed as the very same (immutable) object at two
    renders in a row, such as a renderer's plan-level info family, keeps its
    text (``kept``) and is written as it is from then on.
    """

    __slots__ = (
        "blocks",
        "header",
        "kept",
        "labels",
        "last",
        "meta",
        "prefixes",
        "segments",
        "values",
    )

    def __init__(
        self,
        fam: MetricFamily,
        labels: Sequence[LabelValues],
        *,
        blocks: list[bytes] | None = None,
        prefixes: list[bytes] | None = None,
    ) -> None:
        self.meta = (fam.labels, fam.help, fam.type)
        self.header = (
            f"# HELP {fam.name} {escape_help(fam.help)}\n# TYPE {fam.name} {fam.type}\n".encode()
        )
        self.labels = labels
        self.blocks = blocks
        self.prefixes = prefixes  # b'name{labels} '
        self.last: MetricFamily | None = None  # the family object of the last render
        self.kept: bytes | None = None  # its text, once the same object came twice
        self.values: tuple[int, ...] | None = None  # the values the segments hold
        self.segments: list[Segment] | None = None

    def series_prefixes(self) -> list[bytes]:
        if self.prefixes is None:
            self.prefixes = [line[:-2].replace(b"%%", b"%") for line in self.int_lines()]
            self.blocks = None
            self.values = self.segments = None
        return self.prefixes

    def int_blocks(self) -> list[bytes]:
        if self.blocks is None:
            assert self.prefixes is not None
            self.blocks = _blocks([p.replace(b"%", b"%%") + b"%d" for p in self.prefixes])
            self.prefixes = None
        elif any(type(b) is _Packed for b in self.blocks):
            self.blocks = [_unpack(b) for b in self.blocks]
        return self.blocks

    def int_lines(self) -> list[bytes]:
        """Each series' line of the format, without its newline: b'name{labels} %d'.

        A prefix never holds a raw newline (label values escape it), so the
        format splits into its series at the newlines.
        """
        return [line for block in self.int_blocks() for line in block.split(b"\n")[:-1]]


def _blocks(lines: list[bytes]) -> list[bytes]:
    return [b"\n".join(lines[a : a + BLOCK]) + b"\n" for a in range(0, len(lines), BLOCK)]


class _Packed(bytes):
    """A block's format, deflated while its values stand still (a 20th of the size)."""

    __slots__ = ()


def _unpack(block: bytes) -> bytes:
    return _zlib.decompress(block, -15) if type(block) is _Packed else block


_INT = {int}


class ExpositionWriter:
    """Renders metric families to exposition bytes, caching series text between renders.

    A family whose label sets are the same as at its last render (the common
    case: counters move, series stay) reuses its cached text, so a poll costs
    one ``%`` formatting per block of an integer family, and into a
    :class:`GzipMember` only for the blocks whose values moved. A renderer that
    hands its samples as a :class:`~exporter.model.Series` with the same
    ``labels`` tuple each poll makes the "same label sets" check one identity
    compare. Families and series that went away leave the cache at the next render.
    """

    def __init__(self) -> None:
        self._families: dict[str, _FamilyCache] = {}

    def render(self, families: Iterable[MetricFamily]) -> bytes:
        """The exposition as one bytes object."""
        out: list[bytes] = []
        self.write(families, out.append)
        return b"".join(out)

    def write(
        self, families: Iterable[MetricFamily], sink: GzipMember | Callable[[bytes], object]
    ) -> None:
        """Hand the exposition to ``sink`` part by part (each family's header, then its
        series), so that each part can go at once; a :class:`GzipMember` also takes
        the unchanged blocks of big families as their kept compressed segments."""
        member = sink if isinstance(sink, GzipMember) else None
        write = sink.write if isinstance(sink, GzipMember) else sink
        old = self._families
        new: dict[str, _FamilyCache] = {}
        for fam in families:
            samples = fam.samples
            if not samples:
                continue
            if fam.name in new:
                raise ValueError(f"metric family {fam.name} rendered twice")
            cache = old.get(fam.name)
            if cache is not None and cache.last is fam and cache.kept is not None:
                new[fam.name] = cache
                write(cache.header)
                write(cache.kept)
                continue
            columns = isinstance(samples, Series)
            if isinstance(samples, Series):
                labels: Sequence[LabelValues] = samples.labels
                values = tuple(samples.values)
                ints = samples.ints or set(map(type, values)) == _INT
            else:
                labels = [s[0] for s in samples]
                values = tuple([s[1] for s in samples])
                ints = set(map(type, values)) == _INT
            if (
                cache is None
                or (cache.labels is not labels and cache.labels != labels)
                or cache.meta != (fam.labels, fam.help, fam.type)
            ):
                cache = _build(fam, labels, cache, ints)
            new[fam.name] = cache
            write(cache.header)
            big = columns and len(values) >= SEGMENT_MIN
            if ints and big and member is not None and member.reuses:
                _write_segments(cache, values, member)  # type: ignore[arg-type]
                continue
            cache.values = cache.segments = None
            if ints:
                blocks = cache.int_blocks()
                parts = [fmt % values[i * BLOCK : (i + 1) * BLOCK] for i, fmt in enumerate(blocks)]
                text = parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                pairs = zip(cache.series_prefixes(), values, strict=True)
                text = b"".join([p + format_value(v).encode() + b"\n" for p, v in pairs])
            write(text)
            cache.kept = text if cache.last is fam else None
            # Columns (Series) are each poll's counters: never the same object, and
            # not worth keeping alive until the next render to find that out.
            cache.last = None if columns else fam
        self._families = new


def _write_segments(cache: _FamilyCache, values: tuple[int, ...], member: GzipMember) -> None:
    """An integer column family into ``member`` block by block, copying the
    compressed segment of each block whose values are those it was made from."""
    blocks = cache.blocks if cache.blocks is not None else cache.int_blocks()
    prev = cache.values if cache.values is not None else ()
    kept = cache.segments if cache.segments is not None else []
    made: list[Segment] = []
    for i, fmt in enumerate(blocks):
        a = i * BLOCK
        part = values[a : a + BLOCK]
        if i < len(kept) and part == prev[a : a + BLOCK]:
            seg = kept[i]
            member.add_segment(seg)
            if type(fmt) is not _Packed:  # still: its format waits deflated
                blocks[i] = _Packed(_zlib.compress(fmt, GZIP_LEVEL, -15))
        else:
            if type(fmt) is _Packed:
                blocks[i] = _unpack(fmt)
            seg = member.compress_segment(blocks[i] % part)
        made.append(seg)
    cache.values, cache.segments = values, made
    cache.kept = cache.last = None


def _build(
    fam: MetricFamily, labels: Sequence[LabelValues], old: _FamilyCache | None, ints: bool
) -> _FamilyCache:
    """The family's cache for new label sets, keeping the text of the series that stay."""
    reuse = old is not None and bool(fam.labels) and old.meta[0] == fam.labels
    if ints:
        known = dict(zip(old.labels, old.int_lines(), strict=True)) if old and reuse else {}
        lines = [
            known.get(v) or render_prefix(fam.name, fam.labels, v).replace(b"%", b"%%") + b"%d"
            for v in labels
        ]
        return _FamilyCache(fam, labels, blocks=_blocks(lines))
    known = dict(zip(old.labels, old.series_prefixes(), strict=True)) if old and reuse else {}
    prefixes = [known.get(v) or render_prefix(fam.name, fam.labels, v) for v in labels]
    return _FamilyCache(fam, labels, prefixes=prefixes)


GZIP_LEVEL = 1  # isal level 1 (of 0-3): 213 kB for 5.2 MB here; level 2 saves 5%, no faster
GZIP_WBITS = 31  # a gzip member (16 + a 32 KiB window), as HTTP's Content-Encoding: gzip
# RFC 1952 member header: deflate, no flags, no mtime (an exposition has no file date), OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_GZIP_TRAILER = struct.Struct("<II")  # CRC-32 and length mod 2**32 of the uncompressed data


class Segment:
    """Deflate output for one part that refers to no data outside it: it begins and
    ends at a full flush, so it can be copied into another member at a full flush."""

    __slots__ = ("crc", "data", "size")

    def __init__(self, data: bytes, crc: int, size: int) -> None:
        self.data = data
        self.crc = crc
        self.size = size


class GzipMember:
    """One gzip member, compressed part by part as the parts are written.

    ISA-L's deflate at level 1 when isal is installed (0.05 µs a series here),
    else zlib's (0.4 µs a series). Only the compressed output is kept: a part
    can be freed as soon as it is written. A part may also go in as a
    :class:`Segment`, made here or kept from an earlier member (isal only:
    the trailer's CRC then needs ``crc32_combine``, which the standard zlib
    module lacks).
    """

    __slots__ = ("_comp", "_crc", "_out", "_pending", "_size")

    reuses = hasattr(_zlib, "crc32_combine")

    def __init__(self) -> None:
        self._comp = _zlib.compressobj(GZIP_LEVEL, _zlib.DEFLATED, -15)  # raw deflate
        self._out: list[bytes] = [_GZIP_HEADER]
        self._crc = 0
        self._size = 0
        self._pending = False  # written since the last full flush

    def write(self, part: bytes) -> None:
        out = self._comp.compress(part)
        if out:
            self._out.append(out)
        self._crc = _zlib.crc32(part, self._crc)
        self._size += len(part)
        self._pending = True

    def _flush(self) -> None:
        if self._pending:
            self._out.append(self._comp.flush(_zlib.Z_FULL_FLUSH))
            self._pending = False

    def compress_segment(self, part: bytes) -> Segment:
        """Write ``part`` as a segment of its own, and return that segment."""
        self._flush()
        data = self._comp.compress(part) + self._comp.flush(_zlib.Z_FULL_FLUSH)
        seg = Segment(data, _zlib.crc32(part), len(part))
        self._out.append(data)
        if self.reuses:
            self._crc = _zlib.crc32_combine(self._crc, seg.crc, seg.size)
        else:
            self._crc = _zlib.crc32(part, self._crc)
        self._size += seg.size
        return seg

    def add_segment(self, seg: Segment) -> None:
        """Copy in a segment made by an earlier member (requires :attr:`reuses`)."""
        self._flush()
        self._out.append(seg.data)
        self._crc = _zlib.crc32_combine(self._crc, seg.crc, seg.size)
        self._size += seg.size

    def close(self) -> bytes:
        """The whole member; nothing may be written after."""
        self._out.append(self._comp.flush())
        self._out.append(_GZIP_TRAILER.pack(self._crc, self._size & 0xFFFFFFFF))
        return b"".join(self._out)


def gunzip(data: bytes) -> bytes:
    """The bytes of one gzip member (as :class:`GzipMember` makes them)."""
    return _zlib.decompress(data, GZIP_WBITS)
