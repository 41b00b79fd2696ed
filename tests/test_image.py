"""The container image, built by ``./dev.sh image`` and run the way users run it.

One lab dockerd for this module (its own, not the session's shared one: the
module adds an iptables-legacy rule to its namespace so that the CAP_NET_RAW
row of the privilege table has something to read). ``./dev.sh image`` builds
``netpath-exporter:VERSION`` into it once, with no registry: the Debian base is
made with mmdebstrap (the root filesystem tarball cached under the session's
temp dir) and the wheels are built on this machine.

- Docker: the container runs with exactly the settings of the exporter's
  service in ``deploy/compose/docker-compose.yml``, read from the file and
  translated key by key to ``docker run`` (an unknown key fails the test, so the
  two cannot drift); the Docker socket is the lab's, mounted where the compose
  file mounts the host's.
- Kubernetes: the same image, saved from the lab dockerd and imported into the
  lab containerd (``ctr -n k8s.io images import``), runs as a pod through the
  CRI the way kubelet would run the DaemonSet of ``deploy/kubernetes/``: the
  pod's and the container's settings are read from the manifest and translated
  to the CRI messages (hostNetwork and hostPID -> NODE namespaces, the security
  context, the hostPath volumes). The node's containerd socket appears at its
  standard path inside the lab's ``/run``, as on a node.
- Without each of the three capabilities in turn, the container degrades as the
  README's privilege table says (the table's own text is checked too).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import crilab
import dockerlab
import lab
import pytest
import yaml

from exporter import __version__
from exporter.sources import cri_api_pb2 as pb

pytestmark = [pytest.mark.image, pytest.mark.lab, pytest.mark.docker]

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
DAEMONSET = REPO / "deploy" / "kubernetes" / "daemonset.yaml"
KUSTOMIZATION = REPO / "deploy" / "kubernetes" / "kustomization.yaml"
CAPS = ("NET_ADMIN", "NET_RAW", "SYS_PTRACE")
LEGACY_COMMENT = "np-image-lab"
WORKLOADS = ("img-a", "img-b", "img-c")

Samples = dict[str, list[tuple[dict[str, str], float]]]


def need_image_tools() -> None:
    dockerlab.need_dockerd()
    for tool in ("mmdebstrap", "curl", "iptables-legacy"):
        if shutil.which(tool) is None:
            pytest.skip(f"image tests need `{tool}` (./dev.sh test installs it)")


def caps(names: list[str]) -> set[str]:
    """Capability names without the ``CAP_`` prefix (Docker adds it, compose has none)."""
    return {n.removeprefix("CAP_") for n in names}


def success(got: Samples) -> dict[str, float]:
    return {lb["collector"]: v for lb, v in got.get("netpath_collector_success", [])}


def rules(got: Samples) -> set[tuple[str, str, str]]:
    return {
        (lb["backend"], lb["chain"], lb["rule"])
        for lb, _ in got.get("netpath_firewall_rule_packets_total", [])
    }


def interfaces(got: Samples) -> dict[str, dict[str, str]]:
    return {lb["container"]: lb for lb, _ in got.get("netpath_container_interface_info", [])}


def curl(netns: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", "curl", "-sf", "--max-time", "5", url],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def listen_port(args: list[str]) -> int:
    """The port of ``--web.listen-address=[HOST]:PORT`` in the deploy file's arguments."""
    (addr,) = [a.split("=", 1)[1] for a in args if a.startswith("--web.listen-address=")]
    return int(addr.rsplit(":", 1)[1])


def scrape_when(netns: str, port: int, what: str, ok: Any, logs: Any) -> Samples:
    """Scrape ``/metrics`` inside ``netns`` until ``ok(samples)``; ``logs()`` explains a timeout."""
    last: list[Samples] = [{}]

    def attempt() -> Samples | None:
        proc = curl(netns, f"http://127.0.0.1:{port}/metrics")
        if proc.returncode != 0:
            return None
        last[0] = got = lab.parse_exposition(proc.stdout)
        return got if ok(got) else None

    try:
        return dockerlab.poll_until(what, attempt, timeout=60)  # type: ignore[no-any-return]
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last success: {success(last[0])}\n{logs()}") from None


