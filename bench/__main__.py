"""Run the benchmarks: ``python -m bench [NAME ...] [NAME OPTION ...]``.

With no NAME, every benchmark of :data:`BENCHES` runs in turn. A NAME is a
module of bench/ with or without its ``_bench`` suffix, so benchmarks kept out
of the default list (:data:`EXPLICIT`: too long for ``./dev.sh bench``) run by
name. Arguments from the first one starting with ``-`` on are the last NAME's
options, e.g. ``python -m bench soak --minutes 2``.
"""

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
# Run only when named: soak_bench takes 30 minutes by default.
EXPLICIT = ("soak_bench",)


def split(argv: list[str]) -> list[tuple[str, list[str]]]:
    """(module, its options) for each NAME in ``argv``; the default list when none."""
    names = argv
    options: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            names, options = argv[:i], argv[i:]
            break
    if options and not names:
        raise SystemExit(f"options {options} given before any benchmark NAME")
    mods = [n if n.endswith("_bench") else f"{n}_bench" for n in names or BENCHES]
    known = (*BENCHES, *EXPLICIT)
    unknown = [m for m in mods if m not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown}; known: {', '.join(known)}")
    return [(m, options if i == len(mods) - 1 else []) for i, m in enumerate(mods)]


def main(argv: list[str]) -> int:
    for mod, options in split(argv):
        print(f"\n### {mod}\n", flush=True)
        importlib.import_module(f"bench.{mod}").main(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
