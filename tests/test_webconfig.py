"""Web config file: parsing, TLS, mTLS, basic auth, headers, reload, against real clients.

Certificates are made per test session with the ``openssl`` command; clients are
Python's ``ssl``/``http.client`` and ``curl``. Everything talks over 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import lab
import pytest

from exporter.web.security import (
    BasicAuth,
    RateLimiter,
    WebConfigError,
    WebSecurity,
    parse_basic_auth,
    parse_web_config,
    peer_sans,
    read_web_config,
)
from exporter.web.server import ExporterHTTPServer

REPO = Path(__file__).resolve().parent.parent
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


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
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
    return Certs(d)


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


@pytest.fixture
def serve(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> object:
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


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    s = parse_web_config(None, tmp_path)
    assert s.tls is None and not s.users and not s.headers


def test_relative_paths_are_taken_from_the_files_directory(tmp_path: Path) -> None:
    s = parse_web_config(
        {"tls_server_config": {"cert_file": "a.crt", "key_file": "/k/a.key"}}, tmp_path
    )
    assert s.tls is not None
    assert s.tls.cert_file == str(tmp_path / "a.crt") and s.tls.key_file == "/k/a.key"
    assert (s.tls.min_version, s.tls.max_version, s.tls.client_auth_type) == (
        "TLS12",
        "TLS13",
        "NoClientCert",
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"tls_server_config": {"cert_file": "a"}}, "missing one of key or key_file"),
        ({"tls_server_config": {"key_file": "a"}}, "missing one of cert or cert_file"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Maybe"}},
            "client_auth_type: invalid 'Maybe'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            "not supported by Python's ssl module",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "c"}},
            "client CAs configured without a client_auth_type",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "needs client_ca_file or client_ca",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS14"}},
            "unknown TLS version 'TLS14'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            "is above max_version",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["RC4"]}},
            "unknown cipher 'RC4'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "curve_preferences": ["CurveP999"],
                }
            },
            "unknown curve",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_allowed_sans": ["x"],
                }
            },
            "client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "certfile": "x"}},
            "tls_server_config.certfile: unknown key",
        ),
        (
            {"http_server_config": {"headers": {"X-Powered-By": "me"}}},
            "X-Powered-By: this header can not be configured",
        ),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
            "expected one of deny, sameorigin",
        ),
        (
            {"http_server_config": {"headers": {"Content-Security-Policy": "a\r\nSet-Cookie: x"}}},
            "expected a one-line string",
        ),
        ({"basic_auth_users": {"alice": "plaintext"}}, "basic_auth_users.alice: not a bcrypt hash"),
        ({"basic_auth_users": ["alice"]}, "basic_auth_users: expected a mapping"),
        ({"rate_limit": {"interval": "1s"}}, "rate_limit.burst: must be at least 1"),
        ({"basic_auth": {}}, "basic_auth: unknown key"),
    ],
)
def test_invalid_configs_name_the_problem(tmp_path: Path, raw: object, problem: str) -> None:
    with pytest.raises(WebConfigError) as err:
        parse_web_config(raw, tmp_path)
    assert problem in str(err.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    raw = {"basic_auth_users": {"a": "x", "b": "y"}, "bogus": 1}
    with pytest.raises(WebConfigError) as err:
        parse_web_config(raw, tmp_path)
    assert len(err.value.problems) == 3


def test_bcrypt_hash_variants_are_accepted(tmp_path: Path) -> None:
    h2y = "$2y$" + HASH[4:]
    s = parse_web_config({"basic_auth_users": {"a": HASH, "b": h2y}}, tmp_path)
    assert BasicAuth(s.users).check("b", PASSWORD.encode())


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


def test_parse_basic_auth_header() -> None:
    def b(s: bytes) -> str:
        return "Basic " + base64.b64encode(s).decode()

    assert parse_basic_auth(b(b"al:ice:pw")) == ("al", b"ice:pw")
    assert parse_basic_auth(b(b"u:")) == ("u", b"")
    assert parse_basic_auth(b(b"nocolon")) is None
    assert parse_basic_auth("Basic !!!") is None
    assert parse_basic_auth("Bearer abc") is None
    assert parse_basic_auth(b(b"\xff:x")) is None
    assert parse_basic_auth(None) is None


def test_peer_sans_normalises_ip_addresses() -> None:
    cert = {"subjectAltName": (("DNS", "a"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"))}
    assert peer_sans(cert) == ["a", "2001:db8::1"]
    assert peer_sans(None) == []


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    rl = RateLimiter(1.0, 2, clock=lambda: now[0])
    assert [rl.allow() for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert rl.allow() and not rl.allow()
    assert RateLimiter(0, 0).allow()


# ---------------------------------------------------------------------------
# Basic auth: timing-equal paths
# ---------------------------------------------------------------------------


class CountingCheck:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls.append((password, hashed))
        return bcrypt.checkpw(password, hashed)


def test_unknown_users_and_long_passwords_run_one_bcrypt_of_the_same_cost() -> None:
    counter = CountingCheck()
    auth = BasicAuth({"alice": HASH}, checkpw=counter)
    assert auth.check("alice", PASSWORD.encode())
    assert not auth.check("alice", b"wrong")
    assert not auth.check("mallory", b"wrong")
    assert not auth.check("alice", b"x" * 73)
    assert not auth.check("mallory", b"x" * 500)
    assert not auth.check("alice", b"nul\0byte")
    assert len(counter.calls) == 6, "each path runs exactly one bcrypt comparison"
    costs = {h[:7] for _, h in counter.calls}
    assert costs == {f"$2b${HASH_COST:02d}$".encode()}, "the decoy has the configured cost"
    # Repeats are answered from the cache (keyed by an HMAC, no password kept).
    assert auth.check("alice", PASSWORD.encode()) and not auth.check("mallory", b"wrong")
    assert len(counter.calls) == 6


def test_auth_timing_known_and_unknown_users_printed() -> None:
    """Figures only (no timed assert): a bcrypt per first attempt, whoever the user."""
    cost = 10
    auth = BasicAuth({"alice": bcrypt.hashpw(b"pw", bcrypt.gensalt(cost)).decode()})
    rows = []
    for label, user, pw in [
        ("known user, wrong password", "alice", b"bad1"),
        ("unknown user", "nobody", b"bad2"),
        ("known user, 100-byte password", "alice", b"y" * 100),
    ]:
        t0 = time.perf_counter()
        assert not auth.check(user, pw)
        rows.append(f"{label}: {(time.perf_counter() - t0) * 1000:.1f} ms")
    print(f"\nbasic auth first-attempt cost at bcrypt cost {cost}: " + "; ".join(rows))


# ---------------------------------------------------------------------------
# Against a running server
# ---------------------------------------------------------------------------


def test_tls_serves_https_and_refuses_plain_http(serve: object, certs: Certs) -> None:
    run: Running = serve(tls_yaml(certs))  # type: ignore[operator]
    status, _, body = get(run.port, ctx=client_ctx(certs))
    assert (status, body) == (200, BODY)
    with pytest.raises(
        (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine)
    ):
        get(run.port)
    # Not trusted by a client that does not know the CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(run.port, ctx=ssl.create_default_context())


def test_tls_min_version_is_enforced(serve: object, certs: Certs) -> None:
    run: Running = serve(tls_yaml(certs, "  min_version: TLS13\n"))  # type: ignore[operator]
    old = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert refused(run.port, old)
    assert get(run.port, ctx=client_ctx(certs))[0] == 200


def test_mtls_requires_a_client_certificate_from_the_ca(serve: object, certs: Certs) -> None:
    run: Running = serve(mtls_yaml(certs))  # type: ignore[operator]
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs)), "no client certificate"
    assert refused(run.port, client_ctx(certs, "rogue-client")), "certificate of another CA"


def test_mtls_allowed_sans(serve: object, certs: Certs) -> None:
    extra = "  client_allowed_sans: [prometheus.example]\n"
    run: Running = serve(mtls_yaml(certs, extra=extra))  # type: ignore[operator]
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs, "client-other"))


def test_verify_client_cert_if_given(serve: object, certs: Certs) -> None:
    run: Running = serve(mtls_yaml(certs, "VerifyClientCertIfGiven"))  # type: ignore[operator]
    assert get(run.port, ctx=client_ctx(certs))[0] == 200
    assert get(run.port, ctx=client_ctx(certs, "client"))[0] == 200
    assert refused(run.port, client_ctx(certs, "rogue-client"))


def test_basic_auth_over_plain_http(serve: object) -> None:
    run: Running = serve(f"basic_auth_users:\n  alice: {HASH}\n")  # type: ignore[operator]
    assert get(run.port, auth=("alice", PASSWORD))[:3:2] == (200, BODY)
    for auth in [
        ("alice", "wrong"),
        ("bob", PASSWORD),
        ("alice", "x" * 73),
        ("alice", PASSWORD + "x" * 100),
        ("alice", b"\xff\xfe"),
    ]:
        status, headers, _ = get(run.port, auth=auth)
        assert status == 401, auth
        assert headers["www-authenticate"] == "Basic"
    status, headers, _ = get(run.port)
    assert status == 401 and headers["www-authenticate"] == "Basic"
    assert get(run.port, headers={"Authorization": "Basic %%%"})[0] == 401
    # Every path needs the credentials, health included; a wrong method is still 401 first.
    assert get(run.port, "/-/healthy")[0] == 401
    assert get(run.port, "/-/healthy", auth=("alice", PASSWORD))[0] == 200


def test_headers_are_added_to_every_response(serve: object) -> None:
    text = (
        f"basic_auth_users:\n  alice: {HASH}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n    Content-Security-Policy: default-src 'none'\n"
    )
    run: Running = serve(text)  # type: ignore[operator]
    for status_want, auth in [(200, ("alice", PASSWORD)), (401, None)]:
        status, headers, _ = get(run.port, auth=auth)
        assert status == status_want
        assert headers["x-frame-options"] == "deny"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == "default-src 'none'"


def test_rate_limit_answers_429(serve: object) -> None:
    run: Running = serve("rate_limit:\n  interval: 1h\n  burst: 2\n")  # type: ignore[operator]
    assert [get(run.port)[0] for _ in range(3)] == [200, 200, 429]


def test_curl_with_mtls_and_basic_auth(serve: object, certs: Certs) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    run: Running = serve(mtls_yaml(certs) + f"basic_auth_users:\n  alice: {HASH}\n")  # type: ignore[operator]
    url = f"https://127.0.0.1:{run.port}/metrics"
    base = [
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        certs.p("ca.crt"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]
    mine = ["--cert", certs.p("client.crt"), "--key", certs.p("client.key")]

    def curl(*args: str) -> tuple[int, str]:
        p = subprocess.run(
            [*base, *args, url], check=False, capture_output=True, text=True, timeout=30
        )
        return p.returncode, p.stdout

    assert curl(*mine, "-u", f"alice:{PASSWORD}") == (0, "200")
    assert curl(*mine, "-u", "alice:nope") == (0, "401")
    assert curl(*mine) == (0, "401")
    rc, _ = curl("-u", f"alice:{PASSWORD}")  # no client certificate
    assert rc != 0


# ---------------------------------------------------------------------------
# Reload
# ---------------------------------------------------------------------------


def _rewrite(path: Path, text: str) -> None:
    """Replace the file so its signature surely changes (new inode)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reload_on_change_and_keep_the_last_good_one(
    serve: object, caplog: pytest.LogCaptureFixture
) -> None:
    run: Running = serve(f"basic_auth_users:\n  alice: {HASH}\n")  # type: ignore[operator]
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


def test_certificate_rotation_without_restart(serve: object, certs: Certs, tmp_path: Path) -> None:
    d = tmp_path / "live"
    d.mkdir()
    for ext in ("crt", "key"):
        shutil.copy(certs.p(f"server.{ext}"), d / f"tls.{ext}")
    text = "tls_server_config:\n  cert_file: live/tls.crt\n  key_file: live/tls.key\n"
    run: Running = serve(text)  # type: ignore[operator]

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


def test_stalled_clients_are_dropped(
    serve: object, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that never finishes its handshake or request gives its thread back."""
    import exporter.web.server as server_mod  # noqa: PLC0415

    monkeypatch.setattr(server_mod, "HANDSHAKE_TIMEOUT", 0.5)
    monkeypatch.setattr(server_mod.Handler, "timeout", 0.5)
    run: Running = serve(tls_yaml(certs))  # type: ignore[operator]
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
