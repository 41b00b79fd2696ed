"""The web config in force (exporter.web.security): reading the file and its certificates,
headers on every response, reload without a restart, a clear error at the daemon's start."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bcrypt
import lab
import pytest
import weblab
from weblab import (
    HASH,
    HASH_COST,
    PASSWORD,
    Certs,
    Running,
    Serve,
    client_ctx,
    get,
    mtls_yaml,
    tls_yaml,
)

from exporter.web.config import WebConfigError
from exporter.web.security import (
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    WebSecurity,
    read_web_config,
)
from exporter.web.server import ExporterHTTPServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return weblab.session_certs(tmp_path_factory)


@pytest.fixture
def serve(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> Serve:
    return weblab.serving(tmp_path, start_server)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def test_read_checks_the_certificate_files(tmp_path: Path, certs: Certs) -> None:
    path = tmp_path / "web.yml"
    path.write_text(tls_yaml(certs).replace("server.key", "missing.key"))
    with pytest.raises(WebConfigError, match="cannot load the certificate and key"):
        read_web_config(str(path))
    # A key that does not match the certificate.
    path.write_text(tls_yaml(certs).replace("server.key", "client.key"))
    with pytest.raises(WebConfigError, match="cannot load the certificate and key"):
        read_web_config(str(path))
    path.write_text(mtls_yaml(certs).replace("ca.crt", "server.key"))
    with pytest.raises(WebConfigError, match="cannot load the client CA"):
        read_web_config(str(path))
    path.write_text("tls_server_config: [\n")
    with pytest.raises(WebConfigError, match="not valid YAML"):
        read_web_config(str(path))
    with pytest.raises(WebConfigError, match="cannot read"):
        read_web_config(str(tmp_path / "absent.yml"))


# ---------------------------------------------------------------------------
# What it asks of each response
# ---------------------------------------------------------------------------


def test_headers_are_added_to_every_response(serve: Serve) -> None:
    text = (
        f"basic_auth_users:\n  alice: {HASH}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n    Content-Security-Policy: default-src 'none'\n"
    )
    run: Running = serve(text)
    for status_want, auth in [(200, ("alice", PASSWORD)), (401, None)]:
        status, headers, _ = get(run.port, auth=auth)
        assert status == status_want
        assert headers["x-frame-options"] == "deny"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == "default-src 'none'"


def test_admission_is_rate_limit_first_then_credentials(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        f"basic_auth_users:\n  alice: {HASH}\nrate_limit:\n  interval: 1h\n  burst: 2\n"
    )
    security = WebSecurity(str(path))
    good = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert security.admit(good) is None
    assert security.admit(None) == UNAUTHORIZED
    assert UNAUTHORIZED.headers == (("WWW-Authenticate", "Basic"),)
    # Out of tokens: even good credentials get 429, before any bcrypt runs.
    assert security.admit(good) == TOO_MANY_REQUESTS


# ---------------------------------------------------------------------------
# Reload
# ---------------------------------------------------------------------------


def _rewrite(path: Path, text: str) -> None:
    """Replace the file so its signature surely changes (new inode)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reload_on_change_and_keep_the_last_good_one(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    run: Running = serve(f"basic_auth_users:\n  alice: {HASH}\n")
    assert get(run.port, auth=("alice", PASSWORD))[0] == 200
    new_hash = bcrypt.hashpw(b"rotated", bcrypt.gensalt(HASH_COST)).decode()
    _rewrite(run.config, f"basic_auth_users:\n  alice: {new_hash}\n")
    assert get(run.port, auth=("alice", PASSWORD))[0] == 401
    assert get(run.port, auth=("alice", "rotated"))[0] == 200
    assert run.security.reloads == 1
    with caplog.at_level(logging.ERROR, logger="netpath.web"):
        _rewrite(run.config, "basic_auth_users:\n  alice: not-a-hash\n")
        for _ in range(3):
            assert get(run.port, auth=("alice", "rotated"))[0] == 200
    assert run.security.reload_failures == 1, "an invalid file is reported once, not per request"
    assert [r.message for r in caplog.records] == ["web config invalid, keeping the last good one"]
    # Switching TLS on at runtime is refused too (it needs a restart).
    _rewrite(run.config, "tls_server_config:\n  cert_file: a\n  key_file: b\n")
    assert get(run.port, auth=("alice", "rotated"))[0] == 200
    _rewrite(run.config, f"basic_auth_users:\n  bob: {HASH}\n")
    assert get(run.port, auth=("bob", PASSWORD))[0] == 200
    assert get(run.port, auth=("alice", "rotated"))[0] == 401


def test_certificate_rotation_without_restart(serve: Serve, certs: Certs, tmp_path: Path) -> None:
    d = tmp_path / "live"
    d.mkdir()
    for ext in ("crt", "key"):
        shutil.copy(certs.p(f"server.{ext}"), d / f"tls.{ext}")
    text = "tls_server_config:\n  cert_file: live/tls.crt\n  key_file: live/tls.key\n"
    run: Running = serve(text)

    def served_cert() -> bytes:
        ctx = client_ctx(certs)
        with (
            socket.create_connection(("127.0.0.1", run.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            der = conn.getpeercert(binary_form=True)
            assert der is not None
            return der

    first = served_cert()
    assert first == ssl.PEM_cert_to_DER_cert((d / "tls.crt").read_text())
    # Rotate: key first, then certificate (as cert-manager does). In between, the pair does
    # not match: the last good pair stays in force.
    shutil.copy(certs.p("server2.key"), d / "tls.key.new")
    os.replace(d / "tls.key.new", d / "tls.key")
    assert served_cert() == first
    shutil.copy(certs.p("server2.crt"), d / "tls.crt.new")
    os.replace(d / "tls.crt.new", d / "tls.crt")
    assert served_cert() == ssl.PEM_cert_to_DER_cert(Path(certs.p("server2.crt")).read_text())


# ---------------------------------------------------------------------------
# The daemon's start
# ---------------------------------------------------------------------------


def test_invalid_web_config_is_a_clear_error_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  alice: hunter2\nhttp_server_config:\n  http3: true\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--web.config.file",
            str(bad),
            "--web.listen-address",
            f"127.0.0.1:{lab.free_port()}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"invalid web config file {bad}" in proc.stderr
    assert "basic_auth_users.alice: not a bcrypt hash" in proc.stderr
    assert "http_server_config.http3: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