# ---------------------------------------------------------------------------
# The lab dockerd, the image, the workloads
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_docker() -> Iterator[dockerlab.DockerLab]:
    need_image_tools()
    with dockerlab.docker_lab() as dl:
        # An iptables-legacy rule (a counter, no target) in the lab host's raw table.
        dl.exec("iptables-legacy", "-t", "raw", "-A", "PREROUTING",
                "-m", "comment", "--comment", LEGACY_COMMENT)  # fmt: skip
        yield dl


@pytest.fixture(scope="module")
def image(lab_docker: dockerlab.DockerLab, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``./dev.sh image`` into the lab dockerd: no pull, the mmdebstrap base, once."""
    rootfs = tmp_path_factory.mktemp("image-base") / "rootfs-bookworm.tar"
    env = lab_docker.env() | {"IMAGE_PULL": "never", "IMAGE_ROOTFS": str(rootfs)}
    proc = subprocess.run(
        [str(REPO / "dev.sh"), "image"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = proc.stdout.strip().splitlines()[-1]
    assert tag == f"netpath-exporter:{__version__}"
    assert rootfs.stat().st_size > 0
    size, base = (
        int(lab_docker.docker("image", "inspect", "-f", "{{.Size}}", name))
        for name in (tag, "netpath-exporter-base:bookworm")
    )
    print(f"\n{tag}: {size / 1e6:.0f} MB (base {base / 1e6:.0f} MB); ./dev.sh image said:")
    print(proc.stderr)
    return tag


@pytest.fixture(scope="module")
def workloads(lab_docker: dockerlab.DockerLab) -> dict[str, str]:
    """Three lab containers (two on the default bridge, one on a user network) -> host veth."""
    lab_docker.docker("network", "create", "--subnet", "10.214.5.0/24", "imgnet")
    for name in WORKLOADS:
        net = ("--network", "imgnet") if name == "img-c" else ()
        lab_docker.run_sleeper(name, *net)
    by_index = {link["ifindex"]: link["ifname"] for link in lab_docker.host_links()}
    return {
        name: by_index[int(lab_docker.docker("exec", name, "cat", "/sys/class/net/eth0/iflink"))]
        for name in WORKLOADS
    }


def test_the_image_holds_the_tools_and_nothing_writes_to_it(
    lab_docker: dockerlab.DockerLab, image: str
) -> None:
    found = lab_docker.docker(
        "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "sh", image, "-c",
        "for t in iptables-nft-save ip6tables-nft-save iptables-legacy-save"
        " ip6tables-legacy-save nft netpath-exporter; do command -v $t; done;"
        " python3 -c 'import sys; print(sys.version)'",
    ).split()  # fmt: skip
    assert [Path(p).name for p in found[:6]] == [
        "iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save",
        "ip6tables-legacy-save", "nft", "netpath-exporter",
    ], found  # fmt: skip
    assert found[6].startswith("3.11."), found
    # Every runtime dependency imports (grpcio needs libstdc++, which minimal Debian lacks).
    lab_docker.docker(
        "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python3", image, "-c",
        "import grpc, google.protobuf, yaml, bcrypt, docker, isal.isal_zlib, h11;"
        " import exporter.sources.cri_client, exporter.cli",
    )  # fmt: skip
    version = lab_docker.docker("run", "--rm", "--network", "none", "--read-only", image,
                                "--version")  # fmt: skip
    assert version.strip() == f"netpath-exporter {__version__}"
    config = lab_docker.inspect(image)[0]["Config"]
    assert config["Entrypoint"] == ["netpath-exporter"] and config["User"] == "0:0"


# ---------------------------------------------------------------------------
# Docker: as deploy/compose runs it
# ---------------------------------------------------------------------------


def compose_service() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]["netpath-exporter"]  # type: ignore[no-any-return]


def docker_run_args(svc: dict[str, Any], docker_sock: str, without: str = "") -> list[str]:
    """The compose service's settings as ``docker run`` options (``without``: a cap not added)."""
    args: list[str] = []
    for key, value in svc.items():
        if key in ("build", "image", "command"):
            continue  # the image is built by ./dev.sh image; image and command are used below
        if key == "restart":
            continue  # a test container must not come back after the test removes it
        if key == "network_mode":
            args += ["--network", value]
        elif key == "pid":
            args += ["--pid", value]
        elif key == "cap_drop":
            args += [a for cap in value for a in ("--cap-drop", cap)]
        elif key == "cap_add":
            args += [a for cap in value if cap != without for a in ("--cap-add", cap)]
        elif key == "read_only":
            args += ["--read-only"] if value else []
        elif key == "security_opt":
            args += [a for opt in value for a in ("--security-opt", opt)]
        elif key == "volumes":
            for vol in value:
                assert vol["type"] == "bind" and vol["source"] == "/var/run/docker.sock", vol
                ro = ",readonly" if vol.get("read_only") else ""
                args += ["--mount", f"type=bind,source={docker_sock},target={vol['target']}{ro}"]
        else:
            raise AssertionError(f"compose key {key!r} is not translated to docker run here")
    return args


class ExporterContainer:
    """The image run on the lab dockerd with the compose service's settings."""

    def __init__(self, dl: dockerlab.DockerLab, image: str, without: str = "") -> None:
        svc = compose_service()
        assert svc["image"] == image, "compose names the image ./dev.sh image builds"
        self.dl = dl
        self.name = f"np-exporter-{secrets.token_hex(3)}"
        self.port = listen_port(svc["command"])
        self.args = docker_run_args(svc, dl.sock, without)
        dl.docker("run", "-d", "--name", self.name, *self.args, image, *svc["command"])

    def scrape_when(self, what: str, ok: Any) -> Samples:
        def logs() -> str:
            proc = subprocess.run(["docker", "logs", self.name], env=self.dl.env(),
                                  capture_output=True, text=True, check=False)  # fmt: skip
            return proc.stdout + proc.stderr

        return scrape_when(self.dl.netns.path, self.port, what, ok, logs)

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", self.name, *cmd], env=self.dl.env(),
                              capture_output=True, text=True, check=False, timeout=120)  # fmt: skip

    def remove(self) -> None:
        self.dl.docker("rm", "-f", self.name, check=False)


