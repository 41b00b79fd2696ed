"""A real dockerd confined to its own network namespace and state directory.

As ``design/testing.md`` describes: ``nsenter --net=NETNS dockerd --data-root
D/data --exec-root D/exec --pidfile D/docker.pid -H unix://D/docker.sock``.
dockerd starts its own containerd; its docker0, veths and iptables rules live
in the lab namespace only. Optionally dockerd runs on iptables-legacy (a PATH
directory whose iptables tools link to the ``-legacy`` binaries). An image
``netpath-test/busybox`` is imported from the static busybox, no registry.

Teardown removes the containers, stops dockerd by the PID it wrote, unmounts
what it left under D, deletes the namespace and D, also when a test failed.

:class:`NetnsPython` runs a long-lived Python inside the lab namespace (with
``DOCKER_HOST`` pointing at the lab) and evaluates expressions sent to it, so
a test can keep one collector object alive across dockerd restarts.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import lab
import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
PYTHON = REPO / ".venv" / "bin" / "python"
IMAGE = "netpath-test/busybox"
BUSYBOX_APPLETS = ("sh", "sleep", "ping", "nc", "httpd", "cat", "ls", "ip", "true", "ifconfig")
LEGACY_TOOLS = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)


def need_dockerd() -> None:
    """Skip (with a reason) where a lab dockerd cannot run."""
    lab.need_root()
    for tool in ("dockerd", "docker", "nsenter", "busybox", "containerd", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"docker lab tests need `{tool}` on PATH")


def poll_until(what: str, check: Any, *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Call ``check()`` until it returns a truthy value; raise naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def root_iptables_rules() -> dict[str, str]:
    """The root namespace's rules (both variants), without counters, for before/after checks."""
    out: dict[str, str] = {}
    for tool in (
        "iptables-nft-save",
        "ip6tables-nft-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ):
        if shutil.which(tool) is None:
            continue
        text = lab.run([tool], check=False)
        lines = [
            re.sub(r"\[\d+:\d+\]", "[]", line)
            for line in text.splitlines()
            if line and not line.startswith("#")
        ]
        out[tool] = "\n".join(lines)
    return out


class DockerLab:
    """One dockerd in its own network namespace and state directory."""

    def __init__(self, *, legacy: bool = False, bip: str = "10.213.0.1/24") -> None:
        self.legacy = legacy
        self.bip = bip
        self.netns = lab.Netns("dk-legacy" if legacy else "dk")
        self.dir = Path(tempfile.mkdtemp(prefix="np-docker-", dir="/tmp"))
        self.sock = str(self.dir / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.pidfile = self.dir / "docker.pid"
        self.log = self.dir / "dockerd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._netns_made = False
        self.image_imported = False
        # The root namespace's rules before this lab's dockerd first started.
        self.root_rules_before: dict[str, str] | None = None

    # -- environment ------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for docker CLI / Python talking to this lab."""
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.dir / "cli")
        return env

    def _dockerd_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.legacy:
            bindir = self.dir / "legacy-bin"
            bindir.mkdir(exist_ok=True)
            for tool in LEGACY_TOOLS:
                target = shutil.which(tool.replace("tables", "tables-legacy", 1))
                if target is None:
                    raise RuntimeError(f"{tool}-legacy not found")
                link = bindir / tool
                if not link.exists():
                    link.symlink_to(target)
            env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    # -- daemon -----------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd (making the namespace first if needed); wait until it answers."""
        if self.root_rules_before is None:
            self.root_rules_before = root_iptables_rules()
        if not self._netns_made:
            self.netns.create()
            self._netns_made = True
        config = self.dir / "daemon.json"
        # deprecated-key-path: keep dockerd from writing /etc/docker/key.json.
        config.write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        cmd = [
            "nsenter",
            f"--net={self.netns.path}",
            "dockerd",
            "--config-file",
            str(config),
            "--data-root",
            str(self.dir / "data"),
            "--exec-root",
            str(self.dir / "exec"),
            "--pidfile",
            str(self.pidfile),
            "-H",
            self.host,
            "--bip",
            self.bip,
            "--shutdown-timeout",
            "2",
        ]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._dockerd_env(),
                start_new_session=True,
            )
        proc = self._proc

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited ({proc.returncode}):\n{self.log_tail()}")
            r = subprocess.run(
                ["docker", "version"], env=self.env(), capture_output=True, timeout=10, check=False
            )
            return r.returncode == 0

        poll_until("dockerd to answer `docker version`", answering, timeout=timeout, interval=0.1)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _pid_alive(pid)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop dockerd by the PID it wrote; wait until it and its containerd are gone."""
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            self._reap()
            return
        containerd = self._containerd_pid()
        os.kill(pid, signal.SIGTERM)
        try:
            poll_until("dockerd to exit", lambda: not _pid_alive(pid), timeout=timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            poll_until("dockerd to die", lambda: not _pid_alive(pid), timeout=10)
        self._reap()
        if containerd is not None and _pid_alive(containerd):
            try:
                poll_until("containerd to exit", lambda: not _pid_alive(containerd), timeout=10)
            except TimeoutError:
                os.kill(containerd, signal.SIGKILL)

    def _reap(self) -> None:
        if self._proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def _containerd_pid(self) -> int | None:
        try:
            return int((self.dir / "exec" / "containerd" / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- docker CLI -------------------------------------------------------

    def docker(
        self, *args: str, input: str | bytes | None = None, check: bool = True, timeout: float = 60
    ) -> str:
        """Run ``docker ARGS`` against this lab; return stdout (raise with stderr on failure)."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            ["docker", *args],
            input=data,
            capture_output=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode(errors="replace")

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        return json.loads(self.docker("inspect", *names))  # type: ignore[no-any-return]

    def import_busybox(self) -> None:
        """Import ``netpath-test/busybox`` (root fs: the static busybox and a few applet links)."""
        if self.image_imported:
            return
        root = self.dir / "busybox-root"
        (root / "bin").mkdir(parents=True, exist_ok=True)
        busybox = shutil.which("busybox")
        assert busybox is not None
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
        self.docker("import", "-", f"{IMAGE}:latest", input=tar.stdout)
        self.image_imported = True

    def run_sleeper(self, name: str, *opts: str) -> str:
        """``docker run -d --init --name NAME OPTS busybox sleep 3600``; return the full id.

        ``--init`` makes ``docker stop`` quick (sleep as PID 1 ignores SIGTERM).
        """
        return self.docker(
            "run", "-d", "--init", "--name", name, *opts, IMAGE, "sleep", "3600"
        ).strip()

    def remove_all(self) -> None:
        """Remove every container and every user network (not the predefined ones)."""
        ids = self.docker("ps", "-aq", check=False).split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        nets = self.docker("network", "ls", "-q", "--filter", "type=custom", check=False).split()
        if nets:
            self.docker("network", "rm", *nets, check=False)

    # -- inside the namespace ---------------------------------------------

    def exec(self, *cmd: str, check: bool = True) -> str:
        """Run a command in the lab namespace (network only)."""
        return self.netns.exec(*cmd, check=check)

    def sysctl(self, name: str, value: str) -> str:
        """Set a sysctl in the lab namespace; return its previous value."""
        old = self.exec("sysctl", "-n", name).strip()
        self.exec("sysctl", "-q", "-w", f"{name}={value}")
        return old

    @contextmanager
    def quiet_ipv6(self) -> Iterator[None]:
        """New links of the lab host get no IPv6 (no RS/MLD/DAD chatter towards containers).

        For tests that count packets exactly; restored on exit.
        """
        old = self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        try:
            yield
        finally:
            self.sysctl("net.ipv6.conf.default.disable_ipv6", old)

    def host_links(self) -> list[dict[str, Any]]:
        """``ip -d -j link`` of the lab namespace (dockerd's "host")."""
        return json.loads(self.exec("ip", "-d", "-j", "link"))  # type: ignore[no-any-return]

    def python(self, setup: str = "") -> NetnsPython:
        return NetnsPython(self, setup)

    # -- teardown ---------------------------------------------------------

    def close(self) -> None:
        """Tear everything down; safe to call twice and after partial start-up."""
        try:
            if self.running():
                self.remove_all()
        finally:
            try:
                self.stop()
            finally:
                _unmount_under(self.dir)
                if self._netns_made:
                    self.netns.delete()
                    self._netns_made = False
                shutil.rmtree(self.dir, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    """Lazily unmount whatever is still mounted under ``path`` (deepest first)."""
    prefix = str(path).rstrip("/") + "/"
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [m.split()[4] for m in mounts]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextmanager
def docker_lab(*, legacy: bool = False, image: bool = True) -> Iterator[DockerLab]:
    """A started lab dockerd (with the busybox image), torn down on exit."""
    dl = DockerLab(legacy=legacy)
    try:
        dl.start()
        if image:
            dl.import_busybox()
        yield dl
    finally:
        dl.close()


# ---------------------------------------------------------------------------
# A long-lived Python inside the lab namespace
# ---------------------------------------------------------------------------

_SERVE = r"""
import json, sys, traceback
ns = {}
for line in sys.stdin:
    req = json.loads(line)
    try:
        if req["op"] == "exec":
            exec(req["code"], ns)
            value = None
        else:
            value = eval(req["code"], ns)
        resp = {"ok": True, "value": value}
    except BaseException as exc:
        resp = {"ok": False, "type": type(exc).__name__, "error": str(exc),
                "traceback": traceback.format_exc()}
    sys.stdout.write(json.dumps(resp, default=str) + "\n")
    sys.stdout.flush()
"""


class RemoteError(Exception):
    """An exception raised inside :class:`NetnsPython`; ``type`` names its class."""

    def __init__(self, type_: str, message: str, tb: str) -> None:
        super().__init__(f"{type_}: {message}\n{tb}")
        self.type = type_
        self.message = message


class NetnsPython:
    """``.venv/bin/python`` running in the lab namespace with ``DOCKER_HOST`` set.

    ``exec(code)`` runs statements, ``eval(expr)`` returns the JSON-decoded value;
    names persist between calls. Both raise :class:`RemoteError` for exceptions
    raised remotely.
    """

    def __init__(self, dl: DockerLab, setup: str = "") -> None:
        env = dl.env()
        env["PYTHONPATH"] = f"{REPO}:{TESTS}"
        python = str(PYTHON) if PYTHON.exists() else sys.executable
        self._proc = subprocess.Popen(
            ["nsenter", f"--net={dl.netns.path}", python, "-u", "-c", _SERVE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(REPO),
        )
        if setup:
            self.exec(setup)

    def _call(self, op: str, code: str, timeout: float) -> Any:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps({"op": op, "code": code}) + "\n").encode())
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer within {timeout}s to {code!r}")
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"remote python exited ({proc.poll()}): {err}")
        resp = json.loads(line)
        if not resp["ok"]:
            raise RemoteError(resp["type"], resp["error"], resp["traceback"])
        return resp["value"]

    def exec(self, code: str, timeout: float = 60) -> None:
        self._call("exec", code, timeout)

    def eval(self, expr: str, timeout: float = 60) -> Any:
        return self._call("eval", expr, timeout)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> NetnsPython:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# One lab at a time for a test session
