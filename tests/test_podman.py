"""Pure tests of the Podman source's parsing: answers shaped as Podman 4.3 gives them."""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.collector import CollectorError
from exporter.model import PortBinding
from exporter.sources.base import SourceAbsent
from exporter.sources.engine import ENDPOINTS, INSPECT, NETWORKS, REMOVE
from exporter.sources.podman import PodmanSource
from exporter.sources.podman_parse import (
    ROOTLESS_BRIDGE,
    isolated_in_file,
    netns_paths,
    no_path_reason,
    parse_container,
    parse_event,
    parse_network,
)

CID = "64e30e1ed8ac0c3fc6b1dfa63ca65c7f439ad35127cd5bcb0573a54f560663d0"
NET_ID = "a949b84ef642631de22f7da2553343883b6095e1a1e948b0255a45cb3785019e"

LIBPOD_NETWORK: dict[str, Any] = {
    "name": "plain",
    "id": NET_ID,
    "driver": "bridge",
    "network_interface": "podman2",
    "created": "2026-12-07T12:45:53.27290133Z",
    "subnets": [
        {"subnet": "fd00:89:1::/64", "gateway": "fd00:89:1::1"},
        {"subnet": "10.89.1.0/24", "gateway": "10.89.1.1"},
    ],
    "ipv6_enabled": True,
    "internal": False,
    "dns_enabled": True,
    "ipam_options": {"driver": "host-local"},
}


def compat_inspect(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "Id": CID,
        "Name": "/web",
        "State": {"Status": "running", "Running": True, "Pid": 18028},
        "Config": {
            "Image": "localhost/busybox:latest",
            "Labels": {
                "io.podman.compose.project": "shop",
                "com.docker.compose.service": "web",
                "secret": "hunter2",
            },
        },
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "SandboxKey": "/run/netns/netns-f4a5feec-2080-bdb5-8920-978cac7dc5af",
            "Networks": {
                "plain": {
                    "NetworkID": "plain",  # Podman: the name, not the id
                    "EndpointID": "",
                    "Gateway": "10.89.1.1",
                    "IPAddress": "10.89.1.2",
                    "MacAddress": "6e:46:ae:ab:8b:02",
                    "GlobalIPv6Address": "",
                }
            },
        },
    }
    raw.update(over)
    return raw


def test_network_from_libpod() -> None:
    net = parse_network(LIBPOD_NETWORK)
    assert net.runtime == "podman"
    assert (net.name, net.id, net.driver, net.bridge) == ("plain", NET_ID, "bridge", "podman2")
    assert net.subnets == ("10.89.1.0/24", "fd00:89:1::/64")  # IPv4 first
    assert net.gateways == ("10.89.1.1", "fd00:89:1::1")
    assert net.enable_ipv6 and not net.internal and not net.isolated


@pytest.mark.parametrize(
    ("value", "isolated"), [("true", True), ("strict", True), ("false", False)]
)
def test_network_isolate_option(value: str, isolated: bool) -> None:
    net = parse_network({**LIBPOD_NETWORK, "options": {"isolate": value}})
    assert net.isolated is isolated
    assert net.options == {"isolate": value}


def test_macvlan_has_no_bridge() -> None:
    net = parse_network({**LIBPOD_NETWORK, "driver": "macvlan", "network_interface": "eth0"})
    assert net.bridge == ""


def test_network_with_a_bad_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Podman API: subnets is str, expected a list"):
        parse_network({**LIBPOD_NETWORK, "subnets": "10.0.0.0/8"})


def test_isolation_from_the_network_file(tmp_path: Path) -> None:
    (tmp_path / "iso.json").write_text(json.dumps({"name": "iso", "options": {"isolate": "true"}}))
    (tmp_path / "plain.json").write_text(json.dumps({"name": "plain"}))
    (tmp_path / "broken.json").write_text("{")
    assert isolated_in_file([str(tmp_path)], "iso") is True
    assert isolated_in_file([str(tmp_path)], "plain") is False
    assert isolated_in_file([str(tmp_path)], "broken") is None
    assert isolated_in_file([str(tmp_path)], "missing") is None
    assert isolated_in_file([str(tmp_path)], "../iso") is None


