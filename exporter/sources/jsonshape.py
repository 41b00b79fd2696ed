"""The shape checks every runtime API answer goes through (pure).

A runtime's JSON that is not the shape its API documents is a clean
``ValueError`` naming the API and the field, never a ``TypeError`` deep in a
parser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any


def json_object(api: str, value: object, where: str) -> Mapping[str, Any]:
    """A JSON object of ``api``'s answer ({} for null); anything else is a clean error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{api}: {where} is {type(value).__name__}, expected an object")
    return value


def json_list(api: str, value: object, where: str) -> list[Any]:
    """A JSON list of ``api``'s answer ([] for null); anything else is a clean error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{api}: {where} is {type(value).__name__}, expected a list")
    return value


def ip_version(cidr: str) -> int:
    """4 or 6; 9 (sorts last) for text that is no network."""
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 9
