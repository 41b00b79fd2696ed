"""Benchmark: the daemon on a Kubernetes node: 110 pods, ~100k kube-proxy rules (iptables-nft).

Builds a node namespace with a ``cni0`` bridge and 110 pod namespaces on it,
loads Services in kube-proxy's iptables shapes (tests/kubeproxylab.py) until
the ruleset holds ``--rules`` rules, and starts a client in pod 0 opening
``--rate`` connections a second to the ClusterIPs of a few Services (their
endpoints' addresses live on pod 1, which answers with a RST), so the
KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-* and FORWARD counters and the pods' links
move while the daemon polls. Then, as users run it:

- the daemon (``python -m exporter``, default collectors, ``--poll.interval``
  INTERVAL: the kube-proxy ruleset's dump costs seconds, so longer than the
  Docker bench's) and its CPU per poll: every thread's utime+stime from
  ``/proc/PID/stat`` over POLLS whole intervals after a warm-up; its CPU to
  start and answer with its first poll; the per-collector durations and the
  series of a scrape (all, the Service families, the raw rule series:
  ``KUBE-*`` chains are kept out by default); scrape p50, RSS and peak;
- in the same run, with the same traffic: the kernel floor (bench/kfloor.c:
  every rule counter of iptables-nft and every link's statistics), the cheaper
  of one GETRULE dump of every table and a dump per chain (``--rules
  nft-chains``: the kernel resumes a dump by walking the table from its start
  for every datagram, so one dump of kube-proxy's ~100k-rule nat table costs
  seconds), and ``iptables-nft-save -c`` as an anchor;

and prints the ratio of the daemon's poll CPU to the floor (issue #15: the
ratio of the Docker host, 1.5x on iptables-nft, must hold on this node).

    sudo .venv/bin/python -m bench kubeproxy
    sudo .venv/bin/python -m bench kubeproxy --rules 100000 --interval 15 --polls 8
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

from bench import floor  # noqa: E402
from bench.exporter_bench import PY, measure_daemon  # noqa: E402
from bench.hostlab import sh  # noqa: E402
from tests import kubeproxylab as kp  # noqa: E402
from tests import lab  # noqa: E402

PODS = 110
TARGET_RATIO = 1.5
SERVICES_WITH_TRAFFIC = 10

# One scrape: the per-collector durations, the poll's, and the series counts.
BREAKDOWN = r"""
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("GET", "/metrics")
lines = [l for l in c.getresponse().read().decode().splitlines() if l and not l.startswith("#")]
def value(l): return float(l.rsplit(" ", 1)[1])
print(json.dumps({
    "collectors": {l.split('"')[1]: round(value(l) * 1000, 1) for l in lines
                   if l.startswith("netpath_collector_duration_seconds{")},
    "poll_wall_ms": next(value(l) * 1000 for l in lines
                         if l.startswith("netpath_poll_duration_seconds ")),
    "series": len(lines),
    "service_series": sum(1 for l in lines if l.startswith("netpath_service_")),
    "raw_rule_series": sum(1 for l in lines if l.startswith("netpath_firewall_rule_packets")),
    "endpoint_connections": sum(value(l) for l in lines
                                if l.startswith("netpath_service_endpoint_connections_total{")),
}))
"""

# In pod 0: ``rate`` connections a second round robin over the addresses given (port 80),
# each a SYN from a fresh non-blocking socket closed at once (the reply needs no socket).
CLIENT = r"""
import errno, socket, sys, time
rate, targets = int(sys.argv[1]), [(a, 80) for a in sys.argv[2:]]
print("ready", flush=True)
i, next_at = 0, time.monotonic()
while True:
    s = socket.socket()
    s.setblocking(False)
    err = s.connect_ex(targets[i % len(targets)])
    if err not in (0, errno.EINPROGRESS):
        sys.exit(f"connect {targets[i % len(targets)]}: {errno.errorcode.get(err, err)}")
    s.close()
    i += 1
    next_at += 1 / rate
    time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the generator
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


def in_node(node: lab.Netns, *cmd: str) -> list[str]:
    return ["nsenter", f"--net={node.path}", *cmd]


