"""TLS for the HTTP server: an SSLContext from the web config, and each connection's handshake.

The context is built from :class:`~exporter.web.config.TLSSettings` (certificate
and key from files or inline PEM, client CAs, versions, ciphers, curve); a
connection is wrapped on its own thread, bounded by :data:`HANDSHAKE_TIMEOUT`,
and refused when the client certificate carries none of the allowed SANs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Any

from exporter.web.config import CIPHER_SUITES, CURVES, TLS_VERSIONS, TLSSettings, WebConfigError

log = logging.getLogger("netpath.http")  # a connection's fate: the HTTP side's logger

HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to finish the TLS handshake


def _load_inline_chain(
    ctx: ssl.SSLContext, cert: str, key: str, cert_file: str, key_file: str
) -> None:
    """load_cert_chain takes paths only: inline PEM goes through memfds (no disk, works
    on a read-only root filesystem)."""
    fds: list[int] = []
    try:

        def path_of(inline: str, path: str) -> str:
            if not inline:
                return path
            fd = os.memfd_create("netpath-tls", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, inline.encode())
            return f"/proc/self/fd/{fd}"

        ctx.load_cert_chain(path_of(cert, cert_file), path_of(key, key_file))
    finally:
        for fd in fds:
            os.close(fd)


def read_tls_context(tls: TLSSettings, source: str = "web config") -> ssl.SSLContext:
    """An SSLContext for the server side; WebConfigError names what is wrong."""
    w = "tls_server_config."
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        _load_inline_chain(ctx, tls.cert, tls.key, tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        where = tls.cert_file or "cert"
        raise WebConfigError(
            [f"{w}cert_file/key_file: cannot load the certificate and key ({where}): {exc}"], source
        ) from exc
    if tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        try:
            if tls.client_ca_file:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            else:
                ctx.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise WebConfigError(
                [
                    f"{w}client_ca_file: cannot load the client CA "
                    f"({tls.client_ca_file or 'client_ca'}): {exc}"
                ],
                source,
            ) from exc
        ctx.verify_mode = (
            ssl.CERT_REQUIRED
            if tls.client_auth_type == "RequireAndVerifyClientCert"
            else ssl.CERT_OPTIONAL
        )
    else:
        ctx.verify_mode = ssl.CERT_NONE
    openssl = [CIPHER_SUITES[c] for c in tls.cipher_suites if CIPHER_SUITES[c]]
    if openssl:
        try:
            ctx.set_ciphers(":".join(c for c in openssl if c))
        except ssl.SSLError as exc:
            raise WebConfigError([f"{w}cipher_suites: not available here: {exc}"], source) from exc
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if len(tls.curve_preferences) == 1:
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    return ctx


def peer_sans(cert: Mapping[str, Any] | None) -> list[str]:
    """The SAN values of a verified peer certificate (``SSLSocket.getpeercert()``),
    spelled as Go prints them (IP addresses normalised)."""
    out: list[str] = []
    for kind, value in (cert or {}).get("subjectAltName", ()):
        spelled = value
        if kind == "IP Address":
            with contextlib.suppress(ValueError):
                spelled = str(ipaddress.ip_address(value.strip()))
        out.append(spelled)
    return out


def sans_allowed(tls: TLSSettings | None, conn: ssl.SSLSocket) -> bool:
    """Whether the verified client certificate on ``conn`` carries an allowed SAN
    (always, when the config names none)."""
    if tls is None or not tls.client_allowed_sans:
        return True
    return any(san in tls.client_allowed_sans for san in peer_sans(conn.getpeercert()))


def handshake(
    request: socket.socket, ctx: ssl.SSLContext, tls: TLSSettings | None, client: str
) -> ssl.SSLSocket | None:
    """``request`` wrapped in TLS, bounded by HANDSHAKE_TIMEOUT; None (the connection
    closed) when the handshake fails or the client certificate's SANs are not allowed."""
    request.settimeout(HANDSHAKE_TIMEOUT)
    try:
        conn = ctx.wrap_socket(request, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        log.debug("TLS handshake failed", extra={"client": client, "err": str(exc)})
        return None
    if not sans_allowed(tls, conn):
        log.debug("client certificate SAN not allowed", extra={"client": client})
        with contextlib.suppress(OSError):
            conn.close()
        return None
    conn.settimeout(None)
    return conn
