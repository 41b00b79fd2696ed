"""Containers against a real dockerd (issue 3, "Must show" 1-4), on iptables-nft and -legacy.

The topology: the default bridge and two user networks; ``c-default`` on the
default network, ``c-web`` publishing a port on ``appnet``, ``c-both`` on
``appnet`` and ``othernet`` (whose bridge is named by option), ``c-none`` with
``--network none``. The links and containers collectors run in one long-lived
Python inside dockerd's namespace (tests/dockerlab.NetnsPython), so the same
collector object lives through container and daemon restarts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import dockerlab
import pytest
from dockerlab import IMAGE, DockerLab, NetnsPython

pytestmark = [pytest.mark.lab, pytest.mark.docker]

# Polls in these tests follow each other at this interval, like a (fast) poller.
POLL_INTERVAL = 0.5
PINGS = 5
ARP_AND_NOISE = 4  # ARP request/reply, plus a reachability re-check

PROBE = """
from exporter.config import DockerConfig
from exporter.collectors.links import LinksCollector
from exporter.metrics.workloads import render_workloads
from exporter.sources.docker import ContainersCollector
from exporter.workloads import build_interfaces

links = LinksCollector()
containers = ContainersCollector(DockerConfig(timeout=5))

def poll():
    data = links.collect()
    out = {"links": len(data.links), "error": None}
    try:
        docker = containers.collect()
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    finally:
        out["resyncs"], out["api_calls"] = containers.resyncs, containers.api_calls
    out["metrics"] = {
        f.name: [dict(zip(f.labels, lv), value=v) for lv, v in f.samples]
        for f in render_workloads([docker], build_interfaces([docker], data))
    }
    return out
