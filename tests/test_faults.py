"""Faults: the daemon keeps answering and recovers, with figures printed.

- dockerd killed (SIGKILL) and restarted while the exporter polls every 200 ms;
- the xtables lock held by another process (``flock /run/xtables.lock``: the
  lock file is the machine's, so it is held for three seconds only);
- an iptables tool that hangs (a PATH directory whose ``iptables-nft-save``
  sleeps), bounded by ``firewall.command_timeout``;
- a container's network namespace vanishing between inspect and the read of
  its namespace id;
- container churn for 60 s as fast as the lab dockerd allows (parallel
  batches), the exporter polling at 1 s and scraped twice a second: every
  scrape answered, no error logged, no stale series two polls after the churn,
  open fds, threads and RSS measured before and after (printed) and flat.

Scrapes come from a thread of this process that has joined the lab's network
namespace (``setns`` is per thread), so they cost no process start.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerlab
import lab
import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def success(got: Samples) -> dict[str, float]:
    return {lb["collector"]: v for lb, v in got.get("netpath_collector_success", [])}


def poll_time(got: Samples) -> float:
    return got["netpath_poll_timestamp_seconds"][0][1]


def containers_seen(got: Samples) -> set[str]:
    return {lb["container"] for lb, _ in got.get("netpath_container_info", [])}


# ---------------------------------------------------------------------------
# The exporter process and a scraper inside the lab namespace
# ---------------------------------------------------------------------------


@dataclass
class ProcStats:
    fds: int
    threads: int
    rss_kib: int

    def __str__(self) -> str:
        return f"{self.fds} fds, {self.threads} threads, {self.rss_kib / 1024:.1f} MiB RSS"


def fd_kinds(pid: int) -> dict[str, int]:
    """Open fds by kind (socket, pipe, eventpoll, a path's directory), for leak reports."""
    proto: dict[str, str] = {}
    for table in ("unix", "netlink", "tcp", "tcp6", "udp", "raw", "raw6"):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            col = {"unix": 6, "netlink": 9}.get(table, 9)
            for line in lines:
                parts = line.split()
                if len(parts) > col:
                    name = table if table != "netlink" else f"netlink/{parts[1]}"
                    proto[parts[col]] = name
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kind = "socket/" + proto.get(target[8:-1], "?")
        else:
            kind = target.split(":", 1)[0] if ":" in target else os.path.dirname(target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def proc_stats(pid: int) -> ProcStats:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return ProcStats(
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
        rss_kib=int(fields["VmRSS"].split()[0]),
    )


class Exporter:
    """``python -m exporter`` inside a lab namespace; its log goes to a file."""

    def __init__(
        self, ns_path: str, tmp: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.ns_path = ns_path
        self.port = lab.free_port()
        self.log_path = tmp / f"exporter-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={ns_path}", sys.executable, "-m", "exporter",
             f"--web.listen-address=127.0.0.1:{self.port}", *args],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip
        self.scraper = Scraper(ns_path, self.port)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def errors(self) -> list[str]:
        return [
            line
            for line in self.log.splitlines()
            if "level=error" in line or "Traceback" in line or "level=critical" in line
        ]

    def stop(self) -> None:
        self.scraper.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Scraper:
    """HTTP GETs from a thread that joined the lab's network namespace."""

    def __init__(self, ns_path: str, port: int) -> None:
        self.port = port
        self._requests: list[tuple[str, Any]] = []
        self._cv = threading.Condition()
        self._closed = False
        self._ns_fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if _libc.setns(self._ns_fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        while True:
            with self._cv:
                while not self._requests and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                path, box = self._requests.pop(0)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path)
                resp = conn.getresponse()
                box["result"] = (resp.status, resp.read().decode(errors="replace"))
                conn.close()
            except Exception as exc:
                box["result"] = (0, f"{type(exc).__name__}: {exc}")
            box["done"].set()

    def get(self, path: str = "/metrics") -> tuple[int, str]:
        box: dict[str, Any] = {"done": threading.Event()}
        with self._cv:
            self._requests.append((path, box))
            self._cv.notify()
        if not box["done"].wait(30):
            return 0, "no answer within 30 s"
        return box["result"]  # type: ignore[no-any-return]

    def scrape(self) -> Samples:
        status, body = self.get()
        assert status == 200, body
        return lab.parse_exposition(body)

    def wait_for(self, what: str, ok: Callable[[Samples], bool], timeout: float = 60) -> Samples:
        last: list[Samples] = [{}]

        def attempt() -> Samples | None:
            status, body = self.get()
            if status != 200:
                return None
            last[0] = got = lab.parse_exposition(body)
            return got if ok(got) else None

        try:
            return dockerlab.poll_until(what, attempt, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last success: {success(last[0])}") from None

    def after(self, t: float) -> Samples:
        """The first exposition whose poll finished after wall time ``t``."""
        return self.wait_for("a poll after the change", lambda g: poll_time(g) > t)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(5)
        os.close(self._ns_fd)


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    made: list[Exporter] = []

    def start(ns_path: str, *args: str, env: dict[str, str] | None = None) -> Exporter:
        e = Exporter(ns_path, tmp_path, *args, env=env)
        made.append(e)
        return e

    yield start
    for e in made:
        e.stop()


# ---------------------------------------------------------------------------
# Firewall faults on a plain lab host
# ---------------------------------------------------------------------------


@pytest.fixture
def fw_host() -> Iterator[lab.Netns]:
    lab.need_root()
    for t in ("iptables-nft-restore", "iptables-legacy-restore", "flock"):
        if shutil.which(t) is None:
            pytest.skip(f"needs {t}")
    with lab.netns("fault") as host:
        seed = lab.SEED_RULESET.read_text()
        host.exec("iptables-nft-restore", input=seed)
        host.exec("iptables-legacy-restore", input=seed)
        yield host


def test_xtables_lock_held_by_another_process(
    fw_host: lab.Netns, exporters: Callable[..., Exporter]
) -> None:
    e = exporters(fw_host.path, "--poll.interval=200ms", "--no-collector.docker")
    e.scraper.wait_for("a first good poll", lambda g: success(g).get("firewall") == 1)
    # /run/xtables.lock is global to the machine: hold it for seconds only.
    holder = subprocess.Popen(["flock", "--exclusive", "/run/xtables.lock", "sleep", "3"])
    try:
        time.sleep(0.2)  # let flock take the lock before measuring (not a synchronisation)
        t0 = time.time()
        durations = []
        got: Samples = {}
        while holder.poll() is None:
            got = e.scraper.after(time.time())
            assert success(got)["firewall"] == 1, e.log
            durations.append(
                next(
                    v
                    for lb, v in got["netpath_collector_duration_seconds"]
                    if lb["collector"] == "firewall"
                )
            )
    finally:
        holder.wait(10)
    assert durations, "no poll happened while the lock was held"
    print(
        f"\nxtables lock held {time.time() - t0:.1f}s: {len(durations)} polls answered, "
        f"firewall poll {min(durations) * 1000:.1f}-{max(durations) * 1000:.1f} ms"
    )
    assert e.errors() == []


def test_hanging_iptables_tool_is_bounded_by_the_timeout(
    fw_host: lab.Netns, exporters: Callable[..., Exporter], tmp_path: Path
) -> None:
    real = shutil.which("iptables-nft-save")
    assert real is not None
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    hang = tmp_path / "hang"
    hang.touch()
    fake = fake_dir / "iptables-nft-save"
    fake.write_text(f'#!/bin/sh\nif [ -e "{hang}" ]; then exec sleep 600; fi\nexec {real} "$@"\n')
    fake.chmod(0o755)
    cfg = tmp_path / "config.yml"
    cfg.write_text("firewall:\n  command_timeout: 1s\n")
    env = dict(os.environ, PATH=f"{fake_dir}:{os.environ['PATH']}")
    e = exporters(
        fw_host.path, f"--config.file={cfg}", "--poll.interval=200ms",
        "--no-collector.docker", env=env,
    )  # fmt: skip
    # While the tool hangs: every scrape answers, the firewall is reported failing, the
    # other collectors and the legacy backend are still served, polls keep coming.
    got = e.scraper.wait_for(
        "the timeout to be reported", lambda g: success(g).get("firewall") == 0
    )
    stamps = [poll_time(got)]
    for _ in range(3):
        got = e.scraper.after(stamps[-1])
        stamps.append(poll_time(got))
        assert success(got) == {
            "links": 1, "firewall": 0, "sysctl": 1, "routes": 1, "conntrack": 1
        }  # fmt: skip
    assert "iptables-nft-save -c timed out after 1s" in e.log
    backends = {(lb["family"], lb["backend"]) for lb, _ in got["netpath_firewall_backend_info"]}
    assert ("ipv4", "iptables-legacy") in backends
    # Nothing is left hanging: the timed-out tool was killed.
    sleepers = [p for p in _pids_with_parent(e.proc.pid) if b"sleep" in _cmdline(p)]
    assert len(sleepers) <= 1, "at most the current attempt's tool may be running"
    hang.unlink()  # (the collector retries a failed text read only after RETRY_AFTER, 60 s)
    print(f"\nhanging iptables-nft-save: {len(stamps)} polls {stamps[-1] - stamps[0]:.1f}s apart "
          "while it hung, each bounded by the 1 s timeout")  # fmt: skip


def _pids_with_parent(ppid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(d))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ---------------------------------------------------------------------------
# Docker faults
# ---------------------------------------------------------------------------


@pytest.fixture
def docker_lab(dockerd: dockerlab.DockerLab) -> Iterator[dockerlab.DockerLab]:
    """The module's lab dockerd, without containers or user networks before and after."""
    dockerd.remove_all()
    yield dockerd
    if dockerd.running():
        dockerd.remove_all()


@pytest.mark.docker
def test_dockerd_killed_and_restarted_mid_poll(
    docker_lab: dockerlab.DockerLab, exporters: Callable[..., Exporter]
) -> None:
    dl = docker_lab
    dl.run_sleeper("fault-before")
    e = exporters(dl.netns.path, "--poll.interval=200ms", "--no-collector.firewall", env=dl.env())
    e.scraper.wait_for("the container", lambda g: "fault-before" in containers_seen(g))
    pid = dl.pid()
    assert pid is not None
    # Scrapes keep flowing while dockerd dies: the kill lands at a random point of a poll.
    statuses: list[int] = []
    stop = threading.Event()

    def scrape_loop() -> None:
        while not stop.is_set():
            statuses.append(e.scraper.get()[0])
            time.sleep(0.05)  # pacing of the scrape loop, not a synchronisation

    loop = threading.Thread(target=scrape_loop)
    loop.start()
    try:
        containerd_pid = dl.dir / "exec" / "containerd" / "containerd.pid"
        cpid = int(containerd_pid.read_text())
        os.kill(pid, signal.SIGKILL)
        dockerlab.poll_until("dockerd to die", lambda: not dl.running(), timeout=20)
        # Its containerd dies with it, but nothing may reap it here (PID 1 of these machines
        # does not): a zombie passes dockerd's "containerd is still running" check, and the
        # new dockerd would wait for it forever. Forget it, as an init would have.
        dockerlab.poll_until(
            "containerd to die", lambda: not dockerlab._pid_alive(cpid), timeout=20
        )
        containerd_pid.unlink(missing_ok=True)
        down = e.scraper.wait_for(
            "the containers collector to report the outage",
            lambda g: success(g).get("docker") == 0,
        )
        assert success(down)["links"] == 1
        dl.stop()  # reap, and stop the containerd the killed dockerd left
        dl.start()
        dl.run_sleeper("fault-after")
        got = e.scraper.wait_for(
            "the exporter to follow the new dockerd",
            lambda g: success(g).get("docker") == 1 and "fault-after" in containers_seen(g),
        )
    finally:
        stop.set()
        loop.join()
    running = set(dl.docker("ps", "--format", "{{.Names}}").split())
    assert containers_seen(got) == running
    assert statuses and all(s == 200 for s in statuses), statuses
    errors = [line for line in e.errors() if "collector=docker" not in line]
    assert errors == [], errors
    print(f"\ndockerd SIGKILL + restart: {len(statuses)} scrapes, all answered 200; "
          f"containers collector failed while down and recovered")  # fmt: skip


SETUP_VANISH = """
import os, subprocess, time
from exporter.config import DockerConfig
from exporter.sources.docker import ContainersCollector
from exporter.collectors.links import LinksCollector, read_netnsid

victim = {"id": None, "killed": 0}

def _ns(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)

def vanishing_reader(path):
    # The container dies, and its namespace with it, between inspect and this read.
    if victim["id"] and not victim["killed"]:
        victim["killed"] = 1
        before = _ns(path)
        subprocess.run(["docker", "rm", "-f", victim["id"]], check=True, capture_output=True)
        # Docker unmounts the namespace; its SandboxKey may stay behind as a plain file.
        deadline = time.monotonic() + 20
        while _ns(path) == before and time.monotonic() < deadline:
            time.sleep(0.02)
    return read_netnsid(path)

links = LinksCollector()
coll = ContainersCollector(DockerConfig(host=os.environ["DOCKER_HOST"]),
                           netnsid_reader=vanishing_reader)
"""


def test_read_netnsid_of_a_path_that_is_no_longer_a_namespace(tmp_path: Path) -> None:
    lab.need_root()
    from exporter.collectors.links import read_netnsid  # noqa: PLC0415

    plain = tmp_path / "sandbox-key-left-behind"
    plain.touch()
    # None, or an OSError: what the containers collector expects for a vanished namespace.
    with contextlib.suppress(OSError):
        assert read_netnsid(str(plain)) is None


@pytest.mark.docker
def test_container_namespace_vanishing_mid_read(docker_lab: dockerlab.DockerLab) -> None:
    dl = docker_lab
    keep = dl.run_sleeper("vanish-keep")
    victim = dl.run_sleeper("vanish-victim")
    with dl.python(SETUP_VANISH) as py:
        py.exec(f"victim['id'] = {victim!r}")
        py.exec("links.collect(); first = coll.collect()")
        assert py.eval("victim['killed']") == 1, "the reader ran for a live container"
        names = set(py.eval("[c.name for c in first.workloads]"))
        # The victim may or may not be listed in this very poll; never with a stale namespace.
        assert "vanish-keep" in names
        assert py.eval(
            "all(c.netns_id is None for c in first.workloads if c.name == 'vanish-victim')"
        )

        def victim_gone() -> bool:
            py.exec("links.collect(); data = coll.collect()")
            return "vanish-victim" not in set(py.eval("[c.name for c in data.workloads]"))

        dockerlab.poll_until("the victim to be dropped", victim_gone, timeout=30)
        assert py.eval("[c.name for c in data.workloads if c.netns_id is not None]") == [
            "vanish-keep"
        ]
        py.exec("coll.close(); links.close()")
    assert keep


# ---------------------------------------------------------------------------
# Churn
# ---------------------------------------------------------------------------

CHURN_SECONDS = 60.0
# A short churn first, so the figures "before" include what any churn allocates once and
# keeps bounded (docker-py keeps one connection pool per API URL, up to 25 of them).
WARMUP_SECONDS = 10.0
CHURN_WORKERS = 8  # parallel docker API calls
CHURN_POPULATION = 16  # containers alive at once, about


@dataclass
class ChurnStats:
    starts: int = 0
    stops: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _churn(dl: dockerlab.DockerLab, until: float, stats: ChurnStats, prefix: str = "churn") -> None:
    import docker  # noqa: PLC0415

    client = docker.DockerClient(base_url=dl.host, timeout=60)
    alive: list[Any] = []
    alive_lock = threading.Lock()
    rnd = random.Random(7)  # noqa: S311 - which container to stop, not a secret
    counter = iter(range(1_000_000))

    def one() -> None:
        while time.monotonic() < until:
            with alive_lock:
                victim = (
                    alive.pop(rnd.randrange(len(alive))) if len(alive) >= CHURN_POPULATION else None
                )
            try:
                if victim is not None:
                    victim.remove(force=True)
                    with stats.lock:
                        stats.stops += 1
                else:
                    with alive_lock:
                        n = next(counter)
                    c = client.containers.run(
                        dockerlab.IMAGE, ["sleep", "3600"], name=f"{prefix}-{n}", detach=True,
                        init=True, network="churnnet" if n % 2 else "bridge",
                        ports={"80/tcp": None} if n % 3 == 0 else None,
                    )  # fmt: skip
                    with alive_lock:
                        alive.append(c)
                    with stats.lock:
                        stats.starts += 1
            except Exception as exc:
                with stats.lock:
                    stats.failures.append(f"{type(exc).__name__}: {exc}")

    try:
        with ThreadPoolExecutor(CHURN_WORKERS) as pool:
            for f in [pool.submit(one) for _ in range(CHURN_WORKERS)]:
                f.result()
    finally:
        client.close()


@pytest.mark.docker
def test_container_churn_60s(
    docker_lab: dockerlab.DockerLab, exporters: Callable[..., Exporter]
) -> None:
    dl = docker_lab
    dl.docker("network", "create", "churnnet")
    for name in ("steady-a", "steady-b"):
        dl.run_sleeper(name)
    e = exporters(dl.netns.path, "--poll.interval=1s", env=dl.env())
    e.scraper.wait_for(
        "the steady containers", lambda g: {"steady-a", "steady-b"} <= containers_seen(g)
    )
    # Warm up, then a few polls so caches, pools and threads exist before the "before" figures.
    warm = ChurnStats()
    _churn(dl, time.monotonic() + WARMUP_SECONDS, warm, prefix="churn-warm")
    t = time.time()
    e.scraper.wait_for("three polls", lambda g: poll_time(g) > t + 2.5, timeout=30)
    before = proc_stats(e.proc.pid)
    kinds_before = fd_kinds(e.proc.pid)

    # Scraped twice a second throughout.
    answered: list[int] = []
    failing: dict[str, int] = {}
    stop = threading.Event()

    def scrape_loop() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            status, body = e.scraper.get()
            answered.append(status)
            if status == 200:
                for name, ok in success(lab.parse_exposition(body)).items():
                    if not ok:
                        failing[name] = failing.get(name, 0) + 1
            next_at += 0.5
            stop.wait(max(0.0, next_at - time.monotonic()))

    loop = threading.Thread(target=scrape_loop)
    loop.start()
    stats = ChurnStats()
    t0 = time.monotonic()
    try:
        _churn(dl, t0 + CHURN_SECONDS, stats)
    finally:
        churn_time = time.monotonic() - t0
        # Two polls after the churn: exactly the running containers, no stale series.
        t_end = time.time()
        got = e.scraper.wait_for("two polls after the churn", lambda g: poll_time(g) > t_end + 1.0)
        running = set(dl.docker("ps", "--format", "{{.Names}}").split())
        stale_after_churn = containers_seen(got) ^ running
        # Remove the churn containers: two polls later, only the steady ones.
        ids = dl.docker("ps", "-aq", "--filter", "name=churn-").split()
        if ids:
            dl.docker("rm", "-f", *ids, timeout=300)
        t_clean = time.time()
        got = e.scraper.wait_for(
            "two polls after the clean-up", lambda g: poll_time(g) > t_clean + 1.0
        )
        stop.set()
        loop.join()
    after = proc_stats(e.proc.pid)
    kinds_after = fd_kinds(e.proc.pid)
    interfaces = {lb["interface"] for lb, _ in got["netpath_interface_info"]}
    host_links = {link["ifname"] for link in dl.host_links()} - {"lo"}
    container_ifaces = {
        lb["container"] for lb, _ in got.get("netpath_container_interface_info", [])
    }
    print(
        f"\nchurn {churn_time:.0f}s: {stats.starts} starts + {stats.stops} stops "
        f"({(stats.starts + stats.stops) / churn_time:.1f}/s), "
        f"{len(stats.failures)} docker errors; "
        f"{len(answered)} scrapes, {sum(s == 200 for s in answered)} answered 200; "
        f"collector failures seen in scrapes: {failing or 'none'}"
    )
    print(f"exporter before: {before} {kinds_before}\nexporter after:  {after} {kinds_after}")
    assert answered and all(s == 200 for s in answered), answered
    assert stale_after_churn == set(), stale_after_churn
    assert containers_seen(got) == {"steady-a", "steady-b"} == container_ifaces
    assert interfaces == host_links, interfaces ^ host_links
    # Zero exceptions. A collector may report a failed poll (the firewall does when the
    # ruleset changes faster than it can be read consistently): counted and printed.
    exceptions = [ln for ln in e.log.splitlines() if "Traceback" in ln or "poll failed" in ln]
    assert exceptions == [], "\n".join(exceptions[:20])
    failed_logs = [ln for ln in e.errors() if "collector failed" in ln]
    print(
        f"collector failures logged: {len(failed_logs)}"
        + "".join(f"\n  {ln}" for ln in failed_logs[:5])
    )
    assert set(failing) <= {"firewall"}, failing
    assert failing.get("firewall", 0) <= len(answered) // 10, failing
    assert not stats.failures or len(stats.failures) < stats.starts // 10, stats.failures[:5]
    # Flat: the same handful of fds and threads, memory within allocator noise.
    assert after.fds <= before.fds + 4, (kinds_before, kinds_after)
    assert after.threads <= before.threads + 2, (before, after)
    assert after.rss_kib <= before.rss_kib * 1.3 + 16 * 1024, (before, after)
    dl.docker("network", "rm", "churnnet", check=False)
