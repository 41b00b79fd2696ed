"""The conntrack collector's pure parts: attribution, active connections, rendering, messages."""

from __future__ import annotations

import errno
import socket

import pytest

from exporter.check import OK, WARN, render_findings
from exporter.collector import CollectorError
from exporter.collectors.conntrack import (
    ConntrackCollector,
    ConntrackData,
    LastDump,
    Owners,
    active_connections,
    attribute,
    build_owners,
    describe_conntrack,
    error_message,
    owners,
    render_conntrack,
)
from exporter.config import Config, ConfigError, parse_config
from exporter.model import Endpoint, Network, SourceData, Workload
from exporter.netlink.conntrack import (
    EVENTS,
    ConntrackReader,
    DumpResult,
    TableInfo,
    add_entries,
)
from exporter.netlink.netfilter import NetlinkError


def ip(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


A, B, GW, OUT, SVC = "172.18.0.2", "172.18.0.3", "172.18.0.1", "10.9.0.1", "10.96.0.10"


def entry(proto: int, osrc: str, odst: str, rsrc: str, dport: int, state: int = -1) -> tuple:  # noqa: PLR0917
    return (proto, ip(osrc), ip(odst), ip(rsrc), ip(osrc), dport, state, dport)


ENTRIES = [
    entry(6, A, OUT, OUT, 80, 3),  # A opened, established
    entry(6, A, OUT, OUT, 80, 7),  # A opened, time-wait
    entry(17, A, OUT, OUT, 53),  # A's DNS
    entry(6, OUT, SVC, B, 8080, 3),  # someone reached B through DNAT (a Service)
    entry(6, A, B, B, 5432, 3),  # A -> B: counts for both
    entry(6, A, A, A, 1, 3),  # A to itself: counts once
    entry(6, GW, B, B, 80, 2),  # the host (gateway) -> B
    entry(6, "fd00::2", "fd00:9::1", "fd00:9::1", 80, 3),  # A's IPv6
    entry(6, OUT, "10.9.0.2", "10.9.0.2", 22, 3),  # nothing of ours
]


def dump() -> DumpResult:
    pairs: dict = {}
    active: dict = {}
    add_entries(ENTRIES, pairs, active)
    return DumpResult(len(ENTRIES), False, pairs, active)


def docker() -> SourceData:
    ep_a = Endpoint("app", "n" * 64, A, "fd00::2", "", GW)
    ep_b = Endpoint("app", "n" * 64, B, "", "", GW)
    quiet = Endpoint("app", "n" * 64, "172.18.0.9", "", "", GW)
    ctrs = (
        Workload("a" * 64, "a", "img", "", "", "app", 1, (ep_a,), ()),
        Workload("b" * 64, "b", "img", "", "", "app", 2, (ep_b,), ()),
        Workload("q" * 64, "quiet", "img", "", "", "app", 3, (quiet,), ()),
        Workload("h" * 64, "hostnet", "img", "", "", "host", None, (), ()),
    )
    net = Network("app", "n" * 64, "bridge", "br-x", ("172.18.0.0/16",), (GW,), False)
    return SourceData("29.0", ctrs, (net,))


def pod() -> SourceData:
    ep = Endpoint("cbr0", "cbr0", "10.244.0.5", "", "", "10.244.0.1")
    w = Workload("s" * 64, "kube-system/coredns-x", "", "", "", "pod", 4, (ep,), (),
                 runtime="containerd", namespace="kube-system", pod="coredns-x")  # fmt: skip
    net = Network("cbr0", "cbr0", "bridge", "cni0", ("10.244.0.0/24",), ("10.244.0.1",), False,
                  runtime="containerd")  # fmt: skip
    return SourceData("2.0", (w,), (net,), runtime="containerd")


def test_attribution_counts_each_entry_once_per_owner() -> None:
    who = build_owners([docker()])
    got = attribute(dump(), who.workloads)
    assert got == {
        ("a", "", "", "app"): 6,  # 3 opened + to B + to itself + IPv6
        ("b", "", "", "app"): 3,  # via DNAT + from A + from the gateway
        ("quiet", "", "", "app"): 0,
    }
    assert attribute(dump(), who.gateways) == {("docker", "app"): 1}
    assert owners([("", 1), ("not an ip", 2), ("10.0.0.1/24", 3)]) == {ip("10.0.0.1"): 3}


def test_active_connections_for_services() -> None:
    got = active_connections(dump())
    assert got[("tcp", SVC, 8080, B, 8080)] == 1
    assert got[("tcp", OUT, 80, OUT, 80)] == 1  # the TIME_WAIT one is not active
    assert got[("udp", OUT, 53, OUT, 53)] == 1
    assert ("tcp", B, 80, B, 80) not in got  # SYN_RECV
    assert sum(got.values()) == 7


def test_render() -> None:
    data = ConntrackData(
        TableInfo(9, 100), dict.fromkeys(EVENTS, 2), LastDump(dump(), 0.5, 1700000000.0)
    )
    fams = {f.name: f for f in render_conntrack(data, build_owners([docker()]))}
    assert fams["netpath_conntrack_entries"].samples == (((), 9),)
    assert fams["netpath_conntrack_entries_limit"].samples == (((), 100),)
    events = fams["netpath_conntrack_events_total"]
    assert events.type == "counter"
    assert [lv[0] for lv, _ in events.samples] == list(EVENTS)
    assert fams["netpath_conntrack_dump_truncated"].samples == (((), 0),)
    assert dict(fams["netpath_conntrack_workload_entries"].samples) == {
        ("a", "", "", "app"): 6,
        ("b", "", "", "app"): 3,
        ("quiet", "", "", "app"): 0,
    }
    # the network: its workloads summed (A->B counts for both) plus its gateway's entries
    assert fams["netpath_conntrack_network_entries"].samples == ((("docker", "app"), 10),)
    # before any dump: the cheap figures only; no limit when the kernel gave none
    bare = render_conntrack(ConntrackData(TableInfo(9, None), {}, None), Owners())
    assert [f.name for f in bare] == ["netpath_conntrack_entries", "netpath_conntrack_events_total"]


def test_messages_name_the_privilege() -> None:
    exc = NetlinkError(errno.EPERM, "Operation not permitted")
    exc.request = "IPCTNL_MSG_CT_GET_STATS"
    assert error_message(exc) == (
        "conntrack (netlink IPCTNL_MSG_CT_GET_STATS): permission denied (needs CAP_NET_ADMIN)"
    )
    gone = NetlinkError(errno.EOPNOTSUPP, "Operation not supported")
    assert "nf_conntrack_netlink" in error_message(gone)


def test_owners_of_every_runtime() -> None:
    who = build_owners([docker(), pod()])
    assert who.workloads[ip("10.244.0.5")] == ("kube-system/coredns-x", "kube-system",
                                               "coredns-x", "cbr0")  # fmt: skip
    assert who.networks[("kube-system/coredns-x", "kube-system", "coredns-x", "cbr0")] == (
        "cni",
        "cbr0",
    )
    assert who.gateways[ip("10.244.0.1")] == ("cni", "cbr0")
    assert len(who.workloads) == 5  # a, a's IPv6, b, quiet, the pod; not the host-network one


def test_config() -> None:
    cfg = parse_config({"conntrack": {"interval": "1m", "max-entries": 5000}})
    assert (cfg.setting("conntrack.interval"), cfg.setting("conntrack.max-entries")) == (60.0, 5000)
    assert Config().setting("conntrack.max-entries") == 1_000_000
    assert Config().setting("conntrack.interval") == 30.0
    assert cfg.enabled("conntrack")
    with pytest.raises(ConfigError) as info:
        parse_config({"conntrack": {"interval": "x", "max-entries": -1, "bound": 1}})
    text = str(info.value)
    assert "conntrack.interval" in text
    assert "conntrack.max-entries: expected a whole number >= 0, got -1" in text
    assert "conntrack.bound: unknown key" in text


def test_check_findings() -> None:
    data = ConntrackData(
        TableInfo(900, 1000), dict.fromkeys(EVENTS, 0), LastDump(dump(), 0.25, 0.0)
    )
    found = describe_conntrack(data, None, Config())  # type: ignore[arg-type]
    assert [f.status for f in found] == [OK, OK]
    text = render_findings(found)
    assert "readable: 900 entries of 1000 (90%)" in text
    assert "last dump: 9 entries read in 0.250s" in text
    cut = ConntrackData(TableInfo(1, None), {}, LastDump(DumpResult(1, True, {}, {}), 0.5, 0.0))
    found = describe_conntrack(cut, None, Config())  # type: ignore[arg-type]
    assert [f.status for f in found] == [OK, WARN]
    text = render_findings(found)
    assert "readable: 1 entry\n" in text
    assert "last dump: 1 entry read in 0.500s (stopped at conntrack.max-entries)" in text


class FakeReader(ConntrackReader):
    """The reader's three answers, scripted: the collector's scheduling and errors alone."""

    def __init__(self) -> None:
        super().__init__()
        self.dumps = 0
        self.refuse: str = ""
        self.dump_error: OSError | None = None

    def _refused(self, request: str) -> None:
        if self.refuse == request:
            exc = NetlinkError(errno.EPERM, "Operation not permitted")
            exc.request = request
            raise exc

    def table(self) -> TableInfo:
        self._refused("IPCTNL_MSG_CT_GET_STATS")
        return TableInfo(3, 100)

    def events(self) -> dict[str, int]:
        self._refused("IPCTNL_MSG_CT_GET_STATS_CPU")
        return dict.fromkeys(EVENTS, 1)

    def dump_sums(self, max_entries: int, active: bool = False) -> DumpResult:
        if self.dump_error is not None:
            raise self.dump_error
        self.dumps += 1
        return DumpResult(min(3, max_entries), max_entries < 3, {}, {})


def test_collector_dumps_on_its_own_interval() -> None:
    reader = FakeReader()
    c = ConntrackCollector(interval=3600.0, max_entries=2, reader=reader)
    first = c.collect()
    assert first.dump is not None and first.dump.result.truncated
    second = c.collect()
    assert reader.dumps == 1 and second.dump is first.dump  # not due yet: the last dump
    # Due again: later dumps run on their own thread; the poll serves the last finished one.
    c._next_dump = 0.0
    reader.dump_error = NetlinkError(errno.ENOBUFS, "No buffer space available")
    assert c.collect().dump is first.dump
    c.wait_dump()
    failed = c.collect()
    assert failed.table == TableInfo(3, 100) and failed.dump is first.dump
    assert failed.errors == ("conntrack: No buffer space available",)
    assert c.collect().errors == failed.errors  # reported until a dump succeeds
    reader.dump_error = None
    c._next_dump = 0.0
    c.collect()
    c.wait_dump()
    again = c.collect()
    assert again.errors == () and again.dump is not first.dump and reader.dumps == 2
    c.close()


def test_collector_refused_names_the_privilege() -> None:
    reader = FakeReader()
    reader.refuse = "IPCTNL_MSG_CT_GET_STATS_CPU"
    with pytest.raises(CollectorError, match=r"GET_STATS_CPU\): permission denied \(needs CAP_NET"):
        ConntrackCollector(reader=reader).collect()
