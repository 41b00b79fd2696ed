"""Finding the workload ``explain`` was asked about, and saying why not (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exporter.model import (
    Workload,
)
from exporter.paths.views import ExplainError

# --------------------------------------------------------------------------
# Finding the container (pure)
# --------------------------------------------------------------------------


def find_container(containers: Iterable[Workload], query: str) -> Workload:
    """The running container named ``query`` (a leading "/" allowed) or whose id starts with it.

    Raises :class:`LookupError` when none matches and :class:`ExplainError` when
    an id prefix is ambiguous.
    """
    name = query.removeprefix("/")
    listed = list(containers)
    for ctr in listed:
        if ctr.name == name or ctr.id == query:
            return ctr
    prefix = query.lower()
    matches = [c for c in listed if prefix and c.id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(sorted(c.name for c in matches))
        raise ExplainError(f"{query!r} is the start of several container ids ({names}): give more")
    raise LookupError(query)


def describe_missing(query: str, listed: Iterable[Mapping[str, Any]]) -> str:
    """Why ``query`` names no running container, given Docker's list of *all* containers.

    ``listed`` holds items of ``GET /containers/json?all=1`` (Id, Names, State, Status).
    """
    name = query.removeprefix("/")
    for item in listed:
        cid = str(item.get("Id") or "")
        names = [str(n).lstrip("/") for n in item.get("Names") or ()]
        if name in names or (len(query) >= 1 and cid.startswith(query.lower())):
            shown = names[0] if names else cid[:12]
            status = str(item.get("Status") or item.get("State") or "not running")
            return (
                f"container {shown} is not running ({status}): a stopped container has no "
                "network path; start it first"
            )
    return (
        f"no container named {query!r} or with an id starting with it on this host "
        "(`docker ps` lists the running ones)"
    )


def describe_no_network(container: Workload) -> str:
    """Why a running container has no path of its own."""
    mode = container.network_mode
    if mode == "host":
        why = "it uses the host's network stack (--network host): its traffic is the host's own"
    elif mode == "none":
        why = "it has no network (--network none)"
    elif mode.startswith("container:"):
        why = f"it shares the network namespace of container {mode.removeprefix('container:')[:12]}"
        why += ": explain that one"
    else:
        why = "it is attached to no network"
    return f"container {container.name} has no network path of its own: {why}"
