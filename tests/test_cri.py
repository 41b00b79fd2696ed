"""The CRI source's pure parts and failure modes (issue 11); the lab tests are test_cri_lab.py.

Fixtures: verbose answers in the shape containerd 1.6 gives (taken from the lab
containerd of tests/crilab.py and trimmed; IPv6 added by hand). The failure
modes use real gRPC over real unix sockets: nothing listening, and a gRPC
server that serves no CRI (as Docker's own containerd, whose cri plugin is
disabled).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import cri_gen
import grpc
import lab
import pytest
from lab import FIXTURES

from exporter.cli import apply_flags, build_parser
from exporter.collector import CollectorAbsent, CollectorError
from exporter.config import Config, ConfigError, parse_config
from exporter.model.workloads import Endpoint, Network, PortBinding
from exporter.sources import cri
from exporter.sources import cri_api_pb2 as pb

CRI = FIXTURES / "cri"
SANDBOX_ID = "a026d18f8821e9a3c5e794e56686b18036649dd192b24c1336fb43b69225cd16"


def status_info() -> dict[str, str]:
    return json.loads((CRI / "containerd-status-info.json").read_text())  # type: ignore[no-any-return]


def sandbox_response(info: dict[str, object] | None = None) -> pb.PodSandboxStatusResponse:
    raw = (
        info if info is not None else json.loads((CRI / "containerd-sandbox-info.json").read_text())
    )
    resp = pb.PodSandboxStatusResponse()
    resp.status.id = SANDBOX_ID
    resp.status.metadata.name = "web"
    resp.status.metadata.namespace = "team-a"
    resp.status.network.ip = "10.244.7.2"
    resp.info["info"] = json.dumps(raw)
    return resp


# --------------------------------------------------------------------------
# The generated message classes
# --------------------------------------------------------------------------


def test_generated_code_is_what_the_proto_gives() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cri_gen.generate(Path(tmp))
        for name in cri_gen.OUTPUTS:
            assert (Path(tmp) / name).read_bytes() == (cri_gen.SOURCES / name).read_bytes(), (
                f"{name} is stale: run `python tests/cri_gen.py`"
            )


def test_field_numbers_are_the_cri_apis() -> None:
    """A few numbers the wire depends on (CRI runtime.v1), checked against the descriptors."""

    def number(message: type, field: str) -> int:
        return message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined, no-any-return]

    assert number(pb.PodSandboxConfig, "port_mappings") == 5
    assert number(pb.PodSandboxConfig, "linux") == 8
    assert number(pb.PodSandboxStatus, "linux") == 6
    assert number(pb.PodSandboxStatusResponse, "info") == 2
    assert number(pb.Namespace, "options") == 2
    assert number(pb.PortMapping, "host_ip") == 4
    assert number(pb.PodSandboxFilter, "state") == 2
    assert pb.DESCRIPTOR.package == "runtime.v1"


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def test_runtime_names() -> None:
    assert cri.runtime_of("containerd") == "containerd"
    assert cri.runtime_of("cri-o") == "cri-o"
    assert cri.runtime_of("CRI-O") == "cri-o"
    assert cri.runtime_of("") == "cri"


def test_cni_config_gives_the_pod_network_without_loopback() -> None:
    (net,) = cri.parse_cni_config(status_info(), "containerd")
    assert net.ifname == "eth0"
    assert net.network == Network(
        name="np-podnet",
        id="np-podnet",
        driver="bridge",
        bridge="cni0",
        subnets=("10.244.7.0/24", "fd00:244:7::/64"),
        gateways=("", ""),
        internal=False,
        enable_ipv6=True,
        runtime="containerd",
    )


def test_cni_network_shapes() -> None:
    # A single-plugin conf, gateway named, the bridge plugin's default bridge name.
    single = {
        "name": "k8s",
        "type": "bridge",
        "ipam": {"subnet": "10.1.0.0/16", "gateway": "10.1.0.1"},
    }
    net = cri.parse_cni_network(single, "eth0", "containerd").network
    assert (net.bridge, net.subnets, net.gateways) == ("cni0", ("10.1.0.0/16",), ("10.1.0.1",))
    # Routed (ptp, Calico-style): no bridge.
    routed = {
        "name": "k8s-pod-network",
        "plugins": [{"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.2.0.0/24"}}],
    }
    net = cri.parse_cni_network(routed, "eth0", "cri-o").network
    assert (net.driver, net.bridge, net.runtime) == ("ptp", "", "cri-o")
    # No cniconfig (CRI-O's Status): no networks.
    assert cri.parse_cni_config({}, "cri-o") == ()


def test_bad_cni_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match='CRI Status info "cniconfig" is not JSON'):
        cri.parse_cni_config({"cniconfig": "{oops"}, "containerd")


def test_sandbox_status_gives_the_pod_workload() -> None:
    networks = cri.parse_cni_config(status_info(), "containerd")
    sandbox = cri.parse_sandbox(sandbox_response(), networks, "containerd")
    assert sandbox.pid == 24612
    assert sandbox.netns_path == "/var/run/netns/cni-6254ea6d-702a-95bb-fa42-7b3ff6ba7862"
    w = sandbox.workload
    assert (w.id, w.name, w.namespace, w.pod) == (SANDBOX_ID, "team-a/web", "team-a", "web")
    assert (w.runtime, w.network_mode, w.netns_id, w.image) == ("containerd", "pod", None, "")
    assert (w.compose_project, w.compose_service) == ("", "")
    assert w.endpoints == (
        Endpoint(
            network="np-podnet",
            network_id="np-podnet",
            ip="10.244.7.2",
            ipv6="fd00:244:7::2",
            mac="66:56:8f:ee:15:79",
            gateway="10.244.7.1",
            interface="vethe9f80e2a",
        ),
    )
    # hostPorts only (a containerPort alone publishes nothing); UDP is protocol 1.
    assert w.ports == (
        PortBinding(protocol="udp", container_port=53, host_ip="127.0.0.1", host_port=5353),
        PortBinding(protocol="tcp", container_port=80, host_ip="", host_port=8080),
    )
    # Pod labels and annotations never reach the model.
    assert "do-not-export" not in repr(sandbox)
    assert "config.seen" not in repr(sandbox)


def test_host_network_pod_has_no_endpoints() -> None:
    resp = sandbox_response()
    resp.status.linux.namespaces.options.network = pb.NODE
    sandbox = cri.parse_sandbox(resp, (), "containerd")
    assert sandbox.workload.network_mode == "host"
    assert sandbox.workload.endpoints == ()


def test_without_a_cni_result_the_cri_ip_fields_are_used() -> None:
    resp = sandbox_response({"pid": 7})
    resp.status.network.additional_ips.add(ip="fd00::7")
    (ep,) = cri.parse_sandbox(resp, (), "cri-o").workload.endpoints
    assert (ep.network, ep.ip, ep.ipv6, ep.interface) == ("", "10.244.7.2", "fd00::7", "")


def test_two_pod_interfaces_name_no_veth() -> None:
    """With two networks (eth0, eth1) the CNI result cannot say which veth is whose."""
    info = json.loads((CRI / "containerd-sandbox-info.json").read_text())
    ifaces = info["cniResult"]["Interfaces"]
    ifaces["eth1"] = dict(ifaces["eth0"], Mac="66:56:8f:ee:15:80")
    ifaces["veth00000001"] = dict(ifaces["vethe9f80e2a"])
    eps = cri.parse_sandbox(sandbox_response(info), (), "containerd").workload.endpoints
    assert [(e.mac, e.interface) for e in eps] == [
        ("66:56:8f:ee:15:79", ""),
        ("66:56:8f:ee:15:80", ""),
    ]


def test_bad_info_is_a_clear_error() -> None:
    resp = sandbox_response()
    resp.info["info"] = "[1, 2]"
    with pytest.raises(ValueError, match=f"PodSandboxStatus info of {SANDBOX_ID} is list"):
        cri.parse_sandbox(resp, (), "containerd")


def test_gateways_come_from_the_pods_where_the_config_names_none() -> None:
    networks = cri.parse_cni_config(status_info(), "containerd")
    w = cri.parse_sandbox(sandbox_response(), networks, "containerd").workload
    (net,) = cri.fill_gateways((n.network for n in networks), [w])
    assert net.gateways == ("10.244.7.1", "")


# --------------------------------------------------------------------------
# Failure modes, over real unix sockets
# --------------------------------------------------------------------------


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="np-cri-test-") as tmp:
        yield Path(tmp)


def test_absent_when_no_default_socket_exists(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cri, "DEFAULT_ENDPOINTS", (str(sockdir / "containerd.sock"), str(sockdir / "crio.sock"))
    )
    src = cri.CriSource()
    with pytest.raises(CollectorAbsent, match="no CRI runtime socket"):
        src.collect()
    src.close()


def test_a_default_socket_hidden_by_permissions_is_absent_with_the_reason(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody named an endpoint and the runtime directory is private: absent, saying why."""
    containerd = str(sockdir / "containerd.sock")
    monkeypatch.setattr(cri, "DEFAULT_ENDPOINTS", (containerd,))
    monkeypatch.setattr(cri, "socket_state", lambda path: "hidden")
    src = cri.CriSource()
    with pytest.raises(CollectorAbsent) as err:
        src.collect()
    assert f"{containerd} cannot be looked for: permission denied" in str(err.value)
    src.close()


