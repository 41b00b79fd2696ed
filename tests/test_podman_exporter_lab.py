"""The real exporter next to a real rootful Podman, scraped over HTTP (issue 14).

Every test runs on both network backends (netavark, CNI) but explain's, which
shows netavark's rules: the exact counts are netavark's (``manager="netavark"``)
on the one and the CNI plugins' (``manager="cni"``) on the other.

The exporter runs in the lab's network namespace (``nsenter --net``, as it would
on the host) with ``--podman.host`` pointing at the lab's API socket and a short
poll interval; it is scraped with curl from inside that namespace. An "outside"
namespace hangs off the lab host by a veth (10.231.9.0/24): it connects to the
published port and receives the containers' outbound connections.

Topology: networks ``plain``, ``iso`` and ``iso2`` (both ``--opt isolate=true``),
the default ``podman``; containers ``web`` (plain, publishes 8080->80, httpd),
``both`` (plain and iso), ``dflt`` (default network), ``iso2c`` (iso2), ``slirp``
(slirp4netns: no host veth).

netavark 1.4's isolation drops only traffic between *isolated* networks
(``NETAVARK_ISOLATION_1 -i ISO ! -o ISO`` -> ``NETAVARK_ISOLATION_2 -o ISO -j
DROP``): from ``plain`` into ``iso`` traffic passes, so the drop test pings
from ``iso2`` into ``iso``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import lab
import pytest
from dockerlab import REPO, poll_until
from podmanlab import IMAGE, PodmanLab

pytestmark = [pytest.mark.lab, pytest.mark.podman]

Samples = dict[str, list[tuple[dict[str, str], float]]]
UPLINK_HOST = "10.231.9.1"
OUTSIDE = "10.231.9.2"
CONTAINERS = ("both", "dflt", "iso2c", "web")


class Exporter:
    """``python -m exporter`` inside the lab's network namespace."""

    def __init__(self, pl: PodmanLab) -> None:
        self.pl = pl
        self.port = lab.free_port()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={pl.netns.path}", sys.executable, "-m", "exporter",
             f"--web.listen-address=127.0.0.1:{self.port}", "--poll.interval=300ms",
             "--podman.host", pl.host, "--no-collector.docker"],
            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def scrape(self) -> Samples:
        def answer() -> str | None:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"exporter exited ({self.proc.returncode}): {err}")
            r = subprocess.run(
                ["nsenter", f"--net={self.pl.netns.path}", "curl", "-sf", "--max-time", "5",
                 f"http://127.0.0.1:{self.port}/metrics"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return r.stdout if r.returncode == 0 else None

        text = poll_until("the exporter to answer", answer, timeout=30)
        return lab.parse_exposition(text)

    def scrape_after(self, t: float) -> Samples:
        """The exposition of the first poll that finished after Unix time ``t``."""

        def later() -> Samples | None:
            got = self.scrape()
            ts = got.get("netpath_poll_timestamp_seconds", [({}, 0.0)])[0][1]
            return got if ts > t else None

        return poll_until("a poll to finish", later, timeout=30, interval=0.05)  # type: ignore[no-any-return]

    def next_poll(self) -> Samples:
        return self.scrape_after(time.time())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture(scope="module", params=["netavark", "cni"])
def topo(request: pytest.FixtureRequest) -> Iterator[PodmanLab]:
    """The topology on each network backend; netavark's meaning is tested on netavark only
    (the CNI backend's rules are the CNI manager's)."""
    pl: PodmanLab = request.getfixturevalue(f"podman_{request.param}")
    # No IPv6 autoconfiguration chatter on new links: the counts below are exact.
    pl.exec("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
    pl.podman("network", "create", "plain")
    pl.podman("network", "create", "--opt", "isolate=true", "iso")
    pl.podman("network", "create", "--opt", "isolate=true", "iso2")
    pl.podman("run", "-d", "--name", "web", "--network", "plain", "-p", "8080:80",
              "-p", "127.0.0.1:8443:80", "-p", "5353:53/udp",
              IMAGE, "httpd", "-f", "-p", "80")  # fmt: skip
    pl.run_sleeper("both", "--network", "plain,iso")
    pl.run_sleeper("dflt")
    pl.run_sleeper("iso2c", "--network", "iso2")
    pl.run_sleeper("slirp", "--network", "slirp4netns")  # user-mode networking: no host veth
    with lab.netns("pmo") as outside:
        lab.add_uplink(
            pl.netns,
            outside,
            host_if="np-up0",
            host_addr=f"{UPLINK_HOST}/24",
            outside_addr=f"{OUTSIDE}/24",
        )
        pl.outside = outside  # type: ignore[attr-defined]
        yield pl
    pl.remove_all()


@pytest.fixture(scope="module")
def exporter(topo: PodmanLab) -> Iterator[Exporter]:
    exp = Exporter(topo)
    try:
        yield exp
    finally:
        exp.stop()


# Tests of netavark's rules run on the netavark backend only.
netavark_only = pytest.mark.parametrize("topo", ["netavark"], indirect=True)


def manager(pl: PodmanLab) -> str:
    """The firewall manager whose rules the backend writes."""
    return "netavark" if pl.backend == "netavark" else "cni"


def rows(s: Samples, name: str, **match: str) -> list[dict[str, str]]:
    return [
        {**labels, "value": str(v)}
        for labels, v in s.get(name, [])
        if all(labels.get(k) == val for k, val in match.items())
    ]


def value(s: Samples, name: str, **match: str) -> float:
    (row,) = rows(s, name, **match)
    return float(row["value"])


def ip_of(pl: PodmanLab, name: str, network: str) -> str:
    return str(pl.inspect(name)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])


def test_every_container_veth_is_its_eth0_peer(topo: PodmanLab, exporter: Exporter) -> None:
    pl = topo

    def all_mapped() -> Samples | None:
        s = exporter.scrape()
        got = rows(s, "netpath_container_interface_info")
        return s if len(got) == 5 else None  # both has two

    s = poll_until("every container's veth", all_mapped, timeout=30)
    links = {link["ifindex"]: link for link in pl.host_links()}
    inspect = {n: json.loads(pl.podman("network", "inspect", n))[0] for n in
               ("plain", "iso", "iso2", "podman")}  # fmt: skip
    for name in CONTAINERS:
        (c,) = pl.inspect(name)
        networks = c["NetworkSettings"]["Networks"]
        got = sorted(
            (r["interface"], r["network"], r["bridge"], r["ip"], r["mac"])
            for r in rows(s, "netpath_container_interface_info", container=name)
        )
        want = []
        for i in range(len(networks)):
            veth = links[pl.iflink(name, f"eth{i}")]
            net = next(n for n, v in inspect.items() if v["network_interface"] == veth["master"])
            want.append(
                (
                    veth["ifname"],
                    net,
                    inspect[net]["network_interface"],
                    networks[net]["IPAddress"],
                    networks[net]["MacAddress"],
                )
            )
        assert got == sorted(want), name
        (info,) = rows(s, "netpath_container_info", container=name)
        assert info["runtime"] == "podman"
        assert info["container_id"] == c["Id"][:12]
    for net, want_net in inspect.items():
        (info,) = rows(s, "netpath_network_info", network=net)
        assert info["bridge"] == want_net["network_interface"]
        assert info["network_id"] == want_net["id"][:12]
        assert info["subnet"] == want_net["subnets"][0]["subnet"]
    assert value(s, "netpath_collector_success", collector="podman") == 1
    if pl.backend == "netavark":
        assert value(s, "netpath_firewall_layout_info", manager="netavark", layout="iptables") == 1
    else:
        assert rows(s, "netpath_firewall_layout_info", manager="netavark") == []


def test_published_port_connections_exact(topo: PodmanLab, exporter: Exporter) -> None:
    k = 5
    series = {"manager": manager(topo), "container": "web", "network": "plain",
              "protocol": "tcp", "host_port": "8080", "container_port": "80",
              "host_ip": "0.0.0.0"}  # fmt: skip
    name = "netpath_published_port_connections_total"

    def published() -> Samples | None:
        s = exporter.scrape()
        return s if rows(s, name, **series) else None

    before = value(poll_until("the published port's series", published), name, **series)
    code = (
        "import socket\n"
        f"for _ in range({k}):\n"
        f"    s = socket.create_connection(('{UPLINK_HOST}', 8080), timeout=5)\n"
        "    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); s.recv(100); s.close()\n"
    )
    topo.outside.exec(sys.executable, "-c", code)  # type: ignore[attr-defined]
    after = exporter.next_poll()
    assert value(after, name, **series) - before == k
    # Every port Podman published, one series each, as `podman port` lists them.
    got = sorted(
        (r["protocol"], r["host_ip"], r["host_port"], r["container_port"], r["container"])
        for r in rows(after, name, manager=manager(topo))
    )
    assert got == [
        ("tcp", "0.0.0.0", "8080", "80", "web"),
        ("tcp", "127.0.0.1", "8443", "80", "web"),
        ("udp", "0.0.0.0", "5353", "53", "web"),
    ]
    listed = []
    for line in topo.podman("port", "web").splitlines():  # "80/tcp -> 0.0.0.0:8080"
        cport_proto, _, host = line.partition(" -> ")
        cport, _, proto = cport_proto.partition("/")
        host_ip, _, host_port = host.rpartition(":")
        listed.append((proto, host_ip, host_port, cport, "web"))
    assert sorted(listed) == got


def test_isolation_drops_exact(topo: PodmanLab, exporter: Exporter) -> None:
    n = 4
    name = "netpath_dropped_packets_total"
    bridge = topo.network_inspect("iso")["network_interface"]
    labels = {"manager": manager(topo), "network": "iso", "bridge": bridge, "reason": "isolation"}
    before = value(exporter.next_poll(), name, **labels)
    target = ip_of(topo, "both", "iso")
    out = lab.run(["nsenter", f"--net={topo.netns_of('iso2c')}", "busybox", "ping", "-c", str(n),
                   "-i", "0.2", "-W", "1", target], check=False)  # fmt: skip
    assert f"{n} packets transmitted, 0 packets received" in out
    assert value(exporter.next_poll(), name, **labels) - before == n
    # From a network that is not isolated, traffic into iso passes (netavark 1.4, CNI).
    out = lab.run(["nsenter", f"--net={topo.netns_of('web')}", "busybox", "ping", "-c", "1",
                   "-W", "2", target], check=False)  # fmt: skip
    assert "1 packets received" in out
    assert value(exporter.next_poll(), name, **labels) - before == n


def test_masquerade_connections_exact(topo: PodmanLab, exporter: Exporter) -> None:
    m = 3
    name = "netpath_masquerade_connections_total"
    subnet = topo.network_inspect("plain")["subnets"][0]["subnet"]
    # netavark masquerades per network, the CNI plugins per container.
    container = "web" if manager(topo) == "cni" else ""
    labels = {"manager": manager(topo), "network": "plain", "subnet": subnet,
              "container": container}  # fmt: skip
    before = value(exporter.next_poll(), name, **labels)
    code = (
        "import socket\n"
        f"for _ in range({m}):\n"
        "    try:\n"
        f"        socket.create_connection(('{OUTSIDE}', 9), timeout=5).close()\n"
        "    except ConnectionRefusedError:\n"
        "        pass\n"
    )
    lab.run(["nsenter", f"--net={topo.netns_of('web')}", sys.executable, "-c", code])
    assert value(exporter.next_poll(), name, **labels) - before == m


def test_stop_and_start_within_two_polls(topo: PodmanLab, exporter: Exporter) -> None:
    info = "netpath_container_interface_info"
    assert rows(exporter.next_poll(), info, container="dflt")
    topo.podman("stop", "-t", "0", "dflt")
    exporter.next_poll()
    assert not rows(exporter.next_poll(), info, container="dflt")
    topo.podman("start", "dflt")
    exporter.next_poll()
    assert rows(exporter.next_poll(), info, container="dflt")


def test_service_outage(topo: PodmanLab, exporter: Exporter) -> None:
    topo.stop_service()
    try:
        s = exporter.next_poll()
        s = exporter.next_poll()
        assert value(s, "netpath_collector_success", collector="podman") == 0
        assert value(s, "netpath_collector_success", collector="links") == 1
        assert value(s, "netpath_collector_success", collector="firewall") == 1
        assert rows(s, "netpath_interface_info", interface="np-up0")
        assert rows(
            s,
            "netpath_interface_info",
            interface=topo.network_inspect("plain")["network_interface"],
        )
    finally:
        topo.start_service()

    def back() -> bool:
        s = exporter.scrape()
        return (
            value(s, "netpath_collector_success", collector="podman") == 1
            and len(rows(s, "netpath_container_interface_info")) == 5
        )

    poll_until("the containers to come back", back, timeout=30)
    assert exporter.proc.poll() is None


@netavark_only
def test_explain_a_podman_container(topo: PodmanLab, exporter: Exporter) -> None:
    """``netpath-exporter explain`` walks a Podman container's path with netavark's rules."""
    r = subprocess.run(
        ["nsenter", f"--net={topo.netns.path}", sys.executable, "-m", "exporter", "explain",
         "both", "--json", "--interval", "100ms", "--podman.host", topo.host,
         "--no-collector.docker"],
        cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["firewall"]["manager"] == "netavark"
    assert doc["firewall"]["layout"] == "iptables"
    links = {link["ifindex"]: link["ifname"] for link in topo.host_links()}
    legs = {leg["network"]["name"]: leg for leg in doc["networks"]}
    assert sorted(legs) == ["iso", "plain"]
    for name, leg in legs.items():
        assert leg["bridge"]["name"] == topo.network_inspect(name)["network_interface"]
        assert leg["veth"]["name"] in {links[topo.iflink("both", f"eth{i}")] for i in range(2)}
        assert [m["subnet"] for m in leg["masquerade"]] == [
            topo.network_inspect(name)["subnets"][0]["subnet"]
        ]
    assert [d["reason"] for d in legs["iso"]["drops"]] == ["isolation"]
    assert legs["plain"]["drops"] == []


def test_path_page_lists_podman_containers(topo: PodmanLab, exporter: Exporter) -> None:
    exporter.next_poll()
    r = subprocess.run(
        ["nsenter", f"--net={topo.netns.path}", "curl", "-sf", "--max-time", "5",
         f"http://127.0.0.1:{exporter.port}/path"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in CONTAINERS:
        assert f'id="c-{name}"' in r.stdout, name
    if topo.backend == "netavark":
        assert "netavark layout iptables" in r.stdout


def test_user_mode_networking_is_listed_without_a_path(topo: PodmanLab, exporter: Exporter) -> None:
    s = exporter.next_poll()
    (info,) = rows(s, "netpath_container_info", container="slirp")
    assert info["runtime"] == "podman"
    assert rows(s, "netpath_container_interface_info", container="slirp") == []
    r = subprocess.run(
        ["nsenter", f"--net={topo.netns.path}", sys.executable, "-m", "exporter", "check",
         "--podman.host", topo.host, "--no-collector.docker"],
        cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "1 container(s) without a host veth: user-mode networking (slirp4netns)" in r.stdout
    assert "isolated networks (created with isolate=true): iso, iso2" in r.stdout
