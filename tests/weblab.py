"""Helpers for the web tests: certificates, a server with a web config file, clients.

Certificates are made once per test session with the ``openssl`` command;
clients are Python's ``ssl``/``http.client`` (and ``curl`` in some tests).
Everything talks over 127.0.0.1. Each web test module asks for the pieces it
needs through its own small fixtures (``certs``, ``serve``) built on these.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from exporter.web.security import WebSecurity
from exporter.web.server import ExporterHTTPServer

BODY = b"# HELP netpath_test t\n# TYPE netpath_test gauge\nnetpath_test 1\n"
HASH_COST = 4  # fast hashes for tests; the decoy takes the same cost
PASSWORD = "s3cret-pass"  # noqa: S105 (a test credential)
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(HASH_COST)).decode()


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN={name}",
        "-days",
        "2",
        cwd=d,
    )


def _make_leaf(d: Path, name: str, ca: str, san: str, usage: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


@dataclass
class Certs:
    dir: Path

    def p(self, name: str) -> str:
        return str(self.dir / name)


_CERTS: dict[Path, Certs] = {}


def session_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The session's CAs and leaf certificates (made on first use)."""
    key = tmp_path_factory.getbasetemp()
    if key in _CERTS:
        return _CERTS[key]
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    _make_ca(d, "ca")
    _make_ca(d, "rogue-ca")
    _make_leaf(d, "server", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _make_leaf(d, "server2", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _make_leaf(d, "client", "ca", "DNS:prometheus.example", "clientAuth")
    _make_leaf(d, "client-other", "ca", "DNS:intruder.example", "clientAuth")
    _make_leaf(d, "rogue-client", "rogue-ca", "DNS:prometheus.example", "clientAuth")
    _CERTS[key] = Certs(d)
    return _CERTS[key]


# ---------------------------------------------------------------------------
# A server with a web config
# ---------------------------------------------------------------------------


@dataclass
class Running:
    srv: ExporterHTTPServer
    security: WebSecurity
    config: Path

    @property
    def port(self) -> int:
        return int(self.srv.server_address[1])


Serve = Callable[[str], Running]


def serving(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> Serve:
    """``serve(text)``: a server (conftest's start_server) with ``text`` as its web config."""

    def start(text: str) -> Running:
        path = tmp_path / "web.yml"
        path.write_text(text)
        security = WebSecurity(str(path))
        return Running(start_server(security), security, path)

    return start


def client_ctx(certs: Certs, cert: str | None = None, **kw: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.p("ca.crt"))
    if cert:
        ctx.load_cert_chain(certs.p(f"{cert}.crt"), certs.p(f"{cert}.key"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def get(
    port: int,
    path: str = "/metrics",
    *,
    ctx: ssl.SSLContext | None = None,
    auth: tuple[str, str | bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    h = dict(headers or {})
    if auth is not None:
        user, pw = auth
        raw = user.encode() + b":" + (pw if isinstance(pw, bytes) else pw.encode())
        h["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        conn.request("GET", path, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tls_yaml(certs: Certs, extra: str = "") -> str:
    return (
        "tls_server_config:\n"
        f"  cert_file: {certs.p('server.crt')}\n"
        f"  key_file: {certs.p('server.key')}\n" + extra
    )


def mtls_yaml(certs: Certs, auth: str = "RequireAndVerifyClientCert", extra: str = "") -> str:
    return tls_yaml(
        certs, f"  client_auth_type: {auth}\n  client_ca_file: {certs.p('ca.crt')}\n" + extra
    )


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server ends the connection instead of answering."""
    try:
        get(port, ctx=ctx)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return True
    return False
