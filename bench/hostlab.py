"""A busy Docker-shaped lab host for the benchmarks: veths, peers, a ruleset, live traffic.

The host namespace holds ``bridges`` bridges with ``veths`` veth host ends on
them, each peer end (``eth0``) in a "container" namespace of its own with an
address and a default route, like Docker wires them; an "outside" client
namespace reaches the host through ``ext0``. The classic Docker ruleset is
loaded with one published port per container (host port 10000+i -> :80), padded
with more published ports to the rule count asked for.

:meth:`HostLab.traffic` starts a traffic generator (``bench/traffic.py``) that
moves the counters a poll reads, as on a busy host: TCP connections from the
client to published ports (nat DNAT, filter FORWARD/DOCKER rules and the
container's veth), a broadcast per bridge (every veth's counters), and
connections between networks that Docker's isolation rules drop.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402  (tests/lab.py)

BRIDGES = 10
HOST_EXT = "192.168.250.1"
NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
CLIENT_EXT = "192.168.250.2"


def bridge_name(b: int) -> str:
    return f"br-bench{b:06d}"


def container_ip(i: int) -> str:
    """The address of container ``i``: bridge i % BRIDGES, as build_ruleset numbers them."""
    b, n = i % BRIDGES, i // BRIDGES
    return f"10.{100 + b}.{n // 250}.{n % 250 + 2}"


def published_port(i: int) -> int:
    return 10000 + i


def build_ruleset(rules: int) -> tuple[str, int]:
    """Classic Docker iptables-restore text with about ``rules`` rules; returns (text, rules)."""
    per_bridge, fixed = 8, 6
    containers = max(0, (rules - per_bridge * BRIDGES - fixed) // 3)
    networks = [(bridge_name(b), f"10.{100 + b}.0.0/16") for b in range(BRIDGES)]
    ports = [
        (networks[i % BRIDGES][0], container_ip(i), published_port(i), 80)
        for i in range(containers)
    ]
    text = lab.docker_iptables_ruleset("classic", networks, ports)
    count = sum(1 for line in text.splitlines() if line.startswith("-A "))
    return text, count


def with_counters(ruleset: str) -> str:
    """The ruleset with every rule's counters preset (for ``-restore -c``) to busy-host sizes.

    An idle lab's counters are mostly 0; a busy host's run to 10-13 digits, and
    printing them costs more. Deterministic.
    """
    rnd = random.Random(2)  # noqa: S311 - sizes for a benchmark, not secrets
    out = []
    for line in ruleset.splitlines():
        if line.startswith("-A "):
            packets = rnd.randrange(10**3, 10**10)
            out.append(f"[{packets}:{packets * rnd.randrange(60, 1500)}] {line}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def sh(cmd: list[str], *, input: str | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(
        cmd, check=False, input=input, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed: {proc.stderr.strip()[:2000]}")
    return proc.stdout


class HostLab:
    """The lab host; a context manager that tears every namespace down on exit."""

    def __init__(self, veths: int, rules: int, bridges: int = BRIDGES) -> None:
        if bridges != BRIDGES:
            raise ValueError(f"the ruleset is built for {BRIDGES} bridges")
        tag = secrets.token_hex(3)
        self.veths = veths
        self.host = f"np-bh-{tag}"
        self.client = f"np-bc-{tag}"
        self.peers = [f"np-bp{i}-{tag}" for i in range(veths)]
        self.ruleset, self.rules = build_ruleset(rules)
        if (self.rules - 8 * BRIDGES - 6) // 3 < veths:
            raise ValueError(f"{rules} rules publish fewer ports than {veths} containers")
        self.backend: str | None = None
        self._neigh_saved: dict[Path, str] = {}

    @property
    def host_path(self) -> str:
        return f"/var/run/netns/{self.host}"

    def in_host(self, *cmd: str) -> list[str]:
        """``cmd`` run inside the lab host's network namespace."""
        return ["nsenter", f"--net={self.host_path}", *cmd]

    def __enter__(self) -> HostLab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        self._raise_neighbour_limits()
        lab.add_namespaces([self.host, self.client, *self.peers])
        cmds = ["link set lo up"]
        for b in range(BRIDGES):
            cmds += [
                f"link add {bridge_name(b)} type bridge",
                f"addr add 10.{100 + b}.0.1/16 dev {bridge_name(b)}",
                f"link set {bridge_name(b)} up",
            ]
        for i, ns in enumerate(self.peers):
            cmds += [
                f"link add veth{i:05d} type veth peer name eth0 netns {ns}",
                f"link set veth{i:05d} master {bridge_name(i % BRIDGES)} up",
            ]
        cmds += [
            f"link add ext0 type veth peer name eth0 netns {self.client}",
            f"addr add {HOST_EXT}/24 dev ext0",
            "link set ext0 up",
        ]
        sh(["ip", "-n", self.host, "-batch", "-"], input="\n".join(cmds) + "\n")
        sh(self.in_host("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        client = [
            "link set lo up",
            f"addr add {CLIENT_EXT}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {HOST_EXT}",
        ]
        sh(["ip", "-n", self.client, "-batch", "-"], input="\n".join(client) + "\n")
        # One ip process per container: ip -batch cannot switch namespaces.
        procs = []
        for i, ns in enumerate(self.peers):
            b = i % BRIDGES
            batch = (
                f"addr add {container_ip(i)}/16 dev eth0\nlink set eth0 up\n"
                f"route add default via 10.{100 + b}.0.1\n"
            )
            p = subprocess.Popen(
                ["ip", "-n", ns, "-batch", "-"],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            p.stdin.write(batch)  # type: ignore[union-attr]
            p.stdin.close()  # type: ignore[union-attr]
            procs.append(p)
            if len(procs) >= 32:
                self._reap(procs.pop(0))
        for p in procs:
            self._reap(p)

    @staticmethod
    def _reap(p: subprocess.Popen[str]) -> None:
        if p.wait(60) != 0:
            raise RuntimeError(f"configuring a container failed: {p.stderr.read()[:500]}")  # type: ignore[union-attr]

    def load(self, backend: str, *, counters: bool = False) -> None:
        """Load the ruleset with ``iptables-{backend}-restore`` (after flushing any other)."""
        if self.backend is not None:
            self.flush()
        restore = self.in_host(f"iptables-{backend}-restore")
        if counters:
            sh([*restore, "-c"], input=with_counters(self.ruleset))
        else:
            sh(restore, input=self.ruleset)
        self.backend = backend

    def flush(self) -> None:
        if self.backend is None:
            return
        for table in ("filter", "nat"):
            for op in ("-F", "-X"):
                sh(self.in_host(f"iptables-{self.backend}", "-t", table, op))
        if self.backend == "nft":
            with contextlib.suppress(RuntimeError):
                sh(self.in_host("nft", "flush", "ruleset"))
        self.backend = None

    @contextlib.contextmanager
    def traffic(self, rate: int = 200) -> Iterator[subprocess.Popen[str]]:
        """The traffic generator running (``rate`` new connections a second), stopped on exit."""
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.traffic",
                "--host",
                self.host_path,
                "--client",
                f"/var/run/netns/{self.client}",
                "--peer",
                f"/var/run/netns/{self.peers[0]}",
                "--containers",
                str(self.veths),
                "--rate",
                str(rate),
            ],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "ready" once its sockets are set up
            if line.strip() != "ready":
                raise RuntimeError(f"traffic generator did not start: {line!r}")
            yield proc
        finally:
            proc.terminate()
            proc.wait(20)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.flush()
        lab.delete_namespaces([self.host, self.client, *self.peers])
        for path, value in self._neigh_saved.items():
            path.write_text(value)
        self._neigh_saved = {}

    def _raise_neighbour_limits(self) -> None:
        """Room in the IPv4 neighbour table for every container, for the lab's lifetime.

        The table's gc_thresh limits are the machine's, shared by every
        namespace: two entries a container (host to container, container to
        gateway) overflow the default 1024, and then no namespace on the
        machine can resolve a new neighbour. A real host with this many
        containers raises them too. The old values come back on close.
        """
        want = {"gc_thresh1": 4 * self.veths, "gc_thresh2": 8 * self.veths}
        want["gc_thresh3"] = 16 * self.veths
        for name, value in want.items():
            path = NEIGH / name
            old = path.read_text()
            if int(old) < value:
                self._neigh_saved[path] = old
                path.write_text(f"{value}\n")


def main() -> None:
    """Build a lab and keep it with traffic until interrupted: for profiling by hand."""
    import argparse  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="hostlab", description=main.__doc__)
    ap.add_argument("--veths", type=int, default=1000)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--backend", default="nft", choices=("nft", "legacy"))
    ap.add_argument("--rate", type=int, default=200)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on kill too
    t0 = time.monotonic()
    with HostLab(args.veths, args.rules) as host:
        host.load(args.backend)
        print(f"lab {host.host} built in {time.monotonic() - t0:.1f} s", flush=True)
        with host.traffic(args.rate), contextlib.suppress(KeyboardInterrupt):
            print(f"traffic on; run things with: nsenter --net={host.host_path} ...", flush=True)
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
