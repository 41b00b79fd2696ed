"""The landing page's path view (exporter.paths.page) from literal poll data.

The seed host in detail; every scenario folder (tests/scenarios/<name>/) for
its golden ``path.html`` and a table per container holding each of its veths
and bridges.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from test_golden import SCENARIO_NAMES, SCENARIOS, check_golden, load_poll, with_view

from exporter.model import LinksData, SourceData
from exporter.paths.page import PathView, build_page_paths, render_path_page
from exporter.poller import PollResult, Snapshot

SEED = Path(__file__).resolve().parent / "scenarios" / "seed"
APP = "br-40d652e0aac8"


def _text(page: bytes) -> str:
    """The page's visible text, tags stripped."""
    return re.sub(r"<[^>]+>", " ", page.decode())


def test_one_table_per_container_with_every_hop() -> None:
    poll = load_poll(SEED)
    page = render_path_page(build_page_paths(poll, None), metrics_path="/m")
    html = page.decode()
    assert html.count('<table class="path">') == 2
    for name, veth, bridge in (
        ("client", "veth1a2b3c4", "docker0"),
        ("shop-web-1", "veth5d6e7f8", APP),
    ):
        section = html[html.index(f'<h2 id="c-{name}">') :]
        section = section[: section.index("</table>")]
        assert f"host veth <b>{veth}</b>" in section
        assert f"bridge <b>{bridge}</b>" in section
        for hop in ("routing", "firewall", "published ports", "masquerade", "drops into"):
            assert hop in section
    text = _text(page)
    assert "-o br-40d652e0aac8 -j DROP" in text
    assert "isolation" in text
    # Figures link to the metrics page by family name.
    assert '<a href="/m" title="served on the metrics page">netpath_dropped_packets_total' in html
    assert "rates appear from the next poll on" in text


def _later(poll: PollResult, seconds: float, veth_rx: int) -> PollResult:
    links = poll.data["links"]
    assert isinstance(links, LinksData)
    stats = dict(links.stats)
    stats[9] = stats[9]._replace(rx_packets=stats[9].rx_packets + veth_rx)
    data = dict(poll.data)
    data["links"] = replace(links, stats=stats)
    return with_view(replace(poll, data=data, timestamp=poll.timestamp + seconds))


def test_rates_between_the_last_two_snapshots() -> None:
    first = load_poll(SEED)
    view = PathView()
    s1 = Snapshot(first)
    page1 = view.page((None, s1))
    assert view.page((None, s1)) is page1  # rendered once per snapshot
    s2 = Snapshot(_later(first, 4.0, 20))
    text = _text(view.page((s1, s2)))
    assert "rates over the 4.0 s between the last two polls" in text
    row = re.search(r"receive\s+veth5d6e7f8\s+(\d+)\s+([\d\u2009]+)\s+([\d.]+)", text)
    assert row is not None and row.group(1) == "45" and row.group(3) == "5.0"


def test_no_snapshot_or_no_docker() -> None:
    view = PathView()
    assert "first poll is pending" in view.page((None, None)).decode()
    poll = load_poll(SEED)
    data = {k: v for k, v in poll.data.items() if k != "docker"}
    page = view.page((None, Snapshot(with_view(replace(poll, data=data))))).decode()
    assert "no container runtime is reachable" in page
    assert '<table class="path">' not in page


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_every_scenario_container_with_its_veths_and_bridges(scenario: str) -> None:
    poll = load_poll(SCENARIOS / scenario)
    page = render_path_page(build_page_paths(poll, None), metrics_path="/metrics")
    html = page.decode()
    check_golden(SCENARIOS / scenario / "path.html", html)
    links, docker = poll.data["links"], poll.data["docker"]
    assert isinstance(links, LinksData) and isinstance(docker, SourceData)
    # every container with a veth, read from the inputs (veth peer nsid -> container, master)
    names = {link.index: link.name for link in links.links}
    owner = {w.netns_id: w.name for w in docker.workloads if w.netns_id is not None}
    legs: dict[str, list[tuple[str, str]]] = {}
    for link in links.links:
        if link.kind == "veth" and link.peer_netnsid in owner and link.master is not None:
            legs.setdefault(owner[link.peer_netnsid], []).append((link.name, names[link.master]))
    assert set(legs) == set(owner.values()) and legs
    assert html.count('<table class="path">') == len(legs)
    for name, pairs in legs.items():
        section = html[html.index(f'<h2 id="c-{name}">') :]
        section = section[: section.index("</table>")]
        for veth, bridge in pairs:
            assert f"host veth <b>{veth}</b>" in section, (name, veth)
            assert f"bridge <b>{bridge}</b>" in section, (name, bridge)
        assert section.count("host veth <b>") == len(pairs)
