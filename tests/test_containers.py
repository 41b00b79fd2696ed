"""Containers: parsing Docker's JSON, the veth join and rendering (pure), the event logic (fake).

The JSON under fixtures/containers/ was captured from a real dockerd 20.10 (the
lab of tests/dockerlab.py): ``docker inspect`` of six containers and ``GET
/networks``. The join is tested on literal SourceData/LinksData.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
from dockerlab import poll_until
from meanings import render_containers

from exporter.collector import CollectorError
from exporter.config import DockerConfig
from exporter.model import (
    Endpoint,
    Link,
    LinksData,
    LinkStats,
    MetricFamily,
    Network,
    PortBinding,
    SourceData,
    Workload,
)
from exporter.sources.docker import ContainersCollector
from exporter.sources.docker_parse import (
    container_running,
    netns_paths,
    parse_container,
    parse_event,
    parse_network,
)
from exporter.workloads import build_interfaces

FIXTURES = Path(__file__).parent / "fixtures" / "containers"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def inspected() -> dict[str, dict[str, Any]]:
    return {c["Name"].lstrip("/"): c for c in load("inspect-containers.json")}


# --------------------------------------------------------------------------
# Parsing real dockerd JSON
# --------------------------------------------------------------------------


def test_parse_networks_names_their_bridges() -> None:
    nets = {n.name: n for n in map(parse_network, load("networks.json"))}
    assert set(nets) == {"appnet", "othernet", "bridge", "host", "none"}
    assert nets["bridge"].bridge == "docker0"
    assert nets["appnet"].bridge == "br-" + nets["appnet"].id[:12]
    assert nets["othernet"].bridge == "mybr0"  # com.docker.network.bridge.name
    assert nets["host"].bridge == "" and nets["none"].bridge == ""
    assert nets["bridge"].subnets == ("10.213.0.0/24",)
    assert nets["bridge"].gateways == ("10.213.0.1",)
    assert nets["appnet"].driver == "bridge" and nets["none"].driver == "null"
    assert not nets["appnet"].internal


def test_parse_network_orders_ipv4_first_and_keeps_gateways_aligned() -> None:
    net = parse_network(
        {
            "Name": "dual",
            "Id": "ab" * 32,
            "Driver": "bridge",
            "Internal": True,
            "EnableIPv6": True,
            "IPAM": {
                "Config": [
                    {"Subnet": "fd00:1::/64"},
                    {"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1"},
                ]
            },
        }
    )
    assert net.subnets == ("172.30.0.0/16", "fd00:1::/64")
    assert net.gateways == ("172.30.0.1", "")
    assert net.internal and net.enable_ipv6
    assert net.bridge == "br-abababababab"


def test_parse_containers() -> None:
    raw = inspected()
    nets = {n.name: n for n in map(parse_network, load("networks.json"))}
    c1 = parse_container(raw["c1"], netns_id=7)
    assert c1.name == "c1" and c1.id == raw["c1"]["Id"]
    assert c1.image == "netpath-test/busybox"
    assert c1.network_mode == "bridge" and c1.netns_id == 7
    assert c1.endpoints == (
        Endpoint("bridge", nets["bridge"].id, "10.213.0.2", "", "02:42:0a:d5:00:02",
                          "10.213.0.1"),
    )  # fmt: skip

    web = parse_container(raw["web"])
    assert web.network_mode == "appnet"
    assert web.ports == (
        PortBinding("tcp", 80, "0.0.0.0", 8080),
        PortBinding("tcp", 80, "::", 8080),
    )

    both = parse_container(raw["both"])
    assert [ep.network for ep in both.endpoints] == ["appnet", "othernet"]
    assert [ep.network_id for ep in both.endpoints] == [nets["appnet"].id, nets["othernet"].id]

    for name, mode in (("nonet", "none"), ("hostc", "host")):
        ctr = parse_container(raw[name])
        assert ctr.network_mode == mode
        assert ctr.endpoints == ()
    assert all(container_running(r) for r in raw.values())


def test_only_compose_labels_are_kept() -> None:
    raw = inspected()["proj-web-1"]
    assert raw["Config"]["Labels"]["secret.label"] == "hunter2"  # the fixture has them ...
    assert "SECRET_ENV=x" in raw["Config"]["Env"]
    ctr = parse_container(raw)
    assert (ctr.compose_project, ctr.compose_service) == ("proj", "web")
    text = repr(ctr) + repr(render_containers(SourceData("20.10", (ctr,), ()), None))
    assert "hunter2" not in text and "secret" not in text and "SECRET" not in text  # ... never out


def test_netns_paths() -> None:
    raw = inspected()["c1"]
    key = raw["NetworkSettings"]["SandboxKey"]
    assert netns_paths(raw) == (key, f"/proc/{raw['State']['Pid']}/ns/net")
    assert netns_paths({"State": {"Pid": 0}, "NetworkSettings": {}}) == ()


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"Type": "container", "Action": "start", "Actor": {"ID": "c"}}, ("c", "inspect")),
        ({"Type": "container", "Action": "die", "Actor": {"ID": "c"}}, ("c", "remove")),
        ({"Type": "container", "Action": "destroy", "Actor": {"ID": "c"}}, ("c", "remove")),
        ({"Type": "container", "Action": "rename", "Actor": {"ID": "c"}}, ("c", "inspect")),
        ({"Type": "container", "Action": "exec_start: sh", "Actor": {"ID": "c"}}, None),
        ({"Type": "container", "Action": "health_status: healthy", "Actor": {"ID": "c"}}, None),
        (
            {"Type": "network", "Action": "connect",
             "Actor": {"ID": "n", "Attributes": {"container": "c", "name": "appnet"}}},
            ("c", "endpoints"),
        ),
        (
            {"Type": "network", "Action": "disconnect",
             "Actor": {"ID": "n", "Attributes": {"container": "c"}}},
            ("c", "endpoints"),
        ),
        ({"Type": "network", "Action": "create", "Actor": {"ID": "n"}}, ("", "networks")),
        ({"Type": "network", "Action": "destroy", "Actor": {"ID": "n"}}, ("", "networks")),
        ({"Type": "image", "Action": "pull", "Actor": {"ID": "i"}}, None),
    ],
)  # fmt: skip
def test_parse_event(event: Mapping[str, Any], expected: tuple[str, str] | None) -> None:
    assert parse_event(event) == expected


# --------------------------------------------------------------------------
# The join, on literal data
# --------------------------------------------------------------------------

BRIDGE = Network("bridge", "b" * 64, "bridge", "docker0", ("172.17.0.0/16",),
                       ("172.17.0.1",), False)  # fmt: skip
APPNET = Network("appnet", "a1" * 32, "bridge", "br-a1a1a1a1a1a1", ("172.18.0.0/16",),
                       ("172.18.0.1",), False)  # fmt: skip
BACKNET = Network("backnet", "c2" * 32, "bridge", "back0", ("172.19.0.0/16",),
                        ("172.19.0.1",), True,
                        options={"com.docker.network.bridge.name": "back0"})  # fmt: skip
HOSTNET = Network("host", "d" * 64, "host", "", (), (), False)
NONENET = Network("none", "e" * 64, "null", "", (), (), False)


def ep(net: Network, ip: str, mac: str) -> Endpoint:
    return Endpoint(net.name, net.id, ip, "", mac, net.gateways[0])


def ctr(name: str, nsid: int | None, *eps: Endpoint, mode: str = "bridge",
        project: str = "", service: str = "") -> Workload:  # fmt: skip
    return Workload(
        id=(name.encode().hex() * 64)[:64],
        name=name,
        image="netpath-test/busybox",
        compose_project=project,
        compose_service=service,
        network_mode=mode,
        netns_id=nsid,
        endpoints=eps,
        ports=(),
    )


WEB = ctr("web", 0, ep(BRIDGE, "172.17.0.2", "02:42:ac:11:00:02"))
API = ctr(
    "shop-api-1", 1,
    ep(APPNET, "172.18.0.2", "02:42:ac:12:00:02"),
    ep(BACKNET, "172.19.0.2", "02:42:ac:13:00:02"),
    mode="appnet", project="shop", service="api",
)  # fmt: skip
HOSTC = ctr("hostc", None, mode="host")
NONEC = ctr("nonec", 5, mode="none")  # a namespace without veths
DOCKER = SourceData(
    version="20.10.24",
    workloads=(HOSTC, NONEC, API, WEB),
    networks=(APPNET, BACKNET, BRIDGE, HOSTNET, NONENET),
)


def stats(n: int) -> LinkStats:
    """Distinct counters: rx_bytes=n*1000+1, rx_packets=n*1000+2, ..., tx_dropped=n*1000+8."""
    return LinkStats(*(n * 1000 + i for i in range(1, 9)))


def veth(index: int, name: str, master: int | None, nsid: int | None, peer: int = 2) -> Link:
    return Link(index, name, "veth", master, f"aa:bb:cc:00:00:{index:02x}", "up", peer, nsid)


LINKS = LinksData(
    links=(
        Link(3, "back0", "bridge", None, "02:42:00:00:00:03", "up"),
        Link(4, "br-a1a1a1a1a1a1", "bridge", None, "02:42:00:00:00:04", "up"),
        Link(2, "docker0", "bridge", None, "02:42:00:00:00:02", "up"),
        Link(1, "eth0", "physical", None, "52:54:00:00:00:01", "up"),
        veth(10, "veth1111111", 2, 0),  # WEB on docker0
        veth(11, "veth2222222", 4, 1),  # API on appnet
        veth(12, "veth3333333", 3, 1, peer=3),  # API on backnet
        veth(13, "veth4444444", 2, 9),  # a namespace Docker does not know (not a container's)
        veth(14, "veth5555555", None, None),  # a veth without peer namespace (both ends here)
    ),
    stats={i: stats(i) for i in (1, 2, 3, 4, 10, 11, 12, 13, 14)},
)


def test_join_maps_each_veth_to_its_container_and_network() -> None:
    joined = build_interfaces([DOCKER], LINKS)
    rows = [(ci.workload.name, ci.network, ci.bridge, ci.interface, ci.ip, ci.mac)
            for ci in joined]  # fmt: skip
    assert rows == [
        ("shop-api-1", "appnet", "br-a1a1a1a1a1a1", "veth2222222", "172.18.0.2",
         "02:42:ac:12:00:02"),
        ("shop-api-1", "backnet", "back0", "veth3333333", "172.19.0.2", "02:42:ac:13:00:02"),
        ("web", "bridge", "docker0", "veth1111111", "172.17.0.2", "02:42:ac:11:00:02"),
    ]  # fmt: skip
    assert [ci.stats for ci in joined] == [stats(11), stats(12), stats(10)]


def test_join_without_nsid_or_links_finds_nothing() -> None:
    unknown = SourceData("x", (ctr("web", None, *WEB.endpoints),), DOCKER.networks)
    assert build_interfaces([unknown], LINKS) == ()
    assert build_interfaces([DOCKER], LinksData((), {})) == ()


def test_join_veth_on_unknown_bridge_keeps_the_only_endpoint() -> None:
    links = LinksData((veth(10, "veth1111111", None, 0),), {10: stats(10)})
    (ci,) = build_interfaces([DOCKER], links)
    assert (ci.workload.name, ci.network, ci.bridge, ci.ip) == ("web", "bridge", "", "172.17.0.2")


def samples(families: list[MetricFamily]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in families:
        assert fam.name not in out
        assert fam.name.endswith("_total") == (fam.type == "counter")
        out[fam.name] = [(dict(zip(fam.labels, lv, strict=True)), v) for lv, v in fam.samples]
    return out


DOCKER_WL = {"runtime": "docker", "namespace": "", "pod": ""}
NO_POD = {"namespace": "", "pod": ""}


def test_render_containers() -> None:
    got = samples(render_containers(DOCKER, LINKS))
    api_id, web_id = API.id[:12], WEB.id[:12]
    assert got["netpath_container_info"] == [
        ({"container": "hostc", "container_id": HOSTC.id[:12], "image": "netpath-test/busybox",
          "compose_project": "", "compose_service": "", **DOCKER_WL}, 1),
        ({"container": "nonec", "container_id": NONEC.id[:12], "image": "netpath-test/busybox",
          "compose_project": "", "compose_service": "", **DOCKER_WL}, 1),
        ({"container": "shop-api-1", "container_id": api_id, "image": "netpath-test/busybox",
          "compose_project": "shop", "compose_service": "api", **DOCKER_WL}, 1),
        ({"container": "web", "container_id": web_id, "image": "netpath-test/busybox",
          "compose_project": "", "compose_service": "", **DOCKER_WL}, 1),
    ]  # fmt: skip
    assert got["netpath_container_interface_info"] == [
        ({"container": "shop-api-1", "container_id": api_id, "network": "appnet",
          "bridge": "br-a1a1a1a1a1a1", "interface": "veth2222222", "ip": "172.18.0.2",
          "mac": "02:42:ac:12:00:02", **NO_POD}, 1),
        ({"container": "shop-api-1", "container_id": api_id, "network": "backnet",
          "bridge": "back0", "interface": "veth3333333", "ip": "172.19.0.2",
          "mac": "02:42:ac:13:00:02", **NO_POD}, 1),
        ({"container": "web", "container_id": web_id, "network": "bridge", "bridge": "docker0",
          "interface": "veth1111111", "ip": "172.17.0.2", "mac": "02:42:ac:11:00:02", **NO_POD}, 1),
    ]  # fmt: skip
    # Container perspective: receive = the host veth's transmit and vice versa.
    host_field = {"receive_bytes": 5, "receive_packets": 6, "receive_errors": 7,
                  "receive_dropped": 8, "transmit_bytes": 1, "transmit_packets": 2,
                  "transmit_errors": 3, "transmit_dropped": 4}  # fmt: skip
    for suffix, offset in host_field.items():
        assert got[f"netpath_container_network_{suffix}_total"] == [
            ({"container": "shop-api-1", "network": "appnet", "interface": "veth2222222", **NO_POD},
             11000 + offset),
            ({"container": "shop-api-1", "network": "backnet", "interface": "veth3333333",
              **NO_POD},
             12000 + offset),
            ({"container": "web", "network": "bridge", "interface": "veth1111111", **NO_POD},
             10000 + offset),
        ], suffix  # fmt: skip
    assert got["netpath_network_info"] == [
        ({"network": "appnet", "network_id": "a1a1a1a1a1a1", "bridge": "br-a1a1a1a1a1a1",
          "driver": "bridge", "subnet": "172.18.0.0/16", "gateway": "172.18.0.1",
          "internal": "false"}, 1),
        ({"network": "backnet", "network_id": "c2c2c2c2c2c2", "bridge": "back0",
          "driver": "bridge", "subnet": "172.19.0.0/16", "gateway": "172.19.0.1",
          "internal": "true"}, 1),
        ({"network": "bridge", "network_id": "bbbbbbbbbbbb", "bridge": "docker0",
          "driver": "bridge", "subnet": "172.17.0.0/16", "gateway": "172.17.0.1",
          "internal": "false"}, 1),
        ({"network": "host", "network_id": "dddddddddddd", "bridge": "", "driver": "host",
          "subnet": "", "gateway": "", "internal": "false"}, 1),
        ({"network": "none", "network_id": "eeeeeeeeeeee", "bridge": "", "driver": "null",
          "subnet": "", "gateway": "", "internal": "false"}, 1),
    ]  # fmt: skip


def test_render_without_links_has_info_only() -> None:
    got = samples(render_containers(DOCKER, None))
    assert len(got["netpath_container_info"]) == 4
    assert len(got["netpath_network_info"]) == 5
    empty = [name for name, rows in got.items() if not rows]
    assert sorted(empty) == sorted(
        ["netpath_container_interface_info"]
        + [f"netpath_container_network_{d}_{k}_total" for d in ("receive", "transmit")
           for k in ("bytes", "packets", "errors", "dropped")]
    )  # fmt: skip


def test_render_skips_counters_of_a_vanished_veth() -> None:
    links = LinksData(LINKS.links, {k: v for k, v in LINKS.stats.items() if k != 10})
    got = samples(render_containers(DOCKER, links))
    assert len(got["netpath_container_interface_info"]) == 3
    assert [s[0]["container"] for s in got["netpath_container_network_receive_bytes_total"]] == [
        "shop-api-1", "shop-api-1"
    ]  # fmt: skip


# --------------------------------------------------------------------------
# The collector's event logic, against a fake Docker client
# --------------------------------------------------------------------------


class FakeStream:
    """An event stream fed by the test; ``end()`` or ``close()`` ends it like a dying daemon."""

    def __init__(self) -> None:
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.read = threading.Event()  # set after each event was handed out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (ev := self.q.get()) is not None:
            yield ev
            self.read.set()

    def end(self) -> None:
        self.q.put(None)

    close = end


class FakeAPI:
    def __init__(self, daemon: FakeDaemon) -> None:
        self.d = daemon

    def _up(self) -> None:
        if not self.d.up:
            raise requests.exceptions.ConnectionError("connection refused")

    def version(self) -> dict[str, str]:
        self._up()
        return {"Version": "20.10.24"}

    def events(self, **kwargs: Any) -> FakeStream:
        self._up()
        self.d.stream = FakeStream()
        return self.d.stream

    def containers(self, all: bool = False) -> list[dict[str, str]]:
        self._up()
        return [{"Id": cid} for cid, raw in self.d.containers.items() if container_running(raw)]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self._up()
        self.d.inspects.append(cid)
        if cid not in self.d.containers:
            raise docker.errors.NotFound("no such container")
        return self.d.containers[cid]

    def networks(self) -> list[dict[str, Any]]:
        self._up()
        return self.d.networks


class FakeClient:
    def __init__(self, daemon: FakeDaemon) -> None:
        self.api = FakeAPI(daemon)

    def close(self) -> None:
        pass


class FakeDaemon:
    def __init__(self) -> None:
        raw = inspected()
        self.containers = {r["Id"]: r for r in raw.values()}
        self.networks: list[dict[str, Any]] = load("networks.json")
        self.up = True
        self.stream: FakeStream | None = None
        self.inspects: list[str] = []
        self.by_name = {name: r["Id"] for name, r in raw.items()}

    def client(self) -> FakeClient:
        if not self.up:
            raise requests.exceptions.ConnectionError("connection refused")
        return FakeClient(self)

    def emit(self, type_: str, action: str, actor: str, **attrs: str) -> None:
        assert self.stream is not None
        self.stream.read.clear()
        self.stream.q.put({"Type": type_, "Action": action,
                           "Actor": {"ID": actor, "Attributes": attrs}})  # fmt: skip
        assert self.stream.read.wait(5)

    def stop(self, name: str) -> None:
        cid = self.by_name[name]
        self.containers[cid] = {**self.containers[cid], "State": {"Running": False, "Pid": 0}}
        self.emit("container", "kill", cid)
        self.emit("container", "die", cid)  # then, like dockerd, its endpoints go
        self.emit("network", "disconnect", "n" * 64, container=cid)
        self.emit("container", "stop", cid)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[tuple[FakeDaemon, ContainersCollector, Clock]]:
    daemon = FakeDaemon()
    clock = Clock()
    nsids = {inspected()[n]["NetworkSettings"]["SandboxKey"]: i
             for i, n in enumerate(("c1", "web", "both"))}  # fmt: skip

    def read_nsid(path: str) -> int | None:
        if path.startswith("/proc/"):
            raise FileNotFoundError(path)
        return nsids.get(path)

    coll = ContainersCollector(DockerConfig(host="unix:///fake.sock", resync_interval=300),
                               netnsid_reader=read_nsid, client_factory=daemon.client,
                               clock=clock)  # fmt: skip
    try:
        yield daemon, coll, clock
    finally:
        coll.close()


def names(data: SourceData) -> list[str]:
    return [c.name for c in data.workloads]


def test_collector_resyncs_then_polls_without_api_calls(fake: Any) -> None:
    _daemon, coll, clock = fake
    data = coll.collect()
    assert names(data) == ["both", "c1", "hostc", "nonet", "proj-web-1", "web"]
    assert [n.name for n in data.networks] == ["appnet", "bridge", "host", "none", "othernet"]
    assert data.version == "20.10.24"
    nsid = {c.name: c.netns_id for c in data.workloads}
    assert nsid == {"both": 2, "c1": 0, "web": 1, "hostc": None, "nonet": None,
                    "proj-web-1": None}  # fmt: skip
    calls = coll.api_calls
    for _ in range(5):
        clock.now += 5
        assert coll.collect() is data  # nothing changed: the same snapshot, no API call
    assert coll.api_calls == calls
    clock.now += 300
    coll.collect()
    assert coll.resyncs == 2
    assert coll.api_calls == 2 * calls - 2  # a resync without connecting: list, networks, inspects


def test_collector_follows_events(fake: Any) -> None:
    daemon, coll, _clock = fake
    coll.collect()
    daemon.inspects.clear()
    calls = coll.api_calls
    daemon.stop("c1")  # die, disconnect: removed without asking Docker
    assert "c1" not in names(coll.collect())
    assert coll.api_calls == calls and daemon.inspects == []

    cid = daemon.by_name["c1"]
    daemon.containers[cid] = inspected()["c1"]
    daemon.emit("network", "connect", "n", container=cid)
    daemon.emit("container", "start", cid)
    data = coll.collect()
    assert "c1" in names(data)
    assert daemon.inspects == [cid]  # two events, one inspection
    assert {c.name: c.netns_id for c in data.workloads}["c1"] == 0

    daemon.networks = [n for n in daemon.networks if n["Name"] != "othernet"]
    daemon.emit("network", "destroy", "x")
    assert "othernet" not in [n.name for n in coll.collect().networks]

    daemon.emit("container", "start", "gone" * 16)  # vanished before we asked: no error
    assert len(coll.collect().workloads) == 6


def test_collector_retries_unassigned_netnsid(fake: Any) -> None:
    _daemon, coll, _ = fake
    answers: dict[str, int | None] = {}
    coll._read_netnsid = answers.get
    data = coll.collect()
    assert all(c.netns_id is None for c in data.workloads)
    calls = coll.api_calls
    key = inspected()["web"]["NetworkSettings"]["SandboxKey"]
    answers[key] = 4  # the links dump made the kernel assign one
    data = coll.collect()
    assert {c.name: c.netns_id for c in data.workloads}["web"] == 4
    assert coll.api_calls == calls


def test_collector_reports_and_survives_a_daemon_outage(fake: Any) -> None:
    daemon, coll, _ = fake
    coll.collect()
    daemon.up = False
    daemon.stream.end()  # the event stream dies with the daemon
    poll_until("the collector to notice", lambda: not coll.following_events, timeout=5)
    with pytest.raises(CollectorError, match=r"cannot reach Docker at unix:///fake.sock: "):
        coll.collect()
    with pytest.raises(CollectorError):
        coll.collect()
    daemon.up = True
    del daemon.containers[daemon.by_name["c1"]]
    data = coll.collect()  # reconnects and resyncs by itself
    assert "c1" not in names(data) and "web" in names(data)
    assert coll.resyncs == 2


def test_collector_names_an_api_error(fake: Any) -> None:
    daemon, coll, _ = fake

    def broken(self: FakeAPI, all: bool = False) -> list[dict[str, str]]:
        raise docker.errors.APIError("500 Server Error: containerd is down")

    coll.collect()
    daemon.stream.end()
    poll_until("the collector to notice", lambda: not coll.following_events, timeout=5)
    original = FakeAPI.containers
    FakeAPI.containers = broken  # type: ignore[assignment,method-assign]
    try:
        with pytest.raises(CollectorError, match=r"Docker at unix:///fake.sock answered with an"):
            coll.collect()
    finally:
        FakeAPI.containers = original  # type: ignore[method-assign]
    assert "c1" in names(coll.collect())


# --------------------------------------------------------------------------
# A host without Docker
# --------------------------------------------------------------------------


def test_absent_when_the_default_socket_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody named Docker's endpoint and its default socket is not there: absent, not failing."""
    from exporter import config  # noqa: PLC0415
    from exporter.collector import CollectorAbsent  # noqa: PLC0415

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(config, "DEFAULT_DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    coll = ContainersCollector(DockerConfig())
    with pytest.raises(CollectorAbsent, match=f"no Docker socket at {tmp_path}/docker.sock"):
        coll.collect()
    # Named explicitly, the same missing socket is a failure with the reason.
    named = ContainersCollector(DockerConfig(host=f"unix://{tmp_path}/docker.sock"))
    with pytest.raises(CollectorError) as err:
        named.collect()
    assert not isinstance(err.value, CollectorAbsent)
    named.close()


def test_an_absent_source_is_left_out_of_collector_success() -> None:
    from exporter.collector import CollectorAbsent  # noqa: PLC0415
    from exporter.config import Config  # noqa: PLC0415
    from exporter.metrics.render import render_meta  # noqa: PLC0415
    from exporter.poller import Poller  # noqa: PLC0415

    class Absent:
        name = "docker"

        def collect(self) -> object:
            raise CollectorAbsent("no Docker socket at /nowhere")

        def close(self) -> None:
            pass

    poller = Poller([("docker", Absent)], lambda _p: [], 1.0)
    poll = poller.poll_once().poll
    (status,) = poll.status
    assert status.absent and not status.success and "no Docker socket" in status.error
    fams = {f.name: f for f in render_meta(poll, set(Config().collectors))}
    assert fams["netpath_collector_success"].samples == ()
