"""The landing page's "path" view: every container's packet path as an HTML table.

Built from the poller's latest snapshot (no extra I/O) with the same walk as
``netpath-exporter explain`` (:mod:`exporter.paths.walk`). Rates are taken
between the poller's last two polls (:attr:`exporter.poller.Poller.snapshots`),
so the window is the time between those polls, whenever the page is viewed.
Each row names the metric family that serves its figure, linked to the metrics
page.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence

from exporter.paths.views import (
    Baseline,
    ChainView,
    ContainerPath,
    Figures,
    Leg,
    LinkHop,
    RuleView,
    manager_title,
)
from exporter.paths.walk import build_paths
from exporter.poller import PollResult, Snapshot

PATH = "/path"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1d2430; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .4em; }
p.meta { color: #555; margin-top: 0; }
table.path { border-collapse: collapse; width: 100%; font-size: .84em; }
table.path th, table.path td { border-bottom: 1px solid #dde2ea; padding: 2px 6px;
  text-align: left; vertical-align: top; }
table.path th { background: #eef2f7; }
table.path td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.path tr.hop td { background: #f6f8fb; font-weight: 600; }
table.path td.rule { font-family: ui-monospace, monospace; font-size: .95em; }
table.path td.metric a { font-family: ui-monospace, monospace; font-size: .85em; color: #3558a8; }
span.meaning { color: #8a3b00; }
span.drop { color: #b00020; font-weight: 600; }
"""


