"""Parsers fuzzed with hypothesis: any input gives a result or a clean error, never a crash or hang.

"Clean" is the error each parser documents: ``ValueError`` for text and
data; for netlink replies also the protocol's own outcomes (an NLMSG_ERROR
raises ``NetlinkError``, an interrupted dump ``InterruptedError``). Inputs are
arbitrary text/bytes/JSON, and real captures (tests/fixtures) truncated,
spliced and with bytes flipped, which reaches far deeper than random bytes.
Every example runs under a wall-clock alarm, so a parser that loops forever
fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.check import parse_capabilities
from exporter.collectors.sysctl import parse_switch
from exporter.config import ConfigError, parse_config, parse_duration, parse_listen_address
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_rule_text, parse_nft_text
from exporter.meaning.docker import parse_iptables_rule, parse_nft_rule
from exporter.netlink import core, xtables
from exporter.netlink import netfilter as nfnetlink
from exporter.netlink import route as rtnetlink
from exporter.sources.docker_parse import parse_container, parse_event, parse_network, parse_ports
from exporter.web.auth import parse_basic_auth
from exporter.web.config import WebConfigError, parse_web_config

FIX = Path(__file__).resolve().parent / "fixtures"
HANG_SECONDS = 5  # one example taking this long is a hang (they take microseconds)

FUZZ = settings(
    max_examples=300,
    deadline=None,  # the alarm below bounds each example; CI machines vary
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: CI stays reproducible
)


# Crashes already found and reported (see test_known_crashes, strict xfails that turn red
# once fixed): while they are open the fuzz tests tolerate exactly these classes, raised
# inside exactly these modules, so they keep searching for new ones.
KNOWN_CRASHES_IN: set[tuple[str, type[BaseException]]] = set()  # all fixed, see below
known_crashes_seen: dict[str, int] = {}


def _known_crash(exc: BaseException) -> bool:
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        if "/exporter/" in tb.tb_frame.f_code.co_filename:
            where = Path(tb.tb_frame.f_code.co_filename).name
        tb = tb.tb_next
    for module, kind in KNOWN_CRASHES_IN:
        if where == module and isinstance(exc, kind):
            key = f"{module}: {kind.__name__}"
            known_crashes_seen[key] = known_crashes_seen.get(key, 0) + 1
            return True
    return False


class Hang(Exception):
    pass


@contextmanager
def bounded(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def on_alarm(_sig: int, _frame: object) -> None:
        raise Hang(f"no answer within {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def clean(fn: Callable[[], Any], *allowed: type[BaseException], strict: bool = False) -> Any:
    """Run ``fn``; a result or an ``allowed`` exception passes, anything else fails
    (a crash of a known, reported class passes unless ``strict``)."""
    with bounded():
        try:
            return fn()
        except allowed:
            return None
        except Exception as exc:
            if not strict and _known_crash(exc):
                return None
            raise


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def text_fixture(*parts: str) -> str:
    return FIX.joinpath(*parts).read_text()


def bin_fixture(*parts: str) -> bytes:
    return FIX.joinpath(*parts).read_bytes()


@st.composite
def mutated_text(draw: st.DrawFn, seed: str) -> str:
    """A real capture with lines dropped, duplicated, cut or garbled, and truncated."""
    lines = seed.split("\n")
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["drop", "dup", "cut", "insert", "swap"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            break
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=40)))
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    out = "\n".join(lines)
    return out[: draw(st.integers(0, len(out)))] if draw(st.booleans()) else out


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """A real netlink/x_tables capture with bytes flipped, cut, spliced or truncated."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 3, 4, 0x7F, 0x80, 0xFF]))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 16))]
        else:
            data[i:i] = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def nlmsg(mtype: int, flags: int, seq: int, payload: bytes, length: int | None = None) -> bytes:
    n = 16 + len(payload) if length is None else length
    return struct.pack("=IHHII", n, mtype, flags, seq, 0) + payload


