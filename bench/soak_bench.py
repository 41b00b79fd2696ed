"""Soak: the daemon's memory over a long run of polls on a busy host with container churn.

Issue #15: "RSS over a long run (30 min of polls with churn) stays flat; the
peak during a poll is reported". Builds a lab host (bench/hostlab.py: VETHS
veths on 10 bridges, the classic Docker ruleset padded to RULES rules, loaded
with iptables-nft) with live traffic, starts the daemon as users run it
(``python -m exporter``, default collectors, ``--poll.interval`` INTERVAL) and
for MINUTES:

- churns like a busy Docker host: every CHURN seconds one container goes (its
  DNAT and ACCEPT rules deleted from the nat and filter DOCKER chains with
  ``iptables-nft -D``, its veth and namespace deleted) and another comes (a new
  namespace, a veth with a new name on the same bridge, address and route, and
  its rules appended with ``iptables-nft -A``), so the daemon's topology and
  rule-text re-reads (a new ruleset generation each time) run throughout;
- scrapes ``/metrics`` every SCRAPE seconds with ``Accept-Encoding: gzip`` from
  inside the lab host, like Prometheus, noting any ``netpath_collector_success 0``;
- samples the daemon's VmRSS and VmHWM (the peak) every SAMPLE seconds.

Prints a table of RSS every minute, the first- vs last-5-minute median RSS, the
least-squares slope of RSS (MB per 10 min, over the samples after the first 2
minutes), min/max RSS, the peak, the number of polls, the churn events done and
whether any scrape reported a failed collector. Figures only: no target is
asserted. Not in ``./dev.sh bench``'s default list (it takes MINUTES); run it
by name:

    sudo .venv/bin/python -m bench soak                # 30 minutes
    sudo .venv/bin/python -m bench soak --minutes 2    # a quick check

SIGTERM or Ctrl-C stops it early: the figures so far are printed and the lab
(namespaces, daemon, scraper, traffic) torn down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.exporter_bench import (
    CLK_TCK,
    PY,
    cpu_ticks,
    free_port,
    memory_kb,
    scrape,
    start_daemon,
)
from bench.hostlab import (
    BRIDGES,
    HostLab,
    bridge_name,
    container_ip,
    published_port,
    sh,
)

SCRAPER = r"""
import gzip, http.client, json, sys, time
port, every = int(sys.argv[1]), float(sys.argv[2])
next_at = time.monotonic()
while True:
    rec = {"t": time.time()}
    try:
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        r = c.getresponse()
        raw = r.read()
        rec["ms"] = (time.perf_counter() - t0) * 1000
        c.close()
        body = gzip.decompress(raw) if r.getheader("Content-Encoding") == "gzip" else raw
        lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
        rec.update(status=r.status, wire=len(raw), bytes=len(body), series=len(lines))
        rec["failed"] = [l.split('"')[1] for l in lines
                         if l.startswith("netpath_collector_success{") and l.endswith(" 0")]
        rec["poll_ts"] = next((float(l.split()[-1]) for l in lines
                               if l.startswith("netpath_poll_timestamp_seconds ")), None)
    except (OSError, ValueError) as e:
        rec["error"] = repr(e)
    print(json.dumps(rec), flush=True)
    next_at += every
    time.sleep(max(0.0, next_at - time.monotonic()))  # pacing, like Prometheus
