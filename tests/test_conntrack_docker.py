"""Conntrack attribution on a real dockerd: a container's entries are the ones ``conntrack -L``
lists with its address as original or reply source.

The lab dockerd (tests/dockerlab.py) runs in its own namespace, which is the
exporter's "host" here; a listener sits outside Docker, in a namespace behind
an uplink, so a container's connections to it leave through Docker's
masquerade, as on a real host. The exporter polls with its own pipeline
(links, the Docker source, conntrack) inside the lab namespace.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from typing import Any

import lab
import pytest
from conntrack_text import parse_list
from dockerlab import DockerLab, NetnsPython

pytestmark = [pytest.mark.lab, pytest.mark.docker]

K = 5
PORT = 8099
OUTSIDE = "10.231.9.2"

PROBE = """
from exporter.config import Config
from exporter.pipeline import make_poller
from lab import parse_exposition

cfg = Config(
    collectors={"links": True, "docker": True, "conntrack": True,
                "firewall": False, "sysctl": False, "routes": False},
    settings={"conntrack.interval": 0.001},  # a dump every poll
)
poller = make_poller(cfg)

def scrape():
    got = parse_exposition(poller.poll_once().body.decode())
    return {name: [[labels, value] for labels, value in rows] for name, rows in got.items()}
"""


@pytest.fixture(scope="module")
def topo(dockerd: DockerLab) -> Iterator[tuple[DockerLab, dict[str, str]]]:
    """Two containers on the default bridge, a listener outside Docker."""
    if shutil.which("conntrack") is None:
        pytest.skip("needs `conntrack` (Debian package conntrack)")
    dl = dockerd
    with lab.netns("ctout") as outside:
        lab.add_uplink(
            dl.netns, outside, host_if="npctup0", host_addr="10.231.9.1/24",
            outside_addr=f"{OUTSIDE}/24",
        )  # fmt: skip
        for name in ("ct-busy", "ct-quiet"):
            dl.run_sleeper(name)
        addrs = {
            c["Name"].lstrip("/"): c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            for c in dl.inspect("ct-busy", "ct-quiet")
        }
        pid = dl.docker("inspect", "-f", "{{.State.Pid}}", "ct-busy").strip()
        busy = lab.Netns("ct-busy")
        busy.path = f"/proc/{pid}/ns/net"
        with lab.tcp_server(outside, PORT, addr=OUTSIDE):
            assert lab.tcp_connect(busy, OUTSIDE, PORT, K) == K
        try:
            yield dl, addrs
        finally:
            dl.docker("rm", "-f", "ct-busy", "ct-quiet", check=False)


@pytest.fixture(scope="module")
def probe(topo: tuple[DockerLab, dict[str, str]]) -> Iterator[NetnsPython]:
    dl, _ = topo
    with dl.python(PROBE) as py:
        yield py


def own_entries(text: str, addr: str) -> int:
    packed = socket.inet_aton(addr)
    return sum(1 for e in parse_list(text) if packed in (e[1], e[3]))


def series(got: dict[str, Any], name: str, **match: str) -> float:
    (value,) = [v for labels, v in got[name] if all(labels.get(k) == m for k, m in match.items())]
    return float(value)


def test_containers_are_attributed_their_entries(
    topo: tuple[DockerLab, dict[str, str]], probe: NetnsPython
) -> None:
    dl, addrs = topo
    before = dl.exec("conntrack", "-L")
    got = probe.eval("scrape()")
    after = dl.exec("conntrack", "-L")
    busy, quiet = addrs["ct-busy"], addrs["ct-quiet"]
    # The lab is quiet: what the tool lists for the containers did not move around the poll.
    assert own_entries(before, busy) == own_entries(after, busy)
    assert own_entries(before, quiet) == own_entries(after, quiet)
    want_busy = own_entries(after, busy)
    want_quiet = own_entries(after, quiet)
    assert want_busy >= K  # the K connections to the listener (TIME_WAIT now)
    labels = {"namespace": "", "pod": "", "network": "bridge"}
    name = "netpath_conntrack_workload_entries"
    assert series(got, name, container="ct-busy", **labels) == want_busy
    assert series(got, name, container="ct-quiet", **labels) == want_quiet
    net = series(got, "netpath_conntrack_network_entries", manager="docker", network="bridge")
    assert net >= want_busy + want_quiet
    assert series(got, "netpath_conntrack_dump_truncated") == 0
    success = {lb["collector"]: v for lb, v in got["netpath_collector_success"]}
    assert success["conntrack"] == 1
    print(
        f"\nct-busy {busy}: {want_busy} entries; ct-quiet {quiet}: {want_quiet}; "
        f"network bridge: {net:.0f}",
        file=sys.stderr,
    )