def test_the_image_runs_as_compose_runs_it_and_maps_every_container(
    lab_docker: dockerlab.DockerLab, image: str, workloads: dict[str, str]
) -> None:
    c = ExporterContainer(lab_docker, image)
    try:
        host = lab_docker.inspect(c.name)[0]["HostConfig"]
        assert (host["NetworkMode"], host["PidMode"], host["ReadonlyRootfs"]) == (
            "host",
            "host",
            True,
        )
        assert host["CapDrop"] == ["ALL"] and caps(host["CapAdd"]) == set(CAPS)
        assert "no-new-privileges:true" in host["SecurityOpt"]

        def mapped(got: Samples) -> bool:
            have = interfaces(got)
            return all(have.get(n, {}).get("interface") == v for n, v in workloads.items())

        got = c.scrape_when("every lab container mapped to its veth", mapped)
        assert success(got) == {
            "links": 1, "firewall": 1, "sysctl": 1, "routes": 1, "docker": 1, "conntrack": 1
        }  # fmt: skip
        have = interfaces(got)
        assert {n: have[n]["interface"] for n in workloads} == workloads
        assert {n: have[n]["bridge"] for n in workloads}["img-a"] == "docker0"
        assert have["img-c"]["network"] == "imgnet" and have["img-c"]["bridge"].startswith("br-")
        # Both firewall backends: Docker's rules (nft) and the lab's legacy counter.
        read = rules(got)
        assert ("iptables-nft", "DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP") in read
        assert any(b == "iptables-legacy" and LEGACY_COMMENT in r for b, _, r in read), read
        check = c.exec("netpath-exporter", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "result: the exporter can do its job" in check.stdout
        assert "all 3 containers with a veth mapped" in check.stdout, check.stdout
    finally:
        c.remove()


# ---------------------------------------------------------------------------
# Without each capability: the README's privilege table
# ---------------------------------------------------------------------------


def privilege_table() -> dict[str, str]:
    """README's privilege table: capability -> its "without it" column."""
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `CAP_(\w+)` \| [^|]+ \| (.+) \|$", readme, re.MULTILINE)
    return dict(rows)


def check_failures(out: str) -> dict[str, list[str]]:
    fails: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^\[\s*FAIL\] (\S+)\s+(.*)$", line)
        if m:
            fails.setdefault(m[1], []).append(m[2])
    return fails


@pytest.mark.parametrize("cap", CAPS)
def test_without_each_capability_the_container_degrades_as_the_readme_says(
    lab_docker: dockerlab.DockerLab, image: str, workloads: dict[str, str], cap: str
) -> None:
    table = privilege_table()
    assert set(table) == set(CAPS)
    says = table[cap]
    c = ExporterContainer(lab_docker, image, without=cap)
    try:
        host = lab_docker.inspect(c.name)[0]["HostConfig"]
        assert caps(host["CapAdd"]) == set(CAPS) - {cap}

        def listed(got: Samples) -> bool:
            info = {lb["container"] for lb, _ in got.get("netpath_container_info", [])}
            return set(workloads) <= info and "firewall" in success(got)

        got = c.scrape_when("the lab containers listed", listed)
        check = c.exec("netpath-exporter", "check")
    finally:
        c.remove()
    fails = check_failures(check.stdout)
    ok = success(got)
    mapped = {n for n, lb in interfaces(got).items() if n in workloads}
    read = rules(got)
    print(f"\nwithout CAP_{cap}: success {ok}; check exit {check.returncode}, failing {fails}")
    # What needs no capability keeps working, and the scrape never fails.
    assert ok["links"] == ok["routes"] == ok["sysctl"] == ok["docker"] == 1
    if cap == "NET_ADMIN":
        assert 'netpath_collector_success{collector="firewall"} 0' in says
        assert ok["firewall"] == 0 and not read
        assert "needs CAP_NET_ADMIN" in says and ok["conntrack"] == 0
        assert any("needs CAP_NET_ADMIN" in t for t in fails["conntrack"]), check.stdout
        assert mapped == set(workloads)
    elif cap == "NET_RAW":
        assert "no iptables-legacy counters (nf_tables is still read" in says
        assert not any(b == "iptables-legacy" for b, _, _ in read), read
        assert ("iptables-nft", "DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP") in read
        assert 'collector="firewall"` is 0 and its error says `needs CAP_NET_RAW`' in says
        assert ok["firewall"] == 0
        assert any("needs CAP_NET_RAW" in t for t in fails["firewall"]), check.stdout
        assert mapped == set(workloads) and ok["conntrack"] == 1
    else:
        assert "containers are listed but not matched to their host veth" in says
        assert mapped == set(), "no container matched without CAP_SYS_PTRACE"
        assert ok["firewall"] == ok["conntrack"] == 1
        assert any("namespaces cannot be opened" in t for t in fails["docker"]), check.stdout
    assert check.returncode == 1, check.stdout


# ---------------------------------------------------------------------------
# Kubernetes: the DaemonSet as a pod on the lab containerd, through the CRI
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cri_msgs(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """tests/cri_container_api.proto compiled (grpcio-tools) into a temp dir and imported."""
    from grpc_tools import protoc  # noqa: PLC0415 - dev dependency, this module only

    out = tmp_path_factory.mktemp("cri-proto")
    code = protoc.main(["grpc_tools.protoc", f"-I{REPO / 'tests'}", f"--python_out={out}",
                        str(REPO / "tests" / "cri_container_api.proto")])  # fmt: skip
    assert code == 0
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("cri_container_api_pb2")
    finally:
        sys.path.remove(str(out))


def daemonset() -> tuple[dict[str, Any], dict[str, Any], str]:
    """The DaemonSet's pod spec, its one container, and the image reference kubelet would use."""
    ds = yaml.safe_load(DAEMONSET.read_text())
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (entry,) = yaml.safe_load(KUSTOMIZATION.read_text())["images"]
    assert entry["name"] == container["image"]
    ref = f"docker.io/library/{container['image']}:{entry['newTag']}"
    return spec, container, ref


# Pod and container keys that only the API server, the scheduler or kubelet act on.
NOT_CRI_POD = {"serviceAccountName", "automountServiceAccountToken", "dnsPolicy",
               "priorityClassName", "tolerations"}  # fmt: skip
NOT_CRI_CONTAINER = {"name", "image", "imagePullPolicy", "ports", "resources",
                     "livenessProbe", "readinessProbe"}  # fmt: skip


def cri_configs(
    m: ModuleType, cl: crilab.CriLab, image_ref: str
) -> tuple[pb.PodSandboxConfig, Any, list[str]]:
    """The DaemonSet translated to a sandbox config and a container config, as kubelet does.

    Returns them and the probe paths the test must find answering.
    """
    spec, c, _ = daemonset()
    unknown = set(spec) - NOT_CRI_POD - {"hostNetwork", "hostPID", "securityContext",
                                         "containers", "volumes"}  # fmt: skip
    assert not unknown, f"pod keys not translated to the CRI here: {unknown}"
    unknown = set(c) - NOT_CRI_CONTAINER - {"args", "securityContext", "volumeMounts"}
    assert not unknown, f"container keys not translated to the CRI here: {unknown}"
    node_pb = pb.NODE if spec.get("hostNetwork") else pb.POD
    pid_pb = pb.NODE if spec.get("hostPID") else pb.CONTAINER
    uid = secrets.token_hex(8)
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name=f"netpath-exporter-{uid[:5]}", uid=uid, namespace="netpath", attempt=0
        ),
        log_directory=str(cl.dir / "logs" / uid),
        labels={"app.kubernetes.io/name": "netpath-exporter"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=f"{cl.cgroup_parent}/pod{uid}",
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=node_pb, pid=pid_pb, ipc=pb.POD)
            ),
        ),
    )
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["runAsNonRoot"] is False
    seccomp = spec["securityContext"]["seccompProfile"]["type"]
    assert seccomp == "RuntimeDefault"
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    ns = m.NamespaceOption(
        network=m.NODE if spec.get("hostNetwork") else m.POD,
        pid=m.NODE if spec.get("hostPID") else m.CONTAINER,
        ipc=m.POD,
    )
    config = m.ContainerConfig(
        metadata=m.ContainerMetadata(name=c["name"], attempt=0),
        image=m.ImageSpec(image=image_ref),
        args=c["args"],
        mounts=[
            m.Mount(
                container_path=vm["mountPath"],
                host_path=volumes[vm["name"]]["path"],
                readonly=bool(vm.get("readOnly")),
            )
            for vm in c["volumeMounts"]
        ],
        log_path=f"{c['name']}/0.log",
        linux=m.LinuxContainerConfig(
            security_context=m.LinuxContainerSecurityContext(
                capabilities=m.Capability(
                    add_capabilities=sc["capabilities"]["add"],
                    drop_capabilities=sc["capabilities"]["drop"],
                ),
                privileged=sc["privileged"],
                namespace_options=ns,
                run_as_user=m.Int64Value(value=sc["runAsUser"]),
                run_as_group=m.Int64Value(value=sc["runAsGroup"]),
                readonly_rootfs=sc["readOnlyRootFilesystem"],
                no_new_privs=not sc["allowPrivilegeEscalation"],
                seccomp=m.SecurityProfile(profile_type=m.SecurityProfile.RuntimeDefault),
            )
        ),
    )
    probes = [c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")]
    return sandbox, config, probes


def host_path_dirs(cl: crilab.CriLab) -> dict[str, Path]:
    """Where the node's paths of the DaemonSet's hostPath volumes are in the lab (D/run is /run)."""
    spec, _, _ = daemonset()
    out = {}
    for vol in spec["volumes"]:
        path = vol["hostPath"]["path"]
        rel = re.sub(r"^/(var/)?run/", "", path)
        assert rel != path, f"hostPath {path} is not under /run: the lab has no such directory"
        out[path] = cl.dir / "run" / rel
    return out


@pytest.mark.cri
def test_the_image_runs_as_the_daemonset_runs_it_and_maps_the_pods(
    lab_docker: dockerlab.DockerLab,
    image: str,
    containerd: crilab.CriLab,
    cri_msgs: ModuleType,
    tmp_path: Path,
) -> None:
    cl, m = containerd, cri_msgs
    _, _, ref = daemonset()
    assert ref == f"docker.io/library/{image}"
    archive = tmp_path / "image.tar"
    lab_docker.docker("save", "-o", str(archive), image, timeout=300)
    cl.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))
    archive.unlink()
    pods = [cl.run_pod("web", "shop"), cl.run_pod("db", "default")]
    # The node's runtime socket at its standard path (hostPath DirectoryOrCreate for the rest).
    dirs = host_path_dirs(cl)
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # On a node containerd makes /run/containerd 0711 (its state directory); in the lab the
    # shim made it, 0600, which uid 0 without CAP_DAC_OVERRIDE (the DaemonSet) cannot enter.
    dirs["/run/containerd"].chmod(0o711)
    standard = dirs["/run/containerd"] / "containerd.sock"
    os.link(cl.sock, standard)
    sandbox, config, probes = cri_configs(m, cl, ref)
    client = cl.client()
    sandbox_id = ""
    container_id = ""
    log = Path(sandbox.log_directory) / config.log_path
    try:
        sandbox_id = client.call(
            "RunPodSandbox", pb.RunPodSandboxRequest(config=sandbox), pb.RunPodSandboxResponse
        ).pod_sandbox_id
        container_id = client.call(
            "CreateContainer",
            m.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config,
                                     sandbox_config=sandbox.SerializeToString()),
            m.CreateContainerResponse,
        ).container_id  # fmt: skip
        client.call("StartContainer", m.StartContainerRequest(container_id=container_id),
                    m.StartContainerResponse)  # fmt: skip
        port = listen_port(list(config.args))

        def mapped(got: Samples) -> bool:
            have = interfaces(got)
            return all(have.get(p.full_name, {}).get("interface") == p.host_veth() for p in pods)

        def logs() -> str:
            text = log.read_text(errors="replace") if log.exists() else f"(no log at {log})"
            tasks = cl.ctr("tasks", "ls")
            pid = next(ln.split()[1] for ln in tasks.splitlines() if ln.startswith(container_id))
            seen = lab.run(["nsenter", "-t", pid, "-m", "ls", "-la", "/run/containerd"],
                           check=False)  # fmt: skip
            return f"{text}\nthe container's /run/containerd:\n{seen}"

        got = scrape_when(cl.netns.path, port, "the lab pods mapped to their veths", mapped, logs)
        have = interfaces(got)
        for p in pods:
            lb = have[p.full_name]
            assert (lb["namespace"], lb["pod"], lb["bridge"]) == (p.namespace, p.name, "cni0")
            assert lb["interface"] == p.host_veth() and lb["ip"] == p.ip
        ok = success(got)
        assert ok["cri"] == 1 and ok["firewall"] == 1 and ok["links"] == 1, ok
        assert "docker" not in ok, "no Docker socket in the DaemonSet: the source is absent"
        info = {lb["container"]: lb for lb, _ in got["netpath_container_info"]}
        assert {info[p.full_name]["runtime"] for p in pods} == {"containerd"}
        for path in probes:
            assert curl(cl.netns.path, f"http://127.0.0.1:{port}{path}").returncode == 0, path
        # The container really ran with the manifest's settings (containerd's own record).
        status = json.loads(client.sandbox_status(sandbox_id).info["info"])
        ns = {n["type"] for n in status["runtimeSpec"]["linux"]["namespaces"]}
        assert "network" not in ns and "pid" not in ns, "host network and PID namespaces"
        spec = json.loads(cl.ctr("containers", "info", container_id))["Spec"]
        caps = spec["process"]["capabilities"]
        assert sorted(caps["bounding"]) == sorted(f"CAP_{c}" for c in CAPS)
        assert spec["root"]["readonly"] is True and spec["process"]["noNewPrivileges"] is True
        assert spec["process"]["user"]["uid"] == 0
        assert "seccomp" in spec["linux"]
    finally:
        if container_id:
            client.call("StopContainer", m.StopContainerRequest(container_id=container_id,
                        timeout=10), m.StopContainerResponse)  # fmt: skip
            client.call("RemoveContainer", m.RemoveContainerRequest(container_id=container_id),
                        m.RemoveContainerResponse)  # fmt: skip
        if sandbox_id:
            client.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                        pb.StopPodSandboxResponse)  # fmt: skip
            client.call("RemovePodSandbox",
                        pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                        pb.RemovePodSandboxResponse)  # fmt: skip
        for p in pods:
            cl.remove_pod(p)
        standard.unlink(missing_ok=True)
        cl.ctr("images", "rm", ref)