"""

TCP = "-p tcp -m tcp --dport"


@dataclass
class Sample:
    t: float  # seconds since the daemon's warm-up ended
    rss_kb: int
    hwm_kb: int
    ticks: int  # utime + stime of every thread
    churned: int  # containers replaced so far


@dataclass
class Churn:
    """Containers going and coming on the lab host, like Docker does it."""

    host: HostLab
    backend: str
    rng: random.Random = field(default_factory=lambda: random.Random(15))  # noqa: S311
    events: int = 0
    failures: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    veth: dict[int, str] = field(default_factory=dict)

    def rules(self, i: int) -> tuple[list[str], list[str]]:
        """(filter, nat) rule specs of container ``i``'s published port, as Docker writes them."""
        br, ip, hport = bridge_name(i % BRIDGES), container_ip(i), published_port(i)
        accept = ["DOCKER", *f"-d {ip}/32 ! -i {br} -o {br} {TCP} 80 -j ACCEPT".split()]
        dnat = ["DOCKER", *f"! -i {br} {TCP} {hport} -j DNAT --to-destination {ip}:80".split()]
        return accept, dnat

    def ipt(self, *args: str) -> None:
        sh(self.host.in_host(f"iptables-{self.backend}", "-w", *args), timeout=120)

    def once(self) -> None:
        """Container i stops and a new one takes its place (its address and port)."""
        # containers 0 and 1 stay: the traffic generator sends from 0 and to 1
        i = self.rng.randrange(2, self.host.veths)
        t0 = time.monotonic()
        accept, dnat = self.rules(i)
        old_veth, old_ns = self.veth.get(i, f"veth{i:05d}"), self.host.peers[i]
        # stop: Docker removes the port's rules, then the endpoint; the namespace goes
        self.ipt("-t", "nat", "-D", *dnat)
        self.ipt("-D", *accept)
        sh(["ip", "-n", self.host.host, "link", "del", old_veth])
        sh(["ip", "netns", "del", old_ns])
        # start: a new namespace and endpoint, a new veth name, the same address
        new_ns = f"{old_ns.rsplit('-', 1)[0]}x{self.events}-{old_ns.rsplit('-', 1)[1]}"
        new_veth = f"veth{secrets.token_hex(4)[:7]}"
        self.host.peers[i] = new_ns  # HostLab.close deletes it
        sh(["ip", "netns", "add", new_ns])
        sh(
            ["ip", "-n", self.host.host, "-batch", "-"],
            input=f"link add {new_veth} type veth peer name eth0 netns {new_ns}\n"
            f"link set {new_veth} master {bridge_name(i % BRIDGES)} up\n",
        )
        self.veth[i] = new_veth
        sh(
            ["ip", "-n", new_ns, "-batch", "-"],
            input=f"addr add {container_ip(i)}/16 dev eth0\nlink set eth0 up\n"
            f"route add default via 10.{100 + i % BRIDGES}.0.1\n",
        )
        self.ipt("-A", *accept)
        self.ipt("-t", "nat", "-A", *dnat)
        self.durations.append(time.monotonic() - t0)
        self.events += 1

    def run(self, every: float, stop: threading.Event) -> None:
        next_at = time.monotonic() + every
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.once()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                self.failures.append(str(e)[:300])
            next_at += every


class Scraper:
    """Prometheus' part: a scrape every ``every`` seconds from inside the lab host."""

    def __init__(self, host: HostLab, port: int, every: float) -> None:
        self.records: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            host.in_host(PY, "-c", SCRAPER, str(port), str(every)),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.thread.join(5)