"""


@pytest.fixture(scope="module")
def topo(dockerd_any: DockerLab) -> Iterator[DockerLab]:
    dl = dockerd_any
    # The host side's IPv6 autoconfiguration (RS, MLD, DAD to every bridge port)
    # would add packets to the containers' receive counters during the ping test.
    with dl.quiet_ipv6():
        _make_topology(dl)
        yield dl


def _make_topology(dl: DockerLab) -> None:
    dl.docker("network", "create", "appnet")
    dl.docker("network", "create", "-o", "com.docker.network.bridge.name=np-other0", "othernet")
    always = ("--restart", "always")
    dl.run_sleeper("c-default", *always)
    dl.docker("run", "-d", "--init", *always, "--name", "c-web", "--network", "appnet",
              "-p", "8080:80", IMAGE, "httpd", "-f", "-p", "80")  # fmt: skip
    dl.run_sleeper(
        "c-both", *always, "--network", "appnet",
        "-l", "com.docker.compose.project=shop", "-l", "com.docker.compose.service=both",
        "-l", "secret.label=hunter2", "-e", "SECRET_ENV=hunter3",
    )  # fmt: skip
    dl.docker("network", "connect", "othernet", "c-both")
    dl.run_sleeper("c-none", *always, "--network", "none")


@pytest.fixture(scope="module")
def probe(topo: DockerLab) -> Iterator[NetnsPython]:
    with topo.python(PROBE) as py:
        yield py


def poll(py: NetnsPython) -> dict[str, Any]:
    return py.eval("poll()")  # type: ignore[no-any-return]


def rows(result: dict[str, Any], family: str, **match: str) -> list[dict[str, Any]]:
    assert result["error"] is None, result["error"]
    return [r for r in result["metrics"][family] if all(r[k] == v for k, v in match.items())]


def value(result: dict[str, Any], family: str, **match: str) -> int:
    (row,) = rows(result, family, **match)
    return int(row["value"])


def polls_until(py: NetnsPython, check: Any, max_polls: int) -> tuple[int, dict[str, Any]]:
    """Poll up to ``max_polls`` times, POLL_INTERVAL apart; (polls used, last result).

    Raise if ``check(result)`` never held.
    """
    result: dict[str, Any] = {}
    for n in range(1, max_polls + 1):
        if n > 1:
            time.sleep(POLL_INTERVAL)  # the poller's interval, not a synchronisation
        result = poll(py)
        if check(result):
            return n, result
    raise AssertionError(f"not within {max_polls} polls: {json.dumps(result)[:2000]}")


def container_ids(dl: DockerLab) -> dict[str, str]:
    return {c["Name"].lstrip("/"): c["Id"] for c in dl.inspect("c-default", "c-web", "c-both",
                                                               "c-none")}  # fmt: skip


def expected_interfaces(dl: DockerLab, name: str) -> list[dict[str, Any]]:
    """What the container itself and ``docker network inspect`` say its veths are."""
    cid = dl.inspect(name)[0]["Id"]
    host = {link["ifindex"]: link for link in dl.host_links()}
    nets = json.loads(dl.docker("network", "inspect", "bridge", "appnet", "othernet"))
    out = []
    for eth in sorted(dl.docker("exec", name, "ls", "/sys/class/net").split()):
        if not eth.startswith("eth"):
            continue
        iflink = int(dl.docker("exec", name, "cat", f"/sys/class/net/{eth}/iflink"))
        mac = dl.docker("exec", name, "cat", f"/sys/class/net/{eth}/address").strip()
        (net,) = [n for n in nets if n["Containers"].get(cid, {}).get("MacAddress") == mac]
        bridge = net["Options"].get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        veth = host[iflink]
        assert veth.get("master") == bridge, veth
        out.append(
            {
                "container": name,
                "container_id": cid[:12],
                "network": net["Name"],
                "bridge": bridge,
                "interface": veth["ifname"],
                "ip": net["Containers"][cid]["IPv4Address"].split("/")[0],
                "mac": mac,
                "namespace": "",
                "pod": "",
                "value": 1,
            }
        )
    return out


def key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in sorted(row))


# --------------------------------------------------------------------------


def test_root_namespace_untouched(topo: DockerLab) -> None:
    assert dockerlab.root_iptables_rules() == topo.root_rules_before
    root_addrs = dockerlab.lab.run(["ip", "-j", "addr"])
    assert topo.bip.split("/")[0] not in root_addrs
    assert "np-other0" not in dockerlab.lab.run(["ip", "-j", "link"])


def test_every_container_maps_to_exactly_its_veth(topo: DockerLab, probe: NetnsPython) -> None:
    result = poll(probe)
    expected = []
    for name in ("c-default", "c-web", "c-both"):
        expected += expected_interfaces(topo, name)
    assert len(expected) == 4  # c-both has two
    got = rows(result, "netpath_container_interface_info")
    assert sorted(got, key=key) == sorted(expected, key=key)

    ids = container_ids(topo)
    assert sorted(rows(result, "netpath_container_info"), key=key) == sorted(
        [
            {"container": name, "container_id": ids[name][:12], "image": IMAGE,
             "compose_project": "shop" if name == "c-both" else "",
             "compose_service": "both" if name == "c-both" else "", "runtime": "docker",
             "namespace": "", "pod": "", "value": 1}
            for name in ids
        ],
        key=key,
    )  # fmt: skip
    # c-none: info only; every container with a veth has one counter series per veth.
    series = rows(result, "netpath_container_network_receive_packets_total")
    assert sorted((r["container"], r["network"], r["interface"]) for r in series) == sorted(
        (e["container"], e["network"], e["interface"]) for e in expected
    )
    assert "hunter" not in json.dumps(result)


def test_networks_match_docker_network_inspect(topo: DockerLab, probe: NetnsPython) -> None:
    result = poll(probe)
    nets = json.loads(topo.docker("network", "inspect", "bridge", "appnet", "othernet",
                                  "host", "none"))  # fmt: skip
    expected = []
    for n in nets:
        pool = (n["IPAM"]["Config"] or [{}])[0]
        bridge = ""
        if n["Driver"] == "bridge":
            bridge = n["Options"].get("com.docker.network.bridge.name") or f"br-{n['Id'][:12]}"
        expected.append(
            {"network": n["Name"], "network_id": n["Id"][:12], "bridge": bridge,
             "driver": n["Driver"], "subnet": pool.get("Subnet", ""),
             "gateway": pool.get("Gateway", ""), "internal": str(n["Internal"]).lower(),
             "value": 1}
        )  # fmt: skip
    assert sorted(rows(result, "netpath_network_info"), key=key) == sorted(expected, key=key)
    assert {e["bridge"] for e in expected} >= {"docker0", "np-other0"}


def test_ping_moves_sender_and_receiver_counters(topo: DockerLab, probe: NetnsPython) -> None:
    web_ip = topo.inspect("c-web")[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    before = poll(probe)
    topo.docker("exec", "c-both", "ping", "-c", str(PINGS), "-i", "0.2", "-W", "5", web_ip)
    after = poll(probe)

    def moved(container: str, family: str) -> int:
        fam = f"netpath_container_network_{family}_packets_total"
        labels = {"container": container, "network": "appnet"}
        return value(after, fam, **labels) - value(before, fam, **labels)

    deltas = {
        "sender transmit": moved("c-both", "transmit"),
        "receiver receive": moved("c-web", "receive"),
        "receiver transmit": moved("c-web", "transmit"),
        "sender receive": moved("c-both", "receive"),
    }
    for what, delta in deltas.items():
        assert PINGS <= delta <= PINGS + ARP_AND_NOISE, (what, deltas)
    # Nothing of it went over othernet.
    fam = "netpath_container_network_transmit_packets_total"
    other = {"container": "c-both", "network": "othernet"}
    assert value(after, fam, **other) - value(before, fam, **other) < PINGS


def test_stopped_container_goes_and_started_one_comes_within_two_polls(
    topo: DockerLab, probe: NetnsPython
) -> None:
    assert rows(poll(probe), "netpath_container_info", container="c-default")
    topo.docker("stop", "c-default")

    def gone(r: dict[str, Any]) -> bool:
        return not any(
            rows(r, fam, container="c-default")
            for fam in ("netpath_container_info", "netpath_container_interface_info",
                        "netpath_container_network_receive_bytes_total")
        )  # fmt: skip

    polls_until(probe, gone, max_polls=2)

    topo.docker("start", "c-default")
    _, result = polls_until(
        probe, lambda r: bool(rows(r, "netpath_container_interface_info", container="c-default")),
        max_polls=2,
    )  # fmt: skip
    assert rows(result, "netpath_container_interface_info", container="c-default") == (
        expected_interfaces(topo, "c-default")
    )
    assert rows(result, "netpath_container_network_transmit_packets_total", container="c-default")


def test_steady_state_polls_make_no_docker_api_calls(probe: NetnsPython) -> None:
    first = poll(probe)
    for _ in range(3):
        last = poll(probe)
    assert last["api_calls"] == first["api_calls"]


def test_dockerd_outage_fails_the_collector_and_it_recovers(
    topo: DockerLab, probe: NetnsPython
) -> None:
    before = poll(probe)
    assert before["error"] is None
    topo.stop()
    try:
        _, down = polls_until(probe, lambda r: r["error"] is not None, max_polls=2)
        assert down["error"].startswith(f"CollectorError: cannot reach Docker at {topo.host}: ")
        assert down["links"] > 0  # the links collector keeps working
    finally:
        topo.start()

    names = {"c-default", "c-web", "c-both", "c-none"}

    def back(r: dict[str, Any]) -> bool:
        if r["error"] is not None:
            return False
        info = {x["container"] for x in rows(r, "netpath_container_info")}
        ifaces = rows(r, "netpath_container_interface_info")
        return info == names and len(ifaces) == 4

    def polled_back() -> dict[str, Any] | None:
        r = poll(probe)
        return r if back(r) else None

    result = dockerlab.poll_until("the containers to come back", polled_back, timeout=60,
                                  interval=POLL_INTERVAL)  # fmt: skip
    assert result["resyncs"] > before["resyncs"]  # the same collector, resynced
    expected = []
    for name in ("c-default", "c-web", "c-both"):
        expected += expected_interfaces(topo, name)
    assert sorted(rows(result, "netpath_container_interface_info"), key=key) == sorted(
        expected, key=key
    )
