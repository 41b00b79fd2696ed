"""Kubernetes Services: kube-proxy's meaning on a node (``netpath_service_*``).

Which endpoints of a Service take its new connections, how evenly, how many
clients hit a Service without endpoints, whether its NodePort is used, and
the connections open now. Names come from kube-proxy's own rules.
"""

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
)

UID = "netpath-services"
SVC = f'{INSTANCE}, namespace=~"$namespace", service=~"$service"'
ENDPOINT_CONNS = f"netpath_service_endpoint_connections_total{{{SVC}}}"


def build() -> Dashboard:
    """The Kubernetes Services dashboard."""
    items: list[PanelBuilder] = [
        row("Overview"),
        single(
            "Service ports",
            "Service ports in kube-proxy's rules on this node (one per ClusterIP).",
            "none",
            [query(f"count(netpath_service_info{{{SVC}}})", instant=True)],
        ),
        single(
            "Service ports without endpoints",
            "Service ports whose rules list no endpoint: kube-proxy rejects their connections.",
            "none",
            [query(f"count(netpath_service_endpoints{{{SVC}}} == 0) or vector(0)", instant=True)],
            thresholds=((None, "green"), (1, "orange")),
        ),
        single(
            "New connections",
            "New connections per second the selected Services sent to their endpoints "
            "(iptables mode: the endpoints' DNAT rules).",
            "cps",
            [query(f"sum(rate({ENDPOINT_CONNS}[{RATE}]))", instant=True)],
        ),
        single(
            "Rejected",
            "Packets per second kube-proxy rejected or dropped for the selected Services.",
            "pps",
            [
                query(
                    f"sum(rate(netpath_service_rejected_packets_total{{{SVC}}}[{RATE}]))",
                    instant=True,
                )
            ],
            thresholds=((None, "green"), (0.001, "orange")),
        ),
        row("Connections"),
        graph(
            "New connections per Service",
            "New connections per second per Service port, all endpoints summed.",
            "cps",
            [
                query(
                    f"sum by (namespace, service, port) (rate({ENDPOINT_CONNS}[{RATE}]))",
                    "{{namespace}}/{{service}}:{{port}}",
                )
            ],
        ),
        graph(
            "New connections per endpoint",
            "New connections per second each endpoint received through its Service.",
            "cps",
            [
                query(
                    f"sum by (namespace, service, endpoint) (rate({ENDPOINT_CONNS}[{RATE}]))",
                    "{{namespace}}/{{service}} -> {{endpoint}}",
                )
            ],
        ),
        graph(
            "Endpoint imbalance",
            "The busiest endpoint's new connections over the average endpoint's, per Service "
            "port: 1 is even; kube-proxy picks endpoints at random, so a lasting 2 or more "
            "means something else (session affinity, long-lived clients) decides.",
            "none",
            [
                query(
                    f"max by (namespace, service, port) (rate({ENDPOINT_CONNS}[{RATE}])) / "
                    f"avg by (namespace, service, port) (rate({ENDPOINT_CONNS}[{RATE}]))",
                    "{{namespace}}/{{service}}:{{port}}",
                )
            ],
        ),
        graph(
            "Active connections per endpoint",
            "Connections open now through the Service to each endpoint (conntrack: TCP "
            "established, UDP all), as of the last attribution dump. Both kube-proxy modes.",
            "short",
            [
                query(
                    "sum by (namespace, service, endpoint) "
                    f"(netpath_service_endpoint_active_connections{{{SVC}}})",
                    "{{namespace}}/{{service}} -> {{endpoint}}",
                )
            ],
        ),
        row("Rejects and external traffic"),
        graph(
            "Rejected per Service and reason",
            "no_endpoints: the Service has no endpoint; no_local_endpoints: "
            "externalTrafficPolicy Local without one on this node; source_range: outside the "
            "load balancer's source ranges.",
            "pps",
            [
                query(
                    "sum by (namespace, service, reason) "
                    f"(rate(netpath_service_rejected_packets_total{{{SVC}}}[{RATE}]))",
                    "{{namespace}}/{{service}} {{reason}}",
                )
            ],
        ),
        graph(
            "External connections (NodePort, external IP, load balancer)",
            "New connections per second that entered the Service from outside its ClusterIP.",
            "cps",
            [
                query(
                    "sum by (namespace, service, via) "
                    f"(rate(netpath_service_external_connections_total{{{SVC}}}[{RATE}]))",
                    "{{namespace}}/{{service}} {{via}}",
                )
            ],
        ),
        graph(
            "kube-proxy's INVALID drops",
            "Packets per second kube-proxy dropped as conntrack INVALID in the forward path "
            "(KUBE-FORWARD): out-of-window TCP, often asymmetric routing or a full table.",
            "pps",
            [
                query(
                    "sum by (manager, reason) (rate(netpath_dropped_packets_total"
                    f'{{{INSTANCE}, manager="kube-proxy"}}[{RATE}]))',
                    "{{manager}} {{reason}}",
                )
            ],
        ),
        graph(
            "Masqueraded Service traffic",
            "New connections per second kube-proxy masqueraded (KUBE-POSTROUTING).",
            "cps",
            [
                query(
                    "sum by (manager, network) (rate(netpath_masquerade_connections_total"
                    f'{{{INSTANCE}, manager="kube-proxy"}}[{RATE}]))',
                    "{{manager}}",
                )
            ],
        ),
        row("Services"),
        grid(
            "Service ports and endpoints",
            "Every Service port in kube-proxy's rules with its ClusterIP and number of endpoints.",
            [
                query(
                    f"netpath_service_info{{{SVC}}} * on (instance, namespace, service, port, "
                    f"protocol) group_left () netpath_service_endpoints{{{SVC}}}",
                    table=True,
                )
            ],
            hide=("Time", "__name__", "job", "instance"),
        ),
    ]
    return build_dashboard(
        UID,
        "netpath / Kubernetes Services",
        "kube-proxy's Services on a node: new and active connections per Service and "
        "endpoint, imbalance, rejects, NodePort and external traffic.",
        [
            instance_variable(),
            query_variable(
                "namespace",
                "Namespace",
                'label_values(netpath_service_info{instance=~"$instance"}, namespace)',
            ),
            query_variable(
                "service",
                "Service",
                'label_values(netpath_service_info{instance=~"$instance", '
                'namespace=~"$namespace"}, service)',
            ),
        ],
        items,
    )
