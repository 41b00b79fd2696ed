"""Basic auth (exporter.web.auth): the header, bcrypt paths of equal cost, against real clients."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import weblab
from weblab import (
    BODY,
    HASH,
    HASH_COST,
    PASSWORD,
    Certs,
    Running,
    Serve,
    get,
    mtls_yaml,
)

from exporter.web.auth import BasicAuth, parse_basic_auth
from exporter.web.server import ExporterHTTPServer


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return weblab.session_certs(tmp_path_factory)


@pytest.fixture
def serve(tmp_path: Path, start_server: Callable[..., ExporterHTTPServer]) -> Serve:
    return weblab.serving(tmp_path, start_server)


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


# ---------------------------------------------------------------------------
# Timing-equal paths
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


def test_basic_auth_over_plain_http(serve: Serve) -> None:
    run: Running = serve(f"basic_auth_users:\n  alice: {HASH}\n")
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


def test_curl_with_mtls_and_basic_auth(serve: Serve, certs: Certs) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    run: Running = serve(mtls_yaml(certs) + f"basic_auth_users:\n  alice: {HASH}\n")
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
