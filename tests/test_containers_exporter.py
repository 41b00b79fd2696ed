"""The real exporter daemon next to a real dockerd, scraped over HTTP (issue 3, "Must show" 3).

The exporter runs in dockerd's namespace (``nsenter --net``, ``DOCKER_HOST``
pointing at the lab) with a short poll interval and is scraped with curl from
inside that namespace. A stopped container's series are gone within two polls;
while dockerd is down the containers collector reports failure and the links
and firewall metrics are still served; when dockerd is back, so are the
containers, without restarting the exporter. Once with iptables-nft, once with
iptables-legacy.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import dockerlab
import lab
import pytest
from dockerlab import REPO, DockerLab

pytestmark = [pytest.mark.lab, pytest.mark.docker]

Samples = dict[str, list[tuple[dict[str, str], float]]]


class Exporter:
    """``python -m exporter`` inside the lab namespace."""

    def __init__(self, dl: DockerLab) -> None:
        self.dl = dl
        self.port = lab.free_port()  # ports are per namespace; any plausible number will do
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={dl.netns.path}", sys.executable, "-m", "exporter",
             f"--web.listen-address=127.0.0.1:{self.port}", "--poll.interval=300ms",
             "--docker.host", dl.host],
            cwd=str(REPO), env=dl.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def scrape(self) -> Samples:
        def answer() -> str | None:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"exporter exited ({self.proc.returncode}): {err}")
            r = subprocess.run(
                ["nsenter", f"--net={self.dl.netns.path}", "curl", "-sf", "--max-time", "5",
                 f"http://127.0.0.1:{self.port}/metrics"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return r.stdout if r.returncode == 0 else None

        text = dockerlab.poll_until("the exporter to answer", answer, timeout=30)
        return lab.parse_exposition(text)

    def scrape_after(self, t: float) -> tuple[float, Samples]:
        """The first exposition of a poll that finished after Unix time ``t``."""

        def later() -> tuple[float, Samples] | None:
            got = self.scrape()
            ts = got.get("netpath_poll_timestamp_seconds", [({}, 0.0)])[0][1]
            return (ts, got) if ts > t else None

        return dockerlab.poll_until("a poll to finish", later, timeout=30, interval=0.05)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def exporter(dockerd_any: DockerLab) -> Iterator[Exporter]:
    ex = Exporter(dockerd_any)
    try:
        yield ex
    finally:
        ex.stop()


def success(got: Samples, collector: str) -> float:
    (value,) = [v for lab, v in got["netpath_collector_success"] if lab["collector"] == collector]
    return value


def series(got: Samples, name: str, **match: str) -> list[dict[str, str]]:
    return [lab for lab, _ in got.get(name, []) if all(lab[k] == v for k, v in match.items())]


def chains(got: Samples) -> set[tuple[str, ...]]:
    """The firewall chains served (with their number of rules, which may be 0)."""
    return {
        (lab["family"], lab["backend"], lab["table"], lab["chain"])
        for lab, _ in got.get("netpath_firewall_chain_rules", [])
    }


def veth_of(dl: DockerLab, name: str) -> str:
    iflink = int(dl.docker("exec", name, "cat", "/sys/class/net/eth0/iflink"))
    (veth,) = [link["ifname"] for link in dl.host_links() if link["ifindex"] == iflink]
    return str(veth)


def within_two_polls(ex: Exporter, check: Any) -> Samples:
    """The exposition of the second poll finishing after now; ``check`` must hold by then."""
    ts, got = ex.scrape_after(time.time())
    if check(got):
        return got
    _, got = ex.scrape_after(ts)
    assert check(got), "not within two polls"
    return got


def test_exporter_follows_containers_and_survives_dockerd_outage(
    dockerd_any: DockerLab, exporter: Exporter
) -> None:
    dl = dockerd_any
    dl.docker("network", "create", "webnet")
    dl.run_sleeper("x-default", "--restart", "always")
    dl.run_sleeper("x-web", "--restart", "always", "--network", "webnet", "-p", "8081:80")

    def both_up(got: Samples) -> bool:
        names = {lab["container"] for lab in series(got, "netpath_container_interface_info")}
        return names == {"x-default", "x-web"}

    got = within_two_polls(exporter, both_up)
    assert success(got, "docker") == 1
    assert success(got, "firewall") == 1
    chains_before = chains(got)
    assert any(c[2:] == ("filter", "DOCKER-USER") for c in chains_before), chains_before
    for name, network, bridge in (("x-default", "bridge", "docker0"), ("x-web", "webnet", "")):
        (row,) = series(got, "netpath_container_interface_info", container=name)
        assert row["interface"] == veth_of(dl, name)
        assert row["network"] == network
        assert row["bridge"] == (bridge or f"br-{dl.inspect('webnet')[0]['Id'][:12]}")
        assert series(got, "netpath_container_network_receive_bytes_total", container=name)

    dl.docker("stop", "x-default")

    def default_gone(got: Samples) -> bool:
        return not any(
            series(got, fam, container="x-default")
            for fam in ("netpath_container_info", "netpath_container_interface_info",
                        "netpath_container_network_transmit_packets_total")
        )  # fmt: skip

    got = within_two_polls(exporter, default_gone)
    assert series(got, "netpath_container_info", container="x-web")

    dl.stop()
    try:
        got = within_two_polls(exporter, lambda g: success(g, "docker") == 0)
        assert success(got, "links") == 1 and success(got, "firewall") == 1
        assert series(got, "netpath_interface_info", interface="docker0")
        assert chains(got) == chains_before
        assert not series(got, "netpath_container_info")
    finally:
        dl.start()

    def back(got: Samples) -> bool:
        return success(got, "docker") == 1 and bool(
            series(got, "netpath_container_interface_info", container="x-web")
        )

    def scrape_back() -> Samples | None:
        got = exporter.scrape()
        return got if back(got) else None

    got = dockerlab.poll_until("the containers to come back", scrape_back, timeout=60,
                               interval=0.3)  # fmt: skip
    (row,) = series(got, "netpath_container_interface_info", container="x-web")
    assert row["interface"] == veth_of(dl, "x-web")
