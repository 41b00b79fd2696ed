"""Benchmark: the firewall collector on a classic Docker ruleset padded to ~10k rules.

Builds one throw-away lab namespace per iptables backend (iptables-nft,
iptables-legacy), loads the classic Docker layout for 10 bridges and enough
published-port containers (3 rules each, 8 per bridge) to reach the target,
every rule in an exported chain, and runs the collector *inside* the namespace.
Prints median wall and CPU milliseconds per ``collect()`` in steady state
(unchanged ruleset: raw counters only), the first poll (text path), the raw
dump alone and ``render_firewall``, beside the measured floors (README.md,
section Performance).

    sudo .venv/bin/python bench/firewall_bench.py [--rules 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402  (tests/lab.py)

from bench.hostlab import BRIDGES, build_ruleset  # noqa: E402
from exporter.config import FirewallConfig  # noqa: E402
from exporter.firewall.collector import FirewallCollector  # noqa: E402
from exporter.metrics.firewall import render_firewall  # noqa: E402
from exporter.netlink import netfilter as nfnetlink  # noqa: E402
from exporter.netlink import xtables  # noqa: E402

# the measured floors (README.md, section Performance): rule counters at 10k rules (ms)
FLOORS = {
    "iptables-nft": {"kernel": 42.0, "python_raw": 66.0, "save_parse": 85.0, "target_cpu": 75.0},
    "iptables-legacy": {"kernel": 3.9, "python_raw": 8.4, "save_parse": 21.0, "target_cpu": 15.0},
}


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def inner(runs: int) -> None:
    """Runs inside the lab namespace: measure and print one JSON line."""
    collector = FirewallCollector(FirewallConfig())
    w0, c0 = time.perf_counter(), time.process_time()
    data = collector.collect()
    first = (time.perf_counter() - w0, time.process_time() - c0)
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        data = collector.collect()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    renders = []
    for _ in range(max(5, runs // 3)):
        w0 = time.perf_counter()
        families = render_firewall(data)
        renders.append(time.perf_counter() - w0)
    # the raw read alone, for comparison with the kernel floor
    raw_walls, raw_cpus = [], []
    names = xtables.read_table_names(xtables.IPV4)
    reader, xt = nfnetlink.NftReader(), xtables.XtReader()
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        if names:
            for t in names:
                xt.entries(xtables.IPV4, t, known=names)
        else:
            for t in ("filter", "nat"):
                reader.rules(nfnetlink.NFPROTO_IPV4, t)
        raw_walls.append(time.perf_counter() - w0)
        raw_cpus.append(time.process_time() - c0)
    reader.close()
    xt.close()
    collector.close()
    rules = sum(len(c.rules) for t in data.tables for c in t.chains)
    print(
        json.dumps(
            {
                "rules": rules,
                "series": sum(len(f.samples) for f in families),
                "errors": list(data.errors),
                "text_reads": collector.text_reads,
                "first_wall_ms": round(first[0] * 1000, 1),
                "first_cpu_ms": round(first[1] * 1000, 1),
                "wall_ms": _ms(walls),
                "cpu_ms": _ms(cpus),
                "raw_read_wall_ms": _ms(raw_walls),
                "raw_read_cpu_ms": _ms(raw_cpus),
                "render_ms": _ms(renders),
            }
        )
    )


def outer(rules: int, runs: int) -> None:
    if os.geteuid() != 0:
        sys.exit("firewall_bench needs root (network namespaces, iptables)")
    text, count = build_ruleset(rules)
    print(f"classic Docker ruleset: {count} rules, {BRIDGES} bridges; {runs} polls per backend")
    print(
        f"{'backend':16} {'poll wall':>10} {'poll CPU':>9} {'target CPU':>10} "
        f"{'raw read':>9} {'kernel floor':>12} {'py raw':>7} {'save+parse':>10} "
        f"{'1st poll':>9} {'render':>7}"
    )
    for backend, restore in (
        ("iptables-nft", "iptables-nft-restore"),
        ("iptables-legacy", "iptables-legacy-restore"),
    ):
        with lab.netns("fwbench") as ns:
            ns.exec(restore, input=text)
            proc = subprocess.run(
                [
                    "nsenter",
                    f"--net={ns.path}",
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--inner",
                    "--runs",
                    str(runs),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=str(REPO),
                check=False,
            )
        if proc.returncode != 0:
            sys.exit(f"{backend}: inner run failed: {proc.stderr.strip()}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        f = FLOORS[backend]
        print(
            f"{backend:16} {r['wall_ms']:>8.1f}ms {r['cpu_ms']:>7.1f}ms {f['target_cpu']:>8.0f}ms "
            f"{r['raw_read_wall_ms']:>7.1f}ms {f['kernel']:>10.1f}ms {f['python_raw']:>5.1f}ms "
            f"{f['save_parse']:>8.1f}ms {r['first_wall_ms']:>7.1f}ms {r['render_ms']:>5.1f}ms"
        )
        print(
            f"{'':16} rules exported {r['rules']}, series {r['series']}, "
            f"text reads {r['text_reads']}, errors {r['errors'] or 'none'}; "
            f"raw read CPU {r['raw_read_cpu_ms']} ms, first poll CPU {r['first_cpu_ms']} ms"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="firewall_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv if argv is not None else [])
    if args.inner:
        inner(args.runs)
    else:
        outer(args.rules, args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
