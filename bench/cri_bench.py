"""CRI source cost with 110 pods (Kubernetes' default per-node maximum) on a real containerd.

Starts a lab Kubernetes node (tests/crilab.py: containerd with its CRI plugin,
the CNI bridge and portmap plugins, in its own network and mount namespaces),
runs 110 pod sandboxes over the CRI like kubelet does, then, inside the node's
network namespace, times (median, wall and CPU) CriSource.collect() in steady
state, the links collector plus the join and render of every pod, the poll
after one pod starts and after one is removed, and a first collect by a fresh
source, and counts the CRI calls each makes. Everything is torn down at the end.

    .venv/bin/python -m bench cri [--pods 110] [--runs 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import crilab  # noqa: E402 - lives with the tests, shared with the benchmark
from dockerlab import NetnsPython  # noqa: E402

SETUP = r"""
from bench.timing import once, timed
from exporter.collectors.links import LinksCollector
from exporter.sources.cri import CriSource
from exporter.workloads import build_interfaces
from exporter.metrics.workloads import render_workloads

links = LinksCollector()
src = CriSource(SOCK)
links.collect()
out = {}
calls = src.api_calls
out["first"], data = once(src.collect)
out["first_calls"] = src.api_calls - calls
out["n_pods"] = len(data.workloads)
out["n_interfaces"] = len(build_interfaces([src.collect()], links.collect()))
"""

STEADY = r"""
calls = src.api_calls
out["steady"] = timed(src.collect, RUNS)
out["steady_calls_per_poll"] = (src.api_calls - calls) / RUNS

def full_poll():
    d, l = src.collect(), links.collect()
    render_workloads([d], build_interfaces([d], l))

calls = src.api_calls
out["with_links"] = timed(full_poll, RUNS)
out["with_links_calls_per_poll"] = (src.api_calls - calls) / RUNS
d, l = src.collect(), links.collect()
out["join"] = timed(lambda: build_interfaces([d], l), RUNS)
wi = build_interfaces([d], l)
out["render"] = timed(lambda: render_workloads([d], wi), RUNS)
out["series"] = sum(len(f.samples) for f in render_workloads([d], wi))
"""

FRESH = r"""
import resource
out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
fresh = CriSource(SOCK)
calls = fresh.api_calls
out["fresh"], _ = once(fresh.collect)
out["fresh_calls"] = fresh.api_calls - calls
fresh.close()
"""

# One poll right after a pod started or left: its cost, its CRI calls, whether it shows the pod.
CHANGED = (
    "(lambda c0: (lambda t: (t[0], src.api_calls - c0, "
    "any(w.id == {sid!r} for w in t[1].workloads)))(once(src.collect)))(src.api_calls)"
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="cri_bench")
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args(argv if argv is not None else [])
    t0 = time.monotonic()
    cl = crilab.CriLab()
    try:
        cl.setup()
        cl.start()
        cl.import_image()

        def run(i: int) -> None:
            cl.run_pod(f"bench-{i:03d}", f"ns-{i % 5}", ports=[(30000 + i, 80)] if i < 10 else ())

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(run, range(args.pods)))
        version = cl.client().version().runtime_version
        print(
            f"lab: containerd {version} (CRI plugin, CNI bridge + portmap) in its own "
            f"namespaces, {args.pods} pod sandboxes in 5 namespaces (10 with a hostPort); "
            f"set up in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        with NetnsPython(cl, SETUP.replace("SOCK", repr(cl.sock))) as py:  # type: ignore[arg-type]
            py.exec(STEADY.replace("RUNS", str(args.runs)), timeout=600)
            pod = cl.run_pod("bench-new", "ns-new")
            started = py.eval(CHANGED.format(sid=pod.id))
            assert started[2], "the new pod is not in the first poll after it started"
            after = py.eval(CHANGED.format(sid=pod.id))
            cl.remove_pod(pod)
            removed = py.eval(CHANGED.format(sid=pod.id))
            assert not removed[2], "the removed pod is still in the first poll after"
            py.exec(FRESH.replace("SOCK", repr(cl.sock)), timeout=600)
            r = py.eval("out")
    finally:
        t1 = time.monotonic()
        if cl.running():
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(cl.remove_pod, list(cl.pods.values())))
        cl.close()
        print(f"torn down in {time.monotonic() - t1:.1f} s", flush=True)

    def row(label: str, m: dict[str, float], calls: object) -> None:
        print(f"| {label} | {m['wall']:.3f} | {m['cpu']:.3f} | {calls} | {int(m.get('runs', 1))} |")

    print(
        f"\n{r['n_pods']} pods seen, {r['n_interfaces']} joined to their host veth; "
        f"{r['series']} series from render_workloads; peak RSS of the measuring process "
        f"(links + cri source, grpc loaded) {r['rss_mib']:.1f} MiB"
    )
    print("\n| what (median) | wall ms | CPU ms | CRI calls | runs |")
    print("|---|---:|---:|---:|---:|")
    row("CriSource.collect(), steady state", r["steady"], r["steady_calls_per_poll"])
    row(
        "links + cri collect + join + render_workloads",
        r["with_links"],
        r["with_links_calls_per_poll"],
    )
    row("build_interfaces (join only)", r["join"], "-")
    row("render_workloads", r["render"], "-")
    row("poll after one pod started (list + Status + its status)", started[0], started[1])
    row("the poll after that (steady again)", after[0], after[1])
    row("poll after that pod was removed", removed[0], removed[1])
    row("first collect: connect, Version, list, Status, status of all", r["first"],
        r["first_calls"])  # fmt: skip
    row("first collect by a fresh source", r["fresh"], r["fresh_calls"])
    print(
        "\nA steady-state poll makes one CRI call (ListPodSandbox of ready sandboxes) "
        "however many pods run; a verbose PodSandboxStatus is read once per new sandbox."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
