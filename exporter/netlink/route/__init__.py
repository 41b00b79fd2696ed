"""Raw rtnetlink (NETLINK_ROUTE): interface counters, topology, routes, namespace ids, events.

pyroute2 decodes every attribute of every message into objects (420 ms and
~30 MB that stay for a 1000-veth link dump); the exporter needs a handful of
attributes. One module per request, on the framing of :mod:`exporter.netlink.core`:

- :mod:`.stats`: ``RTM_GETSTATS``, every interface's counters (the poll's hot path);
- :mod:`.links`: ``RTM_GETLINK``, the interfaces as :class:`~exporter.model.Link`, or
  their names (also those of another namespace, by its nsid);
- :mod:`.routes`: ``RTM_GETROUTE``, the IPv4/IPv6 routes;
- :mod:`.nsid`: ``RTM_GETNSID``, the id this namespace gives another;
- :mod:`.monitor`: multicast notifications (did links or routes change?);
- :mod:`.requester`: the socket round trip they share.

Parsers do no I/O, so captured dumps serve as test fixtures; they raise
``ValueError`` on malformed input. This package's names are its API: callers
import ``exporter.netlink.route`` and use what it lists here.

Sockets belong to the network namespace of the process that opens them.
"""

from exporter.netlink.core import (
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    Buffer,
    NetlinkError,
)
from exporter.netlink.route.links import (
    IFF_LOOPBACK,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINK_NETNSID,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_OPERSTATE,
    IFLA_TARGET_NETNSID,
    OPERSTATES,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWLINK,
    build_link_dump_request,
    parse_link_dump,
    parse_link_messages,
    parse_link_names,
    read_link_dump_raw,
    read_link_names,
    read_links,
)
from exporter.netlink.route.monitor import (
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    ChangeMonitor,
)
from exporter.netlink.route.nsid import (
    NETNSA_FD,
    NETNSA_NSID,
    RTM_GETNSID,
    RTM_NEWNSID,
    build_nsid_request,
    parse_nsid_reply,
    read_netnsid_of_fd,
)
from exporter.netlink.route.requester import NETLINK_ROUTE, Requester
from exporter.netlink.route.routes import (
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_TABLE,
    RTA_VIA,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RouteEntry,
    build_route_dump_request,
    parse_route_dump,
    parse_route_messages,
    read_route_dump_raw,
    read_route_entries,
)
from exporter.netlink.route.stats import (
    IFLA_STATS_LINK_64,
    RTM_GETSTATS,
    RTM_NEWSTATS,
    STATS_FILTER_LINK_64,
    StatsReader,
    build_stats_request,
    parse_stats_messages,
    read_link_stats,
)

__all__ = [
    "IFF_LOOPBACK",
    "IFLA_ADDRESS",
    "IFLA_IFNAME",
    "IFLA_INFO_KIND",
    "IFLA_LINK",
    "IFLA_LINKINFO",
    "IFLA_LINK_NETNSID",
    "IFLA_MASTER",
    "IFLA_OPERSTATE",
    "IFLA_STATS_LINK_64",
    "IFLA_TARGET_NETNSID",
    "NETLINK_ROUTE",
    "NETNSA_FD",
    "NETNSA_NSID",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_DUMP",
    "NLM_F_DUMP_INTR",
    "NLM_F_MULTI",
    "NLM_F_REQUEST",
    "OPERSTATES",
    "RTA_DST",
    "RTA_GATEWAY",
    "RTA_MULTIPATH",
    "RTA_OIF",
    "RTA_TABLE",
    "RTA_VIA",
    "RTMGRP_IPV4_ROUTE",
    "RTMGRP_IPV6_ROUTE",
    "RTMGRP_LINK",
    "RTM_DELLINK",
    "RTM_GETLINK",
    "RTM_GETNSID",
    "RTM_GETROUTE",
    "RTM_GETSTATS",
    "RTM_NEWLINK",
    "RTM_NEWNSID",
    "RTM_NEWROUTE",
    "RTM_NEWSTATS",
    "STATS_FILTER_LINK_64",
    "Buffer",
    "ChangeMonitor",
    "NetlinkError",
    "Requester",
    "RouteEntry",
    "StatsReader",
    "build_link_dump_request",
    "build_nsid_request",
    "build_route_dump_request",
    "build_stats_request",
    "parse_link_dump",
    "parse_link_messages",
    "parse_link_names",
    "parse_nsid_reply",
    "parse_route_dump",
    "parse_route_messages",
    "parse_stats_messages",
    "read_link_dump_raw",
    "read_link_names",
    "read_link_stats",
    "read_links",
    "read_netnsid_of_fd",
    "read_route_dump_raw",
    "read_route_entries",
]
