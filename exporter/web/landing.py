"""The landing page (``/``): version, links, each collector's last poll, firewall backends."""

from __future__ import annotations

import html

from exporter import __version__
from exporter.config import Config
from exporter.model import FirewallData
from exporter.paths.page import PATH as PATH_VIEW
from exporter.poller import Snapshot


def render_landing(cfg: Config, snap: Snapshot | None) -> bytes:
    path = html.escape(cfg.web.telemetry_path)
    rows = []
    backends = ""
    if snap is not None:
        for s in snap.poll.status:
            if not cfg.enabled(s.name):
                continue
            state = "ok" if s.success else f"failing: {html.escape(s.error)}"
            rows.append(
                f"<tr><td>{html.escape(s.name)}</td><td>{state}</td>"
                f"<td>{s.duration * 1000:.1f} ms</td></tr>"
            )
        fw = snap.poll.get("firewall", FirewallData)
        if fw is not None:
            found = ", ".join(f"{b} ({f})" for f, b in fw.backends) or "none holding rules"
            backends = f"<p>Firewall backends: {html.escape(found)}</p>"
    disabled = [n for n in cfg.collectors if not cfg.enabled(n)]
    off = f"<p>Disabled collectors: {html.escape(', '.join(disabled))}</p>" if disabled else ""
    table = (
        "<table><tr><th>collector</th><th>last poll</th><th>duration</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>The first poll has not finished yet.</p>"
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>netpath-exporter</title></head>
<body>
<h1>netpath-exporter</h1>
<p>Version {html.escape(__version__)}. The path of container traffic on this host:
veths, bridges, Docker networks and firewall rule counters.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="{PATH_VIEW}">Packet paths</a>: each
container's hops, firewall rules and current rates</p>
{table}
{off}
{backends}
</body></html>
"""
    return page.encode()
