"""The fast exposition writer must print what prometheus-client's own parser reads back."""

from __future__ import annotations

import dataclasses
import gzip
import zlib

import lab
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.metrics import exposition
from exporter.metrics.exposition import ExpositionWriter, GzipMember, format_value, gunzip
from exporter.model import MetricFamily, Series


def fam(
    name: str, samples: list[tuple[tuple[str, ...], float | int]], labels=("a",), typ="counter"
):
    return MetricFamily(name, typ, f"help of {name}", labels, tuple(samples))


def test_round_trip_with_escapes() -> None:
    nasty = 'a"b\\c\nd -o br-x -j DROP'
    body = ExpositionWriter().render(
        [
            fam("x_total", [((nasty,), 3), (("plain",), 2**62)]),
            MetricFamily("g", "gauge", "multi\nline \\ help", (), (((), 0.25),)),
        ]
    )
    got = lab.parse_exposition(body.decode())
    assert got["x_total"] == [({"a": nasty}, 3.0), ({"a": "plain"}, float(2**62))]
    assert got["g"] == [({}, 0.25)]
    assert b'x_total{a="plain"} 4611686018427387904\n' in body


def test_empty_families_are_left_out_and_duplicates_refused() -> None:
    w = ExpositionWriter()
    assert w.render([fam("empty_total", [])]) == b""
    with pytest.raises(ValueError, match="twice"):
        w.render([fam("d_total", [(("1",), 1)]), fam("d_total", [(("2",), 1)])])


def test_prefix_cache_follows_the_series() -> None:
    w = ExpositionWriter()
    w.render([fam("c_total", [(("1",), 1), (("2",), 2)])])
    body = w.render([fam("c_total", [(("2",), 5)])])
    assert lab.parse_exposition(body.decode())["c_total"] == [({"a": "2"}, 5.0)]
    assert w._families["c_total"].labels == [("2",)]  # the gone series left the cache
    w.render([fam("other_total", [(("1",), 1)])])
    assert list(w._families) == ["other_total"]  # and so did the gone family


def test_values_switching_between_int_and_float() -> None:
    w = ExpositionWriter()
    assert w.render([fam("v", [(("%d",), 1)], typ="gauge")]).endswith(b'v{a="%d"} 1\n')
    assert w.render([fam("v", [(("%d",), 1.5)], typ="gauge")]).endswith(b'v{a="%d"} 1.5\n')
    assert w.render([fam("v", [(("%d",), 2)], typ="gauge")]).endswith(b'v{a="%d"} 2\n')


@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(min_value=0, max_value=2**64),
                st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from([1, 1.0, 2, 2.0]),
            ),
            min_size=4,
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_cached_render_equals_a_fresh_one(polls: list[list[float | int]]) -> None:
    """Every poll through the cache must equal a writer without one, whether the
    samples come as pairs or as a Series (one labels tuple kept across polls,
    then a new one with one series fewer)."""
    cached, columns = ExpositionWriter(), ExpositionWriter()
    kept = tuple((str(i),) for i in range(4))
    for n, values in enumerate(polls):
        families = [fam("x_total", [((str(i),), v) for i, v in enumerate(values)])]
        fresh = ExpositionWriter().render(families)
        assert cached.render(families) == fresh
        shown = values
        if n >= 3:  # the label sets change once, then stay
            kept, shown = tuple((str(i),) for i in range(1, 4)), values[1:]
            pairs = list(zip(kept, shown, strict=True))
            fresh = ExpositionWriter().render([fam("x_total", pairs)])
        ints = all(type(v) is int for v in shown)
        series = Series.counters(kept, shown) if ints else Series(kept, shown)
        family = MetricFamily("x_total", "counter", "help of x_total", ("a",), series)
        assert columns.render([family]) == fresh


