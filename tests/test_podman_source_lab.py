"""The Podman source against a real rootful Podman (netavark and CNI backends), read from
the lab namespace.

The source runs in a Python inside the lab's network namespace (as the exporter
would on the host), talks to the lab's ``podman system service`` socket and is
one object for the whole module, across a service stop and start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from dockerlab import NetnsPython, RemoteError, poll_until
from podmanlab import IMAGE, PodmanLab

pytestmark = [pytest.mark.lab, pytest.mark.podman]

PROBE = """
import dataclasses
from exporter.collectors.links import read_topology
from exporter.sources.podman import PodmanSource
source = PodmanSource(HOST, explicit=True)

def poll():
    data = source.collect()
    return {
        "version": data.version,
        "workloads": [dataclasses.asdict(w) for w in data.workloads],
        "networks": [dataclasses.asdict(n) for n in data.networks],
        "api_calls": source.api_calls,
        "links": [dataclasses.asdict(link) for link in read_topology()],
    }
"""


@pytest.fixture(scope="module", params=["netavark", "cni"])
def lab(request: pytest.FixtureRequest) -> Iterator[PodmanLab]:
    """Each test runs once on each network backend (netavark first, then CNI)."""
    pl: PodmanLab = request.getfixturevalue(f"podman_{request.param}")
    pl.podman("network", "create", "--opt", "isolate=true", "iso")
    pl.podman("network", "create", "plain")
    pl.podman("run", "-d", "--name", "web", "--network", "plain", "-p", "8080:80",
              "--label", "io.podman.compose.project=shop",
              "--label", "com.docker.compose.service=web", "--label", "secret=hunter2",
              IMAGE, "httpd", "-f", "-p", "80")  # fmt: skip
    pl.run_sleeper("both", "--network", "plain,iso")
    pl.run_sleeper("dflt")
    pl.run_sleeper("hostnet", "--network", "host")
    pl.run_sleeper("slirp", "--network", "slirp4netns")
    yield pl
    pl.remove_all()


@pytest.fixture(scope="module")
def probe(lab: PodmanLab) -> Iterator[NetnsPython]:
    with NetnsPython(lab, f"HOST = {lab.host!r}\n" + PROBE) as py:  # type: ignore[arg-type]
        yield py


def poll(py: NetnsPython) -> dict[str, Any]:
    return py.eval("poll()")  # type: ignore[no-any-return]


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_networks_match_podman_network_inspect(lab: PodmanLab, probe: NetnsPython) -> None:
    nets = by_name(poll(probe)["networks"])
    assert sorted(nets) == ["iso", "plain", "podman"]
    for name, net in nets.items():
        want = lab.network_inspect(name)
        assert net["id"] == want["id"]
        assert net["bridge"] == want["network_interface"]
        assert net["driver"] == "bridge"
        assert list(net["subnets"]) == [s["subnet"] for s in want["subnets"]]
        assert list(net["gateways"]) == [s["gateway"] for s in want["subnets"]]
        assert net["runtime"] == "podman"
        assert net["isolated"] is (name == "iso")


def test_every_container_veth_is_its_eth0_peer(lab: PodmanLab, probe: NetnsPython) -> None:
    """The veth whose peer namespace is the workload's is the one eth0's iflink names."""
    got = poll(probe)
    work = by_name(got["workloads"])
    assert sorted(work) == ["both", "dflt", "hostnet", "slirp", "web"]
    links = got["links"]
    nets = by_name(got["networks"])
    for name in ("web", "both", "dflt"):
        w = work[name]
        assert w["runtime"] == "podman" and w["no_path_reason"] == ""
        assert w["netns_id"] is not None, name
        veths = [lk for lk in links if lk["kind"] == "veth" and lk["peer_netnsid"] == w["netns_id"]]
        ifindexes = sorted(lk["index"] for lk in veths)
        want = sorted(lab.iflink(name, f"eth{i}") for i in range(len(w["endpoints"])))
        assert ifindexes == want, name
        # each veth's master is the bridge of one of the container's networks
        bridges = {lk["master"] for lk in veths}
        names = {lk["index"]: lk["name"] for lk in links}
        assert {names[b] for b in bridges} == {
            nets[ep["network"]]["bridge"] for ep in w["endpoints"]
        }
    inspect = {c["Name"]: c for c in lab.inspect("web", "both", "dflt")}
    for name, w in work.items():
        if name in ("hostnet", "slirp"):
            continue
        want_eps = inspect[name]["NetworkSettings"]["Networks"]
        assert [ep["network"] for ep in w["endpoints"]] == sorted(want_eps)
        for ep in w["endpoints"]:
            # Podman's NetworkID is the name; the source gives the real id.
            assert ep["network_id"] == nets[ep["network"]]["id"]
            assert ep["ip"] == want_eps[ep["network"]]["IPAddress"]
            assert ep["mac"] == want_eps[ep["network"]]["MacAddress"]
    assert [ep["network"] for ep in work["dflt"]["endpoints"]] == ["podman"]
    assert [ep["network"] for ep in work["both"]["endpoints"]] == ["iso", "plain"]


def test_labels_ports_and_host_network(probe: NetnsPython) -> None:
    work = by_name(poll(probe)["workloads"])
    web = work["web"]
    assert (web["compose_project"], web["compose_service"]) == ("shop", "web")
    assert "hunter2" not in json.dumps(work)
    assert web["ports"] == [
        {"protocol": "tcp", "container_port": 80, "host_ip": "", "host_port": 8080}
    ]
    assert web["image"] == f"{IMAGE}:latest"
    host = work["hostnet"]
    assert host["no_path_reason"] == "host network: no veth of its own"
    assert host["endpoints"] == [] and host["netns_id"] is None
    slirp = work["slirp"]
    assert slirp["network_mode"] == "slirp4netns"
    assert slirp["no_path_reason"] == "user-mode networking (slirp4netns): no host veth"
    assert slirp["endpoints"] == [] and slirp["netns_id"] is None


def test_a_quiet_poll_makes_no_api_call(probe: NetnsPython) -> None:
    first = poll(probe)["api_calls"]
    assert poll(probe)["api_calls"] == first


def test_stop_and_start_follow_events(lab: PodmanLab, probe: NetnsPython) -> None:
    lab.podman("stop", "-t", "0", "dflt")
    poll_until("dflt to leave", lambda: "dflt" not in by_name(poll(probe)["workloads"]))
    lab.podman("start", "dflt")
    work = poll_until(
        "dflt to come back with its namespace",
        lambda: by_name(poll(probe)["workloads"]).get("dflt", {}).get("netns_id") is not None,
    )
    assert work is True


def test_connect_and_disconnect_follow_events(lab: PodmanLab, probe: NetnsPython) -> None:
    def networks_of(name: str) -> list[str]:
        return [ep["network"] for ep in by_name(poll(probe)["workloads"])[name]["endpoints"]]

    lab.podman("network", "connect", "iso", "dflt")
    poll_until("dflt on iso", lambda: networks_of("dflt") == ["iso", "podman"])
    lab.podman("network", "disconnect", "iso", "dflt")
    poll_until("dflt off iso", lambda: networks_of("dflt") == ["podman"])


def test_service_stopped_is_an_error_and_comes_back(lab: PodmanLab, probe: NetnsPython) -> None:
    before = sorted(by_name(poll(probe)["workloads"]))
    lab.stop_service()
    try:
        with pytest.raises(RemoteError) as err:
            poll(probe)
        assert err.value.type == "CollectorError"
        assert f"cannot reach Podman at {lab.host}" in err.value.message
        # Still failing, and still not "absent": it answered once.
        with pytest.raises(RemoteError) as again:
            poll(probe)
        assert again.value.type == "CollectorError"
    finally:
        lab.start_service()
    assert sorted(by_name(poll(probe)["workloads"])) == before


def test_absent_socket_is_absent_unless_configured(probe: NetnsPython) -> None:
    probe.exec(
        "from exporter.sources.base import SourceAbsent\n"
        "absent = PodmanSource('unix:///nonexistent/podman.sock')\n"
        "configured = PodmanSource('unix:///nonexistent/podman.sock', explicit=True)\n"
    )
    with pytest.raises(RemoteError) as err:
        probe.eval("absent.collect()")
    assert err.value.type == "CollectorAbsent"  # sources.base.SourceAbsent
    with pytest.raises(RemoteError) as err:
        probe.eval("configured.collect()")
    assert err.value.type == "CollectorError"
    assert "No such file or directory" in err.value.message
    assert "podman.host" in err.value.message
