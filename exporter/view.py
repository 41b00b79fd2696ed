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
        self._key: tuple[int, tuple[SourceData, ...]] | None = None
        self._topology = Topology()
        self._meanings: tuple[Meaning, ...] = ()

    def __call__(self, poll: PollResult, before: PollResult | None = None) -> HostView:
        del before
        links = poll.get("links", LinksData)
        fw = poll.get("firewall", FirewallData)
        sources = merge_sources(poll.sources())
        key = (fw.structure if fw is not None else -1, sources)
        if (
            self._key is None
            or fw is None
            or not fw.structure
            or self._key[0] != key[0]
            or len(self._key[1]) != len(sources)
            or any(a is not b for a, b in zip(self._key[1], sources, strict=True))
        ):
            self._topology = derive_topology(sources)
            self._meanings = interpret_all(fw, self._topology) if fw is not None else ()
            self._key = key
        return HostView(
            links=links,
            firewall=fw,
            routes=poll.get("routes", RoutesData),
            sources=sources,
            interfaces=build_interfaces(sources, links) if links is not None else (),
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