def test_container_endpoint_gets_the_network_id_not_the_name() -> None:
    nets = {"plain": parse_network(LIBPOD_NETWORK)}
    w = parse_container(compat_inspect(), nets)
    assert (w.runtime, w.id, w.name, w.image) == ("podman", CID, "web", "localhost/busybox:latest")
    assert (w.namespace, w.pod) == ("", "")
    (ep,) = w.endpoints
    assert (ep.network, ep.network_id, ep.ip, ep.mac, ep.gateway) == (
        "plain",
        NET_ID,
        "10.89.1.2",
        "6e:46:ae:ab:8b:02",
        "10.89.1.1",
    )
    assert w.ports == (PortBinding("tcp", 80, "", 8080),)
    assert w.no_path_reason == ""
    # An unknown network keeps what Podman said.
    assert parse_container(compat_inspect(), {}).endpoints[0].network_id == "plain"


def test_compose_labels_of_podman_compose_and_nothing_else() -> None:
    w = parse_container(compat_inspect(), {})
    assert (w.compose_project, w.compose_service) == ("shop", "web")
    assert "hunter2" not in repr(w)


@pytest.mark.parametrize(
    ("mode", "rootless", "reason"),
    [
        ("bridge", False, ""),
        ("bridge", True, ROOTLESS_BRIDGE),
        ("slirp4netns", True, "user-mode networking (slirp4netns): no host veth"),
        ("pasta", True, "user-mode networking (pasta): no host veth"),
        ("host", False, "host network: no veth of its own"),
        ("none", False, "no network"),
        ("container:" + CID, False, "shares the network namespace of container 64e30e1ed8ac"),
    ],
)
def test_containers_without_a_host_veth_say_why(mode: str, rootless: bool, reason: str) -> None:
    assert no_path_reason(mode, rootless) == reason
    raw = compat_inspect(HostConfig={"NetworkMode": mode})
    assert parse_container(raw, {}, rootless=rootless).no_path_reason == reason


def test_netns_paths_prefer_proc() -> None:
    assert netns_paths(compat_inspect()) == (
        "/proc/18028/ns/net",
        "/run/netns/netns-f4a5feec-2080-bdb5-8920-978cac7dc5af",
    )


def _event(kind: str, action: str, actor_id: str = CID, **attrs: str) -> dict[str, Any]:
    return {"Type": kind, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs}}


@pytest.mark.parametrize(
    ("event", "parsed"),
    [
        (_event("container", "start", name="web"), (CID, INSPECT)),
        (_event("container", "rename"), (CID, INSPECT)),
        (_event("container", "die", exitCode="137"), (CID, REMOVE)),
        (_event("container", "remove"), (CID, REMOVE)),
        (_event("container", "create"), None),
        (_event("container", "init"), None),
        (_event("container", "cleanup"), None),
        # Podman puts the container in Actor.ID of network events
        (_event("network", "connect", name="web"), (CID, ENDPOINTS)),
        (_event("network", "disconnect"), (CID, ENDPOINTS)),
        (_event("network", "create", ""), ("", NETWORKS)),
        (_event("image", "pull", ""), None),
        (_event("container", "start", ""), None),
    ],
)
def test_events(event: dict[str, Any], parsed: tuple[str, str] | None) -> None:
    assert parse_event(event) == parsed


def test_missing_default_socket_is_absent(tmp_path: Path) -> None:
    src = PodmanSource(f"unix://{tmp_path}/podman.sock")
    with pytest.raises(SourceAbsent, match="no Podman socket at /"):
        src.collect()
    assert src.api_calls == 0


# --------------------------------------------------------------------------
# The source's polling, against a fake Podman client
# --------------------------------------------------------------------------


class FakeStream:
    def __init__(self) -> None:
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.read = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (ev := self.q.get()) is not None:
            yield ev
            self.read.set()

    def close(self) -> None:
        self.q.put(None)


