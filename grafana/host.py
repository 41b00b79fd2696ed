"""Host path: bridges and uplink traffic, ip_forward / br_netfilter, routes, interfaces."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.panels import (
    INSTANCE,
    RATE,
    PanelBuilder,
    build_dashboard,
    graph,
    grid,
    instance_variable,
    query,
    query_variable,
    row,
    single,
    value_map,
)

UID = "netpath-host"
BRIDGE = f'{INSTANCE}, interface=~"$bridge"'
SWITCH = value_map({"0": ("disabled", "red"), "1": ("enabled", "green")})
UPLINK = f'max by (instance, interface) (netpath_route_info{{{INSTANCE}, destination="default"}})'
VETH_OR_BRIDGE = f'netpath_interface_info{{{INSTANCE}, kind=~"veth|bridge"}}'


def _bridge(metric: str) -> str:
    # The join keeps "All" (.*) to bridges.
    return (
        f"sum by (interface) (rate({metric}{{{BRIDGE}}}[{RATE}]) "
        "* on (instance, interface) group_left () "
        f'netpath_interface_info{{{INSTANCE}, kind="bridge"}})'
    )


def _uplink(metric: str) -> str:
    return (
        f"sum by (interface) (rate({metric}{{{INSTANCE}}}[{RATE}]) "
        f"* on (instance, interface) group_left () {UPLINK})"
    )


def _veth_bridge(metric: str) -> str:
    return (
        f"sum by (interface) (rate({metric}{{{INSTANCE}}}[{RATE}]) "
        f"* on (instance, interface) group_left () {VETH_OR_BRIDGE})"
    )


def build() -> Dashboard:
    """The Host path dashboard."""
    items: list[PanelBuilder] = [
        row("Host settings"),
        single(
            "IP forwarding",
            "net.ipv4.ip_forward / net.ipv6.conf.all.forwarding. Containers reach nothing "
            "beyond their bridge while it is off.",
            "none",
            [query(f"netpath_ip_forwarding_enabled{{{INSTANCE}}}", "{{family}}", instant=True)],
            mappings=[SWITCH],
            thresholds=((None, "red"), (1, "green")),
        ),
        single(
            "br_netfilter: bridge-nf-call",
            "Whether bridged (intra-network) traffic passes iptables (net.bridge."
            "bridge-nf-call-iptables / -ip6tables); only while br_netfilter is loaded.",
            "none",
            [
                query(
                    f"netpath_bridge_nf_call_iptables_enabled{{{INSTANCE}}}",
                    "{{family}}",
                    instant=True,
                )
            ],
            mappings=[SWITCH],
            thresholds=((None, "blue"),),
        ),
        single(
            "Bridges",
            "Bridge interfaces on the host.",
            "short",
            [query(f'count(netpath_interface_info{{{INSTANCE}, kind="bridge"}})', instant=True)],
        ),
        single(
            "Bridge ports",
            "Interfaces (container veths) enslaved to the selected bridges.",
            "short",
            [query(f'sum(netpath_bridge_ports{{{INSTANCE}, bridge=~"$bridge"}})', instant=True)],
        ),
        row("Bridges"),
        graph(
            "Bridge receive",
            "Host perspective: bytes per second each bridge received from its ports "
            "(containers sending to the host or to be routed).",
            "Bps",
            [query(_bridge("netpath_interface_receive_bytes_total"), "{{interface}}")],
        ),
        graph(
            "Bridge transmit",
            "Bytes per second each bridge sent towards its ports (routed or host traffic "
            "into containers).",
            "Bps",
            [query(_bridge("netpath_interface_transmit_bytes_total"), "{{interface}}")],
        ),
        graph(
            "Ports per bridge",
            "Interfaces enslaved to each bridge.",
            "short",
            [query(f'netpath_bridge_ports{{{INSTANCE}, bridge=~"$bridge"}}', "{{bridge}}")],
        ),
        graph(
            "Veth and bridge errors and drops",
            "Receive and transmit errors and drops of veths and bridges, packets per second.",
            "pps",
            [
                query(
                    _veth_bridge("netpath_interface_receive_errors_total"),
                    "{{interface}} rx errors",
                    "A",
                ),
                query(
                    _veth_bridge("netpath_interface_receive_dropped_total"),
                    "{{interface}} rx dropped",
                    "B",
                ),
                query(
                    _veth_bridge("netpath_interface_transmit_errors_total"),
                    "{{interface}} tx errors",
                    "C",
                ),
                query(
                    _veth_bridge("netpath_interface_transmit_dropped_total"),
                    "{{interface}} tx dropped",
                    "D",
                ),
            ],
        ),
        row("Uplink"),
        graph(
            "Uplink receive",
            "Bytes per second received on the interface(s) of the default route.",
            "Bps",
            [query(_uplink("netpath_interface_receive_bytes_total"), "{{interface}}")],
        ),
        graph(
            "Uplink transmit",
            "Bytes per second sent on the interface(s) of the default route.",
            "Bps",
            [query(_uplink("netpath_interface_transmit_bytes_total"), "{{interface}}")],
        ),
        row("Conntrack"),
        single(
            "Conntrack table fill",
            "Entries over the table's limit (nf_conntrack_max). At the limit the kernel evicts "
            "unreplied connections, then drops new ones.",
            "percentunit",
            [
                query(
                    f"netpath_conntrack_entries{{{INSTANCE}}} "
                    f"/ (netpath_conntrack_entries_limit{{{INSTANCE}}} > 0)",
                    instant=True,
                )
            ],
            thresholds=((None, "green"), (0.75, "orange"), (0.9, "red")),
        ),
        graph(
            "Conntrack entries",
            "Entries in the host's conntrack table, and its limit.",
            "short",
            [
                query(f"netpath_conntrack_entries{{{INSTANCE}}}", "entries", "A"),
                query(f"netpath_conntrack_entries_limit{{{INSTANCE}}}", "limit", "B"),
            ],
            width=18,
        ),
        graph(
            "Conntrack failures",
            "Per second: connections dropped by a full table (drop), unreplied entries "
            "evicted to make room (early_drop), insertion races lost (insert_failed).",
            "short",
            [
                query(
                    f"sum by (event) (rate(netpath_conntrack_events_total{{{INSTANCE}, "
                    f'event=~"drop|early_drop|insert_failed"}}[{RATE}]))',
                    "{{event}}",
                )
            ],
        ),
        graph(
            "Top workloads by conntrack entries",
            "The ten workloads with the most entries (their address is an entry's original or "
            "reply source), as of the last attribution dump (conntrack.interval).",
            "short",
            [
                query(
                    f"topk(10, netpath_conntrack_workload_entries{{{INSTANCE}}})",
                    "{{container}} ({{network}})",
                )
            ],
        ),
        row("Routes and interfaces"),
        grid(
            "Routes",
            "Main-table routes through a bridge, and the default route(s).",
            [query(f"netpath_route_info{{{INSTANCE}}}", table=True)],
            hide=("Time", "Value", "__name__", "job", "instance"),
        ),
        grid(
            "Interfaces",
            "Every interface of the host namespace: kind, master bridge, state.",
            [query(f"netpath_interface_info{{{INSTANCE}}}", table=True)],
            hide=("Time", "Value", "__name__", "job", "instance"),
            height=10,
        ),
    ]
    return build_dashboard(
        UID,
        "netpath / Host path",
        "The host side of the container path: bridges, uplink, forwarding switches, "
        "conntrack, routes.",
        [
            instance_variable(),
            query_variable(
                "bridge",
                "Bridge",
                'label_values(netpath_interface_info{instance=~"$instance", kind="bridge"}, '
                "interface)",
            ),
        ],
        items,
    )
