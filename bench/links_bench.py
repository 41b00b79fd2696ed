"""Links collector cost on a fake Docker host: 1000 veths on 10 bridges.

Builds a lab host namespace with 10 bridges and 1000 veth pairs whose peer ends
live in "container" namespaces, then, inside the lab host, times (median of
runs, wall and CPU) the raw RTM_GETSTATS dump, LinksCollector.collect() in
steady state, a topology read (raw RTM_GETLINK dump + parse), read_routes()
(raw RTM_GETROUTE dumps) and, for comparison, pyroute2's get_links(), beside
the floors of docs performance.md; and the process's RSS after those reads.
Everything is torn down at the end.

    .venv/bin/python -m bench links [--veths 1000] [--bridges 10] [--peer-namespaces 1000]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402  (tests/lab.py)

from bench.hostlab import sh  # noqa: E402

FLOORS = {
    "stats_kernel": 0.29,
    "stats_python": 0.6,
    "getlink_kernel": 17.0,
    "getlink_python": 21.0,
    "pyroute2_get_links": 420.0,
}

MEASURE = r"""
import json, sys, time
from bench.timing import timed
from exporter.collectors import links
from exporter.netlink import route as rtnetlink

def rss_mb():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024

rss = {"imported": rss_mb()}
out = {}
import struct
def tail_only(buf, seq):  # no parsing: is the last message NLMSG_DONE?
    n = len(buf)
    return {}, n >= 20 and struct.unpack_from("=IHHI", buf, n - 20)[:2] == (20, 3)
req = rtnetlink.Requester()
request = rtnetlink.build_stats_request(0)
out["stats_recv"] = timed(lambda: req.dump(request, tail_only), 200)
req.close()
reader = rtnetlink.StatsReader()
out["n_stats"] = len(reader.read())
out["stats_parse"] = timed(reader.read, 200)
data = reader.read_raw()
out["parse_cold"] = timed(lambda: rtnetlink.parse_stats_messages(data), 200)
reader.close()

collector = links.LinksCollector()
collector.collect()
deadline = time.monotonic() + 30
while True:  # settle: late carrier/operstate events re-read the topology once more
    reads = collector.topology_reads
    collector.collect()
    if collector.topology_reads == reads or time.monotonic() > deadline:
        break
reads = collector.topology_reads
out["collect"] = timed(collector.collect, 100)
out["collect_topology_reads"] = collector.topology_reads - reads
out["n_links"] = len(collector.collect().links)
collector.close()

rss["collector"] = rss_mb()
out["topology"] = timed(links.read_topology, int(sys.argv[1]))
rss["topology"] = rss_mb()
out["routes"] = timed(links.read_routes, 3)
out["n_routes"] = len(rtnetlink.read_route_entries())
rss["routes"] = rss_mb()
from pyroute2 import IPRoute  # only for comparison: the exporter no longer uses it
rss["pyroute2_imported"] = rss_mb()
def pyroute2_links():
    with IPRoute() as ipr:
        return ipr.get_links()