def build_pods(node: lab.Netns, names: list[str]) -> list[lab.Netns]:
    lab.add_namespaces(names)
    pods = []
    for i, name in enumerate(names):
        pod = lab.Netns("x")
        pod.name, pod.path = name, f"/var/run/netns/{name}"
        lab.add_container(
            node, pod, host_if=f"veth{i:04d}", bridge="cni0",
            addr=f"10.244.{200 + i // 250}.{i % 250 + 2}/16", gateway="10.244.0.1",
        )  # fmt: skip
        pods.append(pod)
    return pods


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kubeproxy_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=100_000)
    ap.add_argument("--interval", type=float, default=15.0, help="the daemon's poll interval (s)")
    ap.add_argument("--polls", type=int, default=8, help="polls in the CPU window")
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument(
        "--scrape-every",
        type=float,
        default=15.0,
        help="a gzip scrape every so many seconds during the CPU window (0: none; "
        "Prometheus' default is 15 s)",
    )
    ap.add_argument("--floor-runs", type=int, default=10)
    ap.add_argument("--save-runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50, help="client connections a second")
    args = ap.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        sys.exit("kubeproxy_bench needs root (network namespaces, iptables)")
    svcs = services_for(args.rules)
    text = kp.iptables_ruleset(svcs)
    count = sum(1 for line in text.splitlines() if line.startswith("-A "))
    endpoints = sum(len(s.endpoints) for s in svcs)
    # Service 0's first endpoint would be cni0's own address: traffic goes to the next ones
    busy = svcs[1 : 1 + SERVICES_WITH_TRAFFIC]
    names = [f"np-kpb{i}-{os.getpid()}" for i in range(PODS)]
    with lab.netns("kpbench") as node:
        client: subprocess.Popen[str] | None = None
        try:
            t0 = time.monotonic()
            lab.add_bridge(node, "cni0", "10.244.0.1/16")
            lab.enable_forwarding(node)
            pods = build_pods(node, names)
            # the busy Services' endpoints answer on pod 1 (a RST: nothing listens)
            sh(
                ["ip", "-n", pods[1].name, "-batch", "-"],
                input="".join(
                    f"addr add {ip}/32 dev eth0\n" for s in busy for ip, _ in s.endpoints
                ),
            )
            t1 = time.monotonic()
            node.exec("iptables-nft-restore", input=text)
            loaded = time.monotonic() - t1
            client = subprocess.Popen(
                in_node(pods[0], PY, "-c", CLIENT, str(args.rate), *(s.cluster_ip for s in busy)),
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError("the traffic client did not start")
            print(
                f"node: {PODS} pods on cni0; kube-proxy ruleset (iptables-nft): {count} rules, "
                f"{len(svcs)} Services, {endpoints} endpoints, loaded in {loaded:.1f} s (lab "
                f"built in {time.monotonic() - t0:.0f} s); traffic: {args.rate} connections/s "
                f"from pod 0 to {len(busy)} ClusterIPs. Daemon: default collectors, poll every "
                f"{args.interval:g} s, CPU over {args.polls} polls with a gzip scrape every "
                f"{args.scrape_every:g} s; floor: median of "
                f"{args.floor_runs} reads",
                flush=True,
            )
            d = measure_daemon(
                lambda *cmd: in_node(node, *cmd),
                args.polls,
                args.interval,
                args.scrapes,
                scrape_every=args.scrape_every,
                warmup=3,
                probe=lambda port: json.loads(sh(in_node(node, PY, "-c", BREAKDOWN, str(port)))),
            )
            d["first_poll_wall_ms"] = d["probe_first"]["poll_wall_ms"]
            d["breakdown"] = d["probe_steady"]
            k = floor.kernel_floor(node.name, "iptables-nft", args.floor_runs)
            save = floor.iptables_save(node.name, "iptables-nft", args.save_runs)
            if client.poll() is not None:
                raise RuntimeError(f"the traffic client exited ({client.returncode})")
        finally:
            if client is not None:
                client.terminate()
                client.wait(10)
            lab.delete_namespaces(names)
    b = d["breakdown"]
    ratio = d["cpu_ms"] / k["cpu_ms"]
    print(
        f"\ndaemon CPU/poll {d['cpu_ms']:.1f} ms (user {d['user_ms']:.1f}, sys "
        f"{d['sys_ms']:.1f}; over {d['window_s']:.0f} s) vs the kernel floor "
        f"{k['cpu_ms']:.1f} ms ({k['rules']:.0f} rules, {k['links']:.0f} links; wall "
        f"{k['wall_ms']:.1f} ms; the cheaper of: one dump of every table "
        f"{k.get('whole_cpu_ms', k['cpu_ms']):.1f} ms, a dump per chain "
        f"{k.get('chains_cpu_ms', k['cpu_ms']):.1f} ms): {ratio:.2f}x (target <= "
        f"{TARGET_RATIO}x: "
        f"{'ok' if ratio <= TARGET_RATIO else 'OVER'}); iptables-nft-save -c + "
        f"ip6tables-nft-save -c {save['cpu_ms']:.0f} ms CPU per read"
    )
    print(
        f"poll wall {b['poll_wall_ms']:.0f} ms; collectors (wall ms): {b['collectors']}"
        + (f"; FAILED collectors: {d['failed']}" if d["failed"] else "")
    )
    print(
        f"start: answered after {d['ready_s']:.1f} s, {d['start_cpu_ms']:.0f} ms CPU "
        f"(interpreter, imports, first poll: {d['first_poll_wall_ms']:.0f} ms wall)"
    )
    print(
        f"traffic seen: {b['endpoint_connections']:.0f} connections to endpoints "
        f"(netpath_service_endpoint_connections_total), rule counters {k['packets']:.0f} "
        f"packets in all\n"
        f"series {b['series']} (Service families {b['service_series']}, raw rule series "
        f"{b['raw_rule_series']}); exposition {d['bytes'] / 1e6:.2f} MB "
        f"({d['gzip'][1] / 1e6:.2f} MB gzip); scrape p50 {d['plain'][0]:.2f} ms, gzip "
        f"{d['gzip'][0]:.2f} ms"
        + (
            f" (in the window, gzip, each of a new poll: p50 {prom['p50']:.1f} ms, max "
            f"{prom['max']:.1f} ms)"
            if (prom := d["prometheus"])
            else ""
        )
        + f"; RSS {d['rss_mb']:.1f} MB, peak {d['peak_mb']:.1f} MB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
