"""Run every benchmark in turn: ``python -m bench [NAME ...]``."""

from __future__ import annotations

import importlib
import sys

BENCHES = (
    "links_bench",
    "firewall_bench",
    "containers_bench",
    "cri_bench",
    "exporter_bench",
    "conntrack_bench",
    "kubeproxy_bench",
)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    for name in names:
        mod = name if name.endswith("_bench") else f"{name}_bench"
        print(f"\n### {mod}\n", flush=True)
        importlib.import_module(f"bench.{mod}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