class FakePodman:
    """Podman's answers, as the docker SDK's low-level client hands them on."""

    base_url = "http+docker://localhost"

    def __init__(self) -> None:
        self.up = True
        self.networks: Any = [LIBPOD_NETWORK]
        self.ctrs = {CID: compat_inspect()}
        self.stream: FakeStream | None = None
        self.calls: list[str] = []

    # the docker SDK's client and APIClient, in one
    @property
    def api(self) -> FakePodman:
        return self

    def client(self) -> FakePodman:
        self._up()
        return self

    def close(self) -> None:
        pass

    def _up(self) -> None:
        if not self.up:
            raise requests.exceptions.ConnectionError(
                OSError(errno.ECONNREFUSED, "Connection refused")
            )

    def version(self) -> dict[str, str]:
        self._up()
        self.calls.append("version")
        return {"Version": "4.3.1", "ApiVersion": "1.41"}

    def get(self, url: str, timeout: float) -> str:
        self._up()
        path = url.removeprefix(self.base_url)
        self.calls.append(path)
        return path

    def _result(self, path: str, json: bool) -> Any:
        if path == "/v4.0.0/libpod/info":
            return {"host": {"security": {"rootless": False}}}
        assert path == "/v4.0.0/libpod/networks/json"
        return self.networks

    def events(self, **kwargs: Any) -> FakeStream:
        self._up()
        self.calls.append("events")
        self.stream = FakeStream()
        return self.stream

    def containers(self, all: bool = False) -> list[dict[str, str]]:
        self._up()
        self.calls.append("containers")
        return [{"Id": cid} for cid in self.ctrs]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self._up()
        self.calls.append(f"inspect {cid[:12]}")
        return self.ctrs[cid]

    def emit(self, type_: str, action: str, actor: str) -> None:
        assert self.stream is not None
        self.stream.read.clear()
        self.stream.q.put({"Type": type_, "Action": action, "Actor": {"ID": actor}})
        assert self.stream.read.wait(5)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[tuple[FakePodman, PodmanSource]]:
    fake = FakePodman()
    sock = tmp_path / "podman.sock"
    sock.touch()
    src = PodmanSource(f"unix://{sock}", netnsid_reader=lambda path: 7, client_factory=fake.client)
    try:
        yield fake, src
    finally:
        src.close()


def test_polls_follow_events_and_a_quiet_poll_asks_nothing(
    podman: tuple[FakePodman, PodmanSource],
) -> None:
    fake, src = podman
    data = src.collect()
    assert data.runtime == "podman" and data.version == "4.3.1"
    (w,) = data.workloads
    assert (w.name, w.netns_id, w.endpoints[0].network_id) == ("web", 7, NET_ID)
    assert [n.bridge for n in data.networks] == ["podman2"]
    calls = len(fake.calls)
    assert src.collect() is data
    assert len(fake.calls) == calls  # nothing asked
    fake.emit("container", "die", CID)
    assert src.collect().workloads == ()
    # the networks once (Podman makes no event for them), no inspect
    assert fake.calls[calls:] == ["/v4.0.0/libpod/networks/json"]


def test_a_bad_answer_is_a_clear_error_and_it_reconnects(
    podman: tuple[FakePodman, PodmanSource],
) -> None:
    fake, src = podman
    src.collect()
    fake.networks = "not a list"
    fake.emit("container", "start", CID)
    with pytest.raises(
        CollectorError, match=r"Podman at unix://.*: Podman API: network list is str"
    ):
        src.collect()
    fake.networks = [LIBPOD_NETWORK]
    assert [w.name for w in src.collect().workloads] == ["web"]
    assert fake.calls.count("events") == 2  # connected again


def test_the_service_gone_after_answering_is_a_failure_not_absence(
    podman: tuple[FakePodman, PodmanSource], tmp_path: Path
) -> None:
    fake, src = podman
    src.collect()
    fake.up = False
    (tmp_path / "podman.sock").unlink()
    assert fake.stream is not None
    fake.stream.close()  # the event stream dies with the service
    deadline = time.monotonic() + 5
    while src.following_events and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the follower thread to notice, with a deadline
    assert not src.following_events
    with pytest.raises(CollectorError) as err:
        src.collect()
    assert not isinstance(err.value, SourceAbsent)
    assert "cannot reach Podman at unix://" in str(err.value)
    assert "Connection refused (is the Podman service running?)" in str(err.value)
    fake.up = True
    assert [w.name for w in src.collect().workloads] == ["web"]
