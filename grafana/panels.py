"""Shared pieces of the dashboards: datasource, variables, panel shapes, id numbering."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
INSTANCE = 'instance=~"$instance"'
# Grafana's own rate window: at least four scrape intervals.
RATE = "$__rate_interval"
TAGS = ["netpath", "docker", "network"]

PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel | dashboard.Row


def query(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    """A Prometheus query: a range query, or ``instant`` (stats, bar gauges, ``table``s)."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if table:
        q = q.instant().format(PromQueryFormat.TABLE)
    elif instant:
        q = q.instant()
    else:
        q = q.range()
    return q


def _targets(
    panel: timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel,
    queries: Sequence[prometheus.Dataquery],
) -> None:
    for q in queries:
        panel.with_target(q)


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series panel with a table legend (last, max)."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .line_width(1)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    if stacked:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    _targets(p, queries)
    return p


def single(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    width: int = 6,
    height: int = 4,
    mappings: Sequence[dm.ValueMap] = (),
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
    names: bool = False,
) -> stat.Panel:
    """A stat panel showing the last value of each series."""
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in thresholds])
        )
    )
    if mappings:
        p = p.mappings(list(mappings))
    if names:
        p = p.text_mode(common.BigValueTextMode.NAME).color_mode(common.BigValueColorMode.NONE)
    _targets(p, queries)
    return p


def bars(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    """A horizontal bar gauge of the last value per series (top-N lists)."""
    p = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    _targets(p, queries)
    return p


def grid(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    hide: Sequence[str] = ("Time", "__name__", "job"),
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table of instant-query results, one row per series, labels as columns."""
    p = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {name: True for name in hide}},
            )
        )
    )
    _targets(p, queries)
    return p


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


def value_map(mapping: dict[str, tuple[str, str]]) -> dm.ValueMap:
    """Value -> (text, color)."""
    return dm.ValueMap(
        options={
            k: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (k, (text, color)) in enumerate(mapping.items())
        }
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, expr: str) -> dashboard.QueryVariable:
    """A multi-value variable from ``label_values(...)`` whose "All" is ``.*``."""
    return (
        _label_values(name, label, expr)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def instance_variable() -> dashboard.QueryVariable:
    """One exporter (host) at a time: the panels sum over containers, not over hosts."""
    return (
        _label_values("instance", "Host", "label_values(netpath_build_info, instance)")
        .multi(False)
        .include_all(False)
    )


def _label_values(name: str, label: str, expr: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        # The plain-text form: every Grafana version's Prometheus plugin reads it.
        .query(expr)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def build_dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Builder[dm.VariableModel]],
    items: Sequence[PanelBuilder],
) -> dm.Dashboard:
    """Assemble a dashboard; panels and rows are numbered 1, 2, ... in order."""
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )
    for v in variables:
        d = d.with_variable(v)
    for number, item in enumerate(items, start=1):
        item.id(number)
        d = d.with_row(item) if isinstance(item, dashboard.Row) else d.with_panel(item)
    return d.build()
