"""Containers collector cost with 200 running containers on a real dockerd.

Starts a lab dockerd in its own network namespace (tests/dockerlab.py), runs
200 busybox containers (``sleep 3600``) spread over the default bridge and
three user networks, then, inside dockerd's namespace, times (median, wall
and CPU) ContainersCollector.collect() in steady state, the join and render
with the links collector's data, one event-driven update and a full resync,
and counts the Docker API calls each makes. Everything is torn down at the end.

    .venv/bin/python -m bench containers [--containers 200] [--runs 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import dockerlab  # noqa: E402 - lives with the tests, shared with the benchmark

NETWORKS = ("bridge", "benchnet1", "benchnet2", "benchnet3")

SETUP = r"""
import json
from bench.timing import once, timed
from exporter.config import DockerConfig
from exporter.collectors.links import LinksCollector
from exporter.metrics.workloads import render_workloads
from exporter.sources.docker import ContainersCollector
from exporter.workloads import build_interfaces


def build_container_interfaces(docker, links):
    return build_interfaces([docker], links)


def render_containers(docker, links):
    return render_workloads([docker], build_interfaces([docker], links))

links = LinksCollector()
coll = ContainersCollector(DockerConfig())
links.collect()
out = {}
calls = coll.api_calls
out["first"], data = once(coll.collect)
out["first_calls"] = coll.api_calls - calls
out["n_containers"] = len(data.workloads)
links_data = links.collect()
out["n_interfaces"] = len(build_container_interfaces(coll.collect(), links_data))
"""

STEADY = r"""
calls = coll.api_calls
out["steady"] = timed(coll.collect, RUNS)
out["steady_calls_per_poll"] = (coll.api_calls - calls) / RUNS

def full_poll():
    render_containers(coll.collect(), links.collect())

calls = coll.api_calls
out["with_links"] = timed(full_poll, RUNS)
out["with_links_calls_per_poll"] = (coll.api_calls - calls) / RUNS
d, l = coll.collect(), links.collect()
out["join"] = timed(lambda: build_interfaces([d], l), RUNS)
out["render"] = timed(lambda: render_containers(d, l), RUNS)
out["series"] = sum(len(f.samples) for f in render_containers(d, l))
"""

RESYNC = r"""
fresh = ContainersCollector(DockerConfig())
calls = fresh.api_calls
out["resync"], _ = once(fresh.collect)
out["resync_calls"] = fresh.api_calls - calls
fresh.close()
"""


def event_poll(py: dockerlab.NetnsPython, dl: dockerlab.DockerLab, cmd: str, name: str,
               present: bool) -> dict[str, float]:  # fmt: skip
    """Run ``docker CMD NAME``; poll until the collector shows it; cost of the poll that did."""
    dl.docker(cmd, name)
    deadline = time.monotonic() + 30
    while True:
        r = py.eval(
            "(lambda c0: (lambda t: (t[0], coll.api_calls - c0, "
            f"any(c.name == {name!r} for c in t[1].workloads)))(once(coll.collect)))"
            "(coll.api_calls)"
        )
        cost, calls, seen = r
        if seen == present:
            return {"wall": cost["wall"], "cpu": cost["cpu"], "calls": calls}
        if time.monotonic() > deadline:
            raise TimeoutError(f"collector never showed {name} {'up' if present else 'gone'}")
        time.sleep(0.2)  # the poll interval, not a synchronisation


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="containers_bench")
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args(argv if argv is not None else [])
    t0 = time.monotonic()
    dl = dockerlab.DockerLab()
    try:
        dl.start()
        dl.import_busybox()
        for net in NETWORKS[1:]:
            dl.docker("network", "create", net)

        def run(i: int) -> None:
            net = NETWORKS[i % len(NETWORKS)]
            dl.run_sleeper(f"bench-{i:04d}", "--network", net)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(run, range(args.containers)))
        print(
            f"lab: dockerd {dl.docker('version', '--format', '{{.Server.Version}}').strip()} in "
            f"its own namespace, {args.containers} running containers on {len(NETWORKS)} "
            f"networks; set up in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        with dl.python(SETUP) as py:
            py.exec(STEADY.replace("RUNS", str(args.runs)), timeout=600)
            stop = event_poll(py, dl, "stop", "bench-0001", present=False)
            start = event_poll(py, dl, "start", "bench-0001", present=True)
            py.exec(RESYNC, timeout=600)
            r = py.eval("out")
    finally:
        t1 = time.monotonic()
        dl.close()
        print(f"torn down in {time.monotonic() - t1:.1f} s", flush=True)

    def row(label: str, m: dict[str, float], calls: object) -> None:
        print(f"| {label} | {m['wall']:.3f} | {m['cpu']:.3f} | {calls} | {int(m.get('runs', 1))} |")

    print(
        f"\n{r['n_containers']} containers seen, {r['n_interfaces']} joined to their host veth; "
        f"{r['series']} series from render_containers"
    )
    print("\n| what (median) | wall ms | CPU ms | Docker API calls | runs |")
    print("|---|---:|---:|---:|---:|")
    row("ContainersCollector.collect(), steady state", r["steady"], r["steady_calls_per_poll"])
    row(
        "links + containers collect + render_containers (join)",
        r["with_links"],
        r["with_links_calls_per_poll"],
    )
    row("build_container_interfaces (join only)", r["join"], "-")
    row("render_containers", r["render"], "-")
    row("poll after `docker stop` (die, disconnect events)", stop, stop["calls"])
    row("poll after `docker start` (start event: one inspect)", start, start["calls"])
    row("first collect: connect + full resync", r["first"], r["first_calls"])
    row("full resync by a fresh collector (connect + list + inspect all)", r["resync"],
        r["resync_calls"])  # fmt: skip
    print(
        "\nA steady-state poll makes no Docker API call: the event stream names what to "
        "re-inspect; a full resync (1 list + 1 inspect per container) runs every "
        "docker.resync_interval (default 5m) and after the daemon comes back."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