def test_series_reads_as_its_pairs() -> None:
    s = Series((("a",), ("b",)), [1, 2.5])
    assert s == ((("a",), 1), (("b",), 2.5)) == s[:]
    assert ((("a",), 1), (("b",), 2.5)) == s  # noqa: SIM300 - the tuple's side first
    assert list(s) == [(("a",), 1), (("b",), 2.5)] and s[1] == (("b",), 2.5) and len(s) == 2
    assert s != ((("a",), 1),)
    with pytest.raises(ValueError, match="2 label sets for 1 values"):
        Series((("a",), ("b",)), [1])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (0, "0"),
        (1.5, "1.5"),
        (2.0, "2"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
        (1e20, "1e+20"),
        (-3.0, "-3"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_gzip_member_round_trips(deflate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """isal's member and the fallback's are both one gzip member any client reads."""
    if deflate == "zlib":
        monkeypatch.setattr(exposition, "_zlib", zlib)
    else:
        assert exposition._zlib.__name__ == "isal.isal_zlib"  # the dependency is installed
    parts = [b"# TYPE x counter\n", b"x 1\n" * 1000, b"", b'y{a="b"} 2\n']
    writer = GzipMember()
    for part in parts:
        writer.write(part)
    member = writer.close()
    assert gzip.decompress(member) == b"".join(parts)
    assert gunzip(member) == b"".join(parts)


label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(
    st.lists(st.tuples(label_text, st.integers(0, 2**64)), max_size=20, unique_by=lambda t: t[0])
)
def test_any_label_values_parse_back(samples: list[tuple[str, int]]) -> None:
    body = ExpositionWriter().render([fam("h_total", [((k,), v) for k, v in samples])])
    got = lab.parse_exposition(body.decode()).get("h_total", [])
    assert [(labels["a"], float(v)) for labels, v in got] == [(k, float(v)) for k, v in samples]


def test_a_family_handed_again_as_the_same_object_is_written_from_its_kept_text() -> None:
    w = ExpositionWriter()
    info = fam("i", [(("a",), 1), (("b",), 1)], typ="gauge")
    fresh = ExpositionWriter().render([info])
    assert w.render([info]) == fresh and w._families["i"].kept is None
    assert w.render([info]) == fresh and w._families["i"].kept is not None  # twice: kept
    assert w.render([info]) == fresh
    # an equal family made anew is rendered, and its text is not kept until it comes twice
    again = fam("i", [(("a",), 1), (("b",), 2)], typ="gauge")
    assert w.render([again]) == ExpositionWriter().render([again])
    assert w._families["i"].kept is None
    # columns are each poll's values: never kept, nor held for the next render
    series = MetricFamily("c_total", "counter", "h", ("a",), Series.counters((("x",),), [5]))
    w.render([series])
    w.render([series])
    assert w._families["c_total"].kept is None and w._families["c_total"].last is None


class CountingMember(GzipMember):
    """A GzipMember that counts the segments it copied and the ones it compressed."""

    __slots__ = ("copied", "made")

    def __init__(self) -> None:
        super().__init__()
        self.copied = self.made = 0

    def add_segment(self, seg: exposition.Segment) -> None:
        self.copied += 1
        super().add_segment(seg)

    def compress_segment(self, part: bytes) -> exposition.Segment:
        self.made += 1
        return super().compress_segment(part)


@given(
    st.integers(min_value=1, max_value=3 * exposition.BLOCK + 5),
    st.lists(
        st.lists(st.tuples(st.integers(0, 3 * exposition.BLOCK + 4), st.integers(0, 2**64))),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_gzip_segments_of_unchanged_blocks_are_copied(
    size: int, moves: list[list[tuple[int, int]]], relabel: bool
) -> None:
    """Poll after poll, a big counter column into a gzip member reads back as a
    fresh render, and exactly the blocks whose values moved are compressed again."""
    writer = ExpositionWriter()
    labels = tuple((f"rule {i}",) for i in range(size))
    values = list(range(size))
    other = fam("y_total", [(("z",), 1)])  # a small family of pairs between, streamed
    for n, poll in enumerate([[], *moves]):
        old = list(values)
        for at, value in poll:
            values[at % size] = value
        if relabel and n == 2:  # new label sets: every block made afresh
            labels = tuple((f"rule {i}",) for i in range(1, size + 1))
        series = MetricFamily("x_total", "counter", "h", ("a",), Series.counters(labels, values))
        member = CountingMember()
        writer.write([other, series, dataclasses.replace(other, name="w_total")], member)
        body = member.close()
        fresh = ExpositionWriter().render(
            [other, series, dataclasses.replace(other, name="w_total")]
        )
        assert gzip.decompress(body) == fresh  # gzip checks the CRC and length too
        blocks = range(0, size, exposition.BLOCK)
        if size < exposition.SEGMENT_MIN:
            assert member.made == member.copied == 0
        elif n == 0 or (relabel and n == 2):
            assert (member.made, member.copied) == (len(blocks), 0)
        else:
            moved = sum(
                old[a : a + exposition.BLOCK] != values[a : a + exposition.BLOCK] for a in blocks
            )
            assert (member.made, member.copied) == (moved, len(blocks) - moved)
            # The formats of the blocks that stood still wait deflated.
            still = [
                old[a : a + exposition.BLOCK] == values[a : a + exposition.BLOCK] for a in blocks
            ]
            cache = writer._families["x_total"]
            assert [type(b) is exposition._Packed for b in cache.blocks] == still


def test_without_crc32_combine_nothing_is_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard zlib module has no crc32_combine: every block is formatted and
    streamed, and the member is the same text."""
    monkeypatch.setattr(exposition, "_zlib", zlib)
    monkeypatch.setattr(GzipMember, "reuses", False)
    writer = ExpositionWriter()
    labels = tuple((str(i),) for i in range(300))
    for _ in range(2):
        family = MetricFamily("x_total", "counter", "h", ("a",), Series.counters(labels, [1] * 300))
        member = CountingMember()
        writer.write([family], member)
        assert gunzip(member.close()) == ExpositionWriter().render([family])
        assert member.made == member.copied == 0
