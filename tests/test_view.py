"""The host view keeps what depends only on the firewall structure and the sources (pure)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from test_golden import load_poll

from exporter.model import FirewallData, SourceData
from exporter.view import ViewDeriver

SEED = Path(__file__).resolve().parent / "scenarios" / "seed"


def test_meanings_are_kept_while_structure_and_sources_stand() -> None:
    poll = load_poll(SEED)
    fw = poll.data["firewall"]
    docker = poll.data["docker"]
    assert isinstance(fw, FirewallData) and isinstance(docker, SourceData)
    fw = replace(fw, structure=7)
    derive = ViewDeriver()
    first = derive(replace(poll, data={**poll.data, "firewall": fw}))
    assert first.meanings and first.interfaces
    again = derive(replace(poll, data={**poll.data, "firewall": fw}))
    assert again.meanings is first.meanings and again.topology is first.topology
    # A source that read something new: derived again.
    changed = replace(docker, workloads=docker.workloads[:1])
    other = derive(replace(poll, data={**poll.data, "firewall": fw, "docker": changed}))
    assert other.meanings is not first.meanings
    assert [w.name for s in other.sources for w in s.workloads] == [docker.workloads[0].name]
    # Another firewall structure: derived again; an unknown one (0): every time.
    moved = derive(replace(poll, data={**poll.data, "firewall": replace(fw, structure=8)}))
    assert moved.meanings is not other.meanings
    unknown = replace(poll, data={**poll.data, "firewall": replace(fw, structure=0)})
    assert derive(unknown).meanings is not derive(unknown).meanings
