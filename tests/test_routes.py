"""Pure tests of route selection and rendering (exporter/collectors/links.py); pyroute2 is the
oracle of ``pyroute2_read_routes``, which test_links_lab runs inside lab namespaces."""

from __future__ import annotations

import contextlib
import socket

from test_netlink_route_routes import pyroute2_route_entries

from exporter.collectors.links import build_routes, render_routes
from exporter.model import Route, RoutesData
from exporter.netlink import route as rtnetlink

# -- the oracle: pyroute2, as the exporter read routes before the raw parser -----------------


def pyroute2_read_routes() -> RoutesData:
    """read_routes() as it was with pyroute2 reading the routes."""
    bridges = rtnetlink.read_link_names("bridge")
    raw = pyroute2_route_entries()
    names: dict[int, str] = {}
    for _dst, dst_len, _table, _type, hops in raw:
        for oif, _gw in hops:
            if dst_len == 0 and oif is not None and oif not in bridges:
                with contextlib.suppress(OSError):
                    names[oif] = socket.if_indextoname(oif)
    return build_routes(raw, bridges, names)


# -- selection and rendering ----------------------------------------------------------------

BRIDGES = {3: "docker0", 9: "br-40d652e0aac8"}
NAMES = {2: "eth0", 4: "wg0"}
MAIN, LOCAL, UNICAST, LOCAL_TYPE, BLACKHOLE = 254, 255, 1, 2, 6


def test_bridge_routes_and_defaults_selected() -> None:
    raw = [
        ("", 0, MAIN, UNICAST, [(2, "192.168.1.1")]),
        ("192.168.1.0", 24, MAIN, UNICAST, [(2, "")]),  # not a bridge: left out
        ("172.17.0.0", 16, MAIN, UNICAST, [(3, "")]),
        ("172.18.0.0", 16, MAIN, UNICAST, [(9, "")]),
        ("fd00:dead::", 64, MAIN, UNICAST, [(9, "")]),
        ("", 0, MAIN, UNICAST, [(2, "fe80::1")]),
        ("172.17.0.1", 32, LOCAL, LOCAL_TYPE, [(3, "")]),  # local table: left out
        ("", 0, MAIN, BLACKHOLE, [(None, "")]),  # no interface: left out
        ("10.0.0.0", 8, MAIN, UNICAST, [(7, "")]),  # unknown interface: left out
    ]
    assert build_routes(raw, BRIDGES, NAMES) == RoutesData(
        routes=(
            Route("default", "eth0", "192.168.1.1"),
            Route("default", "eth0", "fe80::1"),
            Route("172.17.0.0/16", "docker0", ""),
            Route("172.18.0.0/16", "br-40d652e0aac8", ""),
            Route("fd00:dead::/64", "br-40d652e0aac8", ""),
        )
    )


def test_multipath_default_gives_one_route_per_hop_and_duplicates_merge() -> None:
    raw = [
        ("", 0, MAIN, UNICAST, [(2, "10.0.0.1"), (4, "")]),
        ("", 0, MAIN, UNICAST, [(2, "10.0.0.1")]),  # same labels, other metric
    ]
    assert build_routes(raw, BRIDGES, NAMES).routes == (
        Route("default", "eth0", "10.0.0.1"),
        Route("default", "wg0", ""),
    )


def test_render_routes() -> None:
    data = RoutesData(
        routes=(Route("default", "eth0", "192.168.1.1"), Route("172.17.0.0/16", "docker0", ""))
    )
    (fam,) = render_routes(data)
    assert fam.name == "netpath_route_info"
    assert fam.type == "gauge"
    assert fam.labels == ("destination", "interface", "gateway")
    assert fam.samples == (
        (("default", "eth0", "192.168.1.1"), 1),
        (("172.17.0.0/16", "docker0", ""), 1),
    )
    assert fam.help.endswith(".")


def test_render_no_routes_is_an_empty_family() -> None:
    (fam,) = render_routes(RoutesData(routes=()))
    assert fam.samples == ()
