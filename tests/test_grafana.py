"""The Grafana dashboards: generated from code byte for byte, fixed uids, unique panel ids,
a datasource variable, only the metric contract's names, provisioning that parses."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip(
    "grafana_foundation_sdk", reason="needs the grafana extra (grafana-foundation-sdk)"
)

from grafana import build, promql  # noqa: E402

DASHBOARDS = REPO / "grafana" / "dashboards"
PROVISIONING = REPO / "grafana" / "provisioning"
CONTRACT = REPO / "docs" / "metrics.md"
UIDS = {
    "netpath-containers",
    "netpath-firewall",
    "netpath-host",
    "netpath-exporter",
    "netpath-services",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_regenerating_reproduces_the_committed_json_byte_for_byte() -> None:
    generated = build.build_dashboards()
    on_disk = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert sorted(generated) == sorted(on_disk), "run: python -m grafana.build"
    for name, text in generated.items():
        assert text == on_disk[name], f"{name} is stale: run python -m grafana.build"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--out", str(tmp_path), "--check"]) == 0
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text(first.read_text().replace('"uid"', '"uid" ', 1))
    assert build.main(["--out", str(tmp_path), "--check"]) == 1


def test_every_dashboard_has_its_fixed_uid_as_file_name() -> None:
    dashboards = committed()
    assert {d["uid"] for d in dashboards.values()} == UIDS
    for name, d in dashboards.items():
        assert name == f"{d['uid']}.json"
        assert d["title"].startswith("netpath / ")


def test_panel_ids_are_unique_positive_integers() -> None:
    for name, d in committed().items():
        ids = [p.get("id") for p in promql.iter_panels(d)]
        assert all(isinstance(i, int) and i > 0 for i in ids), (name, ids)
        assert len(ids) == len(set(ids)), (name, ids)


def test_datasource_is_a_template_variable_not_inputs() -> None:
    for name, d in committed().items():
        assert "__inputs" not in d, name
        assert "${DS_" not in json.dumps(d), name
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus", name
        for var in variables.values():
            if var["type"] == "query":
                assert var["datasource"] == DATASOURCE, (name, var["name"])
        for panel in promql.iter_panels(d):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DATASOURCE, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, (name, panel["title"])


def test_queries_use_only_the_contract_metric_names() -> None:
    contract = promql.parse_contract_metrics(CONTRACT.read_text())
    assert len(contract) >= 40, "the contract parser found too few names"
    used: set[str] = set()
    for name, d in committed().items():
        exprs = [e for _, _, e in promql.panel_queries(d)]
        exprs += [promql.parse_label_values(q)[0] for q in promql.variable_queries(d).values()]
        for expr in exprs:
            names = promql.metric_names(expr)
            assert names, (name, expr)
            unknown = {n for n in names if not promql.allowed(n, contract)}
            assert not unknown, f"{name}: {expr} uses {unknown}, not in docs/metrics.md"
            used |= names
    # The dashboards cover the contract's meaning, containers and host families.
    for family in (
        "netpath_dropped_packets_total",
        "netpath_published_port_connections_total",
        "netpath_masquerade_connections_total",
        "netpath_forwarded_packets_total",
        "netpath_firewall_layout_info",
        "netpath_container_network_receive_bytes_total",
        "netpath_ip_forwarding_enabled",
        "netpath_route_info",
        "netpath_collector_success",
        "netpath_service_endpoint_connections_total",
        "netpath_service_rejected_packets_total",
        "netpath_service_external_connections_total",
        "netpath_service_endpoint_active_connections",
        "netpath_service_info",
        "netpath_service_endpoints",
    ):
        assert family in used


def test_no_name_of_before_0_2_is_left() -> None:
    """0.2 renamed the Docker-only families and the collector, with no aliases."""
    contract = promql.parse_contract_metrics(CONTRACT.read_text())
    assert not {n for n in contract if n.startswith("netpath_docker_")}
    for name, text in build.build_dashboards().items():
        assert "netpath_docker_" not in text, name
        assert 'collector=\\"containers\\"' not in text, name


def test_meaning_panels_keep_managers_apart() -> None:
    """Two managers' networks of one name (docker's and netavark's "web") are two series."""
    d = committed()["netpath-firewall.json"]
    for title, ref, expr in promql.panel_queries(d):
        grouped = re.findall(r"sum by \(([^)]*)\) \(rate\(netpath_(?:dropped|forwarded|masq)", expr)
        for labels in grouped:
            assert "manager" in labels, (title, ref, expr)
    layout = [e for _, _, e in promql.panel_queries(d) if "netpath_firewall_layout_info" in e]
    assert layout


