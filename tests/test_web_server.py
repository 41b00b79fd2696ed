"""HTTP serving (exporter.web.server): metrics (plain and gzip), health, 404, 405, and
HTTP/1.1 on the wire: keep-alive, pipelining, HEAD, HTTP/1.0, broken requests, bodies."""

from __future__ import annotations

import email.utils
import gzip
import http.client
import socket
from collections.abc import Callable

import pytest

from exporter.model import MetricFamily
from exporter.web.server import ExporterHTTPServer, Handler


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


# ---------------------------------------------------------------------------
# HTTP/1.1 on the wire (h11 frames it; these check what a client sees)
# ---------------------------------------------------------------------------


def exchange(srv: ExporterHTTPServer, raw: bytes) -> bytes:
    """Send ``raw``, close our side, and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of Content-Length-framed responses."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        size = 0 if status_line.startswith("HEAD") else int(headers["content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:size]))
        data = rest[size:]
    return out


def test_keep_alive_and_pipelined_requests_on_one_connection(server: ExporterHTTPServer) -> None:
    raw = (
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    got = responses(exchange(server, raw))
    assert [(status, body) for status, _, body in got] == [
        (200, b"OK\n"),
        (200, b"# HELP netpath_test t\n# TYPE netpath_test gauge\nnetpath_test 1\n"),
        (404, b"404 page not found\n"),
    ]
    assert got[-1][1]["connection"] == "close"
    for _, headers, _ in got:
        assert headers["server"].startswith("netpath-exporter/")
        assert email.utils.parsedate_to_datetime(headers["date"]).tzinfo is not None


def test_head_has_the_get_headers_and_no_body(server: ExporterHTTPServer) -> None:
    raw = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    data = exchange(server, raw)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 63\r\n" in head  # the length of the GET's body
    assert rest.startswith(b"HTTP/1.1 200 "), "no body after HEAD: the next answer follows"
    assert rest.endswith(b"\r\n\r\nOK\n")


def test_http_1_0_closes_after_the_answer(server: ExporterHTTPServer) -> None:
    [(status, _, body)] = responses(exchange(server, b"GET /-/healthy HTTP/1.0\r\n\r\n"))
    assert (status, body) == (200, b"OK\n")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ],
)
def test_a_broken_request_gets_its_status_and_the_connection_closes(
    server: ExporterHTTPServer, raw: bytes, status: int
) -> None:
    [(got, headers, _)] = responses(exchange(server, raw + b"GET /-/healthy HTTP/1.1\r\n\r\n"))
    assert got == status
    assert headers["connection"] == "close"


def test_a_request_body_is_read_and_dropped(server: ExporterHTTPServer) -> None:
    raw = (
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    got = responses(exchange(server, raw))
    assert [(status, body) for status, _, body in got] == [
        (405, b"method not allowed\n"),
        (200, b"OK\n"),
    ]
    big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + b"a" * 70000
    [(status, headers, _)] = responses(exchange(server, big))
    assert status == 413 and headers["connection"] == "close"


def test_a_big_exposition_arrives_whole_on_a_kept_alive_connection(
    start_server: Callable[..., ExporterHTTPServer],
) -> None:
    series = tuple(((str(i),), i) for i in range(20000))
    srv = start_server(render=lambda _: [MetricFamily("netpath_big", "gauge", "b", ("n",), series)])
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    for encoding in ("identity", "gzip", "identity"):
        conn.request("GET", "/metrics", headers={"Accept-Encoding": encoding})
        resp = conn.getresponse()
        body = resp.read()
        if encoding == "gzip":
            body = gzip.decompress(body)
        assert resp.status == 200 and len(body) > Handler.SMALL
        assert body.endswith(b'netpath_big{n="19999"} 19999\n')
    conn.close()
