"""HTTP serving: the listener, and the pages (metrics, landing, packet paths, health).

Scrapes only read the poller's latest snapshot. What the web config asks of a
connection (TLS) and of a request (rate limit, basic auth, headers) is
:mod:`exporter.web.security`'s and :mod:`exporter.web.tls`'s; this module only
applies it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

from exporter import __version__
from exporter.config import Config, parse_listen_address
from exporter.metrics.exposition import CONTENT_TYPE
from exporter.paths.page import PATH as PATH_VIEW
from exporter.paths.page import PathView
from exporter.poller import Poller
from exporter.web.landing import render_landing

if TYPE_CHECKING:  # TLS and basic auth are imported only with a web config (exporter.cli)
    from exporter.web.security import WebSecurity

log = logging.getLogger("netpath.http")

FIRST_POLL_WAIT = 10.0  # a scrape right after start waits this long for the first poll
IDLE_TIMEOUT = 120.0  # seconds a kept-alive or stalled client connection may sit idle


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        poller: Poller,
        cfg: Config,
        security: WebSecurity | None = None,
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host or host == "" else socket.AF_INET
        self.poller = poller
        self.cfg = cfg
        self.security = security  # web config (TLS, basic auth, headers); None: plain HTTP
        self.path_view = PathView()  # the "path" page (rendered once per poll)
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs on the connection's own thread: the TLS handshake happens here, with the
        web config in force when the connection arrived (certificates reload without
        a restart), bounded by tls.HANDSHAKE_TIMEOUT."""
        active = self.security.current() if self.security is not None else None
        if active is None or active.ssl_context is None:
            super().finish_request(request, client_address)
            return
        from exporter.web.tls import handshake  # noqa: PLC0415 - loaded with the web config

        conn = handshake(request, active.ssl_context, active.settings.tls, client_address[0])
        if conn is None:
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # ":29100" listens on every IPv4 and IPv6 address, like Go's net.Listen.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_server(
    cfg: Config, poller: Poller, security: WebSecurity | None = None
) -> ExporterHTTPServer:
    """Bind the listen address; raises OSError (e.g. address in use) before anything starts."""
    host, port = parse_listen_address(cfg.web.listen_address)
    if host == "" and not socket.has_ipv6:
        host = "0.0.0.0"
    return ExporterHTTPServer((host, port), poller, cfg, security)


def serve_in_thread(server: ExporterHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    server_version = f"netpath-exporter/{__version__}"
    protocol_version = "HTTP/1.1"
    _ALLOWED: ClassVar[str] = "GET, HEAD"
    # An idle or stalled connection gives its thread back after this long (socket timeout).
    timeout = IDLE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Answer with ``body``."""
        self.send_response(status)
        if self.server.security is not None:
            for k, v in self.server.security.headers():
                self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _admitted(self) -> bool:
        """Rate limit and basic auth from the web config; answers 429/401 itself."""
        security = self.server.security
        if security is None:
            return True
        refusal = security.admit(self.headers.get("Authorization"))
        if refusal is None:
            return True
        self._send(refusal.status, refusal.body, refusal.content_type, dict(refusal.headers))
        return False

    def do_GET(self) -> None:
        if not self._admitted():
            return
        path = self.path.split("?", 1)[0]
        cfg = self.server.cfg
        poller = self.server.poller
        if path == cfg.web.telemetry_path:
            self._metrics(poller)
        elif path == PATH_VIEW:
            page = self.server.path_view.page(poller.snapshots, cfg.web.telemetry_path)
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif path == "/":
            self._send(
                HTTPStatus.OK, render_landing(cfg, poller.latest), "text/html; charset=utf-8"
            )
        elif path == "/-/healthy":
            self._send(HTTPStatus.OK, b"OK\n", "text/plain; charset=utf-8")
        elif path == "/-/ready":
            if poller.latest is not None:
                self._send(HTTPStatus.OK, b"Ready\n", "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"first poll pending\n", "text/plain")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"404 page not found\n", "text/plain; charset=utf-8")

    def _metrics(self, poller: Poller) -> None:
        snap = poller.latest
        if snap is None:
            poller.wait_ready(FIRST_POLL_WAIT)
            snap = poller.latest
        if snap is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"first poll pending\n", "text/plain")
            return
        accept = self.headers.get("Accept-Encoding", "")
        if "gzip" in accept:
            self._send(
                HTTPStatus.OK,
                snap.gzip,
                CONTENT_TYPE,
                {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        else:
            self._send(HTTPStatus.OK, snap.body, CONTENT_TYPE, {"Vary": "Accept-Encoding"})

    def _not_allowed(self) -> None:
        if not self._admitted():
            return
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"method not allowed\n",
            "text/plain",
            {"Allow": self._ALLOWED},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed
