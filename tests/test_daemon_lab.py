"""The whole daemon on a lab host shaped like the seed's, scraped over HTTP.

A network namespace plays the seed's Docker host: bridges docker0 and
br-40d652e0aac8, a "container" namespace on each, an "outside" namespace on the
uplink, and the seed's real ruleset loaded once with iptables-nft and once with
iptables-legacy (plus an ip6tables ruleset). The exporter runs inside that
namespace; every exported rule, policy and interface counter must equal what
``iptables-save -c`` and ``ip -s -j link`` report at the same moment.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = [sys.executable, "-m", "exporter"]
BR = "br-40d652e0aac8"

IP6_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""


@dataclass
class SeedLab:
    backend: str  # "nft" | "legacy"
    host: lab.Netns
    c1: lab.Netns  # on docker0, 172.17.0.2
    c2: lab.Netns  # on br-40d652e0aac8, 172.18.0.2 (the seed's published container)
    outside: lab.Netns  # 198.51.100.2, behind the host's eth0 198.51.100.1

    def save(self, family: str = "ipv4", counters: bool = True) -> str:
        tool = ("iptables" if family == "ipv4" else "ip6tables") + f"-{self.backend}-save"
        return self.host.exec(tool, *(["-c"] if counters else []))


def _quiet_ipv6(ns: lab.Netns) -> None:
    # No IPv6 autoconfiguration chatter: the test compares exact counters at rest.
    for key in ("all", "default"):
        ns.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")


@pytest.fixture(params=["nft", "legacy"])
def seed_lab(request: pytest.FixtureRequest) -> Iterator[SeedLab]:
    lab.need_root()
    backend = request.param
    for tool in (f"iptables-{backend}-restore", f"ip6tables-{backend}-restore", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    with lab.namespaces("seed", 4) as (host, c1, c2, outside):
        for ns in (host, c1, c2, outside):
            _quiet_ipv6(ns)
        host.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        lab.add_bridge(host, "docker0", "172.17.0.1/16")
        lab.add_bridge(host, BR, "172.18.0.1/16")
        lab.add_container(
            host,
            c1,
            host_if="veth1a2b3c4",
            bridge="docker0",
            addr="172.17.0.2/16",
            gateway="172.17.0.1",
        )
        lab.add_container(
            host, c2, host_if="veth5d6e7f8", bridge=BR, addr="172.18.0.2/16", gateway="172.18.0.1"
        )
        host.ip(
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", outside.path
        )
        host.ip("addr", "add", "198.51.100.1/24", "dev", "eth0")
        host.ip("link", "set", "eth0", "up")
        outside.ip("addr", "add", "198.51.100.2/24", "dev", "eth0")
        outside.ip("link", "set", "eth0", "up")
        host.exec(f"iptables-{backend}-restore", "-c", input=lab.SEED_RULESET.read_text())
        # The seed saved no rule counters; iptables-restore -c zeroes them. Drop the policy
        # counters too so every figure below is made by this test's own traffic.
        host.exec(f"iptables-{backend}", "-Z")
        host.exec(f"iptables-{backend}", "-t", "nat", "-Z")
        # IPv6 is off in the lab (no autoconfiguration noise); the rules still load and read.
        host.exec(f"ip6tables-{backend}-restore", input=IP6_RULES)
        yield SeedLab(backend, host, c1, c2, outside)


class Daemon:
    """The real exporter process inside the lab host, scraped with curl from inside too."""

    def __init__(self, ns: lab.Netns, *args: str) -> None:
        self.ns = ns
        self.port = lab.free_port()
        self.proc = ns.popen(
            *EXPORTER,
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--poll.interval=200ms",
            "--no-collector.docker",
            *args,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def scrape(self, path: str = "/metrics") -> str:
        deadline = time.monotonic() + 20
        while True:
            proc = subprocess.run(
                [
                    "nsenter",
                    f"--net={self.ns.path}",
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    f"http://127.0.0.1:{self.port}{path}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                return proc.stdout
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"exporter not answering (rc={self.proc.poll()}): {err}")
            time.sleep(0.05)  # waiting for the listener to come up, not for a result

    def scrape_after(self, t: float) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The first exposition whose poll finished after wall time ``t``."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.scrape()
            got = lab.parse_exposition(text)
            if got["netpath_poll_timestamp_seconds"][0][1] > t:
                self.last_text = text
                return got
            time.sleep(0.05)
        raise AssertionError("no poll finished after the traffic")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon(seed_lab: SeedLab) -> Iterator[Daemon]:
    d = Daemon(seed_lab.host)
    yield d
    d.stop()


_COUNTED = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_POLICY = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]$")


def save_counters(
    text: str,
) -> tuple[
    dict[tuple[str, str, str], tuple[int, int]], dict[tuple[str, str, str], tuple[int, int]]
]:
    """Independent of the exporter's parser: (table, chain, rule) and (table, chain, policy)."""
    rules: dict[tuple[str, str, str], tuple[int, int]] = {}
    policies: dict[tuple[str, str, str], tuple[int, int]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif m := _COUNTED.match(line):
            key = (table, m[3], m[4])
            p, b = rules.get(key, (0, 0))
            rules[key] = (p + int(m[1]), b + int(m[2]))
        elif (m := _POLICY.match(line)) and m[2] != "-":
            policies[(table, m[1], m[2])] = (int(m[3]), int(m[4]))
    return rules, policies


def exported(
    got: dict[str, list[tuple[dict[str, str], float]]],
    name: str,
    family: str,
    backend: str,
    keys: tuple[str, ...],
) -> dict[tuple[str, ...], float]:
    return {
        tuple(labels[k] for k in keys): value
        for labels, value in got.get(name, [])
        if labels["family"] == family and labels["backend"] == backend
    }


def ping(src: lab.Netns, dst: str, count: int) -> None:
    src.exec("busybox", "ping", "-c", str(count), "-W", "1", "-i", "0.2", dst, check=False)


def test_seed_host_counters_equal_the_kernel(seed_lab: SeedLab, daemon: Daemon) -> None:
    backend = f"iptables-{seed_lab.backend}"
    before = daemon.scrape_after(0)
    drop = ("filter", "DOCKER-ISOLATION-STAGE-2", f"-o {BR} -j DROP")
    assert (
        exported(
            before,
            "netpath_firewall_rule_packets_total",
            "ipv4",
            backend,
            ("table", "chain", "rule"),
        )[drop]
        == 0
    )

    n = 5
    ping(seed_lab.c1, "172.18.0.2", n)  # docker0 -> br-40d...: the isolation rule drops each
    ping(seed_lab.c2, "198.51.100.2", 3)  # out through FORWARD and MASQUERADE
    # New connection from outside to the published port: DNAT to 172.18.0.2:80 (no listener:
    # refused, but it has crossed nat PREROUTING and the forward path).
    seed_lab.outside.exec("busybox", "nc", "-w", "1", "198.51.100.1", "80", check=False, input="")
    # The scrape itself is loopback traffic that filter INPUT/OUTPUT count. So read the
    # kernel's figures just before and just after a poll: every exported counter lies
    # between the two, and equals them exactly wherever they agree (all but loopback's).
    save_before = save_counters(seed_lab.save("ipv4"))
    links_before = json.loads(seed_lab.host.exec("ip", "-s", "-j", "link"))
    got = daemon.scrape_after(time.time())
    save_after = save_counters(seed_lab.save("ipv4"))
    links_after = json.loads(seed_lab.host.exec("ip", "-s", "-j", "link"))

    # The isolation drop moved by exactly N.
    rules_seen = exported(
        got, "netpath_firewall_rule_packets_total", "ipv4", backend, ("table", "chain", "rule")
    )
    assert rules_seen[drop] == n

    # Every rule and policy counter equals iptables-save -c of that backend.
    bytes_seen = exported(
        got, "netpath_firewall_rule_bytes_total", "ipv4", backend, ("table", "chain", "rule")
    )
    pol_p = exported(
        got,
        "netpath_firewall_chain_policy_packets_total",
        "ipv4",
        backend,
        ("table", "chain", "policy"),
    )
    pol_b = exported(
        got,
        "netpath_firewall_chain_policy_bytes_total",
        "ipv4",
        backend,
        ("table", "chain", "policy"),
    )
    for kind, seen_p, seen_b in (("rule", rules_seen, bytes_seen), ("policy", pol_p, pol_b)):
        before, after = save_before[kind == "policy"], save_after[kind == "policy"]
        assert set(seen_p) == set(before) == set(after), f"every {kind} of the exported chains"
        for key in before:
            (p0, b0), (p1, b1) = before[key], after[key]
            assert p0 <= seen_p[key] <= p1 and b0 <= seen_b[key] <= b1, (key, before[key])
    moved = {k for k in save_before[1] if save_before[1][k] != save_after[1][k]}
    moved |= {k for k in save_before[0] if save_before[0][k] != save_after[0][k]}
    assert moved <= {
        ("filter", "INPUT", "ACCEPT"),
        ("filter", "OUTPUT", "ACCEPT"),
        ("nat", "OUTPUT", "ACCEPT"),
        ("nat", "INPUT", "ACCEPT"),
        ("nat", "POSTROUTING", "ACCEPT"),
    }, "only the scrape's loopback moved"

    # Traffic really crossed the forward and NAT paths.
    assert rules_seen[("nat", "POSTROUTING", f"-s 172.18.0.0/16 ! -o {BR} -j MASQUERADE")] >= 1
    assert (
        rules_seen[
            (
                "nat",
                "DOCKER",
                f"! -i {BR} -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.18.0.2:80",
            )
        ]
        == 1
    )
    assert rules_seen[("filter", "FORWARD", f"-i {BR} ! -o {BR} -j ACCEPT")] >= 3

    # IPv6 rules are read too.
    rules6 = exported(
        got, "netpath_firewall_rule_packets_total", "ipv6", backend, ("table", "chain", "rule")
    )
    assert ("filter", "DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP") in rules6
    chain_rules = exported(got, "netpath_firewall_chain_rules", "ipv6", backend, ("table", "chain"))
    assert chain_rules[("filter", "FORWARD")] == 6
    backends = {(lb["family"], lb["backend"]) for lb, _ in got["netpath_firewall_backend_info"]}
    assert backends == {("ipv4", backend), ("ipv6", backend)}

    # Every interface counter equals ip -s -j link (the scrape only moves lo, not exported).
    after_by_name = {link["ifname"]: link for link in links_after}
    names = {link["ifname"] for link in links_before} - {"lo"}
    assert {lb["interface"] for lb, _ in got["netpath_interface_info"]} == names
    for link in links_before:
        if link["ifname"] == "lo":
            continue
        st, st_after = link["stats64"], after_by_name[link["ifname"]]["stats64"]
        assert st == st_after, f"{link['ifname']} moved during the check"
        for direction, key in (("receive", "rx"), ("transmit", "tx")):
            for field in ("bytes", "packets", "errors", "dropped"):
                series = f"netpath_interface_{direction}_{field}_total"
                value = next(v for lb, v in got[series] if lb["interface"] == link["ifname"])
                assert value == st[key][field], (link["ifname"], series)
    info = {lb["interface"]: lb for lb, _ in got["netpath_interface_info"]}
    assert info["veth5d6e7f8"]["bridge"] == BR and info["veth5d6e7f8"]["kind"] == "veth"
    assert info[BR]["kind"] == "bridge"
    ports = {lb["bridge"]: v for lb, v in got["netpath_bridge_ports"]}
    assert ports == {"docker0": 1, BR: 1}

    # Diagnostics.
    fwd = {lb["family"]: v for lb, v in got["netpath_ip_forwarding_enabled"]}
    assert fwd["ipv4"] == 1
    success = {lb["collector"]: v for lb, v in got["netpath_collector_success"]}
    assert success == {"links": 1, "firewall": 1, "sysctl": 1, "routes": 1, "conntrack": 1}

    # The exposition passes promtool.
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=daemon.last_text,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_read_only(seed_lab: SeedLab) -> None:
    """Rulesets before and after a run differ only in counters; no table appears anywhere."""
    other = "legacy" if seed_lab.backend == "nft" else "nft"

    def state() -> tuple[str, ...]:
        h = seed_lab.host
        legacy_tables = h.exec("cat", "/proc/net/ip_tables_names", check=False)
        legacy6 = h.exec("cat", "/proc/net/ip6_tables_names", check=False)
        return (
            _strip_header(seed_lab.save("ipv4", counters=False)),
            _strip_header(seed_lab.save("ipv6", counters=False)),
            h.exec("nft", "list", "tables"),
            legacy_tables,
            legacy6,
            _strip_header(h.exec(f"iptables-{other}-save")),
        )

    before = state()
    d = Daemon(seed_lab.host)
    try:
        d.scrape_after(time.time())
        d.scrape_after(time.time())  # a text poll and a counters-only poll
    finally:
        d.stop()
    assert state() == before
    if seed_lab.backend == "nft":
        assert before[3] == "" and before[4] == "", "a nft lab has no legacy tables"


def _strip_header(text: str) -> str:
    """The ruleset without comments and counters."""
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[]", line) for line in lines)
