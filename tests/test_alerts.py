"""The Prometheus alert rules: valid for promtool, unit-tested firing and quiet for every
alert, complete annotations with runbook anchors that exist, only contract metric names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from grafana import promql  # noqa: E402  (pure module, no SDK needed)

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yml"
EXAMPLE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
CONTRACT = REPO / "docs" / "metrics.md"
SEVERITIES = {"critical", "warning", "info"}
EXPECTED = {
    "NetpathIsolationTrafficDropped",
    "NetpathUnpublishedTrafficDropped",
    "NetpathForwardPolicyDropsRising",
    "NetpathInterfaceErrors",
    "NetpathIpForwardingDisabled",
    "NetpathExporterDown",
    "NetpathCollectorFailing",
    "NetpathPollsStale",
    "NetpathFirewallUnreadable",
    "NetpathConntrackTableFull",
    "NetpathConntrackFailuresRising",
    "NetpathServiceWithoutEndpointsReceiving",
    "NetpathInvalidDropsRising",
}


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes for the headings of a Markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_example_prometheus_config_is_valid() -> None:
    proc = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_there_with_severity_and_annotations() -> None:
    rules = alerts()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED
    anchors = github_anchors(RUNBOOK.read_text())
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        ann = rule["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), rule["alert"]
        assert set(ann) == {"summary", "description", "runbook_url"}, rule["alert"]
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "docs/runbook.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def test_alerts_use_only_contract_metric_names() -> None:
    contract = promql.parse_contract_metrics(CONTRACT.read_text())
    for rule in alerts():
        names = promql.metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = {n for n in names if not promql.allowed(n, contract)}
        assert not unknown, f"{rule['alert']} uses {unknown}, not in docs/metrics.md"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    firing: dict[str, list[dict[str, str]]] = {}
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            exp = check.get("exp_alerts") or []
            if exp:
                firing.setdefault(check["alertname"], []).extend(a["exp_labels"] for a in exp)
            else:
                quiet.add(check["alertname"])
    assert set(firing) == EXPECTED, EXPECTED - set(firing)
    assert quiet == EXPECTED, EXPECTED - quiet
    # Isolation drops in Docker's classic shape, in both Docker 29 shapes, and on a
    # Podman network created with --opt isolate=true.
    shapes = {(a["manager"], a["reason"]) for a in firing["NetpathIsolationTrafficDropped"]}
    assert shapes == {
        ("docker", "isolation"),
        ("docker", "unpublished"),
        ("docker", "direct_access"),
        ("netavark", "isolation"),
    }


def test_alerts_select_the_manager_neutral_families() -> None:
    """0.2: no netpath_docker_* name, no collector "containers"; every meaning alert keeps
    the manager label, and only Docker's layout turns unpublished drops into isolation."""
    text = RULES.read_text() + RULE_TESTS.read_text()
    assert "netpath_docker_" not in text
    assert 'collector="containers"' not in text
    rules = {r["alert"]: r for r in alerts()}
    for name in ("NetpathIsolationTrafficDropped", "NetpathUnpublishedTrafficDropped"):
        expr = rules[name]["expr"]
        assert "netpath_dropped_packets_total" in expr
        assert re.search(r"sum by \([^)]*\bmanager\b", expr), name
    isolation = rules["NetpathIsolationTrafficDropped"]["expr"]
    assert 'netpath_dropped_packets_total{reason="isolation"}' in isolation  # any manager
    assert 'netpath_firewall_layout_info{manager="docker", layout=~' in isolation


def test_github_anchor_rule() -> None:
    assert github_anchors("## NetpathExporterDown\n# A b-c (d)\n") == {
        "netpathexporterdown",
        "a-b-c-d",
    }