# ---------------------------------------------------------------------------
# The compose stack: Prometheus (Debian's package, built here) scraping the exporter
# ---------------------------------------------------------------------------


def prometheus_run_args(svc: dict[str, Any], project: str) -> tuple[list[str], int]:
    """The compose Prometheus service as ``docker run`` options, and its published port."""
    args: list[str] = []
    port = 0
    for key, value in svc.items():
        if key in ("image", "command", "restart"):
            continue  # the image is made here (upstream's cannot be pulled); see above
        if key == "volumes":
            for vol in value:
                src, dst, *mode = vol.split(":")
                if src.startswith("."):
                    src = str((COMPOSE_FILE.parent / src).resolve())
                else:
                    src = f"{project}_{src}"  # a named volume of the project
                args += ["-v", ":".join([src, dst, *mode])]
        elif key == "ports":
            (spec,) = value
            args += ["-p", spec]
            port = int(spec.rsplit(":", 1)[1])
        elif key == "extra_hosts":
            args += [a for host in value for a in ("--add-host", host)]
        elif key == "read_only":
            args += ["--read-only"] if value else []
        elif key == "security_opt":
            args += [a for opt in value for a in ("--security-opt", opt)]
        else:
            raise AssertionError(f"compose key {key!r} of prometheus is not translated here")
    return args, port


