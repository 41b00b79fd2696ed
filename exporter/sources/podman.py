"""The Podman source: Podman's containers and networks, over Podman's API socket.

It is the Docker source (:class:`~exporter.sources.docker.ContainersCollector`)
with Podman's answers (:mod:`exporter.sources.podman_parse`): a full resync
(list + inspect) at connect, every ``resync_interval`` and whenever the service
comes back; in between only the containers events named are inspected again, so
a quiet poll makes no API call.

Podman serves the Docker Engine API (``/v1.41/...``) beside its own libpod API
(``/v4.0.0/libpod/...``) on one socket; the ``docker`` package talks to both.
The Docker-compatible endpoints list and inspect containers and stream events;
a network's bridge (``network_interface``), subnets and options come from the
libpod network list, because the compatible ones name no bridge. Network
create/remove make no event, so networks are listed again with every batch of
events and at each resync; netavark's ``isolate`` option is read from the
network's JSON file (``/etc/containers/networks/NAME.json``) if the API shows
no options.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from exporter.collector import CollectorError
from exporter.config import Config, DockerConfig
from exporter.model.workloads import Network, SourceData, Workload
from exporter.sources.docker import ContainersCollector
from exporter.sources.engine import EventFollower, describe_failure
from exporter.sources.jsonshape import json_list, json_object
from exporter.sources.podman_parse import (
    PODMAN_API,
    RUNTIME,
    isolated_in_file,
    netns_paths,
    parse_container,
    parse_event,
    parse_network,
)

log = logging.getLogger(__name__)

HOST_SETTING = "podman.host"
DEFAULT_HOST = "unix:///run/podman/podman.sock"
LIBPOD = "/v4.0.0/libpod"
# Where rootful Podman keeps netavark's network files (containers.conf network_config_dir).
NETWORK_DIRS = ("/etc/containers/networks",)
# What to check when Podman cannot be reached, by errno.
HINTS = {
    errno.ENOENT: " (is the Podman service running? podman.socket, or"
    " `podman system service`; --podman.host)",
    errno.ECONNREFUSED: " (is the Podman service running?)",
    errno.EACCES: " (the Podman socket needs read/write access: root)",
}


class PodmanSource(ContainersCollector):
    """Running Podman containers and networks, kept current by Podman's event stream.

    The Docker source's machinery (connect, resync, events, netns ids, reconnect)
    with Podman's answers. ``host`` is the API socket (default the rootful one);
    ``explicit`` says it was configured, so a missing socket is a failure rather
    than "no Podman here". ``netnsid_reader`` and ``client_factory`` are seams for
    tests; ``api_calls`` counts API requests and ``resyncs`` the full resyncs.
    """

    name = "podman"
    runtime = RUNTIME
    product = "Podman"

    def __init__(
        self,
        host: str = "",
        *,
        explicit: bool = False,
        timeout: float = 5.0,
        resync_interval: float = 300.0,
        network_dirs: Sequence[str] = NETWORK_DIRS,
        netnsid_reader: Callable[[str], int | None] | None = None,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            DockerConfig(
                host=host or DEFAULT_HOST, timeout=timeout, resync_interval=resync_interval
            ),
            netnsid_reader=netnsid_reader,
            client_factory=client_factory,
            clock=clock,
        )
        # Nobody named the socket: a host without Podman is not a failure (SourceAbsent).
        self._implicit = not (explicit and host)
        self._network_dirs = tuple(network_dirs)
        self._rootless = False

    @property
    def host(self) -> str:
        return self._host

    def collect(self) -> SourceData:
        try:
            return super().collect()
        except ValueError as exc:  # an answer of a shape Podman does not give
            self.close()
            raise CollectorError(f"Podman at {self._host}: {exc}") from exc

    # -- the hooks of the Docker source -----------------------------------

    def _open_events(self, client: Any) -> EventFollower:
        info = json_object(PODMAN_API, self._libpod("/info"), "libpod info")
        security = json_object(
            PODMAN_API,
            json_object(PODMAN_API, info.get("host"), "info host").get("security"),
            "security",
        )
        self._rootless = bool(security.get("rootless"))
        stream = self._call(
            client.api.events, decode=True, filters={"type": ["container", "network"]}
        )
        return EventFollower(stream, parse_event, "podman-events")

    def _apply_events(self, pending: Mapping[str, str], networks_changed: bool) -> None:
        if pending or networks_changed:
            # Podman makes no event for a new network: list them with every batch.
            networks = self._read_networks()
            if networks != self._networks:
                self._networks = networks
                self._data = None
        super()._apply_events(pending, False)

    def _libpod(self, path: str) -> Any:
        api = self._client.api
        self.api_calls += 1
        resp = api.get(f"{api.base_url}{LIBPOD}{path}", timeout=self._cfg.timeout)
        return api._result(resp, json=True)

    def _read_networks(self) -> dict[str, Network]:
        nets: dict[str, Network] = {}
        for raw in json_list(PODMAN_API, self._libpod("/networks/json"), "network list"):
            net = parse_network(json_object(PODMAN_API, raw, "a network"))
            in_file = "isolate" not in net.options and isolated_in_file(
                self._network_dirs, net.name
            )
            if in_file:
                net = replace(net, isolated=True)
            nets[net.name] = net
        return nets

    def _parse(self, raw: Mapping[str, Any]) -> Workload:
        return parse_container(raw, self._networks, rootless=self._rootless)

    def _netns_paths(self, raw: Mapping[str, Any]) -> tuple[str, ...]:
        return netns_paths(raw)

    def _describe(self, exc: BaseException) -> str:
        return describe_failure(self.product, self._host, exc, HINTS)


def make_podman(cfg: Config) -> PodmanSource:
    """The registry's factory: the Podman source on ``podman.host``.

    Configured explicitly (file or flag), a missing socket is a failure; left at
    its default, it means "no Podman on this host" and the collector is absent.
    """
    host = str(cfg.setting(HOST_SETTING))
    return PodmanSource(
        host,
        explicit=HOST_SETTING in cfg.settings,
        timeout=cfg.docker.timeout,
        resync_interval=cfg.docker.resync_interval,
    )


def describe_podman(data: SourceData, poll: object, cfg: Config) -> list[Any]:
    """What ``check`` says: reachable, counts, unmapped namespaces, isolated networks."""
    from exporter.check import (  # noqa: PLC0415 - check imports us
        INFO,
        OK,
        Finding,
        unmapped_namespaces,
    )

    host = str(cfg.setting(HOST_SETTING))
    out = [
        Finding(
            OK,
            "podman",
            f"Podman {data.version or '(version unknown)'} reachable at {host}; "
            f"{len(data.workloads)} running container(s), {len(data.networks)} network(s)",
        )
    ]
    own = [w for w in data.workloads if not w.no_path_reason and w.endpoints]
    unmapped = unmapped_namespaces(
        "podman",
        own,
        "container",
        "CAP_SYS_PTRACE (or running as root) and the host's PID namespace",
    )
    if unmapped is not None:
        out.append(unmapped)
    no_path = [w for w in data.workloads if w.no_path_reason]
    if no_path:
        reasons = sorted({w.no_path_reason for w in no_path})
        out.append(
            Finding(
                INFO,
                "podman",
                f"{len(no_path)} container(s) without a host veth: " + "; ".join(reasons),
            )
        )
    bridges = [n for n in data.networks if n.bridge]
    isolated = sorted(n.name for n in bridges if n.isolated)
    open_ = sorted(n.name for n in bridges if not n.isolated)
    out.append(
        Finding(
            INFO,
            "podman",
            "isolated networks (created with isolate=true): "
            + (", ".join(isolated) or "none")
            + "; not isolated (traffic from other Podman networks passes): "
            + (", ".join(open_) or "none"),
        )
    )
    return out
