"""A workload's ``netns_id``: the nsid of its network namespace, from the paths its runtime names.

A runtime names where a workload's network namespace can be opened
(``/proc/<pid>/ns/net``, a bind mount such as Docker's ``SandboxKey``);
:func:`first_netnsid` asks the kernel for the id this namespace gave it
(``exporter.collectors.links.read_netnsid``). The kernel names a namespace only
once asked or once a link refers to it, so a namespace may have no id yet:
:class:`PendingNetns` keeps such workloads' paths and asks again every poll.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import replace

from exporter.model import Workload

NetnsidReader = Callable[[str], int | None]


def first_netnsid(paths: Iterable[str], read: NetnsidReader) -> int | None:
    """The nsid of the first path that opens and has one; None if none does."""
    for path in paths:
        try:
            nsid = read(path)
        except OSError:
            continue
        if nsid is not None:
            return nsid
    return None


class PendingNetns:
    """Workloads whose namespace had no nsid yet, with the paths to ask again."""

    def __init__(self, read: NetnsidReader) -> None:
        self._read = read
        self._paths: dict[str, tuple[str, ...]] = {}

    def resolve(self, wid: str, paths: tuple[str, ...]) -> int | None:
        """The nsid behind ``paths``; None (and ``wid`` kept pending) if there is none yet."""
        nsid = first_netnsid(paths, self._read)
        if nsid is None:
            self._paths[wid] = paths
        return nsid

    def forget(self, wid: str) -> None:
        self._paths.pop(wid, None)

    def clear(self) -> None:
        self._paths = {}

    def retry(self, workloads: MutableMapping[str, Workload]) -> bool:
        """Ask again for the pending ones; fill in ``workloads`` in place. True if any changed."""
        changed = False
        for wid, paths in list(self._paths.items()):
            workload = workloads.get(wid)
            if workload is None:
                del self._paths[wid]
                continue
            nsid = first_netnsid(paths, self._read)
            if nsid is not None:
                workloads[wid] = replace(workload, netns_id=nsid)
                del self._paths[wid]
                changed = True
        return changed
