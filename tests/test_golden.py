"""Golden exposition: scenario fixtures through the whole pure pipeline.

Each folder under tests/scenarios/ holds what the readers would return on one
host (link dump, Docker inspect JSON, the firewall as ``iptables-save -c`` text
per family and backend — ``ipv4.iptables-nft-save``, ``ipv6.iptables-legacy-save``
— or as ``nft -s -a list ruleset`` text in ``*.nft``, routes, sysctls) and what
the exporter must make of it: ``expected.prom`` (the exposition),
``explain/<container>.txt`` and ``.json`` (explain's text and JSON for every
container with a veth; tests/test_explain.py) and ``path.html`` (the /path page;
tests/test_pathview.py). One folder per Docker firewall layout the project
knows (classic on iptables-nft and iptables-legacy, forward-chains,
v29-iptables, v29-nftables), a dual-stack host whose IPv6 rules carry most
traffic (ipv6), and the seed host. Output changes are reviewed as diffs of
those files: regenerate them with ``make golden`` (NETPATH_UPDATE_GOLDEN=1) and
read the diff before committing.
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
from test_docker_rules import EXPECTED, NETWORK_OF, nft_tables_from_text

from exporter import __version__
from exporter.config import Config
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.selection import backend_families, table_holds_rules
from exporter.metrics.exposition import ExpositionWriter
from exporter.metrics.render import render_poll
from exporter.model import (
    BACKEND_IPTABLES_LEGACY,
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
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
from exporter.sources.docker_parse import parse_container, parse_network
from exporter.view import derive_view

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SCENARIO_NAMES = sorted(p.name for p in SCENARIOS.iterdir() if p.is_dir())
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


_BACKEND_ORDER = {BACKEND_IPTABLES_NFT: 0, BACKEND_IPTABLES_LEGACY: 1, BACKEND_NFTABLES: 2}


def load_firewall(folder: Path) -> FirewallData:
    """The firewall of a scenario: ``FAMILY.iptables-BACKEND-save`` files and ``*.nft`` listings.

    Backends are listed as the firewall collector lists them: those that hold
    rules, iptables-nft first, then iptables-legacy, then nftables.
    """
    tables = []
    backends = set()
    for path in sorted(folder.glob("*.iptables-*-save")):
        family, _, backend = path.name.partition(".")
        backend = backend.removesuffix("-save")
        tables += parse_iptables_save(path.read_text(), family, backend)
        backends.add((family, backend))
    for path in sorted(folder.glob("*.nft")):
        for table in nft_tables_from_text(path.read_text()):
            tables.append(table)
            if table_holds_rules(table):
                backends.update(
                    (f, BACKEND_NFTABLES) for f in backend_families(table.family, BACKEND_NFTABLES)
                )
    assert tables, f"{folder.name}: no firewall files"
    order = sorted(backends, key=lambda fb: (_BACKEND_ORDER[fb[1]], fb[0]))
    return FirewallData(backends=tuple(order), tables=tuple(tables))


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


def container_ifnames(links: LinksData) -> dict[tuple[int, int], str]:
    """Fixed names of the container ends of the veths: eth0, eth1, ... by ifindex per namespace.

    explain reads them from inside the container; scenarios have no namespaces to enter.
    """
    peers: dict[int, list[int]] = {}
    for link in links.links:
        if link.kind == "veth" and link.peer_netnsid is not None and link.peer_index is not None:
            peers.setdefault(link.peer_netnsid, []).append(link.peer_index)
    return {
        (nsid, index): f"eth{n}"
        for nsid, indexes in peers.items()
        for n, index in enumerate(sorted(indexes))
    }


def check_golden(path: Path, got: str) -> None:
    """``got`` equals the file at ``path``; NETPATH_UPDATE_GOLDEN=1 writes the file first."""
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no {path.name}: run `make golden` and review it"
    rel = path.relative_to(SCENARIOS.parent)
    assert got == path.read_text(), f"{rel} changed: `make golden` and review the diff"


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_golden_exposition(scenario: str) -> None:
    folder = SCENARIOS / scenario
    got = render_scenario(folder)
    check_golden(folder / "expected.prom", got)
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
    if name == "netpath_build_info":
        return name, {**labels, "version": __version__}
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


# --------------------------------------------------------------------------
# The layout scenarios are the host of tests/fixtures/docker_rules
# --------------------------------------------------------------------------

# scenario -> (layout of test_docker_rules.EXPECTED, factor of its counters)
_FIXTURE_HOSTS = {
    "classic-nft": ("classic", 1),
    "classic-legacy": ("classic", 3),
    "forward-chains": ("forward-chains", 1),
    "v29-iptables": ("v29-iptables", 1),
    "v29-nftables": ("v29-nftables", 1),
}


@pytest.mark.parametrize("scenario", sorted(_FIXTURE_HOSTS))
def test_layout_scenarios_serve_the_fixture_expectations(scenario: str) -> None:
    """Each layout scenario's meaning series are test_docker_rules' expectations for its layout."""
    layout, k = _FIXTURE_HOSTS[scenario]
    exp = EXPECTED[layout]
    got: dict[str, dict[tuple[str, ...], float]] = {}
    for fam in text_string_to_metric_families((SCENARIOS / scenario / "expected.prom").read_text()):
        for s in fam.samples:
            labels = {n: v for n, v in s.labels.items() if n not in ("manager", "namespace", "pod")}
            if s.name == "netpath_masquerade_connections_total":
                labels.pop("container")
            got.setdefault(s.name, {})[tuple(labels.values())] = s.value
    for kind, unit in (("dropped", "packets"), ("dropped", "bytes"), ("forwarded", "packets")):
        want = {
            (NETWORK_OF[bridge], bridge, x): k * counters[unit == "bytes"]
            for (bridge, _, x), counters in exp[kind].items()  # type: ignore[attr-defined]
        }
        assert got[f"netpath_{kind}_{unit}_total"] == want, (kind, unit)
    published = {key: k * v for key, v in exp["published"].items()}  # type: ignore[attr-defined]
    assert got["netpath_published_port_connections_total"] == published
    masq = {key: k * v for key, v in exp["masquerade"].items()}  # type: ignore[attr-defined]
    assert got["netpath_masquerade_connections_total"] == masq
    assert got["netpath_firewall_layout_info"] == {(layout,): 1}
