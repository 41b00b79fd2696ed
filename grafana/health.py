"""Exporter health: scrape status, collector success and durations, poll age, process."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.panels import (
    INSTANCE,
    RATE,
    PanelBuilder,
    build_dashboard,
    graph,
    instance_variable,
    query,
    row,
    single,
    value_map,
)

UID = "netpath-exporter"
POLL_AGE = f"time() - netpath_poll_timestamp_seconds{{{INSTANCE}}}"


def build() -> Dashboard:
    """The Exporter health dashboard."""
    items: list[PanelBuilder] = [
        row("Status"),
        single(
            "Scrape",
            "Prometheus' up for the exporter.",
            "none",
            [query(f"up{{{INSTANCE}}}", "{{instance}}", instant=True)],
            mappings=[value_map({"0": ("down", "red"), "1": ("up", "green")})],
            thresholds=((None, "red"), (1, "green")),
        ),
        single(
            "Version",
            "netpath-exporter version and Python.",
            "none",
            [
                query(
                    f"netpath_build_info{{{INSTANCE}}}",
                    "{{version}} (Python {{python_version}})",
                    instant=True,
                )
            ],
            names=True,
        ),
        single(
            "Last poll age",
            "Seconds since the last poll finished.",
            "s",
            [query(POLL_AGE, instant=True)],
            thresholds=((None, "green"), (30, "orange"), (120, "red")),
        ),
        single(
            "Collectors failing",
            "Collectors whose last poll failed.",
            "short",
            [
                query(
                    f"count(netpath_collector_success{{{INSTANCE}}} == 0) or vector(0)",
                    instant=True,
                )
            ],
            thresholds=((None, "green"), (1, "red")),
        ),
        row("Collectors"),
        graph(
            "Collector success",
            "1 if the collector's last poll succeeded, else 0.",
            "none",
            [query(f"netpath_collector_success{{{INSTANCE}}}", "{{collector}}")],
        ),
        graph(
            "Collector duration",
            "Wall time of each collector's last poll.",
            "s",
            [query(f"netpath_collector_duration_seconds{{{INSTANCE}}}", "{{collector}}")],
        ),
        graph(
            "Poll duration",
            "Wall time of the last whole poll.",
            "s",
            [query(f"netpath_poll_duration_seconds{{{INSTANCE}}}", "poll")],
        ),
        graph(
            "Poll age",
            "Seconds since the last poll finished, at each evaluation.",
            "s",
            [query(POLL_AGE, "age")],
        ),
        row("Process"),
        graph(
            "CPU",
            "CPU time of the exporter process, fraction of one core.",
            "percentunit",
            [query(f"rate(process_cpu_seconds_total{{{INSTANCE}}}[{RATE}])", "cpu")],
            width=8,
        ),
        graph(
            "Memory",
            "Resident memory of the exporter process.",
            "bytes",
            [query(f"process_resident_memory_bytes{{{INSTANCE}}}", "resident")],
            width=8,
        ),
        graph(
            "Open file descriptors",
            "File descriptors the exporter process holds.",
            "short",
            [query(f"process_open_fds{{{INSTANCE}}}", "open fds")],
            width=8,
        ),
    ]
    return build_dashboard(
        UID,
        "netpath / Exporter health",
        "Is netpath-exporter scraping, polling and reading everything it should?",
        [instance_variable()],
        items,
    )