def test_the_compose_stack_runs_prometheus_scraping_the_exporter(
    lab_docker: dockerlab.DockerLab, image: str, workloads: dict[str, str]
) -> None:
    proc = subprocess.run(
        [str(REPO / "dev.sh"), "image", "prometheus"],
        env=lab_docker.env(), cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prom_image = proc.stdout.strip().splitlines()[-1]
    stack = yaml.safe_load(COMPOSE_FILE.read_text())
    svc = stack["services"]["prometheus"]
    assert svc["image"].startswith("prom/prometheus:")
    args, port = prometheus_run_args(svc, stack["name"])
    exporter = ExporterContainer(lab_docker, image)
    name = f"np-prometheus-{secrets.token_hex(3)}"
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    n_rules = sum(len(g["rules"]) for g in alerts["groups"])
    try:
        lab_docker.docker("run", "-d", "--name", name, *args, prom_image, *svc["command"])
        api = f"http://127.0.0.1:{port}/api/v1"

        def query(expr: str) -> list[dict[str, Any]] | None:
            got = curl(lab_docker.netns.path, f"{api}/query?query={expr}")
            if got.returncode != 0:
                return None
            return json.loads(got.stdout)["data"]["result"]  # type: ignore[no-any-return]

        def scraped() -> list[dict[str, Any]] | None:
            up = query("up")
            return up if up and up[0]["value"][1] == "1" else None

        try:
            (up,) = dockerlab.poll_until("Prometheus to scrape the exporter", scraped, timeout=60)
        except TimeoutError as exc:
            logs = lab_docker.docker("logs", name, check=False)
            targets = curl(lab_docker.netns.path, f"{api}/targets").stdout
            raise AssertionError(f"{exc}\n{targets}\n{logs}") from None
        assert up["metric"]["job"] == "netpath"
        containers = query("netpath_container_interface_info")
        assert containers is not None
        seen = {r["metric"]["container"]: r["metric"]["interface"] for r in containers}
        # Every lab container, and Prometheus's own (it runs on the default bridge).
        assert set(seen) == {*workloads, name}
        assert {n: seen[n] for n in workloads} == workloads
        loaded = json.loads(curl(lab_docker.netns.path, f"{api}/rules").stdout)["data"]["groups"]
        assert sum(len(g["rules"]) for g in loaded) == n_rules
    finally:
        lab_docker.docker("rm", "-f", name, check=False)
        lab_docker.docker("volume", "rm", f"{stack['name']}_prometheus-data", check=False)
        exporter.remove()
