"""The landing page (exporter.web.landing), served."""

from __future__ import annotations

from collections.abc import Callable

from weblab import get

from exporter import __version__
from exporter.config import Config
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
