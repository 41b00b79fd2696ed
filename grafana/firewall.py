"""Firewall and NAT: the firewall managers' drops per network and reason, published ports,
NAT, rules.

The meaning families are manager-neutral (``manager``: docker, netavark, cni, kube-proxy);
the panels group by ``manager`` so that two managers' networks of one name stay apart.
"""

from __future__ import annotations

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

UID = "netpath-firewall"
NET = f'{INSTANCE}, network=~"$network"'
FORWARD_POLICY = f'{INSTANCE}, table="filter", chain="FORWARD", policy=~"DROP|drop"'


def build() -> Dashboard:
    """The Firewall and NAT dashboard."""
    items: list[PanelBuilder] = [
        row("Overview"),
        single(
            "Firewall layout",
            "Each firewall manager on this host and how its version lays out its rules "
            "(Docker: classic, forward-chains, v29-iptables, v29-nftables). On Docker's v29 "
            "layouts traffic from other networks counts as unpublished or direct_access.",
            "none",
            [
                query(
                    f"netpath_firewall_layout_info{{{INSTANCE}}}",
                    "{{manager}} {{layout}}",
                    instant=True,
                )
            ],
            names=True,
        ),
        single(
            "Firewall backends",
            "Backends that hold rules on this host.",
            "none",
            [
                query(
                    f"netpath_firewall_backend_info{{{INSTANCE}}}",
                    "{{family}} {{backend}}",
                    instant=True,
                )
            ],
            names=True,
        ),
        single(
            "Dropped by managers' rules",
            "Packets per second dropped by the DROP rules the firewall managers (Docker, "
            "Podman's netavark, CNI plugins, kube-proxy) install, all networks.",
            "pps",
            [
                query(
                    f"sum(rate(netpath_dropped_packets_total{{{NET}}}[{RATE}]))",
                    instant=True,
                )
            ],
            thresholds=((None, "green"), (0.001, "orange")),
        ),
        single(
            "FORWARD policy drops",
            "Packets per second dropped by the FORWARD chain's DROP policy (classic Docker: "
            "traffic from outside to unpublished ports).",
            "pps",
            [
                query(
                    f"sum(rate(netpath_firewall_chain_policy_packets_total{{{FORWARD_POLICY}}}"
                    f"[{RATE}]))",
                    instant=True,
                )
            ],
            thresholds=((None, "green"), (0.001, "orange")),
        ),
        row("Drops"),
        graph(
            "Dropped packets per network and reason",
            "The managers' DROP rules per destination network. isolation: from another "
            "network; unpublished: to a port not published (on Docker 29 also from other "
            "networks); direct_access: straight to a container IP; icc; internal; invalid; "
            "no_endpoints; source_range.",
            "pps",
            [
                query(
                    "sum by (manager, network, reason) "
                    f"(rate(netpath_dropped_packets_total{{{NET}}}[{RATE}]))",
                    "{{manager}} {{network}} {{reason}}",
                )
            ],
        ),
        graph(
            "Dropped bytes per network and reason",
            "The same drops in bytes per second.",
            "Bps",
            [
                query(
                    "sum by (manager, network, reason) "
                    f"(rate(netpath_dropped_bytes_total{{{NET}}}[{RATE}]))",
                    "{{manager}} {{network}} {{reason}}",
                )
            ],
        ),
        graph(
            "FORWARD policy drops",
            "Packets per second that reached the end of the built-in FORWARD chain and met "
            "its DROP policy, per family and backend.",
            "pps",
            [
                query(
                    "sum by (family, backend) "
                    f"(rate(netpath_firewall_chain_policy_packets_total{{{FORWARD_POLICY}}}"
                    f"[{RATE}]))",
                    "{{family}} {{backend}}",
                )
            ],
        ),
        graph(
            "Forwarded packets per network and direction",
            "The managers' per-network ACCEPT rules: outbound (out of the network), inbound "
            "(replies and published ports), internal (within the network).",
            "pps",
            [
                query(
                    "sum by (manager, network, direction) "
                    f"(rate(netpath_forwarded_packets_total{{{NET}}}[{RATE}]))",
                    "{{manager}} {{network}} {{direction}}",
                )
            ],
        ),
        row("NAT"),
        graph(
            "Published-port connections",
            "New connections per second to each published port (the DNAT rule's packet "
            "counter: the nat table sees the first packet of each connection).",
            "cps",
            [
                query(
                    "sum by (container, protocol, host_port, container_port) "
                    f"(rate(netpath_published_port_connections_total{{{NET}}}[{RATE}]))",
                    "{{container}} {{host_port}}->{{container_port}}/{{protocol}}",
                )
            ],
        ),
        graph(
            "Masquerade per network",
            "New outbound connections per second leaving each network through NAT "
            "(the network's MASQUERADE rule, or its pods' rules summed after the rate).",
            "cps",
            [
                query(
                    "sum by (manager, network) "
                    f"(rate(netpath_masquerade_connections_total{{{NET}}}[{RATE}]))",
                    "{{manager}} {{network}}",
                )
            ],
        ),
        row("Rules"),
        bars(
            "Hottest rules per chain",
            "The five rules of each chain that counted the most packets in the selected time "
            "range.",
            "short",
            [
                query(
                    "topk by (chain) (5, sum by (table, chain, rule) "
                    f'(increase(netpath_firewall_rule_packets_total{{{INSTANCE}, chain=~"$chain"}}'
                    "[$__range])))",
                    "{{table}}/{{chain}}: {{rule}}",
                    instant=True,
                )
            ],
            width=24,
            height=12,
        ),
        grid(
            "Rules per chain",
            "Number of rules in each exported chain.",
            [
                query(
                    "sum by (family, backend, table, chain) "
                    f'(netpath_firewall_chain_rules{{{INSTANCE}, chain=~"$chain"}})',
                    table=True,
                )
            ],
            hide=("Time",),
        ),
    ]
    return build_dashboard(
        UID,
        "netpath / Firewall and NAT",
        "What the firewall managers' rules (Docker, Podman, CNI, kube-proxy) do with "
        "container traffic: drops by reason, published ports, masquerade, FORWARD policy, "
        "the busiest rules.",
        [
            instance_variable(),
            query_variable(
                "network",
                "Network",
                'label_values(netpath_forwarded_packets_total{instance=~"$instance"}, network)',
            ),
            query_variable(
                "chain",
                "Chain",
                'label_values(netpath_firewall_rule_packets_total{instance=~"$instance"}, chain)',
            ),
        ],
        items,
    )
