"""Golden exposition: scenario fixtures through the whole pure pipeline.

Each folder under tests/scenarios/ holds what the readers would return on one
host (link dump, Docker inspect JSON, ``iptables-save -c`` text, routes,
sysctls) and ``expected.prom``, the exposition the exporter must serve for it.
Output changes are reviewed as diffs of that file: regenerate it with
``make golden`` (NETPATH_UPDATE_GOLDEN=1) and read the diff before committing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Config
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.metrics.exposition import ExpositionWriter
from exporter.metrics.render import render_poll
from exporter.model import (
    FirewallData,
    Link,
    LinksData,
    LinkStats,
    Route,
    RoutesData,
    SourceData,
    SysctlData,
)
from exporter.poller import CollectorStatus, PollResult
from exporter.sources.docker import parse_container, parse_network

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
UPDATE = os.environ.get("NETPATH_UPDATE_GOLDEN") == "1"


def load_links(path: Path) -> LinksData:
    raw = json.loads(path.read_text())
    links = tuple(sorted((Link(**item) for item in raw["links"]), key=lambda link: link.name))
    stats = {int(k): LinkStats(*v) for k, v in raw["stats"].items()}
    return LinksData(links=links, stats=stats)


def load_docker(folder: Path) -> SourceData:
    networks = tuple(
        sorted(
            (parse_network(n) for n in json.loads((folder / "networks.json").read_text())),
            key=lambda n: n.name,
        )
    )
    containers = tuple(
        sorted(
            (
                parse_container(c, c["netns_id"])
                for c in json.loads((folder / "containers.json").read_text())
            ),
            key=lambda c: c.name,
        )
    )
    return SourceData(version="20.10.24", workloads=containers, networks=networks)


def load_firewall(folder: Path) -> FirewallData:
    tables = []
    backends = []
    for path in sorted(folder.glob("*.iptables-*-save")):
        family, _, backend = path.name.partition(".")
        backend = backend.removesuffix("-save")
        tables += parse_iptables_save(path.read_text(), family, backend)
        backends.append((family, backend))
    return FirewallData(backends=tuple(backends), tables=tuple(tables))


def load_poll(folder: Path) -> PollResult:
    sysctl = json.loads((folder / "sysctl.json").read_text())
    data: dict[str, object] = {
        "links": load_links(folder / "links.json"),
        "firewall": load_firewall(folder),
        "sysctl": SysctlData(sysctl["ip_forwarding"], sysctl["bridge_nf_call"]),
        "routes": RoutesData(
            tuple(Route(**r) for r in json.loads((folder / "routes.json").read_text()))
        ),
        "containers": load_docker(folder),
    }
    status = tuple(
        CollectorStatus(name, True, 0.002 if name == "containers" else 0.001)
        for name in ("links", "firewall", "sysctl", "routes", "containers")
    )
    return PollResult(data, status, timestamp=1764500000.0, duration=0.005)


_MACHINE = re.compile(r'python_version="[^"]*"')


def render_scenario(folder: Path) -> str:
    body = ExpositionWriter().render(render_poll(load_poll(folder), Config())).decode()
    # process_* describe the test process and build_info the Python running it: left out.
    lines = [
        _MACHINE.sub('python_version="X"', line)
        for line in body.splitlines()
        if not re.match(r"(# (HELP|TYPE) )?process_", line)
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("scenario", sorted(p.name for p in SCENARIOS.iterdir() if p.is_dir()))
def test_golden_exposition(scenario: str) -> None:
    folder = SCENARIOS / scenario
    got = render_scenario(folder)
    expected_path = folder / "expected.prom"
    if UPDATE:
        expected_path.write_text(got)
    assert expected_path.exists(), "no expected.prom: run `make golden` and review it"
    assert got == expected_path.read_text(), f"exposition of {scenario} changed: `make golden`"
    # It parses with prometheus-client's own parser and passes promtool.
    names = {f.name for f in text_string_to_metric_families(got)}
    assert "netpath_container_network_receive_bytes" in names
    promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=got, capture_output=True, text=True, check=False
    )
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