def _n(v: int | float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 100 or v == 0 else f"{v:.1f}"
    return f"{v:,}".replace(",", "\u2009")


def _e(text: object) -> str:
    return html.escape(str(text))


class _Table:
    """Rows of one container's table."""

    def __init__(self, metrics: str) -> None:
        self.metrics = metrics
        self.rows: list[str] = []

    def hop(self, number: str, title: str) -> None:
        self.rows.append(f'<tr class="hop"><td>{_e(number)}</td><td colspan="7">{title}</td></tr>')

    def row(
        self,
        what: str,
        detail: str,
        figures: Figures | None = None,
        metric: str = "",
        *,
        rule: bool = False,
    ) -> None:
        f = figures or Figures(None, None)
        cls = ' class="rule"' if rule else ""
        link = (
            f'<a href="{_e(self.metrics)}" title="served on the metrics page">{_e(metric)}</a>'
            if metric
            else ""
        )
        self.rows.append(
            f"<tr><td></td><td>{what}</td><td{cls}>{detail}</td>"
            f'<td class="num">{_n(f.packets)}</td><td class="num">{_n(f.bytes)}</td>'
            f'<td class="num">{_n(f.packets_per_second)}</td>'
            f'<td class="num">{_n(f.bytes_per_second)}</td>'
            f'<td class="metric">{link}</td></tr>'
        )

    def link(self, name: str, hop: LinkHop, *, container: bool = False) -> None:
        """Receive and transmit rows of an interface (as the container sees them if asked)."""
        for side in ("receive", "transmit"):
            if container:  # the container receives what its host veth transmits
                figs = hop.transmit if side == "receive" else hop.receive
                metric = f"netpath_container_network_{side}_packets_total"
            else:
                figs = hop.receive if side == "receive" else hop.transmit
                metric = f"netpath_interface_{side}_packets_total"
            self.row(_e(side), _e(name), figs, metric)


def _rule_row(t: _Table, r: RuleView, metric: str = "netpath_firewall_rule_packets_total") -> None:
    tags = "".join(
        f' <span class="{"drop" if m.startswith("drop") else "meaning"}">← {_e(m)}</span>'
        for m in r.meanings
    )
    t.row("rule", f"{_e(r.rule)}{tags}", r.figures, metric, rule=True)


def _chain_rows(t: _Table, ch: ChainView) -> None:
    where = f"{ch.family} {ch.table} <b>{_e(ch.chain)}</b>"
    if ch.hook:
        where += f" (hook {_e(ch.hook)})"
    if ch.policy is not None:
        t.row(
            "chain",
            f"{where}, policy {_e(ch.policy)}",
            ch.policy_figures,
            "netpath_firewall_chain_policy_packets_total" if ch.policy_figures else "",
        )
    else:
        t.row("chain", where)
    for r in ch.rules:
        _rule_row(t, r)
    if ch.other_rules:
        t.row("", f"<i>{ch.other_rules} more rule(s) about other networks</i>")


def _leg_rows(t: _Table, path: ContainerPath, leg: Leg) -> None:
    net = leg.network
    iface = leg.container_interface
    name = iface.name or f"ifindex {iface.ifindex if iface.ifindex is not None else '?'}"
    t.hop("1", f"container {_e(path.container.name)}: its interface {_e(name)}")
    addrs = ", ".join(a for a in (iface.ip, iface.ipv6) if a) or "no address"
    gateway = iface.gateway or "-"
    t.row("address", f"{_e(addrs)}, mac {_e(iface.mac or '-')}, gateway {_e(gateway)}")
    t.link(f"{path.container.name} ({name})", leg.veth, container=True)
    v = leg.veth
    t.hop("2", f"host veth <b>{_e(v.name)}</b> (ifindex {v.ifindex}, {_e(v.operstate)})")
    t.link(v.name, v)
    b = leg.bridge
    if b is not None:
        t.hop("3", f"bridge <b>{_e(b.name)}</b> (ifindex {b.ifindex}, {_e(b.operstate)})")
    else:
        t.hop("3", "no bridge")
    if net is not None:
        internal = ", internal" if net.internal else ""
        t.row(
            "network",
            f"{_e(net.name)} ({_e(net.id[:12])}), subnet {_e(', '.join(net.subnets) or '-')}, "
            f"gateway {_e(', '.join(net.gateways) or '-')}{internal}",
            None,
            "netpath_network_info",
        )
    if b is not None:
        t.row("ports", f"{b.ports} interface(s) on the bridge", None, "netpath_bridge_ports")
        t.link(b.name, b)
    t.hop("4", "routing")
    for r in leg.routes:
        via = f" via {r.gateway}" if r.gateway else ""
        t.row("route", _e(f"{r.destination}{via} dev {r.interface}"), None, "netpath_route_info")
    for u in path.default_routes:
        via = f" via {u.route.gateway}" if u.route.gateway else ""
        t.row("route", _e(f"default{via} dev {u.route.interface}"), None, "netpath_route_info")
        if u.uplink is not None:
            t.link(f"uplink {u.uplink.name}", u.uplink)
    title = manager_title(path.manager)
    t.hop("5", f"firewall ({_e(path.backend or 'none')}, {_e(title)} layout {_e(path.layout)})")
    for ch in leg.chains:
        _chain_rows(t, ch)
    t.hop("6", "published ports (DNAT: packets are new connections)")
    for p in leg.published_ports:
        host = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
        t.row(
            "port",
            _e(f"{p.protocol} {host}:{p.host_port} → {p.container_port}"),
            p.connections,
            "netpath_published_port_connections_total",
        )
        for rv in p.rules:
            _rule_row(t, rv)
    t.hop("7", "masquerade (new connections leaving through another interface)")
    for m in leg.masquerade:
        t.row("subnet", _e(m.subnet), m.connections, "netpath_masquerade_connections_total")
        for rv in m.rules:
            _rule_row(t, rv)
    t.hop("8", f"drops into {_e(net.name if net else 'the network')}")
    for d in leg.drops:
        t.row(
            "reason",
            f'<span class="drop">{_e(d.reason)}</span>',
            d.figures,
            "netpath_dropped_packets_total",
        )
        for rv in d.rules:
            _rule_row(t, rv)


def render_path_page(
    paths: Sequence[ContainerPath],
    *,
    metrics_path: str = "/metrics",
    poll_time: float | None = None,
    note: str = "",
) -> bytes:
    """The HTML page: one table per container (pure)."""
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(poll_time))
        if poll_time is not None
        else "-"
    )
    window = next((p.interval for p in paths if p.interval), None)
    rates = (
        f"rates over the {window:.1f} s between the last two polls"
        if window
        else "rates appear from the next poll on (reload)"
    )
    toc = "".join(
        f'<li><a href="#c-{_e(p.container.name)}">{_e(p.container.name)}</a>: '
        + ", ".join(
            f"{_e(leg.veth.name)} → {_e(leg.bridge.name if leg.bridge else '?')}" for leg in p.legs
        )
        + "</li>"
        for p in paths
    )
    sections = []
    for p in paths:
        t = _Table(metrics_path)
        for leg in p.legs:
            _leg_rows(t, p, leg)
        nets = ", ".join(leg.network.name for leg in p.legs if leg.network) or "?"
        sections.append(
            f'<h2 id="c-{_e(p.container.name)}">{_e(p.container.name)} '
            f"<small>({_e(p.container.id[:12])}, {_e(p.container.image)}, network {_e(nets)})"
            "</small></h2>"
            '<table class="path"><tr><th>hop</th><th></th><th>object</th><th>packets</th>'
            "<th>bytes</th><th>packets/s</th><th>bytes/s</th><th>metric family</th></tr>"
            + "".join(t.rows)
            + "</table>"
        )
    body = (
        "".join(sections)
        if paths
        else "<p>No running container with a veth on this host (or the first poll is pending).</p>"
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>netpath-exporter: packet paths</title>
<style>{_CSS}</style></head>
<body>
<h1>Packet paths</h1>
<p class="meta">Poll of {_e(when)}; {_e(rates)}. <a href="/">Home</a> ·
<a href="{_e(metrics_path)}">Metrics</a>{(" · " + _e(note)) if note else ""}</p>
<ul>{toc}</ul>
{body}
</body></html>
"""
    return page.encode()


def build_page_paths(poll: PollResult, previous: PollResult | None) -> tuple[ContainerPath, ...]:
    """The paths of one poll's view, with rates against ``previous`` (pure)."""
    view = poll.view
    if view is None or view.links is None:
        return ()
    before = None
    if previous is not None and previous.view is not None and previous.timestamp < poll.timestamp:
        before = Baseline(
            previous.view.links, previous.view.firewall, poll.timestamp - previous.timestamp
        )
    return build_paths(view, before=before)


class PathView:
    """Serves the path page, rendered once per snapshot, with the rates between the poller's
    last two polls (:attr:`exporter.poller.Poller.snapshots`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._page: tuple[Snapshot, bytes] | None = None

    def page(
        self,
        snaps: tuple[Snapshot | None, Snapshot | None],
        metrics_path: str = "/metrics",
    ) -> bytes:
        """The page for the latest of ``snaps`` = (previous, latest)."""
        previous, snap = snaps
        with self._lock:
            if snap is None:
                return render_path_page((), metrics_path=metrics_path)
            if self._page is not None and self._page[0] is snap:
                return self._page[1]
            sources = snap.poll.view.sources if snap.poll.view is not None else ()
            note = "" if sources else "no container runtime is reachable"
            body = render_path_page(
                build_page_paths(snap.poll, previous.poll if previous is not None else None),
                metrics_path=metrics_path,
                poll_time=snap.poll.timestamp,
                note=note,
            )
            self._page = (snap, body)
            return body
