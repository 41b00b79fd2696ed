"""The CRI source: pods of a Kubernetes node, read from its container runtime (containerd, CRI-O).

Each pod is one workload (:mod:`exporter.sources.cri_parse` says what the
runtime's answers mean); its ``netns_id`` is the id the exporter's namespace
gave ``/proc/<sandbox pid>/ns/net`` (that path works from any mount namespace,
unlike the runtime's netns bind mounts).

What each poll costs. The CRI has no event stream that every runtime serves
for sandboxes, so the source polls, cheaply:

- ``ListPodSandbox`` filtered to ready sandboxes, every poll: one small
  message per pod (id, name, namespace, attempt, creation time);
- ``PodSandboxStatus(verbose=true)`` only for a sandbox not seen before (or
  seen with another creation time or attempt). It is the costly call — kilobytes
  of JSON per pod (runtime spec, CNI result) — and what it says does not change
  while the sandbox lives: the CNI plugins run once, when the sandbox starts, and
  a restarted pod gets a new sandbox. A steady-state poll therefore makes one
  CRI call however many pods run;
- ``Status(verbose=true)`` (the runtime's loaded CNI configuration) and
  ``Version`` when a new sandbox appeared, and after (re)connecting.

A sandbox that leaves the list is forgotten at once. After any failed call the
channel is closed and every cached status dropped: the next poll connects
afresh and reads everything again, so a restarted runtime is picked up without
waiting for gRPC's reconnect backoff.

Endpoint: ``--cri.endpoint`` (config ``cri.endpoint``). Unset, the first of
containerd's and CRI-O's standard sockets (``DEFAULT_ENDPOINTS``, from
:mod:`exporter.sources.cri_endpoint`) that exists is used; while neither exists
(or the socket's runtime does not serve the CRI, as Docker's own containerd does
not) the source is absent, not failing. Once it has answered, failures are
failures.

The parsing functions are re-exported here (``__all__``): this module is the
CRI source's whole surface, its parts live beside it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter.collector import CollectorAbsent, CollectorError
from exporter.collectors.links import read_netnsid
from exporter.config import Config
from exporter.model.workloads import SourceData
from exporter.sources.base import (
    SOCKET_HIDDEN,
    SOCKET_PRESENT,
    hidden_note,
    socket_exists,
    socket_state,
)
from exporter.sources.cri_endpoint import (
    DEFAULT_ENDPOINTS,
    describe_rpc_failure,
    rpc_code,
    socket_path,
)
from exporter.sources.cri_parse import (
    NETWORK_MODE_POD,
    CniNetwork,
    Sandbox,
    fill_gateways,
    listed_sandbox,
    parse_cni_config,
    parse_cni_network,
    parse_sandbox,
    runtime_of,
)
from exporter.sources.netns import first_netnsid

if TYPE_CHECKING:  # grpc (~20 MB resident) is imported only once a CRI socket exists
    import grpc

    from exporter.sources import cri_api_pb2 as pb
    from exporter.sources.cri_client import CriClient

__all__ = [
    "DEFAULT_ENDPOINTS",
    "CniNetwork",
    "CollectorAbsent",
    "CriSource",
    "Sandbox",
    "fill_gateways",
    "make_cri",
    "parse_cni_config",
    "parse_cni_network",
    "parse_sandbox",
    "runtime_of",
    "socket_path",
]

log = logging.getLogger(__name__)


def _sandbox_key(item: pb.PodSandbox) -> tuple[int, int]:
    return (item.created_at, item.metadata.attempt)


class CriSource:
    """The CRI discovery source (collector name ``cri``); see the module doc."""

    name = "cri"

    def __init__(self, endpoint: str = "", timeout: float = 5.0) -> None:
        self.configured = endpoint
        self.timeout = timeout
        self._client: CriClient | None = None
        self._endpoint = ""  # the endpoint answering (or last tried)
        self._answered = False  # has answered once: failures are failures from then on
        self._runtime = ""
        self._version = ""
        self._networks: tuple[CniNetwork, ...] = ()
        self._networks_read = False
        self._sandboxes: dict[str, tuple[tuple[int, int], Sandbox]] = {}
        self._nsids: dict[str, int] = {}
        self.api_calls = 0  # CRI calls made, for tests and the bench

    # -- connection ---------------------------------------------------------

    def _pick_endpoint(self) -> str:
        if self.configured:
            path = socket_path(self.configured)
            if not socket_exists(path, "cri.endpoint"):
                raise CollectorError(f"cri.endpoint {self.configured}: no such socket ({path})")
            return self.configured
        hidden = []
        for candidate in DEFAULT_ENDPOINTS:
            state = socket_state(candidate)
            if state == SOCKET_PRESENT:
                return candidate
            if state == SOCKET_HIDDEN:
                hidden.append(hidden_note(candidate))
        if self._answered:
            raise CollectorError(f"the CRI socket {self._endpoint} is gone (the runtime stopped?)")
        # Nobody named an endpoint: a default one we may not look for is reported with
        # the absence (check and the log show it), not as a failure on every host
        # whose runtime directory is private.
        raise CollectorAbsent(
            f"no CRI runtime socket ({' or '.join(DEFAULT_ENDPOINTS)}); set --cri.endpoint"
            + "".join(f"; {note}" for note in hidden)
        )

    def _connect(self) -> CriClient:
        if self._client is not None:
            return self._client
        endpoint = self._pick_endpoint()
        import grpc  # noqa: PLC0415 - only where a CRI socket exists

        from exporter.sources.cri_client import CriClient  # noqa: PLC0415 - same

        client = CriClient(endpoint, timeout=self.timeout)
        try:
            version = client.version()
        except grpc.RpcError as exc:
            client.close()
            raise self._failure(endpoint, exc) from None
        self.api_calls += 1
        self._client = client
        self._endpoint = endpoint
        self._runtime = runtime_of(version.runtime_name)
        self._version = version.runtime_version
        self._answered = True
        self._networks = ()
        self._networks_read = False
        self._sandboxes.clear()
        self._nsids.clear()
        log.info(
            "CRI: %s %s at %s (CRI %s)",
            version.runtime_name,
            version.runtime_version,
            endpoint,
            version.runtime_api_version,
        )
        return client

    def _failure(self, endpoint: str, exc: grpc.RpcError) -> CollectorError:
        absent = not self.configured and not self._answered
        return describe_rpc_failure(endpoint, exc, absent=absent)

    def _drop(self) -> None:
        """Forget the channel and every cached status: the next poll starts afresh."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._sandboxes.clear()
        self._nsids.clear()

    # -- polling --------------------------------------------------------------

    def collect(self) -> SourceData:
        client = self._connect()
        import grpc  # noqa: PLC0415 - loaded by _connect already

        try:
            return self._poll(client)
        except grpc.RpcError as exc:
            self._drop()
            raise self._failure(self._endpoint, exc) from None

    def _poll(self, client: CriClient) -> SourceData:
        listing = client.list_ready_sandboxes()
        self.api_calls += 1
        items = {item.id: item for item in listing.items}
        for gone in set(self._sandboxes) - set(items):
            del self._sandboxes[gone]
            self._nsids.pop(gone, None)
        new = [
            item
            for item in items.values()
            if item.id not in self._sandboxes or self._sandboxes[item.id][0] != _sandbox_key(item)
        ]
        if new or not self._networks_read:
            status = client.status()
            self.api_calls += 1
            try:
                self._networks = parse_cni_config(status.info, self._runtime)
            except (ValueError, TypeError) as exc:
                log.warning("CRI: %s; pods' networks unnamed", exc)
                self._networks = ()
            self._networks_read = True
        for item in new:
            try:
                resp = client.sandbox_status(item.id)
            except grpc.RpcError as exc:
                if rpc_code(exc) == "NOT_FOUND":
                    continue  # removed between the list and now
                raise
            finally:
                self.api_calls += 1
            self._sandboxes[item.id] = (_sandbox_key(item), self._parse(item, resp))
            self._nsids.pop(item.id, None)
        workloads = []
        for sandbox_id, (_, sandbox) in self._sandboxes.items():
            w = sandbox.workload
            if w.network_mode == NETWORK_MODE_POD:
                w = replace(w, netns_id=self._netns_id(sandbox_id, sandbox))
            workloads.append(w)
        workloads.sort(key=lambda w: (w.name, w.id))
        networks = fill_gateways((n.network for n in self._networks), workloads)
        return SourceData(
            version=self._version,
            workloads=tuple(workloads),
            networks=tuple(sorted(networks, key=lambda n: n.name)),
            runtime=self._runtime,
        )

    def _parse(self, item: pb.PodSandbox, resp: pb.PodSandboxStatusResponse) -> Sandbox:
        """The sandbox's status; one the runtime answered badly (logged) is a pod
        without a path, still named, rather than a failure of every pod."""
        try:
            return parse_sandbox(resp, self._networks, self._runtime)
        except (ValueError, TypeError) as exc:
            meta = item.metadata
            log.warning("CRI: pod %s/%s: %s", meta.namespace, meta.name, exc)
            return listed_sandbox(item, self._runtime)

    def _netns_id(self, sandbox_id: str, sandbox: Sandbox) -> int | None:
        """The nsid of the pod's namespace, read once it exists (no CRI call)."""
        known = self._nsids.get(sandbox_id)
        if known is not None:
            return known
        paths = [f"/proc/{sandbox.pid}/ns/net"] if sandbox.pid else []
        if sandbox.netns_path:
            paths.append(sandbox.netns_path)
        nsid = first_netnsid(paths, read_netnsid)
        if nsid is not None:
            self._nsids[sandbox_id] = nsid
        return nsid

    def close(self) -> None:
        self._drop()


def make_cri(cfg: Config) -> CriSource:
    """The registry's factory: the CRI source on ``cri.endpoint`` (or the default sockets)."""
    return CriSource(str(cfg.setting("cri.endpoint")))
