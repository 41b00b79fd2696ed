"""The links collector against a real kernel, run inside a lab host's network namespace.

Netlink sockets belong to the namespace of the process that opens them, so the
collector runs in a child process entered into the lab host (an "agent" that
answers one JSON line per command) while the test compares it with `ip`.
"""

from __future__ import annotations

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
from exporter import links
collectors = {}
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        if cmd == "collect":
            c = collectors.setdefault("links", links.LinksCollector())
            data = c.collect()
            out = {
                "links": [dataclasses.asdict(l) for l in data.links],
                "stats": {str(i): dataclasses.asdict(s) for i, s in data.stats.items()},
                "topology_reads": c.topology_reads,
            }
        elif cmd == "routes":
            c = collectors.setdefault("routes", links.RoutesCollector())
            out = [dataclasses.asdict(r) for r in c.collect().routes]
        elif cmd == "read_routes":
            out = [dataclasses.asdict(r) for r in links.read_routes().routes]
        elif cmd == "netnsid":
            out = links.read_netnsid(arg)
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


class Lab:
    def __init__(self, host: lab.Netns, c1: lab.Netns, c2: lab.Netns) -> None:
        self.host, self.c1, self.c2 = host, c1, c2


@pytest.fixture(scope="module")
def labhost() -> Iterator[Lab]:
    lab.need_root()
    with lab.netns("lkh") as host, lab.namespaces("lkc", 3) as (c1, c2, c3):
        for ns in (host, c1, c2, c3):
            quiet(ns)
        lab.add_bridge(host, "br0", "10.77.0.1/24")
        lab.add_bridge(host, "br1", "10.78.0.1/24")
        lab.add_container(
            host, c1, host_if="vetha1", bridge="br0", addr="10.77.0.2/24", gateway="10.77.0.1"
        )
        lab.add_container(
            host, c2, host_if="vetha2", bridge="br0", addr="10.77.0.3/24", gateway="10.77.0.1"
        )
        lab.add_container(
            host, c3, host_if="vethb1", bridge="br1", addr="10.78.0.2/24", gateway="10.78.0.1"
        )
        # static neighbours between c1 and c2: pings between them are the only frames
        mac1 = json.loads(c1.ip("-j", "link", "show", "eth0"))[0]["address"]
        mac2 = json.loads(c2.ip("-j", "link", "show", "eth0"))[0]["address"]
        c1.ip("neigh", "replace", "10.77.0.3", "lladdr", mac2, "dev", "eth0", "nud", "permanent")
        c2.ip("neigh", "replace", "10.77.0.2", "lladdr", mac1, "dev", "eth0", "nud", "permanent")
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
from exporter import rtnetlink
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
