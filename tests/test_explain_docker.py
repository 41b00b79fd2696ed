"""``netpath-exporter explain`` against a real dockerd (issue 6, "Must show" 1).

The command runs in dockerd's namespace (``nsenter --net``, ``DOCKER_HOST`` at
the lab), with no exporter running. For a container on a user network with a
published port, ``explain --json`` names exactly the veth and bridge the
kernel reports (eth0's iflink), the network's subnet and gateway, the DNAT
rule of its port and the isolation drop rule of its network; N pings from a
container on the default network, dropped by isolation, move the drop count
it reports by exactly N. Unknown, stopped and host-network containers get a
clear message and exit 1. Once with iptables-nft, once with iptables-legacy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from dockerlab import REPO, DockerLab

pytestmark = [pytest.mark.lab, pytest.mark.docker]

PINGS = 3


def explain(dl: DockerLab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={dl.netns.path}", sys.executable, "-m", "exporter", "explain",
         *args, "--docker.host", dl.host],
        cwd=str(REPO), env=dl.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def explain_json(dl: DockerLab, name: str) -> dict[str, Any]:
    r = explain(dl, name, "--json", "--interval", "0")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def isolation_drops(doc: dict[str, Any]) -> tuple[int, list[str]]:
    (leg,) = doc["networks"]
    (drop,) = [d for d in leg["drops"] if d["reason"] == "isolation"]
    return drop["figures"]["packets"], [r["rule"] for r in drop["rules"]]


def test_explain_names_the_kernels_hops_and_counts_isolation_drops(
    dockerd_any: DockerLab,
) -> None:
    dl = dockerd_any
    with dl.quiet_ipv6():
        dl.docker("network", "create", "appnet")
        dl.run_sleeper("web", "--network", "appnet", "-p", "8080:80")
        dl.run_sleeper("intruder")
    # What the kernel and Docker say.
    iflink = int(dl.docker("exec", "web", "cat", "/sys/class/net/eth0/iflink"))
    ifindex = int(dl.docker("exec", "web", "cat", "/sys/class/net/eth0/ifindex"))
    (veth,) = [link for link in dl.host_links() if link["ifindex"] == iflink]
    bridge = veth["master"]
    (net,) = dl.inspect("appnet")
    (ipam,) = net["IPAM"]["Config"]
    web_ip = dl.inspect("web")[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    assert bridge == f"br-{net['Id'][:12]}"

    doc = explain_json(dl, "web")
    assert doc["container"]["name"] == "web"
    assert doc["firewall"]["layout"] == "classic"
    (leg,) = doc["networks"]
    assert (leg["veth"]["name"], leg["veth"]["ifindex"]) == (veth["ifname"], iflink)
    assert (leg["container_interface"]["name"], leg["container_interface"]["ifindex"]) == (
        "eth0",
        ifindex,
    )
    assert leg["container_interface"]["ip"].split("/")[0] == web_ip
    assert leg["bridge"]["name"] == bridge
    assert leg["network"]["name"] == "appnet"
    assert leg["network"]["subnets"] == [ipam["Subnet"]]
    assert leg["network"]["gateways"] == [ipam["Gateway"]]
    assert leg["network"]["internal"] is False
    assert leg["routes"][0]["destination"] == ipam["Subnet"]
    (port,) = [p for p in leg["published_ports"] if p["host_ip"] == "0.0.0.0"]
    assert (port["protocol"], port["host_port"], port["container_port"]) == ("tcp", 8080, 80)
    assert [(r["table"], r["chain"], r["rule"]) for r in port["rules"]] == [
        ("nat", "DOCKER",
         f"! -i {bridge} -p tcp -m tcp --dport 8080 -j DNAT --to-destination {web_ip}:80"),
    ]  # fmt: skip
    (masq,) = leg["masquerade"]
    assert [r["rule"] for r in masq["rules"]] == [
        f"-s {ipam['Subnet']} ! -o {bridge} -j MASQUERADE"
    ]
    before, rules = isolation_drops(doc)
    assert rules == [f"-o {bridge} -j DROP"]
    # Every rule shown is about this network or about no other one.
    shown = [r["rule"] for c in leg["chains"] for r in c["rules"]]
    assert f"-o {bridge} -j DROP" in shown
    assert not [r for r in shown if "docker0" in r]

    ping = subprocess.run(
        ["docker", "exec", "intruder", "ping", "-c", str(PINGS), "-W", "1", web_ip],
        env=dl.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ping.returncode != 0, "isolation should drop these pings"
    after, _ = isolation_drops(explain_json(dl, "web"))
    assert after - before == PINGS

    # People's output: the hops in order, with rates over the window.
    r = explain(dl, "web", "--interval", "200ms")
    assert r.returncode == 0, r.stderr
    assert "rates over 0.2 s" in r.stdout
    lines = r.stdout.splitlines()
    assert any(veth["ifname"] in line and "host veth" in line for line in lines)
    assert any(f"{web_ip}/" in line for line in lines)


def test_explain_says_why_not(dockerd_any: DockerLab) -> None:
    dl = dockerd_any
    dl.run_sleeper("gone")
    dl.docker("stop", "gone")
    dl.run_sleeper("hostnet", "--network", "host")
    cases = {
        "nosuch": "no container named 'nosuch' or with an id starting with it",
        "gone": "container gone is not running (Exited",
        "hostnet": "container hostnet has no network path of its own: it uses the host's",
    }
    for name, message in cases.items():
        r = explain(dl, name)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert r.stdout == ""
        assert message in r.stderr, r.stderr
    r = explain(dl, "x", "--interval", "soon")
    assert r.returncode == 2
