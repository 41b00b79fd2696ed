"""Podman containers and networks, over Podman's API socket.

Podman serves the Docker Engine API (``/v1.41/...``) beside its own libpod API
(``/v4.0.0/libpod/...``) on one socket; the ``docker`` package talks to both.
The Docker-compatible endpoints list and inspect containers and stream events;
a network's bridge (``network_interface``), subnets and options come from the
libpod network list, because the compatible ones name no bridge. Podman's
quirks, as Podman 4.3 answers:

- an endpoint's ``NetworkID`` is the network's *name*: the real id is looked up
  in the network list;
- ``network connect``/``disconnect`` events carry the container in ``Actor.ID``
  (Docker: in the attributes); a removed container says ``remove`` (Docker:
  ``destroy``); network create/remove make no event, so networks are listed again
  with every batch of events and at each resync;
- netavark's ``isolate`` option is in the network's options (API) and its JSON
  file (``/etc/containers/networks/NAME.json``, read if the API shows no options);
- ``SandboxKey`` (``/run/netns/netns-<uuid>``) is in Podman's mount namespace;
  ``/proc/<State.Pid>/ns/net`` is tried first.

Containers with no host veth (user-mode networking: slirp4netns, pasta, the
rootless default; bridge networks of rootless Podman, whose veths live in its
rootless network namespace; host or none networking) are listed with
``no_path_reason`` saying why, never dropped.

It is the Docker source (:class:`~exporter.sources.docker.ContainersCollector`)
with these answers: a full resync (list + inspect) at connect, every
``resync_interval`` and whenever the service comes back; in between only the
containers events named are inspected again, so a quiet poll makes no API call.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from exporter.collector import CollectorError
from exporter.config import Config, DockerConfig
from exporter.model.workloads import RUNTIME_PODMAN, Endpoint, Network, SourceData, Workload
from exporter.sources.docker import ContainersCollector, parse_ports
from exporter.sources.engine import (
    ENDPOINTS,
    INSPECT,
    NETWORKS,
    REMOVE,
    EventFollower,
    root_os_error,
)

log = logging.getLogger(__name__)

RUNTIME = RUNTIME_PODMAN
HOST_SETTING = "podman.host"
DEFAULT_HOST = "unix:///run/podman/podman.sock"
LIBPOD = "/v4.0.0/libpod"
# Where rootful Podman keeps netavark's network files (containers.conf network_config_dir).
NETWORK_DIRS = ("/etc/containers/networks",)

COMPOSE_PROJECT = ("com.docker.compose.project", "io.podman.compose.project")
COMPOSE_SERVICE = ("com.docker.compose.service", "io.podman.compose.service")

# Podman's container events: which remove, which re-inspect. Others (create, init,
# cleanup, exec, ...) change nothing we export.
REMOVE_ACTIONS = frozenset({"die", "died", "stop", "kill", "remove", "destroy"})
INSPECT_ACTIONS = frozenset({"start", "restart", "rename", "unpause"})

MODES_WITHOUT_VETH = {
    "host": "host network: no veth of its own",
    "none": "no network",
    "slirp4netns": "user-mode networking (slirp4netns): no host veth",
    "pasta": "user-mode networking (pasta): no host veth",
}
ROOTLESS_BRIDGE = "rootless Podman: the veth is in the rootless network namespace, not on the host"

# --------------------------------------------------------------------------
# Parsing (pure): Podman API JSON -> workloads
# --------------------------------------------------------------------------


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"Podman API: {where} is {type(value).__name__}, expected an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"Podman API: {where} is {type(value).__name__}, expected a list")
    return value


def _ip_version(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 9


def is_isolated(options: Mapping[str, str]) -> bool:
    """netavark's ``isolate`` option: ``true`` (or ``strict``, netavark 1.6+)."""
    return options.get("isolate", "").lower() in ("true", "strict", "1")


def parse_network(raw: Mapping[str, Any]) -> Network:
    """One item of libpod's ``GET /libpod/networks/json`` -> Network."""
    name = str(raw.get("name") or "")
    driver = str(raw.get("driver") or "")
    options = {str(k): str(v) for k, v in _obj(raw.get("options"), "network options").items()}
    pools = sorted(
        (
            (str(s.get("subnet") or ""), str(s.get("gateway") or ""))
            for s in (
                _obj(item, "a network subnet") for item in _list(raw.get("subnets"), "subnets")
            )
            if s.get("subnet")
        ),
        key=lambda pool: _ip_version(pool[0]),
    )
    return Network(
        runtime=RUNTIME,
        name=name,
        id=str(raw.get("id") or ""),
        driver=driver,
        # macvlan/ipvlan name their parent interface here: only a bridge is "the" bridge.
        bridge=str(raw.get("network_interface") or "") if driver == "bridge" else "",
        subnets=tuple(s for s, _ in pools),
        gateways=tuple(g for _, g in pools),
        internal=bool(raw.get("internal")),
        enable_ipv6=bool(raw.get("ipv6_enabled")),
        options=options,
        isolated=is_isolated(options),
    )


