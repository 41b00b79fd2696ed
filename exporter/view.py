"""The host view: what one poll's data means, derived once and read by everyone.

Pure. After each poll the poller derives a :class:`HostView` from the
collectors' data: the sources merged (:func:`exporter.workloads.merge_sources`),
the workload join (:func:`exporter.workloads.build_interfaces`), the topology
the firewall managers read, and every manager's meaning of the rules
(:func:`exporter.meaning.interpret_all`). The renderers, ``explain`` and
``/path`` all read this one view, so they cannot disagree.

The meanings depend only on the firewall's structure and the sources: they
are kept (:class:`ViewDeriver`) while both stand, so a steady poll derives
only the join.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.meaning import interpret_all
from exporter.meaning.base import Meaning, Topology, build_topology
from exporter.meaning.docker_layout import network_bridge
from exporter.model import FirewallData, LinksData, RoutesData, SourceData
from exporter.model.workloads import RUNTIME_DOCKER
from exporter.poller import PollResult
from exporter.workloads import WorkloadInterface, build_interfaces, merge_sources


@dataclass(frozen=True, slots=True)
class HostView:
    links: LinksData | None
    firewall: FirewallData | None
    routes: RoutesData | None
    sources: tuple[SourceData, ...]  # merged: no workload twice
    interfaces: tuple[WorkloadInterface, ...]  # the join; () without links
    topology: Topology
    meanings: tuple[Meaning, ...]  # () without firewall data


class ViewDeriver:
    """Derives each poll's view, keeping the meanings while their inputs stand."""

    def __init__(self) -> None:
        self._raw: tuple[SourceData, ...] = ()  # the sources as the poll read them
        self._sources: tuple[SourceData, ...] = ()  # merged
        self._topology = Topology()
        self._structure = 0  # the FirewallData.structure the meanings were made for
        self._meanings: tuple[Meaning, ...] = ()

    def __call__(self, poll: PollResult) -> HostView:
        links = poll.get("links", LinksData)
        fw = poll.get("firewall", FirewallData)
        raw = poll.sources()  # a source returns the same object while nothing changed
        if len(raw) != len(self._raw) or any(
            a is not b for a, b in zip(raw, self._raw, strict=True)
        ):
            self._raw, self._sources = raw, merge_sources(raw)
            self._topology = derive_topology(self._sources)
            self._structure = 0
        if fw is None:
            self._structure, self._meanings = 0, ()
        elif not fw.structure or fw.structure != self._structure:
            self._meanings = interpret_all(fw, self._topology)
            self._structure = fw.structure  # 0 (unknown) is derived again every poll
        return HostView(
            links=links,
            firewall=fw,
            routes=poll.get("routes", RoutesData),
            sources=self._sources,
            interfaces=build_interfaces(self._sources, links) if links is not None else (),
            topology=self._topology,
            meanings=self._meanings,
        )


def derive_topology(sources: tuple[SourceData, ...]) -> Topology:
    """The managers' topology; Docker networks without a reported bridge get Docker's name."""
    bridge_of = {
        net.name: network_bridge(net)
        for src in sources
        if src.runtime == RUNTIME_DOCKER
        for net in src.networks
        if not net.bridge
    }
    return build_topology(sources, bridge_of)


def derive_view(poll: PollResult) -> HostView:
    """A one-off view of one poll (tests, tools): nothing kept."""
    return ViewDeriver()(poll)
