"""Containers: traffic per container (or pod) and per network, top talkers, errors and drops.

The ``namespace`` and ``pod`` variables are Kubernetes' (every ``netpath_container_*``
series carries both, empty off Kubernetes); their "All" is ``.*``, which also matches
the empty value, so on a Docker or Podman host they select everything.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.panels import (
    INSTANCE,
    RATE,
    PanelBuilder,
    bars,
    build_dashboard,
    graph,
    grid,
    instance_variable,
    query,
    query_variable,
    row,
    single,
)

UID = "netpath-containers"
WORKLOAD = f'{INSTANCE}, namespace=~"$namespace", pod=~"$pod", container=~"$container"'
SEL = f'{WORKLOAD}, network=~"$network"'
RX = "netpath_container_network_receive_{}_total"
TX = "netpath_container_network_transmit_{}_total"


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{SEL}}}[{RATE}]))"


def _errors_and_drops(metric: str) -> list[prometheus.Dataquery]:
    """Errors (A) and drops (B) per container and network, of RX or TX."""
    return [
        query(
            _rate(metric.format(kind), "container, network"),
            "{{container}} {{network}} " + kind,
            ref,
        )
        for kind, ref in (("errors", "A"), ("dropped", "B"))
    ]


def build() -> Dashboard:
    """The Containers dashboard."""
    per_container = "container"
    items: list[PanelBuilder] = [
        row("Overview"),
        single(
            "Running containers",
            "Containers (or Kubernetes pods) with a veth on this host.",
            "short",
            [
                query(
                    f"count(netpath_container_info{{{WORKLOAD}}})",
                    instant=True,
                )
            ],
        ),
        single(
            "Networks",
            "Networks known to the exporter (Docker, Podman or CNI networks).",
            "short",
            [
                query(
                    f'count(netpath_network_info{{{INSTANCE}, network=~"$network"}})', instant=True
                )
            ],
        ),
        single(
            "Received by containers",
            "Bytes per second the selected containers received (their host veths transmitted).",
            "Bps",
            [query(f"sum(rate({RX.format('bytes')}{{{SEL}}}[{RATE}]))", instant=True)],
        ),
        single(
            "Sent by containers",
            "Bytes per second the selected containers sent (their host veths received).",
            "Bps",
            [query(f"sum(rate({TX.format('bytes')}{{{SEL}}}[{RATE}]))", instant=True)],
        ),
        row("Traffic per container"),
        graph(
            "Received per container",
            "Container perspective: bytes per second into each container, all its networks.",
            "Bps",
            [query(_rate(RX.format("bytes"), per_container), "{{container}}")],
        ),
        graph(
            "Sent per container",
            "Bytes per second out of each container, all its networks.",
            "Bps",
            [query(_rate(TX.format("bytes"), per_container), "{{container}}")],
        ),
        graph(
            "Packets received per container",
            "Packets per second into each container.",
            "pps",
            [query(_rate(RX.format("packets"), per_container), "{{container}}")],
        ),
        graph(
            "Packets sent per container",
            "Packets per second out of each container.",
            "pps",
            [query(_rate(TX.format("packets"), per_container), "{{container}}")],
        ),
        bars(
            "Top talkers",
            "The ten containers that moved the most bytes (received + sent) in the selected "
            "time range.",
            "bytes",
            [
                query(
                    "topk(10, "
                    f"sum by (container) (increase({RX.format('bytes')}{{{SEL}}}[$__range])) + "
                    f"sum by (container) (increase({TX.format('bytes')}{{{SEL}}}[$__range])))",
                    "{{container}}",
                    instant=True,
                )
            ],
            width=24,
        ),
        row("Per network"),
        graph(
            "Received per network",
            "Bytes per second into the containers of each network.",
            "Bps",
            [query(_rate(RX.format("bytes"), "network"), "{{network}}")],
        ),
        graph(
            "Sent per network",
            "Bytes per second out of the containers of each network.",
            "Bps",
            [query(_rate(TX.format("bytes"), "network"), "{{network}}")],
        ),
        row("Errors and drops"),
        graph(
            "Receive errors and drops",
            "Packets per second the host veth failed to hand to the container (its transmit "
            "errors and drops).",
            "pps",
            _errors_and_drops(RX),
        ),
        graph(
            "Transmit errors and drops",
            "Packets per second from the container that its host veth failed to receive.",
            "pps",
            _errors_and_drops(TX),
        ),
        row("Inventory"),
        grid(
            "Container interfaces",
            "Each container's interface per network: host veth, bridge, address, image, runtime.",
            [
                query(
                    f"netpath_container_interface_info{{{SEL}}} * on (instance, container_id) "
                    "group_left (image, compose_project, compose_service, runtime) "
                    f"netpath_container_info{{{INSTANCE}}}",
                    table=True,
                )
            ],
            hide=("Time", "Value", "__name__", "job", "instance"),
        ),
        grid(
            "Networks",
            "Networks: bridge, subnet, gateway, driver (per network, whatever the "
            "namespace and pod).",
            [query(f'netpath_network_info{{{INSTANCE}, network=~"$network"}}', table=True)],
            hide=("Time", "Value", "__name__", "job", "instance"),
        ),
    ]
    return build_dashboard(
        UID,
        "netpath / Containers",
        "Traffic of each container (or Kubernetes pod) and network on a host, as the host's "
        "veths count it.",
        [
            instance_variable(),
            query_variable(
                "namespace",
                "Namespace",
                'label_values(netpath_container_info{instance=~"$instance"}, namespace)',
            ),
            query_variable(
                "pod",
                "Pod",
                'label_values(netpath_container_info{instance=~"$instance", '
                'namespace=~"$namespace"}, pod)',
            ),
            query_variable(
                "network",
                "Network",
                'label_values(netpath_container_interface_info{instance=~"$instance"}, network)',
            ),
            query_variable(
                "container",
                "Container",
                'label_values(netpath_container_info{instance=~"$instance", '
                'namespace=~"$namespace", pod=~"$pod"}, container)',
            ),
        ],
        items,
    )