def isolated_in_file(dirs: Iterable[str], name: str) -> bool | None:
    """The ``isolate`` option from the network's JSON file; None if no file is readable."""
    if not name or "/" in name or name.startswith("."):
        return None
    for d in dirs:
        try:
            raw = json.loads((Path(d) / f"{name}.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, Mapping):
            options = raw.get("options")
            if isinstance(options, Mapping):
                return is_isolated({str(k): str(v) for k, v in options.items()})
            return False
    return None


def _label(labels: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = labels.get(key)
        if value:
            return str(value)
    return ""


def no_path_reason(mode: str, rootless: bool) -> str:
    """Why a container in network mode ``mode`` has no host veth ("" if it has one)."""
    if mode in MODES_WITHOUT_VETH:
        return MODES_WITHOUT_VETH[mode]
    if mode.startswith("container:"):
        return f"shares the network namespace of container {mode.split(':', 1)[1][:12]}"
    if mode.startswith("ns:"):
        return f"joins the network namespace {mode[3:]}"
    if rootless:
        return ROOTLESS_BRIDGE
    return ""


def parse_container(
    raw: Mapping[str, Any],
    networks: Mapping[str, Network],
    *,
    rootless: bool = False,
    netns_id: int | None = None,
) -> Workload:
    """A Docker-compatible container inspect -> Workload (compose labels only, nothing else).

    ``networks`` by name give the endpoints their network ids (Podman's
    ``NetworkID`` is the name).
    """
    config = _obj(raw.get("Config"), "container Config")
    labels = _obj(config.get("Labels"), "Config.Labels")
    settings = _obj(raw.get("NetworkSettings"), "container NetworkSettings")
    mode = str(_obj(raw.get("HostConfig"), "container HostConfig").get("NetworkMode") or "")
    if mode in ("", "default"):
        mode = "bridge"
    endpoints: list[Endpoint] = []
    for name, ep in sorted(
        (str(n), _obj(e, f"the endpoint of network {n}"))
        for n, e in _obj(settings.get("Networks"), "NetworkSettings.Networks").items()
        if e is not None
    ):
        net = networks.get(name)
        endpoints.append(
            Endpoint(
                network=name,
                network_id=net.id if net is not None else str(ep.get("NetworkID") or ""),
                ip=str(ep.get("IPAddress") or ""),
                ipv6=str(ep.get("GlobalIPv6Address") or ""),
                mac=str(ep.get("MacAddress") or ""),
                gateway=str(ep.get("Gateway") or ""),
            )
        )
    reason = no_path_reason(mode, rootless)
    return Workload(
        runtime=RUNTIME,
        id=str(raw.get("Id") or ""),
        name=str(raw.get("Name") or "").lstrip("/"),
        namespace="",
        pod="",
        image=str(config.get("Image") or raw.get("Image") or ""),
        compose_project=_label(labels, COMPOSE_PROJECT),
        compose_service=_label(labels, COMPOSE_SERVICE),
        network_mode=mode,
        netns_id=netns_id,
        endpoints=tuple(endpoints),
        ports=parse_ports(settings.get("Ports")),
        no_path_reason=reason,
    )


def netns_paths(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Where the container's network namespace opens: /proc/PID/ns/net, then SandboxKey.

    (Podman's SandboxKey is a bind mount in Podman's own mount namespace.)
    """
    paths: list[str] = []
    pid = _obj(raw.get("State"), "container State").get("Pid") or 0
    if isinstance(pid, int) and pid > 0:
        paths.append(f"/proc/{pid}/ns/net")
    key = str(_obj(raw.get("NetworkSettings"), "NetworkSettings").get("SandboxKey") or "")
    if key:
        paths.append(key)
    return tuple(paths)


def parse_event(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Podman event (Docker-compatible stream) -> (container id, what to do), or None."""
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    actor = _obj(event.get("Actor"), "event Actor")
    if kind == "container":
        cid = str(actor.get("ID") or event.get("id") or "")
        if not cid:
            return None
        if action in REMOVE_ACTIONS:
            return cid, REMOVE
        if action in INSPECT_ACTIONS:
            return cid, INSPECT
        return None
    if kind == "network":
        if action in ("connect", "disconnect"):
            attrs = _obj(actor.get("Attributes"), "event Attributes")
            cid = str(attrs.get("container") or actor.get("ID") or "")
            return (cid, ENDPOINTS) if cid else None
        if action in ("create", "remove", "destroy"):
            return "", NETWORKS
    return None


# --------------------------------------------------------------------------
# Reading (Podman API)
# --------------------------------------------------------------------------


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
        info = _obj(self._libpod("/info"), "libpod info")
        security = _obj(_obj(info.get("host"), "info host").get("security"), "security")
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
        for raw in _list(self._libpod("/networks/json"), "network list"):
            net = parse_network(_obj(raw, "a network"))
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
        return _describe(self._host, exc)


def _describe(host: str, exc: BaseException) -> str:
    import errno  # noqa: PLC0415

    import docker.errors  # noqa: PLC0415

    if isinstance(exc, docker.errors.APIError):
        return f"Podman at {host} answered with an error: {exc}"
    root = root_os_error(exc)
    if root is not None and root.errno is not None:
        hint = {
            errno.ENOENT: " (is the Podman service running? podman.socket, or"
            " `podman system service`; --podman.host)",
            errno.ECONNREFUSED: " (is the Podman service running?)",
            errno.EACCES: " (the Podman socket needs read/write access: root)",
        }.get(root.errno, "")
        return f"cannot reach Podman at {host}: {os.strerror(root.errno)}{hint}"
    return f"cannot reach Podman at {host}: {exc}"


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
    from exporter.check import FAIL, INFO, OK, Finding  # noqa: PLC0415 - check imports us

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
    unmapped = sorted(w.name for w in own if w.netns_id is None)
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (", ..." if len(unmapped) > 5 else "")
        out.append(
            Finding(
                FAIL,
                "podman",
                f"{len(unmapped)} of {len(own)} containers' network namespaces cannot be "
                f"opened ({shown}): no per-container counters; needs CAP_SYS_PTRACE "
                "(or running as root) and the host's PID namespace",
            )
        )
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
