"""Docker containers and networks, and which host veth belongs to which container.

Reading: :class:`ContainersCollector` talks to the Docker Engine API (the
``docker`` package). It does a full resync (list + inspect) at start, every
``resync_interval`` and whenever the daemon comes back; in between a thread
follows Docker's event stream and only the containers an event named are
inspected again, so a steady-state poll makes no API call at all.

The join (:func:`build_container_interfaces`) needs no namespace entering: a
host veth's ``peer_netnsid`` is the id this namespace gave the container's
network namespace (read once per container from its ``SandboxKey``), and the
veth's master bridge names the Docker network (``docker0`` is ``bridge``,
``br-<12 hex of the id>``, or the network's ``com.docker.network.bridge.name``).

Only the compose project and service labels are exported; no other container
label or environment variable ever becomes a metric label.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from exporter.collector import CollectorAbsent as SourceAbsent
from exporter.collector import CollectorError
from exporter.collectors.links import read_netnsid
from exporter.config import Config, DockerConfig
from exporter.model import (
    Endpoint,
    Network,
    PortBinding,
    SourceData,
    Workload,
)
from exporter.workloads import has_own_netns

log = logging.getLogger(__name__)

LABEL_COMPOSE_PROJECT = "com.docker.compose.project"
LABEL_COMPOSE_SERVICE = "com.docker.compose.service"
OPTION_BRIDGE_NAME = "com.docker.network.bridge.name"
# Predefined networks without a veth of their own.
NO_VETH_NETWORKS = frozenset({"host", "none"})

# Events that change what we export. "die"/"destroy" remove a container
# without asking Docker; the others re-inspect it.
CONTAINER_EVENTS = ("start", "die", "destroy", "rename")
NETWORK_EVENTS = ("connect", "disconnect", "create", "destroy")
_REMOVE = "remove"
_INSPECT = "inspect"
_ENDPOINTS = "endpoints"  # a network (dis)connected: inspect, unless the container died

# --------------------------------------------------------------------------
# Parsing (pure): Docker API JSON -> model
# --------------------------------------------------------------------------


def network_bridge(name: str, network_id: str, driver: str, options: Mapping[str, str]) -> str:
    """The host bridge interface of a Docker network ("" if it is not a bridge network)."""
    if driver != "bridge":
        return ""
    explicit = options.get(OPTION_BRIDGE_NAME, "")
    if explicit:
        return explicit
    if name == "bridge":
        return "docker0"
    return f"br-{network_id[:12]}"


def _obj(value: object, where: str) -> Mapping[str, Any]:
    """A JSON object of Docker's answer ({} for null); anything else is a clean error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"Docker API: {where} is {type(value).__name__}, expected an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"Docker API: {where} is {type(value).__name__}, expected a list")
    return value


def _ip_version(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 9


def parse_network(raw: Mapping[str, Any]) -> Network:
    """One item of ``GET /networks`` (or a network inspect) -> Network."""
    name = str(raw.get("Name") or "")
    net_id = str(raw.get("Id") or raw.get("ID") or "")
    driver = str(raw.get("Driver") or "")
    options = {str(k): str(v) for k, v in _obj(raw.get("Options"), "network Options").items()}
    ipam = _list(_obj(raw.get("IPAM"), "network IPAM").get("Config"), "IPAM.Config")
    configs = [_obj(c, "an IPAM.Config item") for c in ipam]
    pools = sorted(
        (
            (str(c.get("Subnet") or ""), str(c.get("Gateway") or ""))
            for c in configs
            if c.get("Subnet")
        ),
        key=lambda pool: _ip_version(pool[0]),
    )
    return Network(
        name=name,
        id=net_id,
        driver=driver,
        bridge=network_bridge(name, net_id, driver, options),
        subnets=tuple(s for s, _ in pools),
        gateways=tuple(g for _, g in pools),
        internal=bool(raw.get("Internal")),
        enable_ipv6=bool(raw.get("EnableIPv6")),
        options=options,
    )


def parse_ports(raw: Mapping[str, Any] | None) -> tuple[PortBinding, ...]:
    """``NetworkSettings.Ports`` ({"80/tcp": [{"HostIp", "HostPort"}]}) -> published ports."""
    out: list[PortBinding] = []
    for key, bindings in _obj(raw, "NetworkSettings.Ports").items():
        port, _, proto = str(key).partition("/")
        if not bindings or not port.isdigit():
            continue
        for item in _list(bindings, f"the bindings of {key}"):
            b = _obj(item, f"a binding of {key}")
            host_port = str(b.get("HostPort") or "")
            if not host_port.isdigit():
                continue
            out.append(
                PortBinding(
                    protocol=proto or "tcp",
                    container_port=int(port),
                    host_ip=str(b.get("HostIp") or ""),
                    host_port=int(host_port),
                )
            )
    return tuple(sorted(out, key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port)))


