"""Pure tests of the CNI manager on Podman's CNI backend: containers count like pods
(``namespace``/``pod`` empty), and isolated networks' drops are counted."""

from __future__ import annotations

from pathlib import Path

from exporter.firewall.iptables_save import parse_iptables_save
from exporter.meaning.base import build_topology
from exporter.meaning.cni import CniManager
from exporter.metrics.meaning import render_meanings
from exporter.model import BACKEND_IPTABLES_NFT, FirewallData, SourceData
from exporter.model.workloads import Endpoint, Network, Workload

FIXTURE = Path(__file__).parent / "fixtures" / "podman" / "cni-podman.iptables-save"
WEB_ID = "780434a9d670096dc77d022ce6b7449fe8076d0ed5e9e8228f3ec6ce1fc42923"


def net(name: str, bridge: str, subnet: str, isolated: bool = False) -> Network:
    return Network(name=name, id=name * 4, driver="bridge", bridge=bridge, subnets=(subnet,),
                   gateways=(), internal=False, runtime="podman", isolated=isolated)  # fmt: skip


def families(runtime: str = "podman") -> dict[str, dict[tuple[str, ...], float]]:
    web = Workload(
        id=WEB_ID, name="web", image="localhost/busybox:latest", compose_project="",
        compose_service="", network_mode="bridge", netns_id=3,
        endpoints=(Endpoint("plain", "plain" * 4, "10.89.0.2", "", "", ""),),
        ports=(), runtime=runtime,
    )  # fmt: skip
    src = SourceData(
        version="4.3.1",
        workloads=(web,),
        networks=(
            net("iso", "cni-podman2", "10.89.1.0/24", isolated=True),
            net("plain", "cni-podman1", "10.89.0.0/24"),
        ),
        runtime=runtime,
    )
    tables = parse_iptables_save(FIXTURE.read_text(), "ipv4", BACKEND_IPTABLES_NFT)
    fw = FirewallData((("ipv4", BACKEND_IPTABLES_NFT),), tuple(tables))
    meaning = CniManager().interpret(fw, build_topology((src,), {}))
    assert meaning is not None
    return {f.name: dict(f.samples) for f in render_meanings(fw, (meaning,))}


def test_podman_containers_count_like_pods() -> None:
    got = families()
    assert got["netpath_published_port_connections_total"] == {
        ("cni", "web", "", "", "plain", "tcp", "0.0.0.0", "8080", "80"): 5
    }
    assert got["netpath_masquerade_connections_total"] == {
        ("cni", "plain", "cni-podman1", "10.89.0.0/24", "web", "", ""): 3
    }


def test_isolated_networks_drops() -> None:
    got = families()
    assert got["netpath_dropped_packets_total"] == {("cni", "iso", "cni-podman2", "isolation"): 4}
    assert got["netpath_dropped_bytes_total"] == {("cni", "iso", "cni-podman2", "isolation"): 336}


def test_a_docker_container_at_that_address_is_not_the_owner() -> None:
    got = families(runtime="docker")
    assert got["netpath_published_port_connections_total"] == {}
    assert got["netpath_masquerade_connections_total"] == {}
