"""A node running dockerd and containerd's CRI at once (issue 11, "Must show" 5).

Common on CI runners: Docker's containers and Kubernetes' pods side by side.
A lab containerd with its CRI plugin shares a lab dockerd's network namespace;
the exporter there reads both. Every container and every pod is reported
once, with its own runtime, and every host veth belongs to exactly one of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import crilab
import pytest
from crilab import NETWORK, CriLab, NodeExporter, Samples, series, success
from dockerlab import DockerLab

pytestmark = [pytest.mark.lab, pytest.mark.docker, pytest.mark.cri]


@pytest.fixture(scope="module")
def node(dockerd: DockerLab) -> Iterator[tuple[DockerLab, CriLab]]:
    crilab.need_containerd()
    cl = CriLab(netns=dockerd.netns)
    try:
        cl.setup()
        cl.start()
        cl.import_image()
        yield dockerd, cl
    finally:
        cl.close()


def test_docker_containers_and_pods_each_once(node: tuple[DockerLab, CriLab]) -> None:
    dl, cl = node
    dl.run_sleeper("dk-one")
    dl.run_sleeper("dk-two")
    pods = [cl.run_pod("one", "team-a"), cl.run_pod("two", "team-b")]
    want = {"dk-one": "docker", "dk-two": "docker"} | {p.full_name: "containerd" for p in pods}
    ex = NodeExporter(cl, docker_host=dl.host)
    try:

        def all_up(got: Samples) -> bool:
            names = {r["container"] for r in series(got, "netpath_container_interface_info")}
            return names == set(want)

        got = ex.within_two_polls(all_up)
    finally:
        ex.stop()
    assert success(got, "docker") == 1 and success(got, "cri") == 1
    info = series(got, "netpath_container_info")
    assert {r["container"]: r["runtime"] for r in info} == want
    assert len(info) == len(want)
    rows = series(got, "netpath_container_interface_info")
    assert len(rows) == len(want)
    veths = Counter(r["interface"] for r in rows)
    assert all(n == 1 for n in veths.values()), veths
    by_name = {r["container"]: r for r in rows}
    links = {link["ifindex"]: link["ifname"] for link in cl.host_links()}
    for pod in pods:
        assert by_name[pod.full_name]["interface"] == links[pod.eth0_iflink()]
        assert by_name[pod.full_name]["network"] == NETWORK
    assert by_name["dk-one"]["network"] == by_name["dk-two"]["network"] == "bridge"
