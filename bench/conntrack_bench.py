"""Conntrack attribution dump cost at 100k and 500k entries, beside ``conntrack -L``.

For each size, a lab namespace's table is filled with that many unreplied UDP
flows over loopback (100 source addresses, so attribution has pairs to sum; the
namespace's UDP timeout raised so nothing expires), then, inside it, timed:

- the collector's cheap figures (table size and limit, per-CPU statistics);
- the attribution dump (``ConntrackReader.dump_sums``: every entry parsed,
  summed per source pair), and the same with the services' active-connection
  sums; and the dump with parsing only (no sums);
- ``conntrack -L > /dev/null`` (the kernel's dump printed by conntrack-tools),
  its CPU from the children's rusage;

each the median of ``--runs``, with CPU per entry and the RSS the dump adds
(VmHWM after the dumps minus VmRSS before; the peak is reset first).

``nf_conntrack_max`` is one value for every namespace, writable only in the
host's. When a size is above it the bench raises it for the run and puts the
old value back at the end (``--no-raise-limit`` skips such sizes instead).

    .venv/bin/python -m bench conntrack [--sizes 100000,500000] [--runs 3] [--no-raise-limit]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402  (tests/lab.py)

MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")

NFT_CT = """table ip lab {
  chain out {
    type filter hook output priority 0; policy accept;
    ct state new counter
  }
}
"""

FILL = r"""
import socket, sys
n = int(sys.argv[1])
socks = []
for i in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.2.0.{i + 1}", 0))
    socks.append(s)
for i in range(n):
    k = i // 100
    socks[i % 100].sendto(b"", (f"127.1.{k // 60000}.1", 1 + k % 60000))
"""

MEASURE = r"""
import json, resource, statistics, subprocess, sys, time
from bench.timing import timed
from exporter.collectors.conntrack import ConntrackCollector
from exporter.netlink.conntrack import ConntrackReader

runs = int(sys.argv[1])

def status(key):
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith(key)).split()[1]) / 1024

out = {}
reader = ConntrackReader()
out["entries"] = reader.table().entries
collector = ConntrackCollector(interval=3600.0)
collector.collect()  # the first poll dumps; the next ones are the cheap figures only
out["cheap"] = timed(collector.collect, 20)
bound = 10 ** 8
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM back to VmRSS
    return status("VmRSS")

out["rss_mb"] = status("VmRSS")
last = {}
def attribution():
    last["r"] = reader.dump_sums(bound)
before = reset_peak()
out["dump_sums"] = timed(attribution, runs)
out["rss_dump_mb"] = status("VmHWM") - before
out["pairs"] = len(last["r"].pairs)
out["read"] = last["r"].entries
del last["r"]
def attribution_active():
    last["r"] = reader.dump_sums(bound, active=True)
before = reset_peak()
out["dump_active"] = timed(attribution_active, runs)
out["rss_active_mb"] = status("VmHWM") - before
out["active_keys"] = len(last["r"].active)
del last["r"]
out["dump_parse"] = timed(lambda: reader.dump(lambda batch: None, bound), runs)
walls, cpus = [], []
for _ in range(runs):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = time.perf_counter()
    subprocess.run(["conntrack", "-L"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    walls.append((time.perf_counter() - w) * 1000)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000)
out["conntrack_L"] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                      "runs": runs}
print(json.dumps(out))
"""


def measure(size: int, runs: int) -> dict[str, object]:
    with lab.netns("ctb") as ns:
        ns.exec("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=3600")
        ns.exec("nft", "-f", "-", input=NFT_CT)
        t0 = time.monotonic()
        ns.exec(sys.executable, "-c", FILL, str(size))
        fill = time.monotonic() - t0
        proc = subprocess.run(
            ["nsenter", f"--net={ns.path}", sys.executable, "-c", MEASURE, str(runs)],
            capture_output=True, text=True, timeout=1800, cwd=REPO, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"measuring failed: {proc.stderr.strip()[-2000:]}")
        r: dict[str, object] = json.loads(proc.stdout)
        r["fill_s"] = fill
        return r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="conntrack_bench")
    ap.add_argument("--sizes", default="100000,500000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-raise-limit", action="store_true")
    args = ap.parse_args(argv if argv is not None else [])
    sizes = [int(s) for s in args.sizes.split(",")]
    old_max = int(MAX.read_text())
    need = max(sizes) + 1000
    results: dict[int, dict[str, object]] = {}
    try:
        if need > old_max and not args.no_raise_limit:
            MAX.write_text(str(need))
            print(f"nf_conntrack_max raised from {old_max} to {need} for the bench", flush=True)
        limit = int(MAX.read_text())
        for size in sizes:
            if size > limit:
                print(f"{size} entries: skipped (nf_conntrack_max is {limit})")
                continue
            results[size] = measure(size, args.runs)
            print(f"{size} entries measured (table filled in {results[size]['fill_s']:.1f} s)",
                  flush=True)  # fmt: skip
    finally:
        if int(MAX.read_text()) != old_max:
            MAX.write_text(str(old_max))
            print(f"nf_conntrack_max restored to {old_max}", flush=True)

    print("\n| entries | what (median) | wall ms | CPU ms | CPU us/entry | runs |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in results.values():
        n = int(r["entries"])  # type: ignore[call-overload]

        def row(label: str, key: str, per_entry: bool = True, n: int = n, r: dict = r) -> None:  # type: ignore[type-arg]
            m = r[key]
            per = f"{m['cpu'] * 1000 / n:.2f}" if per_entry and n else "-"
            wall, cpu = (f"{m[k]:.3f}" if m[k] < 10 else f"{m[k]:.1f}" for k in ("wall", "cpu"))
            print(f"| {n} | {label} | {wall} | {cpu} | {per} | {m['runs']} |")

        row("attribution dump (parse + sums per source pair)", "dump_sums")
        row("attribution dump + active-connection sums", "dump_active")
        row("dump, parse only", "dump_parse")
        row("`conntrack -L > /dev/null`", "conntrack_L")
        row("cheap figures (size, limit, statistics) per poll", "cheap", per_entry=False)
    print()
    for r in results.values():
        ratio = r["dump_sums"]["cpu"] / r["conntrack_L"]["cpu"]  # type: ignore[index]
        wall = r["dump_sums"]["wall"] / r["conntrack_L"]["wall"]  # type: ignore[index]
        print(
            f"{r['entries']} entries: attribution dump / conntrack -L = {ratio:.2f}x CPU, "
            f"{wall:.2f}x wall; {r['pairs']} source pairs, {r['active_keys']} active keys; "
            f"RSS {r['rss_mb']:.1f} MB before dumping; a dump adds {r['rss_dump_mb']:.1f} MB at "
            f"its peak, {r['rss_active_mb']:.1f} MB with the active-connection sums"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
