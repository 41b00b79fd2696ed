"""Routes read inside a lab host: the bridge routes and the default routes appear."""

from __future__ import annotations

from collections.abc import Iterator

import lab
import pytest
from test_links_lab import Agent, build_varied_host

pytestmark = pytest.mark.lab


@pytest.fixture
def host() -> Iterator[lab.Netns]:
    lab.need_root()
    with lab.netns("rth") as ns, lab.netns("rtu") as up:
        lab.add_bridge(ns, "br0", "10.79.0.1/24", "fd79::1/64")
        # an uplink to an "upstream" namespace, like a host's NIC
        ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", up.path)
        ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.up0.accept_dad=0")
        ns.ip("addr", "add", "10.250.0.2/24", "dev", "up0")
        ns.ip("-6", "addr", "add", "fd25::2/64", "dev", "up0", "nodad")
        ns.ip("link", "set", "up0", "up")
        ns.ip("route", "add", "default", "via", "10.250.0.1", "dev", "up0")
        ns.ip("-6", "route", "add", "default", "via", "fd25::1", "dev", "up0")
        yield ns


@pytest.fixture
def agent(host: lab.Netns) -> Iterator[Agent]:
    a = Agent(host)
    try:
        yield a
    finally:
        a.close()


def test_bridge_and_default_routes(host: lab.Netns, agent: Agent) -> None:
    routes = agent.ask("read_routes")
    assert routes[:2] == [
        {"destination": "default", "interface": "up0", "gateway": "10.250.0.1"},
        {"destination": "default", "interface": "up0", "gateway": "fd25::1"},
    ]
    got = {(r["destination"], r["interface"], r["gateway"]) for r in routes}
    assert ("10.79.0.0/24", "br0", "") in got
    assert ("fd79::/64", "br0", "") in got
    assert not any(r[1] == "up0" and r[0] != "default" for r in got)  # up0 is not a bridge


def test_collector_sees_a_new_bridge_route(host: lab.Netns, agent: Agent) -> None:
    before = agent.ask("routes")
    assert agent.ask("routes") == before
    host.ip("route", "add", "10.80.0.0/16", "via", "10.79.0.9", "dev", "br0")
    after = agent.ask("routes")
    assert {"destination": "10.80.0.0/16", "interface": "br0", "gateway": "10.79.0.9"} in after
    host.ip("route", "del", "default", "via", "10.250.0.1")
    assert all(r["gateway"] != "10.250.0.1" for r in agent.ask("routes"))


@pytest.fixture(scope="module")
def varied() -> Iterator[lab.Netns]:
    lab.need_root()
    with lab.netns("rvh") as host, lab.namespaces("rvp", 3) as peers:
        build_varied_host(host, *peers)
        yield host


def test_route_entries_and_routes_equal_pyroute2(varied: lab.Netns) -> None:
    """Multipath defaults (IPv4, IPv6), RTA_VIA, nexthop objects, other tables: as pyroute2."""
    agent = Agent(varied)
    try:
        entries = agent.ask("route_entries")
        main = agent.ask("route_entries 254")  # filtered by the kernel (strict checking)
        oracle = agent.ask("oracle_route_entries")
        routes = agent.ask("read_routes")
        oracle_routes = agent.ask("oracle_read_routes")
    finally:
        agent.close()
    assert [e for e in entries if e[2] == 254] == oracle  # pyroute2 asked for the main table
    assert main == oracle
    assert {e[2] for e in entries} >= {254, 255, 100, 1000}
    assert routes == oracle_routes
    assert routes[:4] == [
        {"destination": "default", "interface": "up0", "gateway": "10.250.0.1"},
        {"destination": "default", "interface": "up0", "gateway": "fd25::1"},
        {"destination": "default", "interface": "up1", "gateway": "10.251.0.1"},
        {"destination": "default", "interface": "up1", "gateway": "fd26::1"},
    ]
    assert {"destination": "10.91.0.0/16", "interface": "br0", "gateway": "fd30::9"} in routes
