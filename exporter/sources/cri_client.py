"""A small client of the Kubernetes CRI RuntimeService over its unix socket (gRPC).

Message classes come from ``cri_api.proto`` (this project's own subset of the
CRI ``runtime.v1`` API, generated into ``cri_api_pb2``); the calls are plain
unary gRPC methods named ``/runtime.v1.RuntimeService/<Method>``, so no
generated service stubs are needed.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from exporter.sources import cri_api_pb2 as pb
from exporter.sources.cri_endpoint import target

SERVICE = "/runtime.v1.RuntimeService/"
M = TypeVar("M", bound=Message)


class CriClient:
    """One gRPC channel to a CRI runtime; every call has a deadline of ``timeout`` s."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        # No proxies on a unix socket; no retries on our side: a failed call fails the poll.
        self._channel = grpc.insecure_channel(
            target(endpoint), options=[("grpc.enable_http_proxy", 0)]
        )

    def call(self, method: str, request: Message, response: type[M]) -> M:
        """``method`` (e.g. ``"ListPodSandbox"``) with ``request``; raises grpc.RpcError."""
        stub: Any = self._channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        result: M = stub(request, timeout=self.timeout)
        return result

    def version(self) -> pb.VersionResponse:
        return self.call("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)

    def list_ready_sandboxes(self) -> pb.ListPodSandboxResponse:
        request = pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
        )
        return self.call("ListPodSandbox", request, pb.ListPodSandboxResponse)

    def sandbox_status(self, sandbox_id: str) -> pb.PodSandboxStatusResponse:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        return self.call("PodSandboxStatus", request, pb.PodSandboxStatusResponse)

    def status(self) -> pb.StatusResponse:
        return self.call("Status", pb.StatusRequest(verbose=True), pb.StatusResponse)

    def close(self) -> None:
        self._channel.close()
