"""Pieces shared by the sources that speak the Docker Engine API (Docker, Podman).

:class:`EventFollower` reads one event stream in a thread and notes which
containers must be re-read (each runtime parses its own events: Docker and
Podman name the same things differently). :func:`root_os_error` and
:func:`is_connection_error` tell an unreachable daemon from a bug;
:func:`describe_failure` says what went wrong in a message naming the daemon.
:func:`missing_socket` tells "no such daemon here"; :func:`snapshot` is what a
poll returns.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from exporter.model import Network, SourceData, Workload
from exporter.sources.base import SOCKET_HIDDEN, SOCKET_MISSING, hidden_note, socket_state

log = logging.getLogger(__name__)

# What an event asks for (the second item of a parsed event).
REMOVE = "remove"  # the container stopped or is gone: forget it without asking
INSPECT = "inspect"  # (re)started, renamed: inspect it again
ENDPOINTS = "endpoints"  # a network (dis)connected: inspect, unless the container died
NETWORKS = "networks"  # networks were created or removed: list them again

# A runtime's event parser: event -> (container id, one of the above), or None to ignore it.
EventParser = Callable[[Mapping[str, Any]], tuple[str, str] | None]


class EventFollower:
    """A thread reading one event stream, noting what must be re-read."""

    def __init__(self, stream: Any, parse: EventParser, name: str = "engine-events") -> None:
        self._stream = stream
        self._parse = parse
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._networks_changed = False
        self.events_seen = 0
        self.alive = True
        self.error = ""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                if isinstance(event, Mapping):
                    self._note(event)
            self.error = "the event stream ended"
        except Exception as exc:  # the stream dies with the daemon, in many ways
            self.error = f"the event stream failed: {exc}"
        finally:
            self.alive = False

    def _note(self, event: Mapping[str, Any]) -> None:
        parsed = self._parse(event)
        if parsed is None:
            return
        cid, what = parsed
        with self._lock:
            self.events_seen += 1
            if what == NETWORKS:
                self._networks_changed = True
            elif what == ENDPOINTS:
                # A dying container's endpoints are disconnected after "die": keep the removal.
                if self._pending.get(cid) != REMOVE:
                    self._pending[cid] = INSPECT
            else:
                self._pending[cid] = what

    def take(self) -> tuple[dict[str, str], bool]:
        """What events asked for since the last call: ({container id: action}, networks changed)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            networks, self._networks_changed = self._networks_changed, False
        return pending, networks

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception as exc:  # closing a dead socket may fail; nothing to do about it
            log.debug("closing the event stream: %s", exc)
        self._thread.join(timeout=2)


def root_os_error(exc: BaseException) -> OSError | None:
    """The OSError at the bottom of requests' and urllib3's wrapping, if any."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        todo += [cur.__cause__, cur.__context__, *cur.args]
    return None


def is_connection_error(exc: BaseException) -> bool:
    """Errors that mean the daemon is absent, stopped, slow or broken (not a bug here)."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    return isinstance(
        exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError
    )


def describe_failure(product: str, host: str, exc: BaseException, hints: Mapping[int, str]) -> str:
    """A failed call to ``product`` at ``host``: its error answer, or why it cannot be reached.

    ``hints`` (by errno) say what to check, e.g. for ENOENT whether the daemon runs.
    """
    import docker.errors  # noqa: PLC0415

    if isinstance(exc, docker.errors.APIError):
        return f"{product} at {host} answered with an error: {exc}"
    root = root_os_error(exc)
    if root is not None and root.errno is not None:
        hint = hints.get(root.errno, "")
        return f"cannot reach {product} at {host}: {os.strerror(root.errno)}{hint}"
    return f"cannot reach {product} at {host}: {exc}"


def missing_socket(host: str) -> str:
    """Why the default unix socket ``host`` names is not there, or "" if it is.

    A socket the exporter may not even look for counts as not there, with the
    reason: the runtime's endpoint was not named, and a private directory on a
    host without that runtime must not read as a failing collector.
    """
    path = host.removeprefix("unix://")
    if not host.startswith("unix://"):
        return ""
    state = socket_state(path)
    if state == SOCKET_MISSING:
        return f"at {path}"
    if state == SOCKET_HIDDEN:
        return f"visible: {hidden_note(path)}"
    return ""


def snapshot(
    version: str,
    workloads: Mapping[str, Workload],
    networks: Mapping[str, Network],
    runtime: str,
) -> SourceData:
    """A poll's answer: the workloads and networks, each sorted by name."""
    return SourceData(
        version=version,
        workloads=tuple(sorted(workloads.values(), key=lambda c: c.name)),
        networks=tuple(sorted(networks.values(), key=lambda n: n.name)),
        runtime=runtime,
    )
