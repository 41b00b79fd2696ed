"""The links collector against a real kernel, run inside a lab host's network namespace.

Netlink sockets belong to the namespace of the process that opens them, so the
collector runs in a child process entered into the lab host (an "agent" that
answers one JSON line per command) while the test compares it with `ip`.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lab
import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent

AGENT = r"""
import dataclasses, json, sys
sys.path.insert(0, "tests")  # the pyroute2 oracles of test_netlink_route_* and test_routes
from exporter.collectors import links
from exporter.netlink import route as rtnetlink
collectors = {}

def errno_of(read, arg):
    try:
        return {"value": read(arg)}
    except OSError as exc:
        return {"errno": exc.errno}

for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        if cmd == "topology":
            out = [dataclasses.asdict(l) for l in links.read_topology()]
        elif cmd == "oracle_topology":
            from test_netlink_route_links import pyroute2_topology
            out = [dataclasses.asdict(l) for l in pyroute2_topology()]
        elif cmd == "route_entries":
            out = rtnetlink.read_route_entries(table=int(arg or 0))
        elif cmd == "oracle_route_entries":
            from test_netlink_route_routes import pyroute2_route_entries
            out = pyroute2_route_entries()
        elif cmd == "oracle_read_routes":
            from test_routes import pyroute2_read_routes
            out = [dataclasses.asdict(r) for r in pyroute2_read_routes().routes]
        elif cmd == "netnsid_or_errno":
            out = errno_of(links.read_netnsid, arg)
        elif cmd == "oracle_netnsid_or_errno":
            from test_netlink_route_links import pyroute2_netnsid
            out = errno_of(pyroute2_netnsid, arg)
        elif cmd == "collect":
            c = collectors.setdefault("links", links.LinksCollector())
            data = c.collect()
            out = {
                "links": [dataclasses.asdict(l) for l in data.links],
                "stats": {str(i): s._asdict() for i, s in data.stats.items()},
                "topology_reads": c.topology_reads,
            }
        elif cmd == "routes":
            c = collectors.setdefault("routes", links.RoutesCollector())
            out = [dataclasses.asdict(r) for r in c.collect().routes]
        elif cmd == "read_routes":
            out = [dataclasses.asdict(r) for r in links.read_routes().routes]
        elif cmd == "netnsid":
            out = links.read_netnsid(arg)
        elif cmd == "link_names_of_nsid":
            out = errno_of(lambda nsid: rtnetlink.read_link_names(netnsid=nsid), int(arg))
        else:
            raise ValueError(cmd)
        print(json.dumps({"ok": out}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
"""


class Agent:
    """The exporter's links module running inside a lab namespace."""

    def __init__(self, ns: lab.Netns) -> None:
        self.proc = ns.popen(
            sys.executable,
            "-c",
            AGENT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(REPO),
        )

    def ask(self, cmd: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"agent died (rc={self.proc.poll()})"
        reply = json.loads(line)
        assert "error" not in reply, reply["error"]
        return reply["ok"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def quiet(ns: lab.Netns) -> None:
    """No IPv6 in this namespace: no router solicitations or MLD reports out of the blue."""
    for conf in ("all", "default"):
        ns.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{conf}.disable_ipv6=1")


def add_quiet_bridge(host: lab.Netns, name: str, addr: str) -> None:
    """A bridge without multicast snooping: a snooping bridge joins 224.0.0.106 when it
    comes up and floods IGMP reports for it to its ports, up to seconds later."""
    host.ip("link", "add", name, "type", "bridge", "mcast_snooping", "0")
    host.ip("addr", "add", addr, "dev", name)
    host.ip("link", "set", name, "up")


class Lab:
    def __init__(self, host: lab.Netns, c1: lab.Netns, c2: lab.Netns) -> None:
        self.host, self.c1, self.c2 = host, c1, c2


@pytest.fixture(scope="module")
def labhost() -> Iterator[Lab]:
    lab.need_root()
    with lab.netns("lkh") as host, lab.namespaces("lkc", 3) as (c1, c2, c3):
        for ns in (host, c1, c2, c3):
            quiet(ns)
        add_quiet_bridge(host, "br0", "10.77.0.1/24")
        add_quiet_bridge(host, "br1", "10.78.0.1/24")
        lab.add_container(
            host, c1, host_if="vetha1", bridge="br0", addr="10.77.0.2/24", gateway="10.77.0.1"
        )
        lab.add_container(
            host, c2, host_if="vetha2", bridge="br0", addr="10.77.0.3/24", gateway="10.77.0.1"
        )
        lab.add_container(
            host, c3, host_if="vethb1", bridge="br1", addr="10.78.0.2/24", gateway="10.78.0.1"
        )

        # static neighbours everywhere: the pings are the only frames (no ARP exchange,
        # nor a learnt entry's later reconfirmation, lands in the exact counter test)
        def mac(ns: lab.Netns, dev: str) -> str:
            return str(json.loads(ns.ip("-j", "link", "show", dev))[0]["address"])

        def neigh(ns: lab.Netns, addr: str, lladdr: str, dev: str = "eth0") -> None:
            ns.ip("neigh", "replace", addr, "lladdr", lladdr, "dev", dev, "nud", "permanent")

        mac1, mac2, mac3 = mac(c1, "eth0"), mac(c2, "eth0"), mac(c3, "eth0")
        neigh(c1, "10.77.0.3", mac2)
        neigh(c2, "10.77.0.2", mac1)
        neigh(c1, "10.77.0.1", mac(host, "br0"))
        neigh(c3, "10.78.0.1", mac(host, "br1"))
        neigh(host, "10.77.0.2", mac1, "br0")
        neigh(host, "10.78.0.2", mac3, "br1")
        c1.exec("/bin/busybox", "ping", "-i", "0.1", "-c", "3", "-W", "1", "10.77.0.3")
        c1.exec("/bin/busybox", "ping", "-i", "0.1", "-c", "2", "-W", "1", "10.77.0.1")
        c3.exec("/bin/busybox", "ping", "-i", "0.1", "-c", "4", "-W", "1", "10.78.0.1")
        yield Lab(host, c1, c2)


@pytest.fixture
def agent(labhost: Lab) -> Iterator[Agent]:
    a = Agent(labhost.host)
    try:
        yield a
    finally:
        a.close()


_FIELDS = ("bytes", "packets", "errors", "dropped")


def ip_counters(ns: lab.Netns) -> dict[str, dict[str, int]]:
    out = {}
    for link in json.loads(ns.ip("-s", "-j", "link")):
        s = link["stats64"]
        out[str(link["ifindex"])] = {f"{d}_{k}": s[d][k] for d in ("rx", "tx") for k in _FIELDS}
    return out


def collect_still(agent: Agent, ns: lab.Netns) -> tuple[dict[str, Any], dict[str, Any]]:
    """A collect() bracketed by two equal `ip -s link` reads (nothing moved meanwhile)."""
    deadline = time.monotonic() + 20
    while True:
        before = ip_counters(ns)
        got = agent.ask("collect")
        after = ip_counters(ns)
        if before == after or time.monotonic() > deadline:
            assert before == after, "counters kept moving without traffic"
            return got, before


def settle(agent: Agent) -> dict[str, Any]:
    """Collect until a poll reads no new topology (late carrier/operstate events are done)."""
    deadline = time.monotonic() + 20
    got = agent.ask("collect")
    while True:
        again = agent.ask("collect")
        if again["topology_reads"] == got["topology_reads"]:
            return again
        assert time.monotonic() < deadline, "link events kept arriving"
        got = again


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {link["name"]: link for link in data["links"]}


def test_counters_equal_ip_s_link(labhost: Lab, agent: Agent) -> None:
    settle(agent)
    got, ip = collect_still(agent, labhost.host)
    assert got["stats"] == ip
    names = by_name(got)
    # the pings really went through: 3 echo requests c1->c2 cross vetha1 (host receives)
    # and vetha2 (host transmits), plus 2 to the bridge and the ARP exchanges
    assert got["stats"][str(names["vetha2"]["index"])]["tx_packets"] >= 3
    assert got["stats"][str(names["vethb1"]["index"])]["rx_packets"] >= 4


def test_counters_follow_traffic_exactly(labhost: Lab, agent: Agent) -> None:
    settle(agent)
    first, _ = collect_still(agent, labhost.host)
    labhost.c1.exec("/bin/busybox", "ping", "-i", "0.1", "-c", "5", "-W", "1", "10.77.0.3")
    second, ip = collect_still(agent, labhost.host)
    assert second["stats"] == ip
    # c1 -> c2 through the bridge, no ARP (static neighbours), no IPv6: exactly 5 echo
    # requests and 5 replies of 98 bytes each (14 Ethernet + 20 IP + 8 ICMP + 56 data)
    names = by_name(second)
    a1, a2 = str(names["vetha1"]["index"]), str(names["vetha2"]["index"])
    delta = {
        (veth, key): second["stats"][veth][key] - first["stats"][veth][key]
        for veth in (a1, a2)
        for key in first["stats"][veth]
    }
    for veth in (a1, a2):
        assert delta[veth, "rx_packets"] == delta[veth, "tx_packets"] == 5
        assert delta[veth, "rx_bytes"] == delta[veth, "tx_bytes"] == 5 * 98
        assert delta[veth, "rx_errors"] == delta[veth, "rx_dropped"] == 0


def test_topology(labhost: Lab, agent: Agent) -> None:
    got = settle(agent)
    names = by_name(got)
    assert [link["name"] for link in got["links"]] == sorted(names)
    assert set(names) == {"lo", "br0", "br1", "vetha1", "vetha2", "vethb1"}
    ip = {link["ifname"]: link for link in json.loads(labhost.host.ip("-d", "-j", "link"))}
    assert names["lo"]["kind"] == "loopback"
    assert names["br0"]["kind"] == names["br1"]["kind"] == "bridge"
    assert names["br0"]["master"] is None
    nsids = json.loads(labhost.host.ip("-j", "netns", "list-id") or "[]")
    nsid_by_name = {n.get("name"): n["nsid"] for n in nsids}
    for veth, ctr, bridge in (
        ("vetha1", labhost.c1, "br0"),
        ("vetha2", labhost.c2, "br0"),
    ):
        link = names[veth]
        eth0 = json.loads(ctr.ip("-j", "link", "show", "eth0"))[0]
        assert link["kind"] == "veth"
        assert link["master"] == names[bridge]["index"]
        assert link["mac"] == ip[veth]["address"]
        assert link["operstate"] == ip[veth]["operstate"].lower() == "up"
        assert link["peer_index"] == eth0["ifindex"]
        assert link["peer_netnsid"] == ip[veth]["link_netnsid"]
        assert link["peer_netnsid"] == nsid_by_name[ctr.name]
        assert agent.ask(f"netnsid {ctr.path}") == link["peer_netnsid"]
    assert names["vethb1"]["master"] == names["br1"]["index"]


def test_link_names_of_another_namespace_by_nsid(labhost: Lab, agent: Agent) -> None:
    # RTM_GETLINK with IFLA_TARGET_NETNSID: the links of the namespace the host calls
    # NSID, read without entering it (explain names a container's interfaces this way)
    nsids = json.loads(labhost.host.ip("-j", "netns", "list-id") or "[]")
    nsid_by_name = {n.get("name"): n["nsid"] for n in nsids}
    for ctr in (labhost.c1, labhost.c2):
        want = {link["ifindex"]: link["ifname"] for link in json.loads(ctr.ip("-j", "link"))}
        got = agent.ask(f"link_names_of_nsid {nsid_by_name[ctr.name]}")["value"]
        assert {int(i): n for i, n in got.items()} == want
        assert sorted(want.values()) == ["eth0", "lo"]
    # an id the host gives no namespace: the kernel ends the dump with EINVAL in its
    # NLMSG_DONE, which is an error, not an empty namespace
    unused = max(nsid_by_name.values()) + 100
    assert agent.ask(f"link_names_of_nsid {unused}") == {"errno": errno.EINVAL}


def test_netnsid_unassigned_is_none(labhost: Lab, agent: Agent) -> None:
    with lab.netns("lkx") as other:
        assert agent.ask(f"netnsid {other.path}") is None


def test_steady_state_reads_topology_once(labhost: Lab, agent: Agent) -> None:
    reads = settle(agent)["topology_reads"]
    for _ in range(5):
        assert agent.ask("collect")["topology_reads"] == reads


def test_link_added_removed_renamed_seen_next_poll(labhost: Lab, agent: Agent) -> None:
    host = labhost.host
    settle(agent)

    host.ip("link", "add", "vx0", "type", "veth", "peer", "name", "vx1")
    names = by_name(agent.ask("collect"))
    assert names["vx0"]["kind"] == names["vx1"]["kind"] == "veth"
    assert names["vx0"]["peer_index"] == names["vx1"]["index"]
    assert names["vx0"]["peer_netnsid"] is None  # peer in the same namespace

    host.ip("link", "set", "vx0", "master", "br1")
    names = by_name(agent.ask("collect"))
    assert names["vx0"]["master"] == names["br1"]["index"]

    # same ifindex set: only the link monitor can tell
    index = names["vetha2"]["index"]
    reads = settle(agent)["topology_reads"]
    host.ip("link", "set", "vetha2", "name", "vethren")
    got = agent.ask("collect")
    assert got["topology_reads"] == reads + 1
    names = by_name(got)
    assert "vetha2" not in names
    assert names["vethren"]["index"] == index
    assert str(index) in got["stats"]

    host.ip("link", "set", "vethren", "name", "vetha2")
    assert "vetha2" in by_name(agent.ask("collect"))

    host.ip("link", "del", "vx0")
    got = agent.ask("collect")
    assert not {"vx0", "vx1"} & set(by_name(got))
    assert set(got["stats"]) == {str(link["index"]) for link in got["links"]}


OVERFLOW = r"""
import errno, socket, subprocess
from exporter.netlink import route as rtnetlink
monitor = rtnetlink.ChangeMonitor(rcvbuf=1024)  # the kernel doubles it: still far too small
probe = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
probe.bind((0, rtnetlink.RTMGRP_LINK))
probe.setblocking(False)
batch = "".join(f"link add ovf{i} type veth peer name ovg{i}\n" for i in range(100))
subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
overflowed = False
while True:
    try:
        probe.recv(1 << 16)
    except BlockingIOError:
        break
    except OSError as exc:
        overflowed = overflowed or exc.errno == errno.ENOBUFS
print(overflowed, monitor.changed(), monitor.changed())
"""


def test_monitor_overflow_counts_as_change() -> None:
    """Events lost to a full receive buffer (ENOBUFS) still report a change, once."""
    lab.need_root()
    with lab.netns("lko") as ns:
        out = ns.exec(sys.executable, "-c", OVERFLOW).split()
    # the probe, with the same buffer, shows that the kernel really overflowed it
    assert out == ["True", "True", "False"]


# -- raw netlink against pyroute2, the oracle, on a host with many kinds of links ----------


def build_varied_host(host: lab.Netns, c1: lab.Netns, c2: lab.Netns, outside: lab.Netns) -> None:
    """Links of many kinds and states, routes of many shapes, in ``host``.

    lo; bridges br0 (up, an alias) and br1 (down); veth0 (altname) into c1 on
    br0, vdown (down) into c1, vlld (up, its peer down: lowerlayerdown) into c2;
    a same-namespace pair vpair0/vpair1 (vpair0 dormant, on br1); vxlan0 over
    br0; ifbé; tun0 (no address); tap0 on br0; uplinks up0/up1 into
    ``outside``. Routes: IPv4 and IPv6 multipath defaults, a second default,
    bridge routes with and without a gateway, an IPv6 gateway for an IPv4
    route (RTA_VIA), nexthop objects, a blackhole, tables 100 and 1000. (This
    kernel has no dummy or bond driver.)
    """
    links = f"""
link add br0 type bridge
link set br0 alias docker-bridge
addr add 172.30.0.1/24 dev br0
addr add fd30::1/64 dev br0 nodad
link set br0 up
link add br1 type bridge
link add veth0 type veth peer name eth0 netns {c1.name}
link set veth0 master br0
link set veth0 up
link property add dev veth0 altname veth0-altname-for-tests
link add vdown type veth peer name eth1 netns {c1.name}
link add vlld type veth peer name eth0 netns {c2.name}
link set vlld up
link add vpair0 type veth peer name vpair1
link set vpair0 mode dormant
link set vpair0 master br1
link set vpair1 up
link set vpair0 up
link add vxlan0 type vxlan id 42 dstport 4789 dev br0
link add ifbé type ifb
link set ifbé up
tuntap add mode tun name tun0
tuntap add mode tap name tap0
link set tap0 master br0
link add up0 type veth peer name eth0 netns {outside.name}
link add up1 type veth peer name eth1 netns {outside.name}
addr add 10.250.0.2/24 dev up0
addr add fd25::2/64 dev up0 nodad
addr add 10.251.0.2/24 dev up1
addr add fd26::2/64 dev up1 nodad
link set up0 up
link set up1 up
"""
    routes = """
route add default nexthop via 10.250.0.1 dev up0 weight 1 nexthop via 10.251.0.1 dev up1 weight 2
route add default via 10.251.0.1 dev up1 metric 50
route add ::/0 nexthop via fd25::1 dev up0 nexthop via fd26::1 dev up1
route add 10.80.0.0/16 via 172.30.0.9 dev br0
route add 10.91.0.0/16 via inet6 fd30::9 dev br0
route add 10.92.0.0/16 nexthop via 172.30.0.9 dev br0 nexthop via 10.250.0.1 dev up0
route add blackhole 10.66.0.0/16
route add 10.67.0.0/16 dev br0 table 100
route add 10.68.0.0/16 dev br0 table 1000
route add fd31::/64 via fd30::9 dev br0
nexthop add id 7 via 10.250.0.1 dev up0
route add 10.93.0.0/16 nhid 7
nexthop add id 8 dev br0
route add 10.94.0.0/16 nhid 8
"""
    host.exec("ip", "-batch", "-", input=links.lstrip())
    c1.ip("link", "set", "eth0", "up")
    outside.ip("link", "set", "eth0", "up")
    outside.ip("link", "set", "eth1", "up")
    host.exec("ip", "-batch", "-", input=routes.lstrip())
    want = {"veth0": "UP", "vlld": "LOWERLAYERDOWN", "vpair0": "DORMANT", "up0": "UP", "up1": "UP"}
    deadline = time.monotonic() + 20
    while True:  # operstates follow carrier changes asynchronously (linkwatch)
        states = {link["ifname"]: link["operstate"] for link in json.loads(host.ip("-j", "link"))}
        if all(states.get(name) == state for name, state in want.items()):
            return
        assert time.monotonic() < deadline, f"operstates did not settle: {states}"


@pytest.fixture(scope="module")
def varied() -> Iterator[tuple[lab.Netns, list[lab.Netns]]]:
    lab.need_root()
    with lab.netns("lvh") as host, lab.namespaces("lvp", 3) as peers:
        build_varied_host(host, *peers)
        yield host, peers


def stable(agent: Agent, cmd: str) -> Any:
    """The answer to ``cmd`` once two asks in a row agree (no link event in between)."""
    deadline = time.monotonic() + 20
    got = agent.ask(cmd)
    while True:
        again = agent.ask(cmd)
        if again == got:
            return got
        assert time.monotonic() < deadline, f"{cmd} kept changing"
        got = again


def test_topology_equals_pyroute2(varied: tuple[lab.Netns, list[lab.Netns]]) -> None:
    host, _ = varied
    agent = Agent(host)
    try:
        deadline = time.monotonic() + 20
        while True:  # the oracle read between two equal raw reads
            raw = stable(agent, "topology")
            oracle = agent.ask("oracle_topology")
            if agent.ask("topology") == raw or time.monotonic() > deadline:
                break
    finally:
        agent.close()
    assert raw == oracle
    names = by_name({"links": raw})
    assert [link["name"] for link in raw] == sorted(names)
    # the lab really holds the variety the comparison is about
    assert {link["kind"] for link in raw} == {
        "loopback", "bridge", "veth", "vxlan", "ifb", "tun"
    }  # fmt: skip
    assert {link["operstate"] for link in raw} == {
        "unknown", "up", "down", "lowerlayerdown", "dormant"
    }  # fmt: skip
    assert names["tun0"]["mac"] == ""
    assert names["lo"]["mac"] == "00:00:00:00:00:00"
    assert names["vpair0"]["peer_index"] == names["vpair1"]["index"]
    assert names["vpair0"]["peer_netnsid"] is None
    assert names["vpair0"]["master"] == names["br1"]["index"]
    assert names["tap0"]["master"] == names["br0"]["index"]
    assert names["vxlan0"]["peer_index"] is None  # its lower device is in IFLA_VXLAN_LINK
    assert {names[v]["peer_netnsid"] is not None for v in ("veth0", "vlld", "up0")} == {True}
    assert "ifbé" in names


def test_netnsid_equals_pyroute2(varied: tuple[lab.Netns, list[lab.Netns]], tmp_path: Path) -> None:
    host, peers = varied
    plain = tmp_path / "not-a-namespace"
    plain.touch()
    agent = Agent(host)
    try:
        with lab.netns("lvx") as unassigned:
            paths = [p.path for p in peers] + [unassigned.path, host.path, str(plain)]
            got = {p: agent.ask(f"netnsid_or_errno {p}") for p in paths}
            oracle = {p: agent.ask(f"oracle_netnsid_or_errno {p}") for p in paths}
    finally:
        agent.close()
    assert got == oracle
    assert sorted(got[p.path]["value"] for p in peers) == [0, 1, 2]
    assert got[unassigned.path] == {"value": None}
    assert got[str(plain)] == {"errno": 22}  # EINVAL: not a namespace