def slope_mb_per_10min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, in MB per 10 minutes."""
    if len(samples) < 2:
        return float("nan")
    xs = [s.t for s in samples]
    ys = [s.rss_kb / 1024 for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 600


def report(
    args: argparse.Namespace,
    samples: list[Sample],
    scrapes: list[dict[str, Any]],
    churn: Churn,
    window: float,
) -> None:
    if not samples:
        print("no samples taken")
        return
    mb = [s.rss_kb / 1024 for s in samples]
    polls_per_s = 1 / args.interval
    print(
        f"\n{'minute':>6} {'RSS MB':>7} {'VmHWM MB':>8} {'CPU ms/poll':>11} {'churn':>6}",
        flush=True,
    )
    last = samples[0]
    print(f"{0:>6} {last.rss_kb / 1024:>7.1f} {last.hwm_kb / 1024:>8.1f} {'':>11} {0:>6}")
    for minute in range(1, int(window // 60) + 1):
        s = min(samples, key=lambda x: abs(x.t - minute * 60))
        dt = s.t - last.t
        cpu = (s.ticks - last.ticks) * 1000 / CLK_TCK / (dt * polls_per_s) if dt else 0.0
        print(
            f"{minute:>6} {s.rss_kb / 1024:>7.1f} {s.hwm_kb / 1024:>8.1f} {cpu:>11.1f} "
            f"{s.churned:>6}"
        )
        last = s
    edge = min(300.0, window / 2)
    skip = min(120.0, window / 4)
    first = [s.rss_kb / 1024 for s in samples if s.t <= edge]
    final = [s.rss_kb / 1024 for s in samples if s.t >= window - edge]
    steady = [s for s in samples if s.t >= skip]
    total_cpu = (samples[-1].ticks - samples[0].ticks) * 1000 / CLK_TCK
    ok = [r for r in scrapes if "error" not in r]
    stamps = sorted({r["poll_ts"] for r in ok if r.get("poll_ts") is not None})
    failed: dict[str, int] = {}
    for r in ok:
        for name in r["failed"]:
            failed[name] = failed.get(name, 0) + 1
    polls_ts = (stamps[-1] - stamps[0]) / args.interval if len(stamps) > 1 else 0.0
    print(
        f"\nsummary ({window / 60:.1f} min after warm-up, {len(samples)} samples every "
        f"{args.sample:g} s):"
    )
    print(
        f"  RSS median first {round(edge / 60, 1):g} min {statistics.median(first):.1f} MB, "
        f"last {round(edge / 60, 1):g} min {statistics.median(final):.1f} MB; "
        f"slope {slope_mb_per_10min(steady):+.2f} MB/10 min (least squares after "
        f"{round(skip / 60, 1):g} min); min {min(mb):.1f} MB, max {max(mb):.1f} MB; "
        f"VmHWM (peak) {samples[-1].hwm_kb / 1024:.1f} MB"
    )
    print(
        f"  polls: ~{window * polls_per_s:.0f} by window/interval; {polls_ts:.0f} by "
        f"netpath_poll_timestamp_seconds between the first and last scrape; CPU "
        f"{total_cpu / max(1.0, window * polls_per_s):.1f} ms/poll over the run"
    )
    print(
        f"  churn: {churn.events} containers replaced (every {args.churn:g} s), "
        f"median {statistics.median(churn.durations) if churn.durations else 0:.2f} s each"
        + (f", {len(churn.failures)} FAILED: {churn.failures[:3]}" if churn.failures else "")
    )
    wire = [r["wire"] for r in ok]
    series = [r["series"] for r in ok]
    print(
        f"  scrapes: {len(ok)} of {len(scrapes)} answered (every {args.scrape:g} s, gzip), "
        f"p50 {statistics.median(r['ms'] for r in ok) if ok else 0:.1f} ms, "
        f"{min(series, default=0)}-{max(series, default=0)} series, "
        f"{min(wire, default=0) / 1e3:.0f}-{max(wire, default=0) / 1e3:.0f} kB on the wire; "
        + (
            f"collector failures reported: {failed}"
            if failed
            else "no collector failure reported (netpath_collector_success never 0)"
        )
        + (
            f"; scrape errors: {[r['error'] for r in scrapes if 'error' in r][:3]}"
            if len(ok) < len(scrapes)
            else ""
        ),
        flush=True,
    )


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT: stop like Ctrl-C (the finally blocks and context managers tear the
    lab down), once: a second signal (e.g. from ``timeout`` passing its own on) is ignored
    so it cannot cut the teardown short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="soak_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (after warm-up)")
    ap.add_argument("--veths", type=int, default=1000)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--backend", default="nft", choices=("nft", "legacy"))
    ap.add_argument("--interval", type=float, default=1.0, help="the daemon's poll interval (s)")
    ap.add_argument("--churn", type=float, default=5.0, help="seconds between containers replaced")
    ap.add_argument("--scrape", type=float, default=15.0, help="seconds between scrapes")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--rate", type=int, default=200, help="new connections a second")
    args = ap.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        sys.exit("soak_bench needs root (network namespaces, iptables)")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    samples: list[Sample] = []
    t0 = time.monotonic()
    with HostLab(args.veths, args.rules) as host:
        host.load(args.backend)
        churn = Churn(host, args.backend)
        print(
            f"lab: {args.veths} veths on {BRIDGES} bridges, classic Docker ruleset with "
            f"{host.rules} rules (iptables-{args.backend}), traffic {args.rate} connections/s; "
            f"built in {time.monotonic() - t0:.0f} s. Daemon: default collectors, poll every "
            f"{args.interval:g} s; a container replaced every {args.churn:g} s, a gzip scrape "
            f"every {args.scrape:g} s, RSS sampled every {args.sample:g} s for "
            f"{args.minutes:g} min",
            flush=True,
        )
        port = free_port()
        stop = threading.Event()
        window = 0.0
        scraper: Scraper | None = None
        churner: threading.Thread | None = None
        with host.traffic(args.rate):
            daemon = start_daemon(host.in_host, port, args.interval)
            try:
                scrape(host.in_host, port, 0)  # answers with a poll
                time.sleep(5 * args.interval)  # warm-up: the first reads, not the steady run
                scraper = Scraper(host, port, args.scrape)
                churner = threading.Thread(target=churn.run, args=(args.churn, stop), daemon=True)
                start = time.monotonic()
                churner.start()
                end = start + args.minutes * 60
                next_at = start
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        now = time.monotonic()
                        if daemon.poll() is not None:
                            print(f"the daemon exited ({daemon.returncode})", flush=True)
                            break
                        rss, hwm = memory_kb(daemon.pid)  # nsenter execs the exporter
                        utime, stime = cpu_ticks(daemon.pid)
                        samples.append(Sample(now - start, rss, hwm, utime + stime, churn.events))
                        if len(samples) % max(1, round(60 / args.sample)) == 1:
                            print(
                                f"  {(now - start) / 60:5.1f} min: RSS {rss / 1024:.1f} MB, "
                                f"VmHWM {hwm / 1024:.1f} MB, {churn.events} churned",
                                flush=True,
                            )
                        if now >= end:
                            break
                        next_at += args.sample
                        time.sleep(max(0.0, min(next_at, end) - time.monotonic()))  # pacing
                window = samples[-1].t if samples else 0.0
            finally:
                stop.set()
                if churner is not None:
                    churner.join(120)
                if scraper is not None:
                    scraper.stop()
                if daemon.poll() is None:
                    daemon.terminate()
                    try:
                        daemon.wait(20)
                    except subprocess.TimeoutExpired:
                        daemon.kill()
                        daemon.wait(20)
        report(args, samples, scraper.records if scraper else [], churn, window)


if __name__ == "__main__":
    main(sys.argv[1:])
