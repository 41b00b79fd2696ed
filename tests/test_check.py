"""``netpath-exporter check``: findings from a poll (pure) and the command on a lab host."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import lab
import pytest

from exporter.check import (
    FAIL,
    OK,
    WARN,
    ProcessCaps,
    build_findings,
    exit_code,
    parse_capabilities,
    render_findings,
)
from exporter.collectors.conntrack import ConntrackData
from exporter.config import Config
from exporter.model import (
    Chain,
    Endpoint,
    FirewallData,
    Link,
    LinksData,
    Route,
    RoutesData,
    Rule,
    SourceData,
    SysctlData,
    Table,
    Workload,
)
from exporter.netlink.conntrack import TableInfo
from exporter.poller import CollectorStatus, PollResult

REPO = Path(__file__).resolve().parent.parent
ROOT_CAPS = ProcessCaps(0, (0,), frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE"}))

STATUS = """Name:\tpython3
Uid:\t65534\t65534\t65534\t65534
Gid:\t65534\t65534\t65534\t65534
Groups:\t0 107
CapInh:\t0000000000083000
CapPrm:\t0000000000083000
CapEff:\t0000000000083000
CapBnd:\t0000000000083000
"""


def test_parse_capabilities() -> None:
    uid, groups, caps = parse_capabilities(STATUS)
    assert (uid, groups) == (65534, (0, 107))
    assert caps == {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE"}
    assert parse_capabilities("CapEff:\t000001ffffffffff\n")[2] >= {"CAP_SYS_ADMIN"}


def _ctr(name: str, nsid: int | None) -> Workload:
    ep = Endpoint("bridge", "n" * 64, "172.17.0.2", "", "02:42:ac:11:00:02", "172.17.0.1")
    return Workload(name * 8, name, "img", "", "", "bridge", nsid, (ep,), ())


def _poll(**over: object) -> PollResult:
    data: dict[str, object] = {
        "links": LinksData(
            (
                Link(1, "docker0", "bridge", None, "", "up"),
                Link(2, "veth1", "veth", 1, "", "up", 2, 0),
            ),
            {},
        ),
        "firewall": FirewallData(
            (("ipv4", "iptables-nft"), ("ipv6", "iptables-nft")),
            (
                Table(
                    "ipv4",
                    "iptables-nft",
                    "filter",
                    (Chain("FORWARD", (Rule("-j ACCEPT", 1, 2),)),),
                ),
            ),
        ),
        "sysctl": SysctlData({"ipv4": True, "ipv6": False}, {}),
        "routes": RoutesData((Route("default", "eth0", "192.0.2.1"),)),
        "docker": SourceData("27.1.0", (_ctr("web", 0),), ()),
        "conntrack": ConntrackData(TableInfo(10, 1000), {}, None),
    }
    data.update(over)
    data = {k: v for k, v in data.items() if v is not None}
    status = [
        CollectorStatus(n, n in data, 0.01, "" if n in data else "boom")
        for n in ("links", "docker", "firewall", "sysctl", "routes", "conntrack")
    ]
    # No CRI runtime on this host unless the test gives the cri source's data.
    absent = "cri" not in data
    status.append(CollectorStatus("cri", not absent, 0.01, "no CRI runtime socket", absent=absent))
    # No Podman on this host: an absent source, not a failure.
    status.append(CollectorStatus("podman", False, 0.0, "no Podman socket at /x", absent=True))
    return PollResult(data, tuple(status), 0.0, 0.05)


def test_a_healthy_host_passes() -> None:
    findings = build_findings(Config(), ROOT_CAPS, _poll(), None)
    text = render_findings(findings)
    assert exit_code(findings) == 0, text
    assert "backends: iptables-nft (ipv4, ipv6); 1 rule in the exported chains" in text
    assert "Docker 27.1.0 reachable at unix:///var/run/docker.sock; 1 running container" in text
    assert "all 1 containers with a veth mapped" in text
    assert "2 interfaces: 1 bridge, 1 veth" in text
    assert "ip forwarding: ipv4=on, ipv6=off" in text
    assert "br_netfilter not loaded" in text
    assert "default: eth0 via 192.0.2.1" in text
    assert "conntrack     readable: 10 entries of 1000 (1%)" in text


def test_failures_and_their_reasons() -> None:
    caps = ProcessCaps(65534, (), frozenset({"CAP_NET_RAW"}))
    poll = _poll(
        firewall=None,
        docker=SourceData("27.1.0", (_ctr("web", None), _ctr("db", 3)), ()),
        sysctl=SysctlData({"ipv4": False}, {"ipv4": True}),
    )
    findings = build_findings(Config(), caps, poll, (FAIL, "web.yml: bad"))
    text = render_findings(findings)
    assert exit_code(findings) == 1
    got = {(f.status, f.topic) for f in findings}
    assert (FAIL, "firewall") in got and (FAIL, "web") in got
    # The firewall names its own fix; check adds nothing to it (no repeated hint).
    assert "cannot read: boom\n" in text
    assert "1 of 2 containers' network namespaces cannot be opened (web)" in text
    assert "CAP_SYS_PTRACE missing -> containers" in text
    assert next(f.status for f in findings if f.topic == "sysctl") == WARN
    assert "bridge-nf-call: ipv4=on" in text


def test_disabled_collectors_are_not_failures() -> None:
    cfg = Config(collectors={**Config().collectors, "docker": False})
    findings = build_findings(cfg, ROOT_CAPS, _poll(docker=None), (OK, "w"))
    assert exit_code(findings) == 0
    assert "docker        disabled" in render_findings(findings)


def _check(ns: lab.Netns, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={ns.path}", sys.executable, "-m", "exporter", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


@pytest.mark.lab
def test_check_on_a_lab_host(tmp_path: Path) -> None:
    lab.need_root()
    with lab.namespaces("chk", 2) as (host, c1):
        lab.add_bridge(host, "docker0", "172.17.0.1/16")
        lab.add_container(
            host, c1, host_if="vethc1", bridge="docker0", addr="172.17.0.2/16", gateway="172.17.0.1"
        )
        host.exec("iptables-nft-restore", input=lab.SEED_RULESET.read_text())
        host.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        proc = _check(host, "--no-collector.docker")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "backends: iptables-nft (ipv4); 26 rules in the exported chains" in out, out
        assert "docker rules, layout classic" in out
        assert "3 interfaces: 1 bridge, 1 veth" in out
        assert "ip forwarding: ipv4=on" in out
        assert "result: the exporter can do its job" in out
        assert proc.stderr == ""
        # Docker absent: the containers collector fails and so does the check.
        proc = _check(host, f"--docker.host=unix://{tmp_path}/none.sock")
        assert proc.returncode == 1
        assert "[FAIL] docker        cannot read: cannot reach Docker" in proc.stdout
        # An invalid web config file is reported.
        bad = tmp_path / "web.yml"
        bad.write_text("basic_auth_users: {a: b}\n")
        proc = _check(host, "--no-collector.docker", f"--web.config.file={bad}")
        assert proc.returncode == 1
        assert "[FAIL] web" in proc.stdout and "not a bcrypt hash" in proc.stdout


@pytest.mark.lab
def test_check_on_a_nat_table_made_the_way_dockerd_makes_it() -> None:
    """dockerd creates only the built-in chains it uses (no nat INPUT), iptables-nft-save
    prints them all: the firewall must read such a table (a bug found here, fixed)."""
    lab.need_root()
    with lab.netns("chknat") as host:
        host.exec("iptables-nft", "-t", "nat", "-N", "DOCKER")
        host.exec("iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.213.0.0/24",
                  "!", "-o", "docker0", "-j", "MASQUERADE")  # fmt: skip
        proc = _check(host, "--no-collector.docker")
        assert "[FAIL]" not in proc.stdout, proc.stdout
        assert proc.returncode == 0


def test_an_absent_runtime_is_information_not_failure() -> None:
    from exporter.poller import CollectorStatus  # noqa: PLC0415

    poll = _poll(docker=None)
    status = tuple(
        CollectorStatus("docker", False, 0.0, "no Docker socket at /var/run/docker.sock", True)
        if s.name == "docker"
        else s
        for s in poll.status
    )
    findings = build_findings(Config(), ROOT_CAPS, replace(poll, status=status), None)
    text = render_findings(findings)
    assert "[info] docker        not on this host: no Docker socket at /var/run/docker.sock" in text
    assert exit_code(findings) == 0, text


def test_cri_pods_mapped_and_not() -> None:
    pods = tuple(
        replace(_ctr(name, nsid), name=f"ns/{name}", namespace="ns", pod=name, runtime="containerd",
                network_mode="pod")
        for name, nsid in (("web", 3), ("db", None))
    )  # fmt: skip
    cri = SourceData("1.6.20~ds1", pods, (), runtime="containerd")
    poll = _poll(cri=cri)
    text = render_findings(build_findings(Config(), ROOT_CAPS, poll, None))
    assert (
        "containerd 1.6.20~ds1 answering the CRI at the default socket; 2 pods, 0 CNI networks"
        in text
    )
    assert "1 of 2 pods' network namespaces cannot be opened (ns/db)" in text
    absent = render_findings(build_findings(Config(), ROOT_CAPS, _poll(), None))
    assert "[info] cri           not on this host: no CRI runtime socket" in absent
