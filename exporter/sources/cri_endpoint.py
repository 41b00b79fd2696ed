"""Where a CRI runtime listens, and what its gRPC failures mean.

Unset, the CRI endpoint is the first of containerd's and CRI-O's standard
sockets that exists. No gRPC here (the type is for annotations only): a host
without a CRI runtime never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.collector import CollectorAbsent, CollectorError

if TYPE_CHECKING:
    import grpc

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CRIO_SOCKET = "/var/run/crio/crio.sock"
DEFAULT_ENDPOINTS = (CONTAINERD_SOCKET, CRIO_SOCKET)


def rpc_code(exc: grpc.RpcError) -> str:
    """The gRPC status code's name (``UNAVAILABLE``...), "" if the error carries none."""
    code = exc.code() if hasattr(exc, "code") else None
    return str(getattr(code, "name", ""))


def rpc_reason(exc: grpc.RpcError) -> str:
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{rpc_code(exc) or 'ERROR'}: {details}"


def target(endpoint: str) -> str:
    """A gRPC target for a CRI endpoint given as a socket path or ``unix://`` URL."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("unix:"):
        return "unix://" + endpoint.removeprefix("unix:")
    return "unix://" + endpoint


def socket_path(endpoint: str) -> str:
    """The filesystem path of a unix-socket CRI endpoint."""
    return target(endpoint).removeprefix("unix://")


def describe_rpc_failure(endpoint: str, exc: grpc.RpcError, *, absent: bool) -> CollectorError:
    """A failed CRI call as the collector's error.

    A runtime that does not serve the CRI (e.g. Docker's containerd) is
    :class:`CollectorAbsent` when ``absent`` (the endpoint was not configured and
    has never answered), a failure otherwise.
    """
    if rpc_code(exc) == "UNIMPLEMENTED":
        msg = (
            f"{endpoint} does not serve the CRI runtime.v1 API "
            f"(e.g. Docker's containerd, whose cri plugin is disabled): {rpc_reason(exc)}"
        )
        return CollectorAbsent(msg) if absent else CollectorError(msg)
    return CollectorError(f"CRI runtime at {endpoint} is not answering ({rpc_reason(exc)})")
