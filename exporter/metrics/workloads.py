"""The workload families: ``netpath_container_*`` and ``netpath_network_info``.

Every source's workloads, rendered through the one join
(:func:`exporter.workloads.build_interfaces`). Container perspective: what
the workload receives is what its host veth transmits. On Kubernetes
``container`` is ``NAMESPACE/POD``; every series carries ``namespace`` and
``pod`` (empty elsewhere) so they join with kube-state-metrics directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.model import MetricFamily, SourceData
from exporter.workloads import WorkloadInterface

_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("receive_bytes", "tx_bytes", "Bytes the container received on this network."),
    ("receive_packets", "tx_packets", "Packets the container received on this network."),
    ("receive_errors", "tx_errors", "Errors on the host veth transmitting to the container."),
    ("receive_dropped", "tx_dropped", "Packets dropped on their way into the container."),
    ("transmit_bytes", "rx_bytes", "Bytes the container transmitted on this network."),
    ("transmit_packets", "rx_packets", "Packets the container transmitted on this network."),
    ("transmit_errors", "rx_errors", "Errors on the host veth receiving from the container."),
    ("transmit_dropped", "rx_dropped", "Packets from the container dropped by its host veth."),
)


def render_workloads(
    sources: Sequence[SourceData], interfaces: Sequence[WorkloadInterface]
) -> list[MetricFamily]:
    """The families of every source's workloads; counters for those with a veth found.

    Workloads on ``host``/``none`` (or without a veth found) get ``_info`` only.
    A network's ``subnet``/``gateway`` are its first pool's (IPv4 before IPv6).
    """
    workloads = sorted((w for src in sources for w in src.workloads), key=lambda w: w.name)
    families = [
        MetricFamily(
            "netpath_container_info",
            "gauge",
            "Running containers and pods, of every runtime (value 1).",
            (
                "container",
                "container_id",
                "image",
                "compose_project",
                "compose_service",
                "runtime",
                "namespace",
                "pod",
            ),
            tuple(
                (
                    (
                        w.name,
                        w.id[:12],
                        w.image,
                        w.compose_project,
                        w.compose_service,
                        w.runtime,
                        w.namespace,
                        w.pod,
                    ),
                    1,
                )
                for w in workloads
            ),
        ),
        MetricFamily(
            "netpath_container_interface_info",
            "gauge",
            "A container's host-side veth, its bridge and network (value 1).",
            (
                "container",
                "container_id",
                "network",
                "bridge",
                "interface",
                "ip",
                "mac",
                "namespace",
                "pod",
            ),
            tuple(
                (
                    (
                        wi.workload.name,
                        wi.workload.id[:12],
                        wi.network,
                        wi.bridge,
                        wi.interface,
                        wi.ip,
                        wi.mac,
                        wi.workload.namespace,
                        wi.workload.pod,
                    ),
                    1,
                )
                for wi in interfaces
            ),
        ),
    ]
    with_stats = [wi for wi in interfaces if wi.stats is not None]
    keys = [
        (wi.workload.name, wi.network, wi.interface, wi.workload.namespace, wi.workload.pod)
        for wi in with_stats
    ]
    for suffix, field_name, text in _COUNTERS:
        families.append(
            MetricFamily(
                f"netpath_container_network_{suffix}_total",
                "counter",
                f"{text} Container perspective: receive is what its host veth transmitted.",
                ("container", "network", "interface", "namespace", "pod"),
                tuple(zip(keys, (getattr(wi.stats, field_name) for wi in with_stats), strict=True)),
            )
        )
    networks = sorted((n for src in sources for n in src.networks), key=lambda n: n.name)
    families.append(
        MetricFamily(
            "netpath_network_info",
            "gauge",
            "Container networks (value 1); subnet and gateway of the first pool, IPv4 first.",
            ("network", "network_id", "bridge", "driver", "subnet", "gateway", "internal"),
            tuple(
                (
                    (
                        n.name,
                        n.id[:12],
                        n.bridge,
                        n.driver,
                        n.subnets[0] if n.subnets else "",
                        n.gateways[0] if n.gateways else "",
                        "true" if n.internal else "false",
                    ),
                    1,
                )
                for n in networks
            ),
        )
    )
    return families
