"""TLS (exporter.web.tls): HTTPS, versions, mTLS, allowed SANs, stalled handshakes, real clients.

Certificates come from weblab (made with the ``openssl`` command); clients are
Python's ``ssl``/``http.client``. Everything talks over 127.0.0.1.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import weblab
from weblab import (
    BODY,
    Certs,
    Running,
    Serve,
    client_ctx,
    get,
    mtls_yaml,
    refused,
    tls_yaml,
)

from exporter.web import tls
from exporter.web.server import ExporterHTTPServer, Handler
from exporter.web.tls import peer_sans


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return weblab.session_certs(tmp_path_factory)


@pytest.fixture
def serve(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> Serve:
    return weblab.serving(tmp_path, start_server)


# ---------------------------------------------------------------------------
# Client certificates' SANs
# ---------------------------------------------------------------------------


def test_peer_sans_normalises_ip_addresses() -> None:
    cert = {"subjectAltName": (("DNS", "a"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"))}
    assert peer_sans(cert) == ["a", "2001:db8::1"]
    assert peer_sans(None) == []


# ---------------------------------------------------------------------------
# Against a running server
# ---------------------------------------------------------------------------


def test_tls_serves_https_and_refuses_plain_http(serve: Serve, certs: Certs) -> None:
    run: Running = serve(tls_yaml(certs))
    status, _, body = get(run.port, ctx=client_ctx(certs))
    assert (status, body) == (200, BODY)
    with pytest.raises(
        (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine)
    ):
        get(run.port)
    # Not trusted by a client that does not know the CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(run.port, ctx=ssl.create_default_context())


def test_tls_min_version_is_enforced(serve: Serve, certs: Certs) -> None:
    run: Running = serve(tls_yaml(certs, "  min_version: TLS13\n"))
    old = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert refused(run.port, old)
    assert get(run.port, ctx=client_ctx(certs))[0] == 200


def test_mtls_requires_a_client_certificate_from_the_ca(serve: Serve, certs: Certs) -> None:
    run: Running = serve(mtls_yaml(certs))
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs)), "no client certificate"
    assert refused(run.port, client_ctx(certs, "rogue-client")), "certificate of another CA"


def test_mtls_allowed_sans(serve: Serve, certs: Certs) -> None:
    extra = "  client_allowed_sans: [prometheus.example]\n"
    run: Running = serve(mtls_yaml(certs, extra=extra))
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs, "client-other"))


def test_verify_client_cert_if_given(serve: Serve, certs: Certs) -> None:
    run: Running = serve(mtls_yaml(certs, "VerifyClientCertIfGiven"))
    assert get(run.port, ctx=client_ctx(certs))[0] == 200
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs, "rogue-client"))


def test_stalled_clients_are_dropped(
    serve: Serve, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that never finishes its handshake or request gives its thread back."""
    monkeypatch.setattr(tls, "HANDSHAKE_TIMEOUT", 0.5)
    monkeypatch.setattr(Handler, "timeout", 0.5)
    run: Running = serve(tls_yaml(certs))
    with socket.create_connection(("127.0.0.1", run.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
        assert raw.recv(1024) == b"", "the server closes the connection"
    ctx = client_ctx(certs)
    with (
        socket.create_connection(("127.0.0.1", run.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never end
        assert conn.recv(1024) == b""
    assert get(run.port, ctx=ctx)[0] == 200, "and keeps serving others"
