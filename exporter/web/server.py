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
import socketserver
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

import h11

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
LINGER = 2.0  # seconds a refused client's remaining request bytes are read before closing


class ExporterHTTPServer(socketserver.ThreadingTCPServer):
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


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(when: float | None = None) -> str:
    """RFC 9110's IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), without the locale."""
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class _Closed(Exception):
    """The client closed its side, or broke HTTP beyond an answer: drop the connection."""


class Handler(socketserver.BaseRequestHandler):
    """One connection: HTTP/1.1 requests one after another (keep-alive), framed by h11.

    h11 parses and checks the messages (request line, headers, bodies, keep-alive and
    HTTP/1.0 rules); this class reads and writes the socket and answers each request.
    """

    server: ExporterHTTPServer
    server_version = f"netpath-exporter/{__version__}"
    # An idle or stalled connection gives its thread back after this long (socket timeout).
    timeout: ClassVar[float] = IDLE_TIMEOUT
    # A request head (line and headers) still incomplete after this much is refused (431).
    MAX_HEAD: ClassVar[int] = 16 * 1024
    MAX_BODY: ClassVar[int] = 64 * 1024  # a request body is read and dropped: more is 413
    SMALL: ClassVar[int] = 64 * 1024  # bodies up to this go out in the headers' write

    def setup(self) -> None:
        self.sock: socket.socket = self.request
        self.sock.settimeout(self.timeout)
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            # The body's last segment must not wait for the client's delayed ACK.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.MAX_HEAD)
        self.method = b"GET"
        self.headers: dict[bytes, bytes] = {}
        self.status = 0

    def handle(self) -> None:
        try:
            while self._serve_one():
                self.conn.start_next_cycle()
        except (_Closed, OSError) as exc:  # OSError: the peer went away, or timed out
            log.debug(
                "connection closed", extra={"client": self.client_address[0], "err": str(exc)}
            )

    def _event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(self.sock.recv(65536))  # b"": the client closed

    def _serve_one(self) -> bool:
        """Read one request and answer it; True when the connection stays open."""
        try:
            request = self._event()
            if not isinstance(request, h11.Request):  # ConnectionClosed: a clean goodbye
                return False
            self.method = request.method
            self.headers = {}
            for name, value in request.headers:  # names come lowercased
                seen = self.headers.get(name)
                self.headers[name] = value if seen is None else seen + b", " + value
            self._drain_body()
            if request.http_version not in (b"1.0", b"1.1"):  # h11 reads any HTTP/x.y
                raise h11.RemoteProtocolError("HTTP version not supported", 505)
        except h11.RemoteProtocolError as exc:
            self._answer_broken(exc.error_status_hint)
            return False
        target = request.target.decode("latin-1")
        self._route(self.method.decode("latin-1"), target.split("?", 1)[0])
        log.debug(
            "request",
            extra={"client": self.client_address[0], "method": self.method.decode("latin-1"),
                   "path": target, "status": self.status},
        )  # fmt: skip
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def _drain_body(self) -> None:
        """Read and drop a request body (nothing here takes one), up to MAX_BODY."""
        size = 0
        while True:
            event = self._event()
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            else:
                raise _Closed(f"unexpected {type(event).__name__} in a request body")

    def _answer_broken(self, status: int) -> None:
        """A request h11 refused: say why in the status, then close."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        self.method = b"GET"
        phrase = HTTPStatus(status).phrase
        self._send(HTTPStatus(status), f"{phrase}\n".encode(), "text/plain", close=True)
        self._linger()

    def _linger(self) -> None:
        """Read what the client still sends before closing, for a while: closing with
        unread data resets the connection, and the client may lose the answer."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LINGER)
            left = self.MAX_BODY * 16
            while left > 0 and (chunk := self.sock.recv(65536)):
                left -= len(chunk)

    def _header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        """Answer with ``body`` (its headers only, to HEAD)."""
        self.status = int(status)
        headers = [("Server", self.server_version), ("Date", http_date())]
        if self.server.security is not None:
            headers.extend(self.server.security.headers())
        headers.append(("Content-Type", ctype))
        headers.append(("Content-Length", str(len(body))))
        headers.extend((extra or {}).items())
        if close:
            headers.append(("Connection", "close"))
        conn = self.conn
        head = conn.send(h11.Response(status_code=status, headers=headers, reason=status.phrase))
        pieces: list[bytes] = []
        if self.method != b"HEAD" and body:  # HEAD: the headers of the GET, no body
            pieces = conn.send_with_data_passthrough(h11.Data(data=body)) or []
        pieces.append(conn.send(h11.EndOfMessage()) or b"")
        if len(body) <= self.SMALL:
            self.sock.sendall(b"".join([head or b"", *pieces]))
            return
        self.sock.sendall(head or b"")
        for piece in pieces:  # the exposition: written from the snapshot as it is, not copied
            if piece:
                self.sock.sendall(piece)

    def _admitted(self) -> bool:
        """Rate limit and basic auth from the web config; answers 429/401 itself."""
        security = self.server.security
        if security is None:
            return True
        refusal = security.admit(self._header(b"authorization"))
        if refusal is None:
            return True
        self._send(refusal.status, refusal.body, refusal.content_type, dict(refusal.headers))
        return False

    def _route(self, method: str, path: str) -> None:
        if not self._admitted():
            return
        if method not in ("GET", "HEAD"):
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                b"method not allowed\n",
                "text/plain",
                {"Allow": "GET, HEAD"},
            )
            return
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
        if "gzip" in (self._header(b"accept-encoding") or ""):
            self._send(
                HTTPStatus.OK,
                snap.gzip,
                CONTENT_TYPE,
                {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        else:
            self._send(HTTPStatus.OK, snap.body, CONTENT_TYPE, {"Vary": "Accept-Encoding"})
