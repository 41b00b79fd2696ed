"""A real Kubernetes node's pod network: containerd's CRI plugin and the CNI plugins.

As ``design/kubernetes-lab.md`` describes. A lab network namespace is the
node; a holder process (``sleep``) keeps a private mount namespace in which
``/run`` is a bind mount of ``D/run`` and ``/var/lib`` an overlay with its
upper layer in ``D/varlib``, so containerd's shim sockets, CNI cache and IPAM
state stay out of the machine's own directories. containerd is started into
the holder's mount namespace and the node's network namespace, with root,
state and socket under D, so it can be stopped and started again while the
pods (and their netns mounts) live on.

Pods are run the way kubelet runs them: a CRI client (this project's own
``cri_api.proto``) calls ``RunPodSandbox`` with port mappings and
``namespace_options.network = POD``, ``StopPodSandbox`` and
``RemovePodSandbox``. The sandbox image is an OCI image built here from the
static busybox (entrypoint ``sleep``) and imported with ``ctr``; no registry.
The CNI plugins (``/usr/lib/cni``: bridge with host-local IPAM, masquerade and
hairpin, and portmap) make the pods' veths, the bridge and the nat rules in the
node namespace.

Teardown removes the pods, stops containerd and the holder by PID, deletes the
namespace, the cgroups runc made under the lab's cgroup parent and D, also when
a test failed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lab
import pytest
from dockerlab import BUSYBOX_APPLETS, REPO, NetnsPython, _pid_alive, poll_until

from exporter.sources import cri_api_pb2 as pb
from exporter.sources.cri_client import CriClient

CNI_BIN = Path("/usr/lib/cni")
IMAGE_REF = "docker.io/netpath-test/busybox:latest"
NETWORK = "np-podnet"
BRIDGE = "cni0"
SUBNET = "10.244.7.0/24"
GATEWAY = "10.244.7.1"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def need_containerd() -> None:
    """Skip (with a reason) where the CRI lab cannot run."""
    lab.need_root()
    for tool in ("containerd", "ctr", "runc", "nsenter", "unshare", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"CRI lab tests need `{tool}` on PATH")
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN / plugin).exists():
            pytest.skip(f"CRI lab tests need the CNI plugin {CNI_BIN / plugin}")


# --------------------------------------------------------------------------
# The sandbox image: an OCI image layout holding the static busybox
# --------------------------------------------------------------------------


def _blob(blobs: dict[str, bytes], data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def busybox_image_tar(ref: str = IMAGE_REF) -> bytes:
    """An OCI image archive (for ``ctr images import``): busybox, entrypoint ``sleep``."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            layer.addfile(info)
        _tar_add(layer, "bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            layer.addfile(info)
    layer_tar = layer_buf.getvalue()
    blobs: dict[str, bytes] = {}
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer_digest, layer_size = _blob(blobs, gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_digest, config_size = _blob(blobs, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _tar_add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _tar_add(tar, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            _tar_add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
    return out.getvalue()


# --------------------------------------------------------------------------
# containerd's configuration and the CNI network
# --------------------------------------------------------------------------


def containerd_config(d: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{IMAGE_REF}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_hugetlb_controller = true
  enable_selinux = false

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{d}/cni/net.d"
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
"""


ROUTED_NETWORK = "np-routed"
ROUTED_SUBNET = "10.244.9.0/24"


def routed_conflist(network: str = ROUTED_NETWORK, subnet: str = ROUTED_SUBNET) -> dict[str, Any]:
    """A routed pod network (Calico's shape): ptp makes a veth and a /32 route per pod."""
    return {
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def conflist(network: str = NETWORK, bridge: str = BRIDGE, subnet: str = SUBNET) -> dict[str, Any]:
    """The CNI reference plugins as a cluster's bridge CNI would chain them."""
    return {
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


# --------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod sandbox run in the lab, as containerd reported it right after it started."""

    id: str
    namespace: str
    name: str
    pid: int
    ip: str
    info: Mapping[str, Any] = field(repr=False)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def netns(self) -> str:
        """The pod's network namespace, reachable from any mount namespace."""
        return f"/proc/{self.pid}/ns/net"

    def exec(self, *cmd: str, check: bool = True, input: str | None = None) -> str:
        """Run a host command inside the pod's network namespace."""
        return lab.run(["nsenter", f"--net={self.netns}", *cmd], check=check, input=input)

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["nsenter", f"--net={self.netns}", *cmd], **kwargs)

    def eth0_iflink(self) -> int:
        """The host-side ifindex of the pod's eth0 peer, asked over netlink (not sysfs)."""
        links = json.loads(self.exec("ip", "-j", "link", "show", "eth0"))
        return int(links[0]["link_index"])

    def cni_interfaces(self) -> dict[str, Any]:
        """containerd's ``cniResult.Interfaces`` of this pod."""
        result = self.info.get("cniResult") or {}
        return dict(result.get("Interfaces") or {})

    def host_veth(self) -> str:
        """The host veth the CNI result names (the interface with no sandbox, not the bridge)."""
        names = [
            name
            for name, iface in self.cni_interfaces().items()
            if not (iface or {}).get("Sandbox") and name != BRIDGE
        ]
        assert len(names) == 1, f"CNI result of {self.full_name}: {self.cni_interfaces()}"
        return names[0]


class CriLab:
    """One containerd with its CRI plugin in a lab node namespace (see the module doc)."""

    def __init__(
        self, cni: Mapping[str, Any] | None = None, netns: lab.Netns | None = None
    ) -> None:
        """``cni``: the conflist (default :func:`conflist`); ``netns``: an existing node
        namespace to share (e.g. a lab dockerd's), left to its owner; default: a new one."""
        self.cni = dict(cni) if cni is not None else conflist()
        self.tag = f"np-cri-{secrets.token_hex(3)}"
        self._own_netns = netns is None
        self.netns = netns if netns is not None else lab.Netns("cri")
        self.dir = Path(tempfile.mkdtemp(prefix="np-cri-", dir="/tmp"))
        self.sock = str(self.dir / "containerd.sock")
        self.log = self.dir / "containerd.log"
        self.cgroup_parent = f"/{self.tag}"
        self._netns_made = False
        self._holder: subprocess.Popen[bytes] | None = None
        self._containerd: subprocess.Popen[bytes] | None = None
        self._client: CriClient | None = None
        self.pods: dict[str, Pod] = {}
        self.image_imported = False

    # -- processes ----------------------------------------------------------

    @property
    def holder_pid(self) -> int:
        assert self._holder is not None
        return self._holder.pid

    @property
    def containerd_pid(self) -> int | None:
        return None if self._containerd is None else self._containerd.pid

    def setup(self) -> None:
        """The node namespace, D's layout, the conflist and the mount-namespace holder."""
        if self._own_netns:
            self.netns.create()
            self._netns_made = True
        for sub in ("run", "varlib/upper", "varlib/work", "cni/net.d", "root", "state", "opt"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "cni/net.d/10-np.conflist").write_text(json.dumps(self.cni, indent=2))
        (self.dir / "config.toml").write_text(containerd_config(self.dir))
        ready = self.dir / "holder-ready"
        d = self.dir
        script = (
            f"mount --bind {d}/run /run && "
            f"mount -t overlay np-cri-varlib -o lowerdir=/var/lib,upperdir={d}/varlib/upper,"
            f"workdir={d}/varlib/work /var/lib && "
            f"touch {ready} && exec sleep infinity"
        )
        self._holder = subprocess.Popen(
            [
                "nsenter",
                f"--net={self.netns.path}",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        holder = self._holder

        def holding() -> bool:
            if holder.poll() is not None:
                err = holder.stderr.read().decode(errors="replace") if holder.stderr else ""
                raise RuntimeError(f"mount namespace holder exited ({holder.returncode}): {err}")
            return ready.exists()

        poll_until("the mount namespace holder", holding, timeout=10, interval=0.02)

    def start(self, timeout: float = 30.0) -> None:
        """Start containerd in the holder's mount namespace; wait until its CRI answers."""
        cmd = [
            "nsenter",
            f"--mount=/proc/{self.holder_pid}/ns/mnt",
            f"--net={self.netns.path}",
            "containerd",
            "--config",
            str(self.dir / "config.toml"),
        ]
        with open(self.log, "ab") as log:
            self._containerd = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self._containerd
        client = self.client()

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({proc.returncode}):\n{self.log_tail()}")
            if not os.path.exists(self.sock):
                return False
            try:
                client.version()
                # NetworkReady: the CNI config is loaded (else RunPodSandbox fails).
                conds = client.status().status.conditions
            except Exception:
                return False
            return all(c.status for c in conds)

        poll_until("containerd's CRI to answer", answering, timeout=timeout, interval=0.05)

    def running(self) -> bool:
        pid = self.containerd_pid
        return pid is not None and _pid_alive(pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop containerd by its PID (the pods, their shims and netns mounts live on)."""
        proc = self._containerd
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._containerd = None
        with suppress(FileNotFoundError):
            os.unlink(self.sock)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- CRI --------------------------------------------------------------

    def client(self) -> CriClient:
        if self._client is None:
            self._client = CriClient(self.sock, timeout=30)
        return self._client

    def ctr(self, *args: str, input: bytes | None = None) -> str:
        proc = subprocess.run(
            ["ctr", "--address", self.sock, "-n", "k8s.io", *args],
            input=input,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"ctr {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode(errors="replace")

    def import_image(self) -> None:
        if self.image_imported:
            return
        archive = self.dir / "busybox-oci.tar"
        archive.write_bytes(busybox_image_tar())
        self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))
        self.image_imported = True

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        ports: Sequence[tuple[int, int]] = (),
        *,
        protocol: int = pb.TCP,
    ) -> Pod:
        """RunPodSandbox like kubelet: pod network namespace, ``ports`` as (hostPort, port)."""
        uid = secrets.token_hex(8)
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname=name,
            log_directory=str(self.dir / "logs" / uid),
            port_mappings=[
                pb.PortMapping(protocol=protocol, container_port=cport, host_port=hport)
                for hport, cport in ports
            ],
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=f"{self.cgroup_parent}/pod{uid}",
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD
                    )
                ),
            ),
        )
        resp = self.client().call(
            "RunPodSandbox", pb.RunPodSandboxRequest(config=config), pb.RunPodSandboxResponse
        )
        sandbox_id = resp.pod_sandbox_id
        status = self.client().sandbox_status(sandbox_id)
        info = json.loads(status.info["info"])
        pod = Pod(
            id=sandbox_id,
            namespace=namespace,
            name=name,
            pid=int(info["pid"]),
            ip=status.status.network.ip,
            info=info,
        )
        self.pods[sandbox_id] = pod
        return pod

    def remove_pod(self, pod: Pod) -> None:
        """StopPodSandbox + RemovePodSandbox (chains, veth, cache file and IP go with it)."""
        client = self.client()
        client.call(
            "StopPodSandbox",
            pb.StopPodSandboxRequest(pod_sandbox_id=pod.id),
            pb.StopPodSandboxResponse,
        )
        client.call(
            "RemovePodSandbox",
            pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id),
            pb.RemovePodSandboxResponse,
        )
        self.pods.pop(pod.id, None)

    def remove_all(self) -> None:
        for sandbox in (
            self.client()
            .call("ListPodSandbox", pb.ListPodSandboxRequest(), pb.ListPodSandboxResponse)
            .items
        ):
            pod = self.pods.get(sandbox.id)
            if pod is None:
                pod = Pod(sandbox.id, sandbox.metadata.namespace, sandbox.metadata.name, 0, "", {})
            self.remove_pod(pod)

    # -- the node namespace ---------------------------------------------------

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def python(self, setup: str = "") -> NetnsPython:
        """A long-lived Python in the node namespace (the exporter's view of the node)."""
        return NetnsPython(self, setup)  # type: ignore[arg-type]

    def exec(self, *cmd: str, check: bool = True, input: str | None = None) -> str:
        return self.netns.exec(*cmd, check=check, input=input)

    def host_links(self) -> list[dict[str, Any]]:
        return json.loads(self.exec("ip", "-d", "-j", "link"))  # type: ignore[no-any-return]

    def iptables_save(self, table: str = "nat") -> str:
        return self.exec("iptables-save", "-c", "-t", table)

    def cni_cache(self) -> dict[str, dict[str, Any]]:
        """The CNI cache files (``cni/results``) by file name."""
        results = self.dir / "varlib/upper/cni/results"
        if not results.is_dir():
            return {}
        return {p.name: json.loads(p.read_text()) for p in sorted(results.iterdir())}

    # -- teardown -----------------------------------------------------------

    def _mount_ns_pids(self) -> list[int]:
        """Processes in the lab's private mount namespace (containerd, shims, the holder)."""
        if self._holder is None or self._holder.poll() is not None:
            return []
        try:
            ours = os.readlink(f"/proc/{self.holder_pid}/ns/mnt")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == ours:
                    pids.append(int(entry))
        return pids

    def _remove_cgroups(self) -> None:
        """rmdir what runc made under the lab's cgroup parent (deepest first)."""
        if not CGROUP_ROOT.is_dir():
            return
        for controller in CGROUP_ROOT.iterdir():
            parent = controller / self.cgroup_parent.lstrip("/")
            if not parent.is_dir():
                continue
            dirs = sorted(
                (p for p in parent.rglob("*") if p.is_dir()),
                key=lambda p: len(p.parts),
                reverse=True,
            )
            for d in [*dirs, parent]:
                with suppress(OSError):
                    d.rmdir()

    def close(self) -> None:
        """Tear everything down; safe after a partial start-up and twice."""
        try:
            if self.running():
                with suppress(Exception):
                    self.remove_all()
        finally:
            try:
                self.stop()
                if self._client is not None:
                    self._client.close()
                    self._client = None
                # Shims (and their pods) left behind by a failed removal; the holder last.
                holder = self._holder
                for pid in self._mount_ns_pids():
                    if holder is not None and pid == holder.pid:
                        continue
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if holder is not None:
                    if holder.poll() is None:
                        holder.kill()
                    holder.wait(timeout=10)
                    if holder.stderr is not None:
                        holder.stderr.close()
                    self._holder = None
            finally:
                self._remove_cgroups()
                if self._netns_made:
                    self.netns.delete()
                    self._netns_made = False
                shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def cri_lab(*, image: bool = True, cni: Mapping[str, Any] | None = None) -> Iterator[CriLab]:
    """A started lab containerd (with the busybox sandbox image), torn down on exit.

    ``cni``: the conflist (default: bridge + portmap, :func:`conflist`).
    """
    cl = CriLab(cni)
    try:
        cl.setup()
        cl.start()
        if image:
            cl.import_image()
        yield cl
    finally:
        cl.close()


# --------------------------------------------------------------------------
# The real exporter on the lab node, scraped over HTTP
# --------------------------------------------------------------------------

Samples = dict[str, list[tuple[dict[str, str], float]]]


class NodeExporter:
    """``python -m exporter`` in the node namespace, on the lab's CRI socket."""

    def __init__(self, cl: CriLab, *flags: str, docker_host: str = "") -> None:
        """``docker_host``: also read that dockerd (else the docker collector is off)."""
        self.cl = cl
        self.port = lab.free_port()  # ports are per namespace; any plausible number will do
        docker = ["--docker.host", docker_host] if docker_host else ["--no-collector.docker"]
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={cl.netns.path}", sys.executable, "-m", "exporter",
             f"--web.listen-address=127.0.0.1:{self.port}", "--poll.interval=300ms",
             "--cri.endpoint", cl.sock, *docker, *flags],
            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def text(self) -> str:
        def answer() -> str | None:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"exporter exited ({self.proc.returncode}): {err}")
            r = subprocess.run(
                ["nsenter", f"--net={self.cl.netns.path}", "curl", "-sf", "--max-time", "5",
                 f"http://127.0.0.1:{self.port}/metrics"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return r.stdout if r.returncode == 0 else None

        return poll_until("the exporter to answer", answer, timeout=30)  # type: ignore[no-any-return]

    def scrape(self) -> Samples:
        return lab.parse_exposition(self.text())

    def scrape_after(self, t: float) -> tuple[float, Samples]:
        """The first exposition of a poll that finished after Unix time ``t``."""

        def later() -> tuple[float, Samples] | None:
            got = self.scrape()
            ts = got.get("netpath_poll_timestamp_seconds", [({}, 0.0)])[0][1]
            return (ts, got) if ts > t else None

        return poll_until("a poll to finish", later, timeout=30, interval=0.05)  # type: ignore[no-any-return]

    def within_two_polls(self, check: Any) -> Samples:
        """The exposition of the second poll finishing after now; ``check`` must hold by then."""
        ts, got = self.scrape_after(time.time())
        if check(got):
            return got
        _, got = self.scrape_after(ts)
        assert check(got), "not within two polls"
        return got

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def success(got: Samples, collector: str) -> float:
    (value,) = [
        v for labels, v in got["netpath_collector_success"] if labels["collector"] == collector
    ]
    return value


def series(got: Samples, name: str, **match: str) -> list[dict[str, str]]:
    return [
        labels for labels, _ in got.get(name, []) if all(labels[k] == v for k, v in match.items())
    ]


def value(got: Samples, name: str, **match: str) -> float:
    """The one sample of ``name`` whose labels include ``match``."""
    found = [v for labels, v in got.get(name, []) if all(labels[k] == v for k, v in match.items())]
    assert len(found) == 1, f"{name} {match}: {len(found)} series"
    return found[0]
