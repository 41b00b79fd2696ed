"""The landing page (exporter.web.landing), served."""

from __future__ import annotations

from collections.abc import Callable

from weblab import get

from exporter import __version__
from exporter.config import Config
from exporter.model import FirewallData
from exporter.poller import CollectorStatus, PollResult, Snapshot
from exporter.web.landing import render_landing
from exporter.web.server import ExporterHTTPServer


def test_before_the_first_poll_the_page_says_so() -> None:
    page = render_landing(Config(), None).decode()
    assert f"Version {__version__}." in page
    assert "<p>The first poll has not finished yet.</p>" in page
    assert '<a href="/metrics">Metrics</a>' in page


def test_landing_page_links_metrics_and_lists_collectors(
    start_server: Callable[..., ExporterHTTPServer],
) -> None:
    server = start_server()
    status, headers, body = get(server.server_address[1], "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<a href="/metrics">' in body
    assert b"<td>links</td><td>ok</td>" in body


def test_collectors_states_and_firewall_backends_are_listed_escaped() -> None:
    poll = PollResult(
        data={"firewall": FirewallData((("ipv4", "iptables-nft"), ("ipv6", "nftables")), ())},
        status=(
            CollectorStatus("links", True, 0.0021),
            CollectorStatus("firewall", False, 0.5, error="nft <said> no"),
        ),
        timestamp=0.0,
        duration=0.5,
    )
    page = render_landing(Config(), Snapshot(poll)).decode()
    assert "<tr><td>links</td><td>ok</td><td>2.1 ms</td></tr>" in page
    failing = "<td>failing: nft &lt;said&gt; no</td><td>500.0 ms</td>"
    assert f"<tr><td>firewall</td>{failing}</tr>" in page
    assert "<p>Firewall backends: iptables-nft (ipv4), nftables (ipv6)</p>" in page