def test_configured_endpoint_missing_is_a_failure(sockdir: Path) -> None:
    src = cri.CriSource(str(sockdir / "nope.sock"))
    with pytest.raises(CollectorError, match=r"cri.endpoint .*nope.sock: no such socket") as err:
        src.collect()
    assert not isinstance(err.value, CollectorAbsent)


@pytest.fixture
def no_cri_server(sockdir: Path) -> Iterator[str]:
    """A gRPC server on a unix socket that serves no CRI service at all."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    path = str(sockdir / "not-cri.sock")
    server.add_insecure_port(f"unix://{path}")
    server.start()
    try:
        yield path
    finally:
        server.stop(None)


def test_a_socket_without_the_cri_is_absent_unless_configured(
    no_cri_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cri, "DEFAULT_ENDPOINTS", (no_cri_server,))
    with pytest.raises(CollectorAbsent, match=r"does not serve the CRI runtime\.v1 API"):
        cri.CriSource().collect()
    with pytest.raises(CollectorError, match="does not serve the CRI") as err:
        cri.CriSource(no_cri_server).collect()
    assert not isinstance(err.value, CollectorAbsent)


def test_a_dead_socket_is_a_failure_naming_it(sockdir: Path) -> None:
    path = sockdir / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # exists, nobody listens
    s.close()
    src = cri.CriSource(str(path), timeout=2)
    with pytest.raises(CollectorError, match=f"CRI runtime at {path} is not answering"):
        src.collect()


def test_grpc_is_not_loaded_without_a_cri_socket(sockdir: Path) -> None:
    """grpc costs ~20 MB resident: a host without a CRI runtime never imports it."""
    code = (
        "import sys\n"
        "from exporter.sources import cri\n"
        f"cri.DEFAULT_ENDPOINTS = ({str(sockdir / 'none.sock')!r},)\n"
        "src = cri.CriSource()\n"
        "try:\n"
        "    src.collect()\n"
        "except cri.CollectorAbsent:\n"
        "    pass\n"
        "assert 'grpc' not in sys.modules, 'grpc imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=cri_gen.SOURCES.parent.parent)


# --------------------------------------------------------------------------
# A runtime that answers oddly: a small CRI server over real gRPC
# --------------------------------------------------------------------------


class FakeRuntime:
    """Serves Version, Status, ListPodSandbox and PodSandboxStatus from plain data."""

    def __init__(
        self, name: str, sandboxes: dict[str, dict[str, object]], status_info: dict[str, str]
    ) -> None:
        self.name = name
        self.sandboxes = sandboxes  # id -> {"name", "namespace", "ip", "info" (JSON text)}
        self.status_info = status_info
        self.calls: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(method: str, req: type, fn: object) -> grpc.RpcMethodHandler:
            def call(request: object, context: object) -> object:
                self.calls.append(method)
                return fn(request)  # type: ignore[operator]

            return grpc.unary_unary_rpc_method_handler(
                call,
                request_deserializer=req.FromString,
                response_serializer=lambda m: m.SerializeToString(),  # type: ignore[attr-defined]
            )

        def version(_: object) -> pb.VersionResponse:
            return pb.VersionResponse(
                version="0.1.0",
                runtime_name=self.name,
                runtime_version="9.9",
                runtime_api_version="v1",
            )

        def status(_: object) -> pb.StatusResponse:
            resp = pb.StatusResponse()
            resp.info.update(self.status_info)
            return resp

        def listing(_: object) -> pb.ListPodSandboxResponse:
            return pb.ListPodSandboxResponse(
                items=[
                    pb.PodSandbox(
                        id=sid,
                        metadata=pb.PodSandboxMetadata(
                            name=str(s["name"]), namespace=str(s["namespace"])
                        ),
                        created_at=1,
                    )
                    for sid, s in self.sandboxes.items()
                ]
            )

        def sandbox_status(req: pb.PodSandboxStatusRequest) -> pb.PodSandboxStatusResponse:
            s = self.sandboxes[req.pod_sandbox_id]
            resp = pb.PodSandboxStatusResponse()
            resp.status.id = req.pod_sandbox_id
            resp.status.metadata.name = str(s["name"])
            resp.status.metadata.namespace = str(s["namespace"])
            resp.status.network.ip = str(s["ip"])
            resp.info["info"] = str(s["info"])
            return resp

        return grpc.method_handlers_generic_handler(
            "runtime.v1.RuntimeService",
            {
                "Version": unary("Version", pb.VersionRequest, version),
                "Status": unary("Status", pb.StatusRequest, status),
                "ListPodSandbox": unary("ListPodSandbox", pb.ListPodSandboxRequest, listing),
                "PodSandboxStatus": unary(
                    "PodSandboxStatus", pb.PodSandboxStatusRequest, sandbox_status
                ),
            },
        )


@pytest.fixture
def serve(sockdir: Path) -> Iterator[object]:
    servers: list[grpc.Server] = []

    def start(runtime: FakeRuntime) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((runtime.handler(),))
        path = str(sockdir / f"fake-{len(servers)}.sock")
        server.add_insecure_port(f"unix://{path}")
        server.start()
        servers.append(server)
        return path

    yield start
    for server in servers:
        server.stop(None)


def test_one_pod_answered_badly_does_not_hide_the_others(serve: Any) -> None:
    good = (CRI / "containerd-sandbox-info.json").read_text()
    runtime = FakeRuntime(
        "containerd",
        {
            "1" * 64: {"name": "web", "namespace": "team-a", "ip": "10.244.7.2", "info": good},
            "2" * 64: {
                "name": "odd",
                "namespace": "team-a",
                "ip": "10.244.7.3",
                "info": "{not json",
            },
        },
        {"cniconfig": "[garbage"},
    )
    src = cri.CriSource(serve(runtime))
    data = src.collect()
    by_name = {w.name: w for w in data.workloads}
    assert sorted(by_name) == ["team-a/odd", "team-a/web"]
    assert by_name["team-a/odd"].endpoints == ()
    (ep,) = by_name["team-a/web"].endpoints
    # No CNI configuration: no network name, and cni0 cannot be told from the veth.
    assert (ep.ip, ep.network, ep.interface) == ("10.244.7.2", "", "")
    assert data.networks == ()


def test_a_runtime_without_cni_details_still_costs_one_call_per_poll(serve: Any) -> None:
    """CRI-O-like: no cniconfig in Status, no CNI result in the sandbox info."""
    runtime = FakeRuntime(
        "cri-o",
        {
            "3" * 64: {
                "name": "api",
                "namespace": "team-b",
                "ip": "10.85.0.4",
                "info": json.dumps({"pid": 1}),
            }
        },
        {},
    )
    src = cri.CriSource(serve(runtime))
    data = src.collect()
    assert (data.runtime, data.version) == ("cri-o", "9.9")
    (w,) = data.workloads
    assert (w.runtime, w.name, w.endpoints[0].ip) == ("cri-o", "team-b/api", "10.85.0.4")
    runtime.calls.clear()
    for _ in range(3):
        src.collect()
    assert runtime.calls == ["ListPodSandbox"] * 3


def test_the_endpoint_setting_from_file_and_flag() -> None:
    cfg = parse_config({"cri": {"endpoint": "unix:///run/k3s/containerd/containerd.sock"}}, "f")
    src = cri.make_cri(cfg)
    assert src.configured == "unix:///run/k3s/containerd/containerd.sock"
    assert cri.socket_path(src.configured) == "/run/k3s/containerd/containerd.sock"
    cfg = apply_flags(Config(), build_parser().parse_args(["--cri.endpoint", "/x/crio.sock"]))
    assert cri.make_cri(cfg).configured == "/x/crio.sock"
    assert cri.make_cri(Config()).configured == ""
    with pytest.raises(ConfigError, match=r"cri\.endpoint"):
        parse_config({"cri": {"endpoint": 5}}, "f")
    with pytest.raises(ConfigError, match=r"cri\.socket"):
        parse_config({"cri": {"socket": "/x"}}, "f")


def test_a_socket_the_exporter_may_not_look_for_is_a_failure_not_absence(
    request: pytest.FixtureRequest,
) -> None:
    """As nobody, behind a directory it cannot search: a named endpoint fails naming the
    permission; a default one is 'hidden' (reported with the absence, see CriSource)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    with tempfile.TemporaryDirectory(prefix="np-sock-", dir="/tmp") as top:
        _check_socket_lookup_as_nobody(Path(top), lab.public_install(request.config))


def _check_socket_lookup_as_nobody(tmp_path: Path, public: lab.PublicInstall) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    code = (
        "from exporter.sources.base import socket_exists, socket_state\n"
        "from exporter.collector import CollectorError\n"
        f"print(socket_exists({str(tmp_path / 'absent.sock')!r}, 'x'))\n"
        f"print(socket_state({str(hidden / 'containerd.sock')!r}))\n"
        f"try:\n    socket_exists({str(hidden / 'containerd.sock')!r}, 'CRI runtime socket')\n"
        "except CollectorError as exc:\n    print(exc)\n"
    )
    tmp_path.chmod(0o711)  # nobody may pass through tmp_path, not into private/
    out = subprocess.run(
        [*lab.as_user([]), *public.argv("-c", code)],
        capture_output=True, text=True, timeout=60, cwd=public.dir, env=public.env(), check=False,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[0] == "False", out.stderr  # a missing socket where it may look: absent
    assert lines[1] == "hidden"
    assert lines[2].startswith(
        f"CRI runtime socket: {hidden}/containerd.sock cannot be looked for: permission denied"
    )
