"""The web config in force: read from its file, reloaded when a file changes,
and what it asks of each request (rate limit, basic auth, headers).

:class:`WebSecurity` is what the HTTP server holds: it re-reads the file (and
the certificate files it names) when any of them changes, and keeps serving
the last good configuration when the new one is invalid. The file's format is
:mod:`exporter.web.config`'s, TLS :mod:`exporter.web.tls`'s.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import yaml

from exporter.config import ConfigError
from exporter.web.auth import BasicAuth, parse_basic_auth
from exporter.web.config import WebConfigError, WebSettings, parse_web_config
from exporter.web.ratelimit import RateLimiter
from exporter.web.tls import read_tls_context

log = logging.getLogger("netpath.web")


@dataclass(frozen=True)
class Refusal:
    """The answer to a request the web config does not admit."""

    status: HTTPStatus
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


TOO_MANY_REQUESTS = Refusal(HTTPStatus.TOO_MANY_REQUESTS, b"Too Many Requests\n", "text/plain")
UNAUTHORIZED = Refusal(
    HTTPStatus.UNAUTHORIZED,
    b"Unauthorized\n",
    "text/plain; charset=utf-8",
    (("WWW-Authenticate", "Basic"),),
)


def read_web_config(path: str) -> WebSettings:
    """Read and check a web config file, including the certificates it names."""
    source = f"web config file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WebConfigError([f"cannot read {path}: {reason}"], source) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError([f"not valid YAML: {exc}"], source) from exc
    settings = parse_web_config(raw, Path(path).resolve().parent, source)
    if settings.tls is not None:
        read_tls_context(settings.tls, source)  # raises on unreadable or mismatched files
    return settings


@dataclass(frozen=True)
class ActiveWeb:
    """One loaded web configuration, as the server uses it for a connection."""

    settings: WebSettings
    ssl_context: ssl.SSLContext | None
    auth: BasicAuth

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


def _signature(paths: tuple[str, ...]) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            out.append((-1, -1, -1, -1))
    return tuple(out)


class WebSecurity:
    """The web config file, re-read when it or a file it names changes.

    The constructor raises WebConfigError for an invalid file (the daemon then
    exits 2). Later, an invalid change is logged once and the last good
    configuration stays in force; so does switching TLS on or off, which needs
    a restart (a mistaken edit must not turn HTTPS into plain HTTP).
    """

    def __init__(self, path: str, *, min_check_interval: float = 0.0) -> None:
        self.path = path
        self.min_check_interval = min_check_interval
        self._lock = threading.Lock()
        self._last_check = time.monotonic()
        self._failed_sig: object = None
        self.reloads = 0
        self.reload_failures = 0
        settings = read_web_config(path)
        self._active = self._activate(settings)
        self._sig = self._current_signature(settings)
        self.limiter = RateLimiter(settings.rate_limit_interval, settings.rate_limit_burst)

    def _current_signature(self, settings: WebSettings) -> object:
        files = settings.tls.files() if settings.tls else ()
        return _signature((self.path, *files))

    @staticmethod
    def _activate(settings: WebSettings) -> ActiveWeb:
        ctx = read_tls_context(settings.tls) if settings.tls is not None else None
        return ActiveWeb(settings, ctx, BasicAuth(settings.users))

    def current(self) -> ActiveWeb:
        """The configuration in force, reloading first when a file changed."""
        now = time.monotonic()
        if now - self._last_check < self.min_check_interval:
            return self._active
        with self._lock:
            self._last_check = now
            sig = self._current_signature(self._active.settings)
            if sig not in (self._sig, self._failed_sig):
                self._reload(sig)
            return self._active

    def _reload(self, sig: object) -> None:
        try:
            settings = read_web_config(self.path)
            if (settings.tls is None) != (self._active.settings.tls is None):
                raise WebConfigError(
                    ["tls_server_config: switching TLS on or off needs a restart"],
                    f"web config file {self.path}",
                )
            # Certificates are re-read even when the file names the same paths.
            ctx = read_tls_context(settings.tls) if settings.tls is not None else None
            same_users = settings.users == self._active.settings.users
            auth = self._active.auth if same_users else BasicAuth(settings.users)
            active = ActiveWeb(settings, ctx, auth)
        except ConfigError as exc:
            self.reload_failures += 1
            self._failed_sig = sig
            log.error(
                "web config invalid, keeping the last good one",
                extra={"file": self.path, "err": "; ".join(exc.problems)},
            )
            return
        self._active = active
        self._sig = self._current_signature(settings)
        self._failed_sig = None
        if (settings.rate_limit_interval, settings.rate_limit_burst) != (
            self.limiter.interval,
            self.limiter.burst,
        ):
            self.limiter = RateLimiter(settings.rate_limit_interval, settings.rate_limit_burst)
        self.reloads += 1
        log.info(
            "web config reloaded",
            extra={"file": self.path, "tls": active.tls, "basic_auth": active.auth.enabled},
        )

    def admit(self, authorization: str | None) -> Refusal | None:
        """Rate limit, then basic auth (``authorization``: the request's Authorization
        header), under the configuration in force; None when the request may proceed."""
        active = self.current()
        if not self.limiter.allow():
            return TOO_MANY_REQUESTS
        if not active.auth.enabled:
            return None
        creds = parse_basic_auth(authorization)
        if creds is not None and active.auth.check(*creds):
            return None
        return UNAUTHORIZED

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers the configuration in force adds to every response."""
        return self.current().settings.headers
