"""Rendering helpers for tests of one runtime's meaning and workloads (pure).

``render_docker`` runs the real pipeline pieces (topology, every manager,
the meaning renderer) on a host whose only source is ``docker`` and projects
the Docker manager's series onto the labels Docker's series vary by: it
checks that ``manager`` is "docker" and that the workload labels Docker's
per-network rules never fill (``namespace``, ``pod``; ``container`` on
masquerade) are empty, then drops them, so the per-layout expectations read
as Docker's own.
"""

from __future__ import annotations

from exporter.meaning import interpret_all
from exporter.metrics.meaning import render_meanings
from exporter.metrics.workloads import render_workloads
from exporter.model import FirewallData, LinksData, MetricFamily, SourceData
from exporter.view import derive_topology
from exporter.workloads import build_interfaces

_EMPTY_ON_DOCKER = {
    "netpath_masquerade_connections_total": ("container", "namespace", "pod"),
    "netpath_published_port_connections_total": ("namespace", "pod"),
}


def render_meaning_families(fw: FirewallData, *sources: SourceData | None) -> list[MetricFamily]:
    """The manager-neutral families as the exporter renders them for these sources."""
    topo = derive_topology(tuple(s for s in sources if s is not None))
    return render_meanings(fw, interpret_all(fw, topo))


def render_docker(
    fw: FirewallData, docker: SourceData | None = None, links: LinksData | None = None
) -> list[MetricFamily]:
    """Docker's series, projected onto the labels they vary by (see module doc)."""
    del links
    out = []
    for fam in render_meaning_families(fw, docker):
        drop = {"manager", *_EMPTY_ON_DOCKER.get(fam.name, ())}
        keep = [i for i, name in enumerate(fam.labels) if name not in drop]
        samples = []
        for values, value in fam.samples:
            for i, name in enumerate(fam.labels):
                if name == "manager":
                    assert values[i] == "docker", values
                elif name in drop:
                    assert values[i] == "", (fam.name, values)
            samples.append((tuple(values[i] for i in keep), value))
        out.append(
            MetricFamily(
                fam.name, fam.type, fam.help, tuple(fam.labels[i] for i in keep), tuple(samples)
            )
        )
    return out


def render_containers(docker: SourceData, links: LinksData | None) -> list[MetricFamily]:
    """The workload families of a host whose only source is ``docker``."""
    interfaces = build_interfaces([docker], links) if links is not None else ()
    return render_workloads([docker], interfaces)
