"""The kernel floor and the anchors the daemon benchmark prints beside its own figures (issue #15).

- :func:`kernel_floor`: what the kernel itself costs to hand over every rule counter and
  every link's statistics, measured by bench/kfloor.c (a minimal C reader, built here by
  :func:`build`) in the lab's network namespace. The daemon's poll CPU is judged as a
  ratio to this floor.
- :func:`iptables_save`: ``iptables-*-save -c`` plus ``ip6tables-*-save -c``, what an
  exporter that execs the tools pays per read.
- :func:`node_exporter_netdev`: Debian's node_exporter with only its netdev collector,
  scraped in the lab's namespace.

Every figure is a median over repeated runs, in milliseconds. Each function runs its
measured work inside the namespace (``/var/run/netns/NAME``, as ``ip netns`` makes it) and
raises :class:`FloorError` naming what failed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).resolve().parent / "kfloor.c"
BUILD_DIR = REPO / ".bench-build"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"

# backend -> (kfloor --rules, the save tools' infix)
BACKENDS = {"iptables-nft": "nft", "iptables-legacy": "legacy"}


class FloorError(RuntimeError):
    """A floor or anchor could not be measured; the message names the step."""


def _backend(backend: str) -> str:
    try:
        return BACKENDS[backend]
    except KeyError:
        known = ", ".join(BACKENDS)
        raise FloorError(f"unknown backend {backend!r} (known: {known})") from None


def _netns_path(netns: str) -> str:
    path = f"/var/run/netns/{netns}"
    if not os.path.exists(path):
        raise FloorError(f"network namespace {netns!r} does not exist ({path})")
    return path


def _in_netns(netns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net={_netns_path(netns)}", *cmd]


def _json_line(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, float]:
    if proc.returncode != 0:
        raise FloorError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}")
    lines = proc.stdout.strip().splitlines()
    try:
        out: dict[str, float] = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise FloorError(f"{what} printed no JSON line: {proc.stdout[-200:]!r}") from None
    return out


# --------------------------------------------------------------------------
# The kernel floor
# --------------------------------------------------------------------------


def build() -> Path:
    """bench/kfloor.c compiled with the system compiler (``cc -O2 -Wall``) into .bench-build/.

    Rebuilt when the source is newer than the binary.
    """
    binary = BUILD_DIR / "kfloor"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FloorError(
            "no C compiler (cc) to build bench/kfloor.c: install gcc and libc6-dev "
            "(./dev.sh bench does)"
        )
    BUILD_DIR.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="kfloor.", dir=BUILD_DIR)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise FloorError(f"{cc} could not build {SOURCE}: {proc.stderr.strip()}")
        os.replace(tmp, binary)  # atomic: a concurrent build never runs a half-written binary
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def kfloor(netns: str, *args: str) -> dict[str, float]:
    """Run kfloor with ``args`` (``--rules nft|legacy``, ``--links``, ``--iterations N``,
    ``--interval MS``)
    inside ``netns``; its JSON line as a dict (see bench/kfloor.c)."""
    proc = subprocess.run(
        _in_netns(netns, str(build()), *args),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return _json_line(proc, f"kfloor {' '.join(args)} in {netns}")


def kernel_floor(
    netns: str, backend: str, iterations: int = 20, interval: float = 0.0
) -> dict[str, float]:
    """The kernel's own cost of one poll's reads in ``netns``: every rule counter of
    ``backend`` ("iptables-nft" or "iptables-legacy") and every link's statistics.

    With ``interval`` (seconds) the reads are that far apart, as a poller's
    are: after a second idle the same read costs 10-20% more than back to
    back (caches gone cold), and the daemon pays that too.

    Keys: iterations, rules, links, packets, bytes (rule counter sums), rx_bytes,
    tx_bytes (link sums), cpu_ms, user_ms, sys_ms, wall_ms (medians per iteration), read
    (how: nft, nft-chains or legacy; for nf_tables the cheaper of one dump and a dump per
    chain, the other's cpu_ms as whole_cpu_ms or chains_cpu_ms).
    """
    rules = _backend(backend)
    common = ("--links", "--iterations", str(iterations), "--interval", str(round(interval * 1000)))
    floor = kfloor(netns, "--rules", rules, *common)
    floor["read"] = rules
    if rules == "nft":
        # A dump per chain walks less of the table than one dump of it (the
        # kernel resumes a dump from the table's start): the floor is the cheaper.
        chains = kfloor(netns, "--rules", "nft-chains", *common)
        chains["read"] = "nft-chains"
        chains["whole_cpu_ms"] = floor["cpu_ms"]
        if chains["cpu_ms"] < floor["cpu_ms"]:
            return chains
        floor["chains_cpu_ms"] = chains["cpu_ms"]
    return floor


# --------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------

# Runs in the namespace: each argv[2:] command (words joined by ",") argv[1] times; CPU of
# the commands from RUSAGE_CHILDREN, so nsenter and this interpreter's start do not count.
_SAVE_CHILD = r"""
import json, resource, statistics, subprocess, sys, time

def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000

runs, cmds = int(sys.argv[1]), [c.split(",") for c in sys.argv[2:]]
cpus = {c[0]: [] for c in cmds}
walls = {c[0]: [] for c in cmds}
rules = 0
for _ in range(runs):
    rules = 0
    for cmd in cmds:
        c0, w0 = cpu(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls[cmd[0]].append((time.perf_counter() - w0) * 1000)
        cpus[cmd[0]].append(cpu() - c0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        rules += sum(1 for line in proc.stdout.splitlines() if " -A " in f" {line}")
out = {"runs": runs, "rules": rules}
out["cpu_ms"] = round(statistics.median(map(sum, zip(*cpus.values()))), 3)
out["wall_ms"] = round(statistics.median(map(sum, zip(*walls.values()))), 3)
for cmd, key in zip(cmds, ("ipv4", "ipv6")):
    out[f"{key}_cpu_ms"] = round(statistics.median(cpus[cmd[0]]), 3)
    out[f"{key}_wall_ms"] = round(statistics.median(walls[cmd[0]]), 3)
print(json.dumps(out))
"""


def iptables_save(netns: str, backend: str, runs: int = 10) -> dict[str, float]:
    """``iptables-X-save -c`` then ``ip6tables-X-save -c`` (X: nft or legacy), ``runs`` times
    in ``netns``.

    Keys: runs, rules (``-A`` lines of the last run, both families), cpu_ms and wall_ms
    (median per run of both commands), ipv4_cpu_ms, ipv4_wall_ms, ipv6_cpu_ms, ipv6_wall_ms.
    """
    x = _backend(backend)
    cmds = [f"iptables-{x}-save,-c", f"ip6tables-{x}-save,-c"]
    proc = subprocess.run(
        _in_netns(netns, sys.executable, "-c", _SAVE_CHILD, str(runs), *cmds),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return _json_line(proc, f"iptables-{x}-save -c in {netns}")


# Runs in the namespace: prints a free port; waits (deadline) until node_exporter answers
# there and prints "ready"; on a line from stdin scrapes argv[1] times like Prometheus does
# (gzip if argv[2] == "1") and prints the wall times.
_SCRAPE_CHILD = r"""
import http.client, json, socket, sys, time

scrapes, gzip = int(sys.argv[1]), sys.argv[2] == "1"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
print(port, flush=True)

def scrape():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"} if gzip else {})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"GET /metrics answered {resp.status}: {body[:200]!r}")
        return len(body)
    finally:
        conn.close()

deadline = time.monotonic() + 20
while True:
    try:
        scrape()
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"node_exporter did not answer on 127.0.0.1:{port} within 20 s: {exc}")
        time.sleep(0.05)
print("ready", flush=True)
sys.stdin.readline()
walls, size = [], 0
for _ in range(scrapes):
    w0 = time.perf_counter()
    size = scrape()
    walls.append((time.perf_counter() - w0) * 1000)
print(json.dumps({"walls": walls, "body_bytes": size}), flush=True)
"""


def _cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of process ``pid`` so far, in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def node_exporter_netdev(netns: str, scrapes: int = 20, *, gzip: bool = True) -> dict[str, float]:
    """Debian's node_exporter (:data:`NODE_EXPORTER`) with only the netdev collector, started
    in ``netns`` and scraped ``scrapes`` times from inside it once it answers (the first
    scrape, at start, is not counted).

    Keys: scrapes, wall_ms (median per scrape), cpu_ms (node_exporter's CPU over all
    scrapes / scrapes, from /proc/PID/stat: clock-tick resolution, 10 ms over the whole
    run), body_bytes (of the last scrape, gzipped when ``gzip``), gzip (1 or 0).
    """
    if not os.access(NODE_EXPORTER, os.X_OK):
        raise FloorError(
            f"{NODE_EXPORTER} not found: install Debian's prometheus-node-exporter "
            "(./dev.sh bench does)"
        )
    path = _netns_path(netns)
    with tempfile.TemporaryFile() as log:
        return _node_exporter_run(netns, path, scrapes, gzip, log)


def _node_exporter_run(
    netns: str, path: str, scrapes: int, gzip: bool, log: IO[bytes]
) -> dict[str, float]:
    scraper = [sys.executable, "-c", _SCRAPE_CHILD, str(scrapes), "1" if gzip else "0"]
    child = subprocess.Popen(
        ["nsenter", f"--net={path}", *scraper],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    exporter: subprocess.Popen[bytes] | None = None
    try:
        assert child.stdin is not None and child.stdout is not None
        port = child.stdout.readline().strip()
        if not port.isdigit():
            raise FloorError(f"the scraper in {netns} did not start: {_tail(child)}")
        flags = ["--collector.disable-defaults", "--collector.netdev"]
        # nsenter execs node_exporter: the PID is node_exporter's.
        exporter = subprocess.Popen(
            [
                "nsenter",
                f"--net={path}",
                NODE_EXPORTER,
                *flags,
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        if child.stdout.readline().strip() != "ready":
            exited = exporter.poll()
            log.seek(0)
            said = log.read().decode(errors="replace").strip()[-500:]
            state = "running" if exited is None else f"exited {exited}"
            raise FloorError(
                f"node_exporter in {netns} did not answer ({state}): {_tail(child)}; "
                f"its log: {said}"
            )
        cpu0 = _cpu_ticks(exporter.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        cpu1 = _cpu_ticks(exporter.pid)
        if not line.strip():
            raise FloorError(f"scraping node_exporter in {netns} failed: {_tail(child)}")
        result = json.loads(line)
        return {
            "scrapes": scrapes,
            "wall_ms": round(statistics.median(result["walls"]), 3),
            "cpu_ms": round((cpu1 - cpu0) * 1000 / os.sysconf("SC_CLK_TCK") / scrapes, 3),
            "body_bytes": result["body_bytes"],
            "gzip": int(gzip),
        }
    finally:
        for proc in (exporter, child):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()


def _tail(child: subprocess.Popen[str]) -> str:
    """What a failed child said on stderr (it is ended first if still running)."""
    if child.poll() is None:
        child.kill()
    _, err = child.communicate(timeout=10)
    return (err or "").strip()[-500:] or f"exit {child.returncode}"
