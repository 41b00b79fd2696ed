"""The web config file's format (exporter.web.config): parsing and checking, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
from weblab import (
    HASH,
    PASSWORD,
)

from exporter.web.auth import BasicAuth
from exporter.web.config import WebConfigError, parse_web_config


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