netlink_shaped = st.lists(
    st.builds(
        nlmsg,
        st.sampled_from([1, 2, 3, 0x0A00, 0x0A01, 0x0A03, 0x0A06, 0x0A0F, 0x10, 0x5C]),
        st.integers(0, 0xFFFF),
        st.integers(0, 3),
        st.binary(max_size=64),
        st.one_of(st.none(), st.integers(0, 200)),
    ),
    max_size=6,
).map(b"".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def mutated_json(draw: st.DrawFn, seed: Any) -> Any:
    """A real Docker API document with values replaced by arbitrary JSON, keys dropped."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                choice = draw(st.integers(0, 19))
                if choice == 0:
                    continue  # key dropped
                out[k] = draw(json_values) if choice == 1 else walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(seed)


# ---------------------------------------------------------------------------
# iptables-save and nft text
# ---------------------------------------------------------------------------

SAVE_SEEDS = [
    text_fixture("firewall", "seed-docker-classic.iptables-save"),
    text_fixture("firewall", "iptables-nft-save-c.txt"),
    text_fixture("docker_rules", "v29-iptables.ipv4.iptables-save"),
]
NFT_SEEDS = [
    text_fixture("firewall", "docker29-bridges.nft-s-a.txt"),
    text_fixture("firewall", "nft-a-ruleset.txt"),
    text_fixture("docker_rules", "v29-nftables.nft"),
]


@FUZZ
@given(st.text())
@example("*filter\n:INPUT ACCEPT [1:2]\n-A INPUT -j ACCEPT\n")  # no COMMIT
@example("*filter\n:INPUT ACCEPT [99999999999999999999999:1]\nCOMMIT\n")
@example("-A FORWARD -j DROP\n")  # a rule outside any table
def test_iptables_save_arbitrary_text(text: str) -> None:
    clean(lambda: parse_iptables_save(text, "ipv4", "iptables-nft"), ValueError)


@FUZZ
@given(st.sampled_from(range(len(SAVE_SEEDS))).flatmap(lambda i: mutated_text(SAVE_SEEDS[i])))
def test_iptables_save_mutated_captures(text: str) -> None:
    clean(lambda: parse_iptables_save(text, "ipv6", "iptables-legacy"), ValueError)


@st.composite
def save_document(draw: st.DrawFn) -> tuple[str, dict[tuple[str, str, int], tuple[int, int]]]:
    """A well-formed iptables-save -c text and the counters it holds."""
    counters: dict[tuple[str, str, int], tuple[int, int]] = {}
    lines = []
    names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_0123456789", min_size=1, max_size=12)
    for table in draw(st.lists(st.sampled_from(["filter", "nat", "raw"]), unique=True, min_size=1)):
        lines.append(f"*{table}")
        chains = draw(st.lists(names, unique=True, min_size=1, max_size=4))
        for c in chains:
            lines.append(f":{c} - [0:0]")
        for c in chains:
            for i in range(draw(st.integers(0, 3))):
                pk, by = draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1))
                counters[(table, c, i)] = (pk, by)
                lines.append(f"[{pk}:{by}] -A {c} -s 10.0.{i}.0/24 -j ACCEPT")
        lines.append("COMMIT")
    return "\n".join(lines) + "\n", counters


@FUZZ
@given(save_document())
def test_iptables_save_counters_round_trip(
    doc: tuple[str, dict[tuple[str, str, int], tuple[int, int]]],
) -> None:
    text, counters = doc
    tables = parse_iptables_save(text, "ipv4", "iptables-legacy")
    got = {
        (t.name, c.name, i): (r.packets, r.bytes)
        for t in tables
        for c in t.chains
        for i, r in enumerate(c.rules)
    }
    assert got == counters


@FUZZ
@given(st.text())
@example("table ip t {\n chain c {\n counter packets 1 bytes 2 accept\n")
@example("}\n}\n}")
def test_nft_text_arbitrary_text(text: str) -> None:
    clean(lambda: parse_nft_text(text), ValueError)
    clean(lambda: parse_nft_rule_text(text), ValueError)


@FUZZ
@given(st.sampled_from(range(len(NFT_SEEDS))).flatmap(lambda i: mutated_text(NFT_SEEDS[i])))
def test_nft_text_mutated_captures(text: str) -> None:
    clean(lambda: parse_nft_text(text), ValueError)


@FUZZ
@given(st.text(max_size=300))
@example('-m comment --comment "unterminated')
@example('iifname "br-x" counter packets 1 bytes 2 drop comment "x\\"')
def test_docker_rule_text_never_raises(text: str) -> None:
    # These return None for what they cannot read; nothing may escape.
    clean(lambda: parse_iptables_rule(text))
    clean(lambda: parse_nft_rule(text))


# ---------------------------------------------------------------------------
# Netlink (rtnetlink, nfnetlink) and x_tables
# ---------------------------------------------------------------------------

NETLINK_CLEAN = (ValueError, core.NetlinkError, InterruptedError)
RT_SEEDS = [
    bin_fixture("links", n)
    for n in (
        "stats-dump.bin",
        "link-dump.bin",
        "bridge-dump.bin",
        "varied-links.bin",
        "varied-routes-inet.bin",
        "varied-routes-inet6.bin",
    )
]
NFT_BIN_SEEDS = [
    bin_fixture("firewall", n)
    for n in ("nft-tables.bin", "nft-chains.bin", "nft-rules-all.bin", "nft-rules-ip-nat.bin")
]


def rt_parse(data: bytes) -> None:
    clean(lambda: list(core.messages(data)), *NETLINK_CLEAN)
    clean(lambda: list(core.messages(data, 1, raise_errors=False)), *NETLINK_CLEAN)
    clean(lambda: core.find_attrs(data, 0, len(data)), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_stats_messages(data), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_stats_messages(data, seq=1), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_link_names(data), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_link_dump(data), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_link_dump(data, seq=1), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_route_dump(data), *NETLINK_CLEAN)
    clean(lambda: rtnetlink.parse_nsid_reply(data), *NETLINK_CLEAN)


def nft_parse(data: bytes) -> None:
    clean(lambda: nfnetlink.parse_gen_message(data), *NETLINK_CLEAN)
    clean(lambda: nfnetlink.parse_table_messages(data, []), *NETLINK_CLEAN)
    clean(lambda: nfnetlink.parse_chain_messages(data, []), *NETLINK_CLEAN)
    clean(lambda: nfnetlink.parse_rule_messages(data, []), *NETLINK_CLEAN)


@FUZZ
@given(st.one_of(st.binary(max_size=512), netlink_shaped))
@example(nlmsg(0x5C, 0, 0, b"", length=0))  # zero-length message: must not loop
@example(nlmsg(0x5C, 0, 0, b"", length=15))
@example(nlmsg(0x5C, 0, 0, b"\x00" * 4, length=2**31))
@example(nlmsg(2, 0, 0, struct.pack("=i", -(2**31))))  # errno INT_MIN: os.strerror overflowed
def test_rtnetlink_arbitrary_bytes(data: bytes) -> None:
    rt_parse(data)


def nlattr(atype: int, payload: bytes, length: int | None = None) -> bytes:
    n = 4 + len(payload) if length is None else length
    raw = struct.pack("=HH", n, atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


# rtnetlink messages with a valid fixed header and arbitrary attributes of the types the
# parsers decode (nested one level, as IFLA_LINKINFO and RTA_MULTIPATH are)
rt_attrs = st.lists(
    st.builds(
        nlattr,
        st.sampled_from([1, 3, 4, 5, 9, 10, 15, 16, 18, 37, 0x8012, 0x4001]),
        st.one_of(
            st.binary(max_size=24),
            st.lists(st.builds(nlattr, st.integers(0, 6), st.binary(max_size=20)), max_size=3).map(
                b"".join
            ),
            st.builds(
                lambda n, oif, rest: struct.pack("=HBBi", n, 0, 0, oif) + rest,
                st.integers(0, 40),
                st.integers(-1, 9),
                st.binary(max_size=24),
            ),
        ),
        st.one_of(st.none(), st.integers(0, 64)),
    ),
    max_size=8,
).map(b"".join)
rt_shaped = st.lists(
    st.one_of(
        st.builds(  # RTM_NEWLINK: ifinfomsg
            lambda flags, attrs: nlmsg(16, 2, 0, struct.pack("=BBHiII", 0, 0, 1, 5, flags, 0)
                                       + attrs),
            st.sampled_from([0, 8]),
            rt_attrs,
        ),
        st.builds(  # RTM_NEWROUTE: rtmsg
            lambda family, attrs: nlmsg(24, 2, 0, struct.pack("=BBBBBBBBI", family, 8, 0, 0, 254,
                                                              0, 0, 1, 0) + attrs),
            st.sampled_from([2, 10, 28, 0]),
            rt_attrs,
        ),
        st.builds(  # RTM_NEWNSID: rtgenmsg
            lambda attrs: nlmsg(88, 0, 0, b"\0\0\0\0" + attrs), rt_attrs
        ),
        st.just(nlmsg(3, 2, 0, b"\0\0\0\0")),  # NLMSG_DONE
    ),
    max_size=4,
).map(b"".join)  # fmt: skip


@FUZZ
@given(rt_shaped)
@example(nlmsg(16, 0, 0, struct.pack("=BBHiII", 0, 0, 1, 5, 0, 0) + nlattr(18, b"", 2)))
@example(nlmsg(24, 0, 0, bytes(12) + nlattr(9, struct.pack("=HBBi", 0, 0, 0, 1))))
def test_rtnetlink_attribute_shaped(data: bytes) -> None:
    rt_parse(data)


@FUZZ
@given(st.sampled_from(range(len(RT_SEEDS))).flatmap(lambda i: mutated_bytes(RT_SEEDS[i])))
def test_rtnetlink_mutated_captures(data: bytes) -> None:
    rt_parse(data)


@FUZZ
@given(st.one_of(st.binary(max_size=512), netlink_shaped))
@example(nlmsg(0x0A06, 0, 0, b"", length=0))
@example(nlmsg(0x0A06, 0, 0, b"\x02\x00\x00\x00" + b"\x00\x00\x01\x00", length=24))  # attr len 0
def test_nfnetlink_arbitrary_bytes(data: bytes) -> None:
    nft_parse(data)


@FUZZ
@given(
    st.sampled_from(range(len(NFT_BIN_SEEDS))).flatmap(lambda i: mutated_bytes(NFT_BIN_SEEDS[i]))
)
def test_nfnetlink_mutated_captures(data: bytes) -> None:
    nft_parse(data)


XT_SEEDS = [
    (xtables.IPV4, "xt-ipv4-filter"),
    (xtables.IPV4, "xt-ipv4-nat"),
    (xtables.IPV6, "xt-ipv6-filter"),
    (xtables.IPV6, "xt-ipv6-nat"),
]


@FUZZ
@given(st.binary(max_size=200))
def test_xt_info_arbitrary_bytes(data: bytes) -> None:
    clean(lambda: xtables.parse_xt_info(data), ValueError)


@FUZZ
@given(
    st.sampled_from(range(len(XT_SEEDS))).flatmap(
        lambda i: st.tuples(
            st.just(i), mutated_bytes(bin_fixture("firewall", XT_SEEDS[i][1] + ".bin"))
        )
    )
)
def test_xt_entries_mutated_captures(case: tuple[int, bytes]) -> None:
    i, blob = case
    family, name = XT_SEEDS[i]
    info = xtables.parse_xt_info(bin_fixture("firewall", name + ".info.bin"))
    # The kernel's size is what getinfo said; keep it consistent so the walk itself is fuzzed.
    from dataclasses import replace  # noqa: PLC0415

    clean(lambda: xtables.parse_xt_entries(family, replace(info, size=len(blob)), blob), ValueError)
    clean(lambda: xtables.parse_xt_entries(family, info, blob), ValueError)


# ---------------------------------------------------------------------------
# Docker API documents
# ---------------------------------------------------------------------------

INSPECTS: list[dict[str, Any]] = json.loads(text_fixture("containers", "inspect-containers.json"))
NETWORKS: list[dict[str, Any]] = json.loads(text_fixture("containers", "networks.json"))


def docker_parse(doc: Any) -> None:
    clean(lambda: parse_container(doc), ValueError)
    clean(lambda: parse_network(doc), ValueError)
    clean(lambda: parse_event(doc), ValueError)
    settings_ = doc.get("NetworkSettings") if isinstance(doc, dict) else None
    if isinstance(settings_, dict):
        clean(lambda: parse_ports(settings_.get("Ports")), ValueError)


@FUZZ
@given(st.sampled_from(range(len(INSPECTS))).flatmap(lambda i: mutated_json(INSPECTS[i])))
def test_docker_inspect_mutated(doc: dict[str, Any]) -> None:
    docker_parse(doc)


@FUZZ
@given(st.sampled_from(range(len(NETWORKS))).flatmap(lambda i: mutated_json(NETWORKS[i])))
def test_docker_networks_mutated(doc: dict[str, Any]) -> None:
    docker_parse(doc)


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_docker_documents_arbitrary(doc: dict[str, Any]) -> None:
    docker_parse(doc)


# ---------------------------------------------------------------------------
# Configuration, web config, small host readers
# ---------------------------------------------------------------------------


@FUZZ
@given(json_values)
def test_config_and_web_config_arbitrary_documents(raw: Any) -> None:
    clean(lambda: parse_config(raw), ConfigError)
    clean(lambda: parse_web_config(raw, Path("/nonexistent")), WebConfigError)
    for section in ("web", "firewall", "docker", "collectors", "poll", "log"):
        clean(lambda s=section: parse_config({s: raw}), ConfigError)  # type: ignore[misc]
    for section in ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"):
        clean(lambda s=section: parse_web_config({s: raw}, Path("/x")), WebConfigError)  # type: ignore[misc]


@FUZZ
@given(st.one_of(st.text(), json_values))
def test_small_parsers(value: Any) -> None:
    clean(lambda: parse_duration(value), ValueError)
    if isinstance(value, str):
        clean(lambda: parse_listen_address(value), ValueError)
        clean(lambda: parse_switch(value, "/proc/sys/x"), ValueError)
        clean(lambda: parse_basic_auth(value))
        clean(lambda: parse_basic_auth("Basic " + value))
        clean(lambda: parse_capabilities(value), ValueError)
        clean(lambda: xtables.parse_table_names(value))


# ---------------------------------------------------------------------------
# Crashes the fuzzing above found, minimal inputs: each is now a clean ValueError
# ---------------------------------------------------------------------------

KNOWN_CRASHES: list[tuple[str, Callable[[], Any]]] = [
    # An NLMSG_ERROR of 16 bytes (no errno): struct.error.
    ("rtnetlink.parse_stats_messages, NLMSG_ERROR without errno",
     lambda: rtnetlink.parse_stats_messages(nlmsg(2, 0, 0, b""))),
    ("rtnetlink.parse_link_names, NLMSG_ERROR without errno",
     lambda: rtnetlink.parse_link_names(nlmsg(2, 0, 0, b""))),
    # RTM_NEWSTATS / RTM_NEWLINK of 16 bytes (no if_stats_msg / ifinfomsg): struct.error.
    ("rtnetlink.parse_stats_messages, RTM_NEWSTATS without if_stats_msg",
     lambda: rtnetlink.parse_stats_messages(nlmsg(0x5C, 0, 0, b""))),
    ("rtnetlink.parse_link_names, RTM_NEWLINK without ifinfomsg",
     lambda: rtnetlink.parse_link_names(nlmsg(16, 0, 0, b""))),
    # Docker documents with a value of another JSON type: AttributeError / TypeError.
    ("containers.parse_network, IPAM not an object",
     lambda: parse_network({"IPAM": True})),
    ("containers.parse_network, IPAM.Config items not objects",
     lambda: parse_network({"IPAM": {"Config": "0"}})),
    ("containers.parse_container, HostConfig not an object",
     lambda: parse_container({"HostConfig": 1})),
    ("containers.parse_container, a network endpoint not an object",
     lambda: parse_container({"NetworkSettings": {"Networks": {"a": "x"}}})),
    ("containers.parse_ports, a binding not an object",
     lambda: parse_ports({"80/tcp": [1]})),
    ("containers.parse_ports, bindings not a list",
     lambda: parse_ports({"80/tcp": 5})),
]  # fmt: skip


@pytest.mark.parametrize("case", KNOWN_CRASHES, ids=[c[0] for c in KNOWN_CRASHES])
def test_known_crashes(case: tuple[str, Callable[[], Any]]) -> None:
    with pytest.raises(ValueError, match=r"truncated|Docker API"):
        case[1]()


def test_a_hang_is_caught() -> None:
    """The guard itself: a parser that never returns fails the example."""

    def forever() -> None:
        while True:
            pass

    with pytest.raises(Hang), bounded(0.2):
        forever()
