"""The exporter's HTTP side: serving apart from web security.

Serving: :mod:`~exporter.web.server` (the listener and the pages) and
:mod:`~exporter.web.landing` (``/``). Security, from the exporter-toolkit web
config file: :mod:`~exporter.web.config` (its format, parsed and checked, pure),
:mod:`~exporter.web.tls` (the SSLContext and each connection's handshake),
:mod:`~exporter.web.auth` (basic auth against bcrypt hashes),
:mod:`~exporter.web.ratelimit` (the token bucket) and
:mod:`~exporter.web.security` (the configuration in force: read, reloaded, and
what it asks of each request).
"""
