"""HTTP basic auth against the web config's bcrypt hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import bcrypt

from exporter.web.config import bcrypt_cost

BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (Python's bcrypt rejects) anything longer


def parse_basic_auth(header: str | None) -> tuple[str, bytes] | None:
    """``Authorization: Basic ...`` -> (user, password bytes); None if absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


Checker = Callable[[bytes, bytes], bool]


class BasicAuth:
    """Checks user and password against bcrypt hashes.

    An unknown user, and a password bcrypt cannot take (over 72 bytes), are
    checked against a decoy hash of the highest configured cost, so they take
    as long as a known user with a wrong password. Results are cached (key: an
    HMAC of user, hash and password under a per-process random key, so no
    password is kept) and bcrypt runs one at a time, as in the toolkit.
    """

    CACHE_SIZE = 256

    def __init__(self, users: Mapping[str, str], checkpw: Checker = bcrypt.checkpw) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._checkpw = checkpw
        cost = max((bcrypt_cost(h) for h in users.values()), default=10)
        self.decoy = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(cost))
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: bytes) -> bool:
        hashed = self._users.get(user)
        known = hashed is not None
        target = hashed if hashed is not None else self.decoy
        key = hmac.new(
            self._key, b"\0".join((user.encode(), target, password)), hashlib.sha256
        ).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached and known
        usable = len(password) <= BCRYPT_MAX_PASSWORD and b"\0" not in password
        with self._bcrypt_lock:
            try:
                ok = self._checkpw(password if usable else b"-", target if usable else self.decoy)
            except ValueError:
                ok = False
        ok = ok and known and usable
        with self._lock:
            self._cache[key] = ok
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok
