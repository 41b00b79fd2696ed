"""The web config file's format (``--web.config.file``): parsing and checking, pure.

The format is the Prometheus exporter-toolkit's: ``tls_server_config``
(certificate and key, client CA and ``client_auth_type``, TLS versions, cipher
suites, curves, allowed client SANs), ``http_server_config.headers``,
``basic_auth_users`` (bcrypt hashes) and ``rate_limit``. Relative paths are
taken from the file's own directory, as the toolkit does.

Differences forced by Python's ``ssl`` module (each is named in the error or
the log): ``RequireAnyClientCert`` (a certificate required but not verified)
cannot be expressed and is rejected; ``RequestClientCert`` never checks the
certificate in the toolkit either and is served as ``NoClientCert``; with
several ``curve_preferences`` OpenSSL's default group list is kept (it holds
all four curves), one curve is enforced; ``http2`` is accepted and ignored
(this server speaks HTTP/1.1 only).

Reading the file and its certificates is :mod:`exporter.web.security`'s; this
module turns a parsed YAML document into :class:`WebSettings`, naming every
problem at once.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, check_mapping, check_unknown_keys, parse_duration

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.CipherSuites() names -> OpenSSL names. The TLS 1.3 suites are not
# configurable (in Go either): they are accepted and left to the library.
CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}

CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

# Headers the toolkit lets a file set, with their allowed values (None: any).
HEADERS: Mapping[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")


class WebConfigError(ConfigError):
    """An invalid web config file; the message names every problem found."""


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str = ""
    key_file: str = ""
    cert: str = ""  # inline PEM
    key: str = ""  # inline PEM
    client_ca_file: str = ""
    client_ca: str = ""  # inline PEM
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class WebSettings:
    """A parsed web config file."""

    tls: TLSSettings | None = None  # None: plain HTTP
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, str] = field(default_factory=dict)  # user -> bcrypt hash
    rate_limit_interval: float = 0.0  # seconds between requests; 0 = no limit
    rate_limit_burst: int = 0
    http2: bool = True  # accepted for compatibility; HTTP/1.1 is served


def _str(section: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{where}{key}: expected a string, got {value!r}")
        return ""
    return value


def _strs(section: Mapping[str, Any], key: str, where: str, problems: list[str]) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}{key}: expected a list of strings, got {value!r}")
        return ()
    return tuple(value)


def _join(base_dir: Path, path: str) -> str:
    if not path or os.path.isabs(path):
        return path
    return str(base_dir / path)


def bcrypt_cost(hashed: str) -> int:
    """The cost of a bcrypt hash; ValueError if it is not one."""
    m = _BCRYPT_HASH.match(hashed)
    if not m or not 4 <= int(m.group(1)) <= 31:
        raise ValueError("not a bcrypt hash (expected $2a$, $2b$ or $2y$, cost 04-31, 60 chars)")
    return int(m.group(1))


def _parse_tls(raw: Mapping[str, Any], base_dir: Path, problems: list[str]) -> TLSSettings | None:
    w = "tls_server_config."
    known = {
        "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites",
        "prefer_server_cipher_suites", "curve_preferences",
    }  # fmt: skip
    check_unknown_keys(raw, known, w, problems)
    s = {
        k: _str(raw, k, w, problems)
        for k in (
            "cert",
            "key",
            "client_ca",
            "cert_file",
            "key_file",
            "client_auth_type",
            "client_ca_file",
        )
    }
    enabled = any(s.values())
    if not enabled:
        # As the toolkit: without a certificate, key, CA or auth type, TLS is off.
        return None
    if not s["cert"] and not s["cert_file"]:
        problems.append(f"{w}cert_file: missing one of cert or cert_file")
    if not s["key"] and not s["key_file"]:
        problems.append(f"{w}key_file: missing one of key or key_file")
    if s["cert"] and s["cert_file"]:
        problems.append(f"{w}cert: give cert or cert_file, not both")
    if s["key"] and s["key_file"]:
        problems.append(f"{w}key: give key or key_file, not both")
    if s["client_ca"] and s["client_ca_file"]:
        problems.append(f"{w}client_ca: give client_ca or client_ca_file, not both")
    auth = s["client_auth_type"] or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(
            f"{w}client_auth_type: invalid {auth!r} (one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    elif auth in ("RequireAnyClientCert", "RequireClientCert"):
        problems.append(
            f"{w}client_auth_type: {auth} (a certificate required but not verified) is not "
            "supported by Python's ssl module; use RequireAndVerifyClientCert with client_ca_file"
        )
    has_ca = bool(s["client_ca"] or s["client_ca_file"])
    if has_ca and auth in ("NoClientCert", "RequestClientCert"):
        problems.append(
            f"{w}client_ca_file: client CAs configured without a client_auth_type "
            "that verifies certificates"
        )
    if not has_ca and auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        problems.append(f"{w}client_ca_file: {auth} needs client_ca_file or client_ca")
    sans = _strs(raw, "client_allowed_sans", w, problems)
    if "client_allowed_sans" in raw and auth != "RequireAndVerifyClientCert":
        problems.append(
            f"{w}client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert"
        )
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = _str(raw, key, w, problems) or default
        if v not in TLS_VERSIONS:
            problems.append(
                f"{w}{key}: unknown TLS version {v!r} (one of {', '.join(TLS_VERSIONS)})"
            )
            v = default
        versions[key] = v
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        problems.append(
            f"{w}min_version: {versions['min_version']} is above max_version "
            f"{versions['max_version']}"
        )
    ciphers = _strs(raw, "cipher_suites", w, problems)
    for c in ciphers:
        if c not in CIPHER_SUITES:
            problems.append(f"{w}cipher_suites: unknown cipher {c!r}")
    curves = _strs(raw, "curve_preferences", w, problems)
    for c in curves:
        if c not in CURVES:
            problems.append(
                f"{w}curve_preferences: unknown curve {c!r} (one of {', '.join(CURVES)})"
            )
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.append(f"{w}prefer_server_cipher_suites: expected true or false, got {prefer!r}")
        prefer = True
    return TLSSettings(
        cert_file=_join(base_dir, s["cert_file"]),
        key_file=_join(base_dir, s["key_file"]),
        cert=s["cert"],
        key=s["key"],
        client_ca_file=_join(base_dir, s["client_ca_file"]),
        client_ca=s["client_ca"],
        client_auth_type=auth,
        client_allowed_sans=sans,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=ciphers,
        prefer_server_cipher_suites=prefer,
        curve_preferences=curves,
    )


def parse_web_config(raw: object, base_dir: Path, source: str = "web config") -> WebSettings:
    """Turn a parsed YAML document into WebSettings, naming every problem at once."""
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError([f"top level: expected a mapping, got {type(raw).__name__}"], source)
    check_unknown_keys(
        raw,
        {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"},
        "",
        problems,
    )
    tls = _parse_tls(
        check_mapping(raw.get("tls_server_config"), "tls_server_config", problems),
        base_dir,
        problems,
    )

    http = check_mapping(raw.get("http_server_config"), "http_server_config", problems)
    check_unknown_keys(http, {"http2", "headers"}, "http_server_config.", problems)
    http2 = http.get("http2", True)
    if not isinstance(http2, bool):
        problems.append(f"http_server_config.http2: expected true or false, got {http2!r}")
        http2 = True
    headers: list[tuple[str, str]] = []
    for name, value in check_mapping(
        http.get("headers"), "http_server_config.headers", problems
    ).items():
        where = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            problems.append(
                f"{where}: this header can not be configured (one of {', '.join(HEADERS)})"
            )
            continue
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            problems.append(f"{where}: expected a one-line string, got {value!r}")
            continue
        allowed = HEADERS[name]
        if allowed is not None and value not in allowed:
            problems.append(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
            continue
        if value:
            headers.append((name, value))

    users: dict[str, str] = {}
    for user, hashed in check_mapping(
        raw.get("basic_auth_users"), "basic_auth_users", problems
    ).items():
        if not isinstance(user, str) or not isinstance(hashed, str):
            problems.append(f"basic_auth_users.{user}: expected a user name and a bcrypt hash")
            continue
        try:
            bcrypt_cost(hashed)
        except ValueError as exc:
            problems.append(f"basic_auth_users.{user}: {exc}")
            continue
        users[user] = hashed

    rl = check_mapping(raw.get("rate_limit"), "rate_limit", problems)
    check_unknown_keys(rl, {"interval", "burst"}, "rate_limit.", problems)
    interval = 0.0
    burst = 0
    if rl.get("interval") not in (None, 0, "0", "0s"):
        try:
            interval = parse_duration(rl["interval"])
        except ValueError as exc:
            problems.append(f"rate_limit.interval: {exc}")
    if "burst" in rl:
        b = rl["burst"]
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            problems.append(f"rate_limit.burst: expected a non-negative integer, got {b!r}")
        else:
            burst = b
    if interval and burst < 1:
        problems.append("rate_limit.burst: must be at least 1 when rate_limit.interval is set")

    if problems:
        raise WebConfigError(problems, source)
    return WebSettings(
        tls=tls,
        headers=tuple(headers),
        users=users,
        rate_limit_interval=interval,
        rate_limit_burst=burst,
        http2=http2,
    )
