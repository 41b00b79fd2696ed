"""The Docker source: Docker's containers and networks, kept current by its event stream.

:class:`ContainersCollector` talks to the Docker Engine API (the ``docker``
package). It does a full resync (list + inspect) at start, every
``resync_interval`` and whenever the daemon comes back; in between a thread
(:class:`~exporter.sources.engine.EventFollower`) follows Docker's event stream
and only the containers an event named are inspected again, so a steady-state
poll makes no API call at all.

What Docker's answers mean is :mod:`exporter.sources.docker_parse` (pure); a
container's ``netns_id`` is read once from the paths it names
(:mod:`exporter.sources.netns`), needing no namespace entering. The join to host
veths and bridges is :mod:`exporter.workloads`, for every source.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from exporter.collector import CollectorAbsent as SourceAbsent
from exporter.collector import CollectorError
from exporter.collectors.links import read_netnsid
from exporter.config import Config, DockerConfig
from exporter.model import Network, SourceData, Workload
from exporter.model.workloads import RUNTIME_DOCKER
from exporter.sources.docker_parse import (
    EVENT_FILTERS,
    container_running,
    netns_paths,
    parse_container,
    parse_event,
    parse_network,
)
from exporter.sources.engine import (
    REMOVE,
    EventFollower,
    describe_failure,
    is_connection_error,
    missing_socket,
    snapshot,
)
from exporter.sources.netns import PendingNetns
from exporter.workloads import has_own_netns

log = logging.getLogger(__name__)

# What to check when Docker cannot be reached, by errno.
HINTS = {
    errno.ENOENT: " (is dockerd running? --docker.host / DOCKER_HOST)",
    errno.ECONNREFUSED: " (is dockerd running?)",
    errno.EACCES: " (the Docker socket needs read/write access: group docker, or root)",
}


class ContainersCollector:
    """Running containers and networks, kept current by Docker's event stream.

    ``netnsid_reader`` (default :func:`exporter.collectors.links.read_netnsid`) and
    ``client_factory`` (default: a ``docker.DockerClient`` for ``cfg``) are
    seams for tests. ``api_calls`` counts Docker API requests made so far and
    ``resyncs`` the full resyncs (for tests and benchmarks).

    The Podman source (:mod:`exporter.sources.podman`) is this class with
    Podman's answers: it overrides the hooks ``_parse``, ``_netns_paths``,
    ``_read_networks``, ``_open_events``, ``_apply_events`` and ``_describe``.
    """

    name = "docker"
    runtime = RUNTIME_DOCKER
    product = "Docker"

    def __init__(
        self,
        cfg: DockerConfig,
        *,
        netnsid_reader: Callable[[str], int | None] | None = None,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._host = cfg.resolved_host()
        self._read_netnsid = netnsid_reader or read_netnsid  # late-bound: tests swap it
        self._pending_netns = PendingNetns(lambda p: self._read_netnsid(p))  # noqa: PLW0108
        # The default client asks for the API version: one call.
        self._client_factory = client_factory or partial(
            self._call, docker_client, self._host, cfg.timeout
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._client: Any = None
        self._events: EventFollower | None = None
        self._version = ""
        self._containers: dict[str, Workload] = {}
        self._networks: dict[str, Network] = {}
        self._last_resync = -math.inf
        self._data: SourceData | None = None
        self.api_calls = 0
        self.resyncs = 0
        # Nobody named the endpoint: a host without Docker is not a failure (SourceAbsent).
        self._implicit = not cfg.host and not os.environ.get("DOCKER_HOST")
        self._answered = False

    # -- public -----------------------------------------------------------

    def collect(self) -> SourceData:
        with self._lock:
            why = missing_socket(self._host) if self._implicit and not self._answered else ""
            if why:
                raise SourceAbsent(f"no {self.product} socket {why}")
            try:
                data = self._collect()
                self._answered = True
                return data
            except CollectorError:
                raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self._disconnect()
                raise CollectorError(self._describe(exc)) from exc

    @property
    def following_events(self) -> bool:
        """True while connected and the event stream is alive."""
        return self._events is not None and self._events.alive

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    # -- one poll ---------------------------------------------------------

    def _collect(self) -> SourceData:
        events = self._events
        if self._client is None or events is None or not events.alive:
            if events is not None and not events.alive:
                log.info("lost %s events (%s); reconnecting", self.product, events.error)
            self._connect()
        elif self._clock() - self._last_resync >= self._cfg.resync_interval:
            self._resync()
        else:
            self._apply_events(*events.take())
        if self._pending_netns.retry(self._containers):
            self._data = None
        if self._data is None:
            self._data = snapshot(self._version, self._containers, self._networks, self.runtime)
        return self._data

    def _apply_events(self, pending: Mapping[str, str], networks_changed: bool) -> None:
        """Re-read what the events since the last poll named."""
        if networks_changed:
            self._networks = self._read_networks()
            self._data = None
        for cid, action in pending.items():
            if action == REMOVE:
                self._forget(cid)
            else:
                self._refresh(cid)

    def _connect(self) -> None:
        self._disconnect()
        client = self._client_factory()
        try:
            self._client = client
            self._version = str(self._call(client.api.version).get("Version", ""))
            self._events = self._open_events(client)
        except BaseException:
            self._client = None
            client.close()
            raise
        self._resync()
        log.info("connected to %s %s at %s", self.product, self._version, self._host)

    def _open_events(self, client: Any) -> EventFollower:
        stream = self._call(client.api.events, decode=True, filters=EVENT_FILTERS)
        return EventFollower(stream, parse_event, "docker-events")

    def _disconnect(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:
                log.debug("closing the %s client: %s", self.product, exc)
            self._client = None

    def _resync(self) -> None:
        """List and inspect everything; events seen so far are covered by it."""
        assert self._events is not None
        self._events.take()
        # Networks first: parsing a container may look its networks up (Podman).
        self._networks = self._read_networks()
        listed = self._call(self._client.api.containers, all=False)
        containers: dict[str, Workload] = {}
        self._pending_netns.clear()
        for item in listed:
            cid = str(item.get("Id") or "")
            ctr = self._inspect(cid) if cid else None
            if ctr is not None:
                containers[cid] = ctr
        self._containers = containers
        self._last_resync = self._clock()
        self._data = None
        self.resyncs += 1

    def _read_networks(self) -> dict[str, Network]:
        nets = (parse_network(raw) for raw in self._call(self._client.api.networks))
        return {n.id: n for n in nets}

    def _inspect(self, cid: str) -> Workload | None:
        """Inspect one container; None if it is gone or not running."""
        import docker.errors  # noqa: PLC0415

        try:
            raw = self._call(self._client.api.inspect_container, cid)
        except docker.errors.NotFound:
            return None
        if not container_running(raw):
            return None
        ctr = self._parse(raw)
        if has_own_netns(ctr) and not ctr.no_path_reason:
            nsid = self._pending_netns.resolve(ctr.id, self._netns_paths(raw))
            if nsid is not None:
                ctr = replace(ctr, netns_id=nsid)
        return ctr

    def _parse(self, raw: Mapping[str, Any]) -> Workload:
        return parse_container(raw)

    def _netns_paths(self, raw: Mapping[str, Any]) -> tuple[str, ...]:
        return netns_paths(raw)

    def _describe(self, exc: BaseException) -> str:
        return describe_failure(self.product, self._host, exc, HINTS)

    def _refresh(self, cid: str) -> None:
        self._pending_netns.forget(cid)
        ctr = self._inspect(cid)
        if ctr is None:
            self._forget(cid)
        else:
            self._containers[ctr.id] = ctr
            self._data = None

    def _forget(self, cid: str) -> None:
        self._pending_netns.forget(cid)
        if self._containers.pop(cid, None) is not None:
            self._data = None

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.api_calls += 1
        return fn(*args, **kwargs)


def make_docker(cfg: Config) -> ContainersCollector:
    """The registry's factory: the Docker source, on ``docker.host``."""
    return ContainersCollector(cfg.docker)


def docker_client(host: str, timeout: float) -> Any:
    """A ``docker.DockerClient`` on ``host`` (the SDK is imported only here: it is heavy)."""
    import docker  # noqa: PLC0415 - heavy; only the Docker and Podman sources need it

    return docker.DockerClient(base_url=host, timeout=timeout)


def list_all_containers(host: str, timeout: float) -> list[Mapping[str, Any]]:
    """Every container Docker knows, stopped ones too (``docker ps -a``): for messages."""
    client = docker_client(host, timeout)
    try:
        return list(client.api.containers(all=True))
    finally:
        client.close()