def parse_container(raw: Mapping[str, Any], netns_id: int | None = None) -> Workload:
    """``GET /containers/ID/json`` -> Workload (compose labels only, nothing else)."""
    config = _obj(raw.get("Config"), "container Config")
    labels = _obj(config.get("Labels"), "Config.Labels")
    settings = _obj(raw.get("NetworkSettings"), "container NetworkSettings")
    mode = str(_obj(raw.get("HostConfig"), "container HostConfig").get("NetworkMode") or "")
    if mode in ("", "default"):
        mode = "bridge"
    endpoints = tuple(
        Endpoint(
            network=str(name),
            network_id=str(ep.get("NetworkID") or ""),
            ip=str(ep.get("IPAddress") or ""),
            ipv6=str(ep.get("GlobalIPv6Address") or ""),
            mac=str(ep.get("MacAddress") or ""),
            gateway=str(ep.get("Gateway") or ""),
        )
        for name, ep in sorted(
            (str(n), _obj(e, f"the endpoint of network {n}"))
            for n, e in _obj(settings.get("Networks"), "NetworkSettings.Networks").items()
            if e is not None
        )
        if name not in NO_VETH_NETWORKS
    )
    return Workload(
        id=str(raw.get("Id") or ""),
        name=str(raw.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or raw.get("Image") or ""),
        compose_project=str(labels.get(LABEL_COMPOSE_PROJECT) or ""),
        compose_service=str(labels.get(LABEL_COMPOSE_SERVICE) or ""),
        network_mode=mode,
        netns_id=netns_id,
        endpoints=endpoints,
        ports=parse_ports(settings.get("Ports")),
    )


def container_running(raw: Mapping[str, Any]) -> bool:
    return bool((raw.get("State") or {}).get("Running"))