out["pyroute2_topology"] = timed(pyroute2_links, int(sys.argv[1]))
rss["pyroute2_topology"] = rss_mb()
out["rss"] = rss
print(json.dumps(out))
"""


def build(host: str, peers: list[str], veths: int, bridges: int) -> None:
    """The lab host's bridges and veths, set up with one `ip -batch` per namespace."""
    hpath = f"/var/run/netns/{host}"
    cmds = ["link set lo up"]
    for b in range(bridges):
        cmds += [
            f"link add br{b} type bridge",
            f"addr add 10.{100 + b}.0.1/16 dev br{b}",
            f"link set br{b} up",
        ]
    per_ns: dict[str, list[str]] = {p: ["link set lo up"] for p in peers}
    for i in range(veths):
        ns = peers[i % len(peers)]
        peer_name = f"eth{i // len(peers)}"
        cmds += [
            f"link add veth{i:05d} type veth peer name {peer_name} netns {ns}",
            f"link set veth{i:05d} master br{i % bridges} up",
        ]
        b = i % bridges
        per_ns[ns] += [
            f"addr add 10.{100 + b}.{1 + i // 250}.{1 + i % 250}/16 dev {peer_name}",
            f"link set {peer_name} up",
        ]
    sh(["nsenter", f"--net={hpath}", "ip", "-batch", "-"], input="\n".join(cmds) + "\n")
    for ns, lines in per_ns.items():
        sh(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="links_bench")
    ap.add_argument("--veths", type=int, default=1000)
    ap.add_argument("--bridges", type=int, default=10)
    ap.add_argument("--peer-namespaces", type=int, default=1000)
    ap.add_argument("--topology-runs", type=int, default=5)
    args = ap.parse_args(argv if argv is not None else [])
    tag = secrets.token_hex(3)
    host = f"np-lbh-{tag}"
    peers = [f"np-lbp{i}-{tag}" for i in range(max(1, min(args.peer_namespaces, args.veths)))]
    try:
        t0 = time.monotonic()
        lab.add_namespaces([host, *peers])
        build(host, peers, args.veths, args.bridges)
        setup = time.monotonic() - t0
        print(
            f"lab: {args.veths} veths on {args.bridges} bridges in one host namespace, peer ends "
            f"in {len(peers)} namespaces ({-(-args.veths // len(peers))} per namespace at most); "
            f"set up in {setup:.1f} s",
            flush=True,
        )
        code = MEASURE
        raw = sh(
            [
                "nsenter",
                f"--net=/var/run/netns/{host}",
                sys.executable,
                "-c",
                code,
                str(args.topology_runs),
            ]
        )
        r = json.loads(raw)
    finally:
        t1 = time.monotonic()
        lab.delete_namespaces([host, *peers])
        print(f"torn down in {time.monotonic() - t1:.1f} s", flush=True)

    def row(label: str, key: str, floor: str) -> None:
        m = r[key]
        print(f"| {label} | {m['wall']:.3f} | {m['cpu']:.3f} | {floor} | {m['runs']} |")

    print(f"\n{r['n_links']} links in the host namespace, {r['n_stats']} in the stats dump")
    print("\n| what (median) | wall ms | CPU ms | floor ms | runs |")
    print("|---|---:|---:|---|---:|")
    row("raw RTM_GETSTATS dump, receive only", "stats_recv", f"{FLOORS['stats_kernel']} (kernel)")
    row(
        "raw RTM_GETSTATS dump + parse (idle links: objects reused)",
        "stats_parse",
        f"{FLOORS['stats_python']} (Python raw)",
    )
    row(
        "parse only, every link's counters new (no reuse)",
        "parse_cold",
        "-",
    )
    row(
        "LinksCollector.collect(), steady state",
        "collect",
        f"{FLOORS['stats_python']} (Python raw)",
    )
    row(
        "topology read (raw RTM_GETLINK dump + parse)",
        "topology",
        f"{FLOORS['getlink_kernel']} (kernel), {FLOORS['getlink_python']} (Python raw)",
    )
    row(f"read_routes() (raw RTM_GETROUTE, {r['n_routes']} routes)", "routes", "-")
    row(
        "for comparison: pyroute2 get_links()",
        "pyroute2_topology",
        f"{FLOORS['pyroute2_get_links']} (pyroute2)",
    )
    print(
        f"\ntopology re-reads during the {r['collect']['runs']} steady-state collects: "
        f"{r['collect_topology_reads']}"
    )
    m = r["rss"]
    print(
        f"RSS MB: {m['imported']:.1f} after imports, {m['collector']:.1f} with the collector, "
        f"{m['topology']:.1f} after the topology reads, {m['routes']:.1f} after the route "
        f"reads; {m['pyroute2_imported']:.1f} with pyroute2 imported, "
        f"{m['pyroute2_topology']:.1f} after its get_links()"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
