"""The seam every discovery source implements.

A source is a collector (see :mod:`exporter.collector`) whose ``collect``
returns :class:`~exporter.model.SourceData`: its runtime's running workloads
(containers or pod sandboxes) and networks, in the runtime-neutral types of
:mod:`exporter.model.workloads`. The join to host veths, bridges and networks
is not the source's business: :mod:`exporter.workloads` does it once for all.

Rules every source follows:

- steady polls are cheap: no API call per workload per poll (follow the
  runtime's events, or a cheap list call and re-read only what changed);
- while its endpoint was not configured explicitly and does not exist, it
  raises :class:`SourceAbsent` (the runtime is not on this host: not a
  failure); once it has answered, failures raise
  :class:`~exporter.collector.CollectorError` with a message that names the
  endpoint and what is wrong, and it reconnects by itself;
- a workload's ``netns_id`` is the nsid of its network namespace as seen from
  the host (``exporter.collectors.links.read_netnsid`` on
  ``/proc/<pid>/ns/net`` or the runtime's namespace path).

Adding a source is its module plus one row in :mod:`exporter.registry`
(``source=True``).
"""

from __future__ import annotations

import os
from typing import Protocol

from exporter.collector import CollectorAbsent, CollectorError
from exporter.model import SourceData

SourceAbsent = CollectorAbsent


class Source(Protocol):
    name: str

    def collect(self) -> SourceData: ...

    def close(self) -> None: ...


SOCKET_PRESENT = "present"
SOCKET_MISSING = "missing"
SOCKET_HIDDEN = "hidden"  # a directory on the way cannot be searched: we cannot tell


def socket_state(path: str) -> str:
    """Whether a runtime's socket is there: SOCKET_PRESENT, SOCKET_MISSING or SOCKET_HIDDEN."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return SOCKET_MISSING
    except PermissionError:
        return SOCKET_HIDDEN
    return SOCKET_PRESENT


def hidden_note(path: str) -> str:
    """What to say of a socket the exporter may not even look for."""
    return (
        f"{path} cannot be looked for: permission denied on its directory (the exporter needs "
        "search access to it: run as root with CAP_DAC_OVERRIDE, or grant the directory)"
    )


def socket_exists(path: str, what: str) -> bool:
    """True if an endpoint someone *named* exists, False if it does not.

    When the exporter may not even look (a directory on the way it cannot
    search), that is neither: it raises a CollectorError that says so, so a
    missing privilege never passes for a missing runtime.
    """
    state = socket_state(path)
    if state == SOCKET_HIDDEN:
        raise CollectorError(f"{what}: {hidden_note(path)}")
    return state == SOCKET_PRESENT
