"""HTTP serving (exporter.web.server): metrics (plain and gzip), health, 404, 405."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Callable

import pytest

from exporter.web.server import ExporterHTTPServer


@pytest.fixture
def server(start_server: Callable[..., ExporterHTTPServer]) -> ExporterHTTPServer:
    return start_server()


def get(
    srv: ExporterHTTPServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_metrics_plain_and_gzip(server: ExporterHTTPServer) -> None:
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert body == b"# HELP netpath_test t\n# TYPE netpath_test gauge\nnetpath_test 1\n"
    status, headers, zbody = get(server, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(zbody) == body


def test_health_404_and_405(server: ExporterHTTPServer) -> None:
    assert get(server, "/-/healthy")[0] == 200
    assert get(server, "/-/ready")[0] == 200
    assert get(server, "/nope")[0] == 404
    status, headers, _ = get(server, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, body = get(server, "/metrics", method="HEAD")
    assert status == 200 and body == b""


def test_not_ready_before_the_first_poll(start_server: Callable[..., ExporterHTTPServer]) -> None:
    srv = start_server(polled=False)
    assert get(srv, "/-/ready")[0] == 503
