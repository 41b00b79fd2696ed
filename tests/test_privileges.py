"""Least privilege: the exporter as an unprivileged user holding only its capabilities.

The documented set is CAP_NET_ADMIN and CAP_NET_RAW (firewall), CAP_SYS_PTRACE
(opening other users' /proc/PID/ns/net) and read/write access to the Docker
socket. A non-root user reading iptables-legacy also needs read access to
/proc/net/ip{,6}_tables_names (mode 0440 root:root): supplementary group root.
(Run as uid 0 with the capability bounding set reduced to the three, as the
systemd unit and the Kubernetes DaemonSet do, that last point does not arise.)

Each process here runs as ``nobody`` via ``setpriv`` with the capabilities as
inheritable, ambient and bounding sets (nothing else), inside a lab namespace,
from the session's copy of the package that every user can read
(``lab.public_install``: the checkout may sit where nobody cannot enter).
The degradation tests drop one privilege at a time and record, through
``netpath-exporter check``, what stops working; the table is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import dockerlab
import lab
import pytest

pytestmark = pytest.mark.lab

CAPS = ("net_admin", "net_raw", "sys_ptrace")
NATIVE_NFT = """table inet np_lab {
  chain labfwd {
    type filter hook forward priority 10; policy accept;
    iifname "docker0" counter accept comment "lab"
  }
}
"""


def need_setpriv() -> None:
    lab.need_root()
    for tool in ("setpriv", "curl", "iptables-legacy-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"least-privilege tests need `{tool}`")


@pytest.fixture(scope="module")
def public(request: pytest.FixtureRequest) -> lab.PublicInstall:
    """The exporter where nobody can read it, wherever the checkout is."""
    return lab.public_install(request.config)


def exporter(ns: lab.Netns, user: list[str], public: lab.PublicInstall, *args: str) -> list[str]:
    return ["nsenter", f"--net={ns.path}", *user, *public.argv("-m", "exporter", *args)]


def run_check(
    ns: lab.Netns,
    user: list[str],
    public: lab.PublicInstall,
    *args: str,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    proc = subprocess.run(
        exporter(ns, user, public, "check", *args),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=public.dir,
        env=public.env(env),
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


def findings(out: str) -> list[tuple[str, str, str]]:
    """``[status] topic  text`` lines -> (status, topic, text)."""
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\[\s*(\w+)\] (\S+)\s+(.*)$", line)
        if m:
            rows.append((m[1], m[2], m[3]))
    return rows


def failed(out: str) -> dict[str, list[str]]:
    res: dict[str, list[str]] = {}
    for status, topic, text in findings(out):
        if status == "FAIL":
            res.setdefault(topic, []).append(text)
    return res


class Daemon:
    """The exporter daemon as ``user`` inside ``ns``, scraped with curl from inside too."""

    def __init__(
        self,
        ns: lab.Netns,
        user: list[str],
        public: lab.PublicInstall,
        *args: str,
        env: dict[str, str] | None = None,
    ):
        self.ns = ns
        self.port = lab.free_port()
        self.proc = subprocess.Popen(
            exporter(ns, user, public, f"--web.listen-address=127.0.0.1:{self.port}",
                     "--poll.interval=300ms", *args),
            cwd=public.dir, env=public.env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        deadline = time.monotonic() + 30
        while True:
            proc = subprocess.run(
                ["nsenter", f"--net={self.ns.path}", "curl", "-sf", "--max-time", "5",
                 f"http://127.0.0.1:{self.port}/metrics"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                return lab.parse_exposition(proc.stdout)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"exporter not answering (rc={self.proc.poll()}): {err}")
            time.sleep(0.05)  # the listener is coming up

    def scrape_when(self, what: str, ok: object) -> dict[str, list[tuple[dict[str, str], float]]]:
        last: list[dict[str, list[tuple[dict[str, str], float]]]] = [{}]

        def attempt() -> dict[str, list[tuple[dict[str, str], float]]] | None:
            last[0] = got = self.scrape()
            return got if ok(got) else None  # type: ignore[operator]

        try:
            return dockerlab.poll_until(what, attempt)  # type: ignore[no-any-return]
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}; last success: {success(last[0])}\n{self.stop()}"
            ) from None

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


def success(got: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
    return {lb["collector"]: v for lb, v in got.get("netpath_collector_success", [])}


# ---------------------------------------------------------------------------
# Firewall, links, sysctl, routes: a lab host with every backend in use
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fw_host() -> Iterator[lab.Netns]:
    need_setpriv()
    with lab.namespaces("priv", 2) as (host, c1):
        lab.add_bridge(host, "docker0", "172.17.0.1/16")
        lab.add_container(host, c1, host_if="vethpriv1", bridge="docker0",
                          addr="172.17.0.2/16", gateway="172.17.0.1")  # fmt: skip
        seed = lab.SEED_RULESET.read_text()
        host.exec("iptables-nft-restore", input=seed)
        host.exec("iptables-legacy-restore", input=seed)
        host.exec("nft", "-f", "-", input=NATIVE_NFT)
        yield host


def test_nobody_with_the_documented_privileges_reads_every_backend(
    fw_host: lab.Netns, public: lab.PublicInstall
) -> None:
    d = Daemon(fw_host, lab.as_user(CAPS, groups=[0]), public, "--no-collector.docker")
    try:
        got = d.scrape_when("a poll as nobody", success)
    finally:
        err = d.stop()
    assert success(got) == {
        "links": 1, "firewall": 1, "sysctl": 1, "routes": 1, "conntrack": 1
    }, err  # fmt: skip
    backends = {(lb["family"], lb["backend"]) for lb, _ in got["netpath_firewall_backend_info"]}
    assert {("ipv4", "iptables-nft"), ("ipv4", "iptables-legacy")} <= backends
    assert any(b == "nftables" for _, b in backends)
    rules = {
        (lb["backend"], lb["chain"], lb["rule"])
        for lb, _ in got["netpath_firewall_rule_packets_total"]
    }
    drop = ("DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP")
    assert ("iptables-nft", *drop) in rules and ("iptables-legacy", *drop) in rules
    assert any(b == "nftables" and c == "labfwd" for b, c, _ in rules)
    ifaces = {lb["interface"] for lb, _ in got["netpath_interface_info"]}
    assert {"docker0", "vethpriv1"} <= ifaces


# (label, capabilities, groups, collectors expected to fail -> text expected in the finding)
FW_MATRIX: list[tuple[str, tuple[str, ...], list[int], dict[str, str]]] = [
    ("documented set + group root", CAPS, [0], {}),
    (
        "without CAP_NET_ADMIN",
        ("net_raw", "sys_ptrace"),
        [0],
        {"firewall": "nf_tables", "conntrack": "permission denied (needs CAP_NET_ADMIN)"},
    ),
    ("without CAP_NET_RAW", ("net_admin", "sys_ptrace"), [0], {"firewall": "iptables-legacy"}),
    ("without CAP_SYS_PTRACE", ("net_admin", "net_raw"), [0], {}),
    ("without group root", CAPS, [], {"firewall": "iptables-legacy"}),
    (
        "no capabilities at all",
        (),
        [0],
        {"firewall": "nf_tables", "conntrack": "permission denied (needs CAP_NET_ADMIN)"},
    ),
]


@pytest.mark.parametrize(
    ("label", "caps", "groups", "expect"), FW_MATRIX, ids=[m[0] for m in FW_MATRIX]
)
def test_what_degrades_without_each_privilege(
    fw_host: lab.Netns,
    public: lab.PublicInstall,
    *,
    label: str,
    caps: tuple[str, ...],
    groups: list[int],
    expect: dict[str, str],
) -> None:
    rc, out = run_check(fw_host, lab.as_user(caps, groups), public, "--no-collector.docker")
    fails = failed(out)
    print(f"\n{label}: exit {rc}; failing: " + ("; ".join(
        f"{t}: {' | '.join(v)}" for t, v in fails.items()) or "nothing"))  # fmt: skip
    assert set(fails) == set(expect), out
    for topic, text in expect.items():
        assert any(text in line for line in fails[topic]), out
    assert rc == (1 if expect else 0), out
    # Interfaces, sysctls and routes need no privilege at all.
    oks = {topic for status, topic, _ in findings(out) if status == "ok"}
    assert {"links", "routes"} <= oks


# ---------------------------------------------------------------------------
# Containers: a real dockerd
# ---------------------------------------------------------------------------


@pytest.fixture
def reachable_lab(dockerd: dockerlab.DockerLab) -> Iterator[tuple[dockerlab.DockerLab, int]]:
    """The lab dockerd with its directory traversable by others (as /run is), so its
    socket's own permissions decide; yields the lab and the socket's group."""
    need_setpriv()
    mode = os.stat(dockerd.dir).st_mode & 0o7777
    os.chmod(dockerd.dir, mode | 0o011)  # noqa: S103 - search only, like /run
    try:
        yield dockerd, os.stat(dockerd.sock).st_gid
    finally:
        os.chmod(dockerd.dir, mode)


@pytest.mark.docker
def test_nobody_with_the_documented_privileges_maps_containers(
    reachable_lab: tuple[dockerlab.DockerLab, int], public: lab.PublicInstall
) -> None:
    dl, sock_gid = reachable_lab
    st = os.stat(dl.sock)
    assert st.st_mode & 0o006 == 0, "the socket is not open to everyone: the group decides"
    for name in ("priv-a", "priv-b"):
        dl.run_sleeper(name)
    names = {"priv-a", "priv-b"}
    env = dl.env()
    everyone = {"links": 1, "docker": 1, "firewall": 1, "sysctl": 1, "routes": 1, "conntrack": 1}
    d = Daemon(dl.netns, lab.as_user(CAPS, groups=[0, sock_gid]), public, env=env)
    try:
        got = d.scrape_when(
            "both containers' counters and every collector succeeding",
            lambda g: (
                success(g) == everyone
                and names
                <= {
                    lb["container"]
                    for lb, _ in g.get("netpath_container_network_receive_bytes_total", [])
                }
            ),
        )
    finally:
        err = d.stop()
    assert success(got) == everyone, err
    info = {lb["container"]: lb for lb, _ in got["netpath_container_interface_info"]}
    assert names <= set(info)
    assert all(
        info[n]["bridge"] == "docker0" and info[n]["interface"].startswith("veth") for n in names
    )

    # The degradations, through `check`.
    rows = []
    for label, caps, groups, topic, text in [
        ("documented set", CAPS, [0, sock_gid], None, ""),
        ("without CAP_SYS_PTRACE", ("net_admin", "net_raw"), [0, sock_gid], "docker",
         "network namespaces cannot be opened"),
        ("without the socket's group", CAPS, [0], "docker", "Permission denied"),
    ]:  # fmt: skip
        rc, out = run_check(dl.netns, lab.as_user(caps, groups), public, env=env)
        fails = failed(out)
        rows.append(f"{label}: exit {rc}; failing: {fails or 'nothing'}")
        if topic is None:
            assert (rc, fails) == (0, {}), out
        else:
            assert rc == 1 and set(fails) == {topic}, out
            assert any(text in line for line in fails[topic]), out
    print("\n" + "\n".join(rows))