WORKLOAD_VARIABLES = ("namespace", "pod")


def test_services_dashboard_filters_by_namespace_and_service() -> None:
    d = committed()["netpath-services.json"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name in ("namespace", "service"):
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["allValue"] == ".*", name
        selector, label = promql.parse_label_values(promql.variable_queries(d)[name])
        assert label == name and "netpath_service_info" in selector
    assert 'namespace=~"$namespace"' in promql.variable_queries(d)["service"]
    filtered = 0
    for title, ref, expr in promql.panel_queries(d):
        for selector in re.findall(r"netpath_service_\w+\{[^}]*\}", expr):
            assert 'namespace=~"$namespace"' in selector, (title, ref, selector)
            assert 'service=~"$service"' in selector, (title, ref, selector)
            filtered += 1
    assert filtered >= 10
    titles = {p["title"] for p in promql.iter_panels(d)}
    assert {"Endpoint imbalance", "Active connections per endpoint"} <= titles


def test_containers_dashboard_filters_by_namespace_and_pod_with_all_by_default() -> None:
    d = committed()["netpath-containers.json"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name in WORKLOAD_VARIABLES:
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["multi"], name
        # "All" is .*, which matches the empty label of Docker and Podman containers too.
        assert var["allValue"] == ".*", name
        assert var["current"]["value"] == ["$__all"], name
        selector, label = promql.parse_label_values(promql.variable_queries(d)[name])
        assert label == name and "netpath_container_info" in selector
    # pod follows namespace, container follows both.
    assert 'namespace=~"$namespace"' in promql.variable_queries(d)["pod"]
    assert 'pod=~"$pod"' in promql.variable_queries(d)["container"]
    filtered = 0
    for title, ref, expr in promql.panel_queries(d):
        for selector in re.findall(r"netpath_container_\w+\{[^}]*\}", expr):
            if selector.startswith("netpath_container_info{") and "group_left" in expr:
                continue  # the join's right side: the left side carries the filter
            for name in WORKLOAD_VARIABLES:
                assert f'{name}=~"${name}"' in selector, (title, ref, selector)
            filtered += 1
    assert filtered >= 10


def test_every_variable_a_query_uses_is_defined() -> None:
    for name, d in committed().items():
        defined = {v["name"] for v in d["templating"]["list"]} | promql.GRAFANA_BUILTINS
        for title, ref, expr in promql.panel_queries(d):
            missing = promql.variables_used(expr) - defined
            assert not missing, (name, title, ref, missing)
        for var, query in promql.variable_queries(d).items():
            assert not promql.variables_used(query) - defined, (name, var)


def test_contract_parser_and_name_extraction() -> None:
    names = promql.parse_contract_metrics(
        "| `netpath_interface_receive_bytes_total`, `..._receive_packets_total` | counter |\n"
        "| `netpath_bridge_ports` | gauge | bridge |\n"
    )
    assert names == {
        "netpath_interface_receive_bytes_total",
        "netpath_interface_receive_packets_total",
        "netpath_bridge_ports",
    }
    expr = (
        'topk by (chain) (5, sum by (table, rule) (increase(a_total{x=~"$v", y="b c"}[$__range])))'
        " + on (instance) group_left () b offset 5m > bool 1e3 or vector(0)"
    )
    assert promql.metric_names(expr) == {"a_total", "b"}
    assert promql.variables_used(expr) == {"v", "__range"}
    assert promql.substitute(
        'x{i=~"$instance"}[$__range]', {"instance": "h:1", "__range": "5m"}
    ) == ('x{i=~"h:1"}[5m]')
    assert promql.parse_label_values('label_values(m{a="b"}, c)') == ('m{a="b"}', "c")


def test_provisioning_files() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "netpath.yml").read_text())
    assert ds["apiVersion"] == 1
    assert [d["type"] for d in ds["datasources"]] == ["prometheus"]
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "netpath.yml").read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
