"""Generate the dashboards' JSON: ``python -m grafana.build [--check] [--out DIR]``.

Writes ``grafana/dashboards/<uid>.json`` (sorted keys, two-space indent, final
newline) so that regenerating from unchanged code reproduces the files byte for
byte. ``--check`` writes nothing and exits 1 when a committed file differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana import containers, firewall, health, host, services

OUT = Path(__file__).resolve().parent / "dashboards"
BUILDERS: tuple[tuple[str, Callable[[], Dashboard]], ...] = (
    (containers.UID, containers.build),
    (firewall.UID, firewall.build),
    (host.UID, host.build),
    (services.UID, services.build),
    (health.UID, health.build),
)


def render_json(dashboard: Dashboard) -> str:
    """The dashboard as the committed JSON text."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build_dashboards() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    return {f"{uid}.json": render_json(build()) for uid, build in BUILDERS}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grafana.build", description=__doc__)
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = p.parse_args(argv)
    stale = []
    for name, text in build_dashboards().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("out of date (run python -m grafana.build):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
