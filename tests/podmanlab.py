"""A real rootful Podman confined to a lab network namespace and a private mount namespace.

As ``design/podman-lab.md`` describes: a holder process (``sleep infinity``) owns a
fresh network namespace and a private mount namespace in which ``/run`` is D/run,
``/var/lib`` an overlay whose upper layer is under D and ``/dev/shm`` a fresh tmpfs,
so Podman's writes outside ``--root``/``--runroot`` (``/run/containers/networks``,
``/run/netns/netns-*``, ``/var/lib/containers/cache``, ``/var/lib/cni``,
``/dev/shm/libpod_lock``) stay in D. Every ``podman`` command enters both
namespaces of the holder (``nsenter -t HOLDER -m -n``) with a private
``containers.conf`` (``CONTAINERS_CONF``: backend, network config dir, cgroupfs,
the file events logger) and ``--root``/``--runroot`` under D.

The API is ``podman system service --time=0 unix://D/podman.sock`` in the same
namespaces (the socket is in D, reachable from outside). Containers outlive the
service, so it can be stopped and started again (:meth:`PodmanLab.stop_service`,
:meth:`PodmanLab.start_service`). Container network namespaces are bind mounts
visible only inside the private mount namespace: from outside, use
``/proc/<pid>/ns/net`` (``State.Pid`` is the host's pid).

Teardown removes the containers (``rm -af -t 0``), stops the service and the
holder by their PIDs, kills what is left in the mount namespace by PID, deletes
the network namespace and D, also when a test failed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import lab
import pytest
from dockerlab import _pid_alive, _unmount_under, poll_until

IMAGE = "localhost/busybox"
APPLETS = ("sh", "sleep", "ping", "nc", "httpd", "cat", "ls", "ip", "true", "wget")
NETAVARK = "/usr/lib/podman/netavark"


def need_podman(backend: str = "netavark") -> None:
    """Skip (with a reason) where a lab Podman cannot run."""
    lab.need_root()
    for tool in ("podman", "nsenter", "unshare", "busybox", "runc", "conmon"):
        if shutil.which(tool) is None:
            pytest.skip(f"podman lab tests need `{tool}` on PATH")
    if backend == "netavark" and not Path(NETAVARK).exists():
        pytest.skip(f"podman lab tests need netavark ({NETAVARK})")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class PodmanLab:
    """One rootful Podman (``backend`` netavark or cni) in its own namespaces and directory."""

    def __init__(self, backend: str = "netavark") -> None:
        if backend not in ("netavark", "cni"):
            raise ValueError(f"not a Podman network backend: {backend}")
        self.backend = backend
        self.netns = lab.Netns("pm")
        self.dir = Path(tempfile.mkdtemp(prefix="np-podman-", dir="/tmp"))
        self.sock = str(self.dir / "podman.sock")
        self.host = f"unix://{self.sock}"
        self.net_dir = self.dir / "net"
        self.conf = self.dir / "containers.conf"
        self.log = self.dir / "service.log"
        self._holder: subprocess.Popen[bytes] | None = None
        self._service: subprocess.Popen[bytes] | None = None
        self._netns_made = False
        self.image_imported = False

    # -- namespaces -------------------------------------------------------

    @property
    def holder_pid(self) -> int:
        assert self._holder is not None, "the lab is not set up"
        return self._holder.pid

    def setup(self) -> None:
        """Make the network namespace, the holder with its private mounts, the config."""
        d = self.dir
        for sub in ("run", "varlib/upper", "varlib/work", "net", "tmp", "root", "runroot"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[containers]\n"
            # Without it runc fails with "error setting rlimit type 7/6".
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[network]\n"
            f'network_backend = "{self.backend}"\n'
            f'network_config_dir = "{self.net_dir}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/tmp/events.log"\n'
            f'tmp_dir = "{d}/tmp"\n'
            'runtime = "runc"\n'
        )
        self.netns.create()
        self._netns_made = True
        ready = d / "holder-ready"
        script = (
            f"mount --bind {d}/run /run && "
            "mount -t overlay np-podman-varlib -o "
            f"lowerdir=/var/lib,upperdir={d}/varlib/upper,workdir={d}/varlib/work /var/lib && "
            "mount -t tmpfs np-podman-shm /dev/shm && "
            f"touch {ready} && exec sleep infinity"
        )
        with open(d / "holder.log", "ab") as log:
            self._holder = subprocess.Popen(
                ["nsenter", f"--net={self.netns.path}", "unshare", "-m", "--propagation",
                 "private", "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        holder = self._holder

        def up() -> bool:
            if holder.poll() is not None:
                log_text = (d / "holder.log").read_text(errors="replace")
                raise RuntimeError(f"the namespace holder exited ({holder.returncode}): {log_text}")
            return ready.exists()

        poll_until("the podman lab's mount namespace", up, timeout=10, interval=0.02)

    def enter(self) -> list[str]:
        """The prefix running a command in the lab's network and mount namespaces."""
        return ["nsenter", "-t", str(self.holder_pid), "-m", "-n"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.conf)
        env["PODMAN_HOST"] = self.host
        return env

    # -- the podman CLI ---------------------------------------------------

    def _podman_cmd(self, *args: str) -> list[str]:
        return [
            *self.enter(),
            "podman",
            "--root",
            str(self.dir / "root"),
            "--runroot",
            str(self.dir / "runroot"),
            *args,
        ]

    def podman(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60
    ) -> str:
        """Run ``podman ARGS`` in the lab; return stdout (raise with stderr on failure)."""
        proc = subprocess.run(
            self._podman_cmd(*args),
            input=input,
            capture_output=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode(errors="replace")

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        return json.loads(self.podman("inspect", *names))  # type: ignore[no-any-return]

    def network_inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.podman("network", "inspect", name))[0]  # type: ignore[no-any-return]

    def import_busybox(self) -> None:
        """Import ``localhost/busybox``: the static busybox, its applet links, /etc/passwd."""
        if self.image_imported:
            return
        root = self.dir / "busybox-root"
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "etc").mkdir(exist_ok=True)
        busybox = shutil.which("busybox")
        assert busybox is not None
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in APPLETS:
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
        self.podman("import", "-", IMAGE, input=tar.stdout)
        self.image_imported = True

    def run_sleeper(self, name: str, *opts: str) -> str:
        """``podman run -d --name NAME OPTS busybox sleep 3600``; return the full id."""
        return self.podman("run", "-d", "--name", name, *opts, IMAGE, "sleep", "3600").strip()

    def pid(self, name: str) -> int:
        """The host pid of a running container's first process."""
        return int(self.inspect(name)[0]["State"]["Pid"])

    def netns_of(self, name: str) -> str:
        """A path to the container's network namespace usable from outside the lab."""
        return f"/proc/{self.pid(name)}/ns/net"

    def iflink(self, name: str, ifname: str = "eth0") -> int:
        """The ifindex of the host peer of the container's ``ifname``, asked over netlink.

        (sysfs would show the namespace it was mounted in, not the container's.)
        """
        out = lab.run(["nsenter", f"--net={self.netns_of(name)}", "ip", "-j", "link", "show",
                       ifname])  # fmt: skip
        return int(json.loads(out)[0]["link_index"])

    def exec(self, *cmd: str, check: bool = True) -> str:
        """Run a command in the lab's network namespace ("the host")."""
        return self.netns.exec(*cmd, check=check)

    def host_links(self) -> list[dict[str, Any]]:
        return json.loads(self.exec("ip", "-d", "-j", "link"))  # type: ignore[no-any-return]

    def remove_all(self) -> None:
        """Remove every container and every network but the default one."""
        self.podman("rm", "-af", "-t", "0", check=False)
        nets = self.podman("network", "ls", "-q", check=False).split()
        user = [n for n in nets if n != "podman"]
        if user:
            self.podman("network", "rm", "-f", *user, check=False)

    # -- the API service --------------------------------------------------

    def start_service(self, timeout: float = 30.0) -> None:
        """``podman system service --time=0 unix://D/podman.sock``; wait until it answers."""
        if self.service_running():
            return
        with suppress(FileNotFoundError):
            os.unlink(self.sock)
        with open(self.log, "ab") as log:
            self._service = subprocess.Popen(
                self._podman_cmd("system", "service", "--time=0", self.host),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        service = self._service

        def answering() -> bool:
            if service.poll() is not None:
                raise RuntimeError(
                    f"podman service exited ({service.returncode}):\n{self.log_tail()}"
                )
            return self.api_get("/_ping") is not None

        poll_until("the podman service to answer /_ping", answering, timeout=timeout, interval=0.05)

    def api_get(self, path: str, timeout: float = 10) -> Any:
        """GET ``path`` on the service socket: the decoded JSON (or text), None if unreachable."""
        conn = _UnixHTTPConnection(self.sock, timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode()
        except OSError:
            return None
        finally:
            conn.close()
        if resp.status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body

    def service_pid(self) -> int | None:
        return self._service.pid if self._service is not None else None

    def service_running(self) -> bool:
        return self._service is not None and self._service.poll() is None

    def stop_service(self, timeout: float = 30.0) -> None:
        """Stop the service by its PID; the containers keep running (conmon holds them)."""
        service = self._service
        if service is None:
            return
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(10)
        self._service = None

    def restart_service(self) -> None:
        self.stop_service()
        self.start_service()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- teardown ---------------------------------------------------------

    def _pids_in_mount_ns(self) -> list[int]:
        """PIDs of processes (other than the holder) in the lab's mount namespace."""
        try:
            ns = os.readlink(f"/proc/{self.holder_pid}/ns/mnt")
        except OSError:
            return []
        found: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.holder_pid:
                continue
            with suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == ns:
                    found.append(int(entry))
        return found

    def close(self) -> None:
        """Tear everything down; safe after partial set-up and twice."""
        try:
            if self._holder is not None and self._holder.poll() is None:
                ids: list[str] = []
                with suppress(Exception):
                    ids = self.podman("ps", "-aq", "--no-trunc", check=False).split()
                    self.podman("rm", "-af", "-t", "0", check=False)
                self.stop_service()
                _remove_cgroups(ids)
                # conmon and containers this lab started, if rm left any: by PID.
                for pid in self._pids_in_mount_ns():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                for pid in self._pids_in_mount_ns():
                    with suppress(TimeoutError):
                        poll_until(f"pid {pid} to exit", lambda p=pid: not _pid_alive(p), timeout=5)
        finally:
            if self._holder is not None:
                if self._holder.poll() is None:
                    self._holder.kill()
                self._holder.wait(10)
                self._holder = None
            _unmount_under(self.dir)
            if self._netns_made:
                self.netns.delete()
                self._netns_made = False
            shutil.rmtree(self.dir, ignore_errors=True)


def _remove_cgroups(ids: list[str]) -> None:
    """rmdir what the cgroupfs manager left of these containers (``libpod_parent/libpod-ID``)."""
    for cid in ids:
        for d in Path("/sys/fs/cgroup").glob(f"*/libpod_parent/libpod-{cid}"):
            for sub in sorted(d.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir():
                    with suppress(OSError):
                        sub.rmdir()
            with suppress(OSError):
                d.rmdir()


@contextmanager
def podman_lab(backend: str = "netavark") -> Iterator[PodmanLab]:
    """A lab Podman with the busybox image and the API service running, torn down on exit."""
    pl = PodmanLab(backend)
    try:
        pl.setup()
        pl.import_busybox()
        pl.start_service()
        yield pl
    finally:
        pl.close()
