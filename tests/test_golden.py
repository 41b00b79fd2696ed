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
from dataclasses import replace
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
from exporter.view import derive_view

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
        "docker": load_docker(folder),
    }
    status = tuple(
        CollectorStatus(name, True, 0.002 if name == "docker" else 0.001)
        for name in ("links", "firewall", "sysctl", "routes", "docker")
    )
    return with_view(PollResult(data, status, timestamp=1764500000.0, duration=0.005))


def with_view(poll: PollResult) -> PollResult:
    """``poll`` with its host view derived, as the poller does after each poll."""
    return replace(poll, view=derive_view(poll))


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


# --------------------------------------------------------------------------
# 0.1 -> 0.2: the exposition differs only by the documented renames
# --------------------------------------------------------------------------

GOLDEN_01 = Path(__file__).resolve().parent / "fixtures" / "golden-0.1"

# 0.1 meaning family -> (0.2 name, labels added with their values)
_RENAMED = {
    "netpath_docker_dropped_packets_total": ("netpath_dropped_packets_total", {}),
    "netpath_docker_dropped_bytes_total": ("netpath_dropped_bytes_total", {}),
    "netpath_docker_published_port_connections_total": (
        "netpath_published_port_connections_total",
        {"namespace": "", "pod": ""},
    ),
    "netpath_docker_masquerade_connections_total": (
        "netpath_masquerade_connections_total",
        {"container": "", "namespace": "", "pod": ""},
    ),
    "netpath_docker_forwarded_packets_total": ("netpath_forwarded_packets_total", {}),
    "netpath_docker_forwarded_bytes_total": ("netpath_forwarded_bytes_total", {}),
    "netpath_docker_firewall_layout_info": ("netpath_firewall_layout_info", {}),
}
_NO_POD = {"namespace": "", "pod": ""}


def _samples(text: str) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.name.startswith("process_")
    }


def map_01_to_02(name: str, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """One 0.1 series as 0.2 names it (docs/metrics.md, "Contract changes of 2026-12-07")."""
    if name in _RENAMED:
        new, added = _RENAMED[name]
        return new, {"manager": "docker", **labels, **added}
    if name.startswith("netpath_collector_") and labels.get("collector") == "containers":
        return name, {**labels, "collector": "docker"}
    if name == "netpath_container_info":
        return name, {**labels, "runtime": "docker", **_NO_POD}
    if name.startswith("netpath_container_"):
        return name, {**labels, **_NO_POD}
    return name, labels


@pytest.mark.parametrize("scenario", sorted(p.stem for p in GOLDEN_01.glob("*.prom")))
def test_02_exposition_is_01_with_the_documented_renames(scenario: str) -> None:
    old = _samples((GOLDEN_01 / f"{scenario}.prom").read_text())
    want = set()
    for name, labels, value in old:
        new, new_labels = map_01_to_02(name, dict(labels))
        want.add((new, frozenset(new_labels.items()), value))
    got = _samples((SCENARIOS / scenario / "expected.prom").read_text())
    assert got == want
    # and the mapping changed something real: every renamed family is in both
    assert {n for n, _, _ in old} & set(_RENAMED) == set(_RENAMED)
