"""Benchmark: a Kubernetes node with ~100k kube-proxy rules (iptables-nft) and 110 pods.

Builds a node namespace with a ``cni0`` bridge and 110 pod namespaces on it,
loads Services in kube-proxy's iptables shapes (tests/kubeproxylab.py) until
the ruleset holds ``--rules`` rules, and runs inside the node, in one process:

- the daemon's poll (the collectors of a node: links, firewall, sysctl,
  routes, conntrack; plus kube-proxy's meaning and rendering the
  exposition), median CPU per steady poll;
- the kernel's own rule dump in the same run: the nf_tables GETRULE dumps of
  the ``ip`` family's nat and filter tables, received and not parsed, median
  CPU (mostly the kernel's, in ``sys``);

and prints their ratio (issue 12's target: at most 1.5x), the first poll
(rule text read and meaning derived once), and the series count: all, the
Service families, and the raw rule series (``KUBE-*`` kept out by default).

    sudo .venv/bin/python -m bench kubeproxy_bench
    sudo .venv/bin/python -m bench.kubeproxy_bench --rules 100000 --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import kubeproxylab as kp  # noqa: E402
from tests import lab  # noqa: E402

PODS = 110
TARGET_RATIO = 1.5

INNER = r"""
import json, socket, statistics, struct, sys, time
from exporter.config import Config
from exporter.netlink import core
from exporter.netlink.netfilter import NETLINK_NETFILTER, NFPROTO_IPV4
from exporter.netlink.netfilter.rules import build_getrule_dump
from exporter.pipeline import make_poller
from exporter.registry import NAMES

runs = int(sys.argv[1])
node = ("links", "firewall", "sysctl", "routes", "conntrack")
cfg = Config(collectors={n: n in node for n in NAMES}, poll_interval=60)
p = make_poller(cfg)
c0, w0 = time.process_time(), time.perf_counter()
p.poll_once()
first = ((time.process_time() - c0) * 1000, (time.perf_counter() - w0) * 1000)
p.poll_once()

done = struct.Struct("=IH")

def kernel_dump():
    sock = core.open_socket(NETLINK_NETFILTER, rcvbuf=1 << 20)
    size = 0
    try:
        for seq, table in enumerate(("nat", "filter"), start=1):
            sock.send(build_getrule_dump(seq, NFPROTO_IPV4, table))
            while True:
                data = sock.recv(core.RECV_SIZE)
                size += len(data)
                # NLMSG_DONE (20 bytes, type 3) is the dump's last message: look at the
                # datagram's tail only, so this loop stays the kernel's cost
                if len(data) >= 20 and done.unpack_from(data, len(data) - 20) == (20, 3):
                    break
    finally:
        sock.close()
    return size

poll_cpu, poll_wall, dump_cpu, dump_wall = [], [], [], []
for _ in range(runs):
    c0, w0 = time.process_time(), time.perf_counter()
    snap = p.poll_once()
    poll_cpu.append((time.process_time() - c0) * 1000)
    poll_wall.append((time.perf_counter() - w0) * 1000)
    c0, w0 = time.process_time(), time.perf_counter()
    dumped = kernel_dump()
    dump_cpu.append((time.process_time() - c0) * 1000)
    dump_wall.append((time.perf_counter() - w0) * 1000)
lines = [l for l in snap.body.splitlines() if l and not l.startswith(b"#")]
fw = snap.poll.view.firewall
print(json.dumps({
    "rules": sum(len(c.rules) for t in fw.tables for c in t.chains),
    "failed": [s.name for s in snap.poll.status if not s.success],
    "first_cpu_ms": round(first[0], 1), "first_wall_ms": round(first[1], 1),
    "poll_cpu_ms": round(statistics.median(poll_cpu), 1),
    "poll_wall_ms": round(statistics.median(poll_wall), 1),
    "dump_cpu_ms": round(statistics.median(dump_cpu), 1),
    "dump_wall_ms": round(statistics.median(dump_wall), 1),
    "dump_bytes": dumped,
    "series": len(lines),
    "service_series": sum(1 for l in lines if l.startswith(b"netpath_service_")),
    "raw_rule_series": sum(1 for l in lines if l.startswith(b"netpath_firewall_rule_packets")),
    "collectors": {s.name: round(s.duration * 1000, 1) for s in snap.poll.status},
}))
"""


def services_for(rules: int) -> list[kp.Svc]:
    """Services (4 endpoints each on average, a NodePort on every fourth) making about
    ``rules`` rules in kube-proxy's iptables shapes."""
    services = max(10, rules // 14)
    while True:
        svcs = kp.many_services(services, services * 4)
        text = kp.iptables_ruleset(svcs)
        count = sum(1 for line in text.splitlines() if line.startswith("-A "))
        if count >= rules:
            return svcs
        services = int(services * rules / count) + 10


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rules", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        sys.exit("kubeproxy_bench needs root (network namespaces, iptables)")
    svcs = services_for(args.rules)
    text = kp.iptables_ruleset(svcs)
    count = sum(1 for line in text.splitlines() if line.startswith("-A "))
    endpoints = sum(len(s.endpoints) for s in svcs)
    print(f"kube-proxy ruleset (iptables-nft): {count} rules, {len(svcs)} Services, "
          f"{endpoints} endpoints; {PODS} pods; {args.runs} polls")  # fmt: skip
    names = [f"np-kpb{i}-{os.getpid()}" for i in range(PODS)]
    with lab.netns("kpbench") as node:
        try:
            lab.add_bridge(node, "cni0", "10.244.0.1/16")
            lab.add_namespaces(names)
            for i, name in enumerate(names):
                pod = lab.Netns("x")
                pod.name, pod.path = name, f"/var/run/netns/{name}"
                lab.add_container(
                    node, pod, host_if=f"veth{i:04d}", bridge="cni0",
                    addr=f"10.244.{200 + i // 250}.{i % 250 + 2}/16", gateway="10.244.0.1",
                )  # fmt: skip
            t0 = time.perf_counter()
            node.exec("iptables-nft-restore", input=text)
            print(f"loaded in {time.perf_counter() - t0:.1f}s", flush=True)
            out = subprocess.run(
                ["nsenter", f"--net={node.path}", sys.executable, "-c", INNER, str(args.runs)],
                capture_output=True, text=True, cwd=str(REPO), check=False, timeout=3600,
            )  # fmt: skip
        finally:
            lab.delete_namespaces(names)
    if out.returncode != 0:
        sys.exit(f"inner run failed: {out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = r["poll_cpu_ms"] / r["dump_cpu_ms"] if r["dump_cpu_ms"] else float("inf")
    print(json.dumps(r, indent=1))
    print(
        f"\nsteady poll {r['poll_cpu_ms']} ms CPU ({r['poll_wall_ms']} ms wall) vs the kernel's "
        f"rule dump {r['dump_cpu_ms']} ms CPU ({r['dump_wall_ms']} ms wall, "
        f"{r['dump_bytes'] / 1e6:.1f} MB): {ratio:.2f}x (target <= {TARGET_RATIO}x)"
    )
    print(
        f"first poll {r['first_cpu_ms']} ms CPU; series {r['series']} "
        f"(Service families {r['service_series']}, raw rule series {r['raw_rule_series']})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
