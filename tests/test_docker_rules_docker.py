"""Docker's meaning of the rules against a real dockerd (issue 4, "Must show" 1).

The lab dockerd (tests/dockerlab.py, classic layout: Docker 20.10) runs on
iptables-nft and on iptables-legacy. Two user networks: ``neta`` with ``a1``,
``netb`` with ``b1`` publishing 8080 -> 80 (busybox ``nc`` answering and
closing). A lab "outside" namespace hangs off dockerd's namespace by a veth.
The firewall and containers collectors run inside dockerd's namespace
(dockerlab.NetnsPython); render_docker is applied there to what they read.

* N pings from a1 to b1 move dropped{network="netb",reason="isolation"} by N;
* K new TCP connections from the outside namespace to the published port move
  published_port_connections of b1 by K;
* M new TCP connections from a1 to the outside namespace move
  masquerade_connections{network="neta"} by M.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lab
import pytest
from dockerlab import IMAGE, DockerLab, NetnsPython

pytestmark = [pytest.mark.lab, pytest.mark.docker]

N_PINGS = 5
K_CONNECTIONS = 4
M_CONNECTIONS = 3
ICMP4_BYTES = 84
HOST_UP, OUTSIDE = "10.231.9.1", "10.231.9.2"
NETA, NETB = "10.214.1.0/24", "10.214.2.0/24"

PROBE = (
    f"TESTS_DIR = {str(Path(__file__).resolve().parent)!r}\n"
    + """
from exporter.config import DockerConfig, FirewallConfig
from exporter.sources.docker import ContainersCollector
import sys
sys.path.insert(0, TESTS_DIR)
from meanings import render_docker
from exporter.firewall.collector import FirewallCollector

firewall = FirewallCollector(FirewallConfig())
containers = ContainersCollector(DockerConfig(timeout=5))

def snap():
    fw = firewall.collect()
    assert fw.errors == (), fw.errors
    fams = render_docker(fw, containers.collect(), None)
    return {f.name: [[list(labels), value] for labels, value in f.samples] for f in fams}
"""
)

Series = dict[str, dict[tuple[str, ...], float]]


def snap(py: NetnsPython) -> Series:
    raw: dict[str, list[Any]] = py.eval("snap()")
    return {name: {tuple(labels): value for labels, value in s} for name, s in raw.items()}


def delta(before: Series, after: Series, family: str) -> dict[tuple[str, ...], float]:
    b, a = before[family], after[family]
    return {k: v - b.get(k, 0) for k, v in a.items() if v != b.get(k, 0)}


class Scene:
    def __init__(self, dl: DockerLab, outside: lab.Netns, py: NetnsPython) -> None:
        self.dl = dl
        self.outside = outside
        self.py = py
        nets = {n["Name"]: n for n in dl.inspect("neta", "netb")}
        self.bridge_a = "br-" + nets["neta"]["Id"][:12]
        self.bridge_b = "br-" + nets["netb"]["Id"][:12]
        b1 = dl.inspect("b1")[0]
        self.b1_ip = b1["NetworkSettings"]["Networks"]["netb"]["IPAddress"]


@pytest.fixture
def scene(dockerd_any: DockerLab) -> Iterator[Scene]:
    dl = dockerd_any
    dl.docker("network", "create", "--subnet", NETA, "neta")
    dl.docker("network", "create", "--subnet", NETB, "netb")
    dl.run_sleeper("a1", "--network", "neta")
    dl.docker(
        "run", "-d", "--init", "--name", "b1", "--network", "netb", "-p", "8080:80",
        IMAGE, "nc", "-ll", "-p", "80", "-e", "true",
    )  # fmt: skip
    outside = lab.Netns("dr-out")
    outside.create()
    try:
        lab.add_uplink(
            dl.netns,
            outside,
            host_if="eth-up",
            host_addr=HOST_UP + "/24",
            outside_addr=OUTSIDE + "/24",
        )
        with dl.python(PROBE) as py:
            yield Scene(dl, outside, py)
    finally:
        outside.delete()  # takes the uplink veth with it
        dl.remove_all()


def test_layout_is_classic(scene: Scene) -> None:
    m = snap(scene.py)
    assert m["netpath_firewall_layout_info"] == {("classic",): 1}


def test_pings_between_networks_move_isolation_drops_by_exactly_n(scene: Scene) -> None:
    before = snap(scene.py)
    scene.dl.docker(
        "exec", "a1", "ping", "-q", "-c", str(N_PINGS), "-W", "1", scene.b1_ip, check=False
    )
    after = snap(scene.py)
    assert delta(before, after, "netpath_dropped_packets_total") == {
        ("netb", scene.bridge_b, "isolation"): N_PINGS
    }
    assert delta(before, after, "netpath_dropped_bytes_total") == {
        ("netb", scene.bridge_b, "isolation"): N_PINGS * ICMP4_BYTES
    }


def test_connections_to_published_port_move_its_counter_by_exactly_k(scene: Scene) -> None:
    before = snap(scene.py)
    ok = lab.tcp_connect(scene.outside, HOST_UP, 8080, K_CONNECTIONS)
    after = snap(scene.py)
    assert ok == K_CONNECTIONS
    assert delta(before, after, "netpath_published_port_connections_total") == {
        ("b1", "netb", "tcp", "0.0.0.0", "8080", "80"): K_CONNECTIONS
    }
    moved = delta(before, after, "netpath_forwarded_packets_total")
    assert moved.get(("netb", scene.bridge_b, "inbound"), 0) > 0


def test_connections_out_of_a_network_move_its_masquerade_by_exactly_m(scene: Scene) -> None:
    with lab.tcp_server(scene.outside, 9000):
        before = snap(scene.py)
        loop = f"i=0; while [ $i -lt {M_CONNECTIONS} ]; do nc -w 5 {OUTSIDE} 9000 </dev/null; "
        loop += "i=$((i+1)); done"
        out = scene.dl.docker("exec", "a1", "sh", "-c", loop, check=False)
        after = snap(scene.py)
    assert out.count("ok") == M_CONNECTIONS, out
    assert delta(before, after, "netpath_masquerade_connections_total") == {
        ("neta", scene.bridge_a, NETA): M_CONNECTIONS
    }
    moved = delta(before, after, "netpath_forwarded_packets_total")
    assert moved.get(("neta", scene.bridge_a, "outbound"), 0) > 0
