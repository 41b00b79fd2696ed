"""The conntrack collector's pure parts: attribution, active connections, rendering, messages."""

from __future__ import annotations

import errno
import socket

import pytest

from exporter.collectors.conntrack import (
    ConntrackData,
    LastDump,
    Owners,
    active_connections,
    attribute,
    error_message,
    owners,
    owners_from_docker,
    render_conntrack,
)
from exporter.config import ConfigError, parse_config
from exporter.model import Container, ContainerEndpoint, DockerData, DockerNetwork
from exporter.netlink.conntrack import EVENTS, DumpResult, TableInfo, add_entries
from exporter.netlink.netfilter import NetlinkError


def ip(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


A, B, GW, OUT, SVC = "172.18.0.2", "172.18.0.3", "172.18.0.1", "10.9.0.1", "10.96.0.10"


def entry(proto: int, osrc: str, odst: str, rsrc: str, dport: int, state: int = -1) -> tuple:  # noqa: PLR0917
    return (proto, ip(osrc), ip(odst), ip(rsrc), ip(osrc), dport, state)


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


def docker() -> DockerData:
    ep_a = ContainerEndpoint("app", "n" * 64, A, "fd00::2", "", GW)
    ep_b = ContainerEndpoint("app", "n" * 64, B, "", "", GW)
    quiet = ContainerEndpoint("app", "n" * 64, "172.18.0.9", "", "", GW)
    ctrs = (
        Container("a" * 64, "a", "img", "", "", "app", 1, (ep_a,), ()),
        Container("b" * 64, "b", "img", "", "", "app", 2, (ep_b,), ()),
        Container("q" * 64, "quiet", "img", "", "", "app", 3, (quiet,), ()),
    )
    net = DockerNetwork("app", "n" * 64, "bridge", "br-x", ("172.18.0.0/16",), (GW,), False)
    return DockerData("29.0", ctrs, (net,))


def test_attribution_counts_each_entry_once_per_owner() -> None:
    who = owners_from_docker(docker())
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
    assert got[("tcp", SVC, 8080, B)] == 1
    assert got[("tcp", OUT, 80, OUT)] == 1  # the TIME_WAIT one is not active
    assert got[("udp", OUT, 53, OUT)] == 1
    assert ("tcp", B, 80, B) not in got  # SYN_RECV
    assert sum(got.values()) == 7


def test_render() -> None:
    data = ConntrackData(
        TableInfo(9, 100), dict.fromkeys(EVENTS, 2), LastDump(dump(), 0.5, 1700000000.0)
    )
    fams = {f.name: f for f in render_conntrack(data, owners_from_docker(docker()))}
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


def test_config() -> None:
    cfg = parse_config({"conntrack": {"interval": "1m", "max_entries": 5000}})
    assert (cfg.conntrack.interval, cfg.conntrack.max_entries) == (60.0, 5000)
    assert cfg.enabled("conntrack")
    with pytest.raises(ConfigError) as info:
        parse_config({"conntrack": {"interval": "x", "max_entries": -1, "bound": 1}})
    text = str(info.value)
    assert "conntrack.interval" in text
    assert "conntrack.max_entries: expected a positive whole number, got -1" in text
    assert "conntrack.bound: unknown key" in text