# ---------------------------------------------------------------------------


class DockerLabs:
    """Hands out the session's lab dockerd; at most one runs when it can be helped.

    ``acquire(legacy)`` returns a running lab of that kind, reusing the one
    that runs; a lab of the other kind that nobody holds is torn down first.
    ``release`` removes the holder's containers and networks and keeps the
    lab running for the next module.
    """

    def __init__(self) -> None:
        self._labs: dict[bool, DockerLab] = {}
        self._holders: dict[bool, int] = {False: 0, True: 0}

    def acquire(self, legacy: bool) -> DockerLab:
        other = not legacy
        if other in self._labs and self._holders[other] == 0:
            self._labs.pop(other).close()
        dl = self._labs.get(legacy)
        if dl is None or not dl.running():
            if dl is not None:
                dl.close()
            dl = DockerLab(legacy=legacy)
            self._labs[legacy] = dl
            try:
                dl.start()
                dl.import_busybox()
            except BaseException:
                self._labs.pop(legacy).close()
                raise
        self._holders[legacy] += 1
        return dl

    def release(self, dl: DockerLab) -> None:
        self._holders[dl.legacy] -= 1
        if self._holders[dl.legacy] == 0 and dl.running():
            dl.remove_all()

    def close(self) -> None:
        while self._labs:
            _, dl = self._labs.popitem()
            dl.close()