def netns_paths(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Where a container's network namespace can be opened: SandboxKey, then /proc/PID/ns/net."""
    paths: list[str] = []
    key = str((raw.get("NetworkSettings") or {}).get("SandboxKey") or "")
    if key:
        paths.append(key)
    pid = (raw.get("State") or {}).get("Pid") or 0
    if isinstance(pid, int) and pid > 0:
        paths.append(f"/proc/{pid}/ns/net")
    return tuple(paths)


def parse_event(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """A Docker event -> (container id, what to do) or ("", "networks"), or None.

    What to do: "remove" (died, destroyed), "inspect" (started, renamed, created)
    or "endpoints" (a network was connected or disconnected).
    """
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    actor = event.get("Actor") or {}
    if kind == "container":
        cid = str(actor.get("ID") or event.get("id") or "")
        if not cid or action not in CONTAINER_EVENTS:
            return None
        return cid, _REMOVE if action in ("die", "destroy") else _INSPECT
    if kind == "network":
        if action in ("create", "destroy"):
            return "", "networks"
        if action in ("connect", "disconnect"):
            cid = str((actor.get("Attributes") or {}).get("container") or "")
            return (cid, _ENDPOINTS) if cid else None
    return None


# --------------------------------------------------------------------------
# Reading (Docker API)
# --------------------------------------------------------------------------


class _EventFollower:
    """A thread reading one Docker event stream, noting what must be re-read."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._networks_changed = False
        self.alive = True
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
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
        parsed = parse_event(event)
        if parsed is None:
            return
        cid, what = parsed
        with self._lock:
            if what == "networks":
                self._networks_changed = True
            elif what == _ENDPOINTS:
                # A dying container's endpoints are disconnected after "die": keep the removal.
                if self._pending.get(cid) != _REMOVE:
                    self._pending[cid] = _INSPECT
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
            log.debug("closing the Docker event stream: %s", exc)
        self._thread.join(timeout=2)


class ContainersCollector:
    """Running containers and networks, kept current by Docker's event stream.

    ``netnsid_reader`` (default :func:`exporter.collectors.links.read_netnsid`) and
    ``client_factory`` (default: a ``docker.DockerClient`` for ``cfg``) are
    seams for tests. ``api_calls`` counts Docker API requests made so far and
    ``resyncs`` the full resyncs (for tests and benchmarks).
    """

    name = "docker"

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
        self._read_netnsid = netnsid_reader or read_netnsid
        self._client_factory = client_factory or self._docker_client
        self._clock = clock
        self._lock = threading.Lock()
        self._client: Any = None
        self._events: _EventFollower | None = None
        self._version = ""
        self._containers: dict[str, Workload] = {}
        self._paths: dict[str, tuple[str, ...]] = {}  # netns paths of containers lacking an nsid
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
            if self._implicit and not self._answered:
                path = self._host.removeprefix("unix://")
                if self._host.startswith("unix://") and not os.path.exists(path):
                    raise SourceAbsent(f"no Docker socket at {path}")
            try:
                data = self._collect()
                self._answered = True
                return data
            except CollectorError:
                raise
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                self._disconnect()
                raise CollectorError(_describe(self._host, exc)) from exc

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
                log.info("lost Docker events (%s); reconnecting", events.error)
            self._connect()
        elif self._clock() - self._last_resync >= self._cfg.resync_interval:
            self._resync()
        else:
            pending, networks_changed = events.take()
            if networks_changed:
                self._networks = self._read_networks()
                self._data = None
            for cid, action in pending.items():
                if action == _REMOVE:
                    self._forget(cid)
                else:
                    self._refresh(cid)
        self._retry_netnsids()
        if self._data is None:
            self._data = SourceData(
                version=self._version,
                workloads=tuple(sorted(self._containers.values(), key=lambda c: c.name)),
                networks=tuple(sorted(self._networks.values(), key=lambda n: n.name)),
            )
        return self._data

    def _docker_client(self) -> Any:
        import docker  # noqa: PLC0415 - heavy; only the containers collector needs it

        self.api_calls += 1  # the client asks for the API version
        return docker.DockerClient(base_url=self._host, timeout=self._cfg.timeout)

    def _connect(self) -> None:
        self._disconnect()
        client = self._client_factory()
        try:
            self._version = str(self._call(client.api.version).get("Version", ""))
            filters = {
                "type": ["container", "network"],
                "event": sorted(set(CONTAINER_EVENTS) | set(NETWORK_EVENTS)),
            }
            stream = self._call(client.api.events, decode=True, filters=filters)
        except BaseException:
            client.close()
            raise
        self._client = client
        self._events = _EventFollower(stream)
        self._resync()
        log.info("connected to Docker %s at %s", self._version, self._host)

    def _disconnect(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:
                log.debug("closing the Docker client: %s", exc)
            self._client = None

    def _resync(self) -> None:
        """List and inspect everything; events seen so far are covered by it."""
        assert self._events is not None
        self._events.take()
        networks = self._read_networks()
        listed = self._call(self._client.api.containers, all=False)
        containers: dict[str, Workload] = {}
        self._paths = {}
        for item in listed:
            cid = str(item.get("Id") or "")
            ctr = self._inspect(cid) if cid else None
            if ctr is not None:
                containers[cid] = ctr
        self._networks = networks
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
        ctr = parse_container(raw)
        if has_own_netns(ctr):
            paths = netns_paths(raw)
            nsid = self._netns_id(paths)
            if nsid is None:
                self._paths[ctr.id] = paths
            else:
                ctr = replace(ctr, netns_id=nsid)
        return ctr

    def _refresh(self, cid: str) -> None:
        self._paths.pop(cid, None)
        ctr = self._inspect(cid)
        if ctr is None:
            self._forget(cid)
        else:
            self._containers[ctr.id] = ctr
            self._data = None

    def _forget(self, cid: str) -> None:
        self._paths.pop(cid, None)
        if self._containers.pop(cid, None) is not None:
            self._data = None

    def _netns_id(self, paths: Iterable[str]) -> int | None:
        for path in paths:
            try:
                nsid = self._read_netnsid(path)
            except OSError:
                continue
            if nsid is not None:
                return nsid
        return None

    def _retry_netnsids(self) -> None:
        """The kernel names a namespace only once asked or a link refers to it: ask again."""
        for cid, paths in list(self._paths.items()):
            ctr = self._containers.get(cid)
            if ctr is None:
                del self._paths[cid]
                continue
            nsid = self._netns_id(paths)
            if nsid is not None:
                self._containers[cid] = replace(ctr, netns_id=nsid)
                del self._paths[cid]
                self._data = None

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.api_calls += 1
        return fn(*args, **kwargs)


def _describe(host: str, exc: BaseException) -> str:
    import docker.errors  # noqa: PLC0415

    if isinstance(exc, docker.errors.APIError):
        return f"Docker at {host} answered with an error: {exc}"
    root = _root_os_error(exc)
    if root is not None and root.errno is not None:
        hint = {
            errno.ENOENT: " (is dockerd running? --docker.host / DOCKER_HOST)",
            errno.ECONNREFUSED: " (is dockerd running?)",
            errno.EACCES: " (the Docker socket needs read/write access: group docker, or root)",
        }.get(root.errno, "")
        return f"cannot reach Docker at {host}: {os.strerror(root.errno)}{hint}"
    return f"cannot reach Docker at {host}: {exc}"


def _root_os_error(exc: BaseException) -> OSError | None:
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


def _is_connection_error(exc: BaseException) -> bool:
    """Errors that mean Docker is absent, stopped, slow or broken (not a bug here)."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    return isinstance(
        exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError
    )


def make_docker(cfg: Config) -> ContainersCollector:
    """The registry's factory: the Docker source, on ``docker.host``."""
    return ContainersCollector(cfg.docker)


def list_all_containers(host: str, timeout: float) -> list[Mapping[str, Any]]:
    """Every container Docker knows, stopped ones too (``docker ps -a``): for messages."""
    import docker  # noqa: PLC0415 - the SDK only where it is used

    client = docker.DockerClient(base_url=host, timeout=timeout)
    try:
        return list(client.api.containers(all=True))
    finally:
        client.close()
