"""The real command line: bad input gets one clear message and the right exit code."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import __version__, cli
from exporter.netlink import xtables
from tests import lab

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = [sys.executable, "-m", "exporter"]
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPORTER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"netpath-exporter {__version__}"


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--poll.interval=soon", "argument --poll.interval: not a duration"),
        ("--log.level=loud", "--log.level: invalid choice"),
        ("--web.listen-address=nope", "--web.listen-address: not a listen address"),
        ("--web.telemetry-path=metrics", "--web.telemetry-path: must start with '/'"),
        ("--collector.bogus", "unrecognized arguments: --collector.bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_message(flag: str, needle: str) -> None:
    proc = run(flag)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_config_file_names_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "netpath.yaml"
    cfg.write_text("poll:\n  interval: soon\ncollectors:\n  linkz: true\n")
    proc = run(f"--config.file={cfg}")
    assert proc.returncode == 2
    assert f"invalid config file {cfg}" in proc.stderr
    assert "poll.interval: not a duration" in proc.stderr
    assert "collectors.linkz: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = run(f"--config.file={tmp_path / 'nope.yaml'}")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run(f"--web.listen-address=127.0.0.1:{port}", "--no-collector.docker")
    assert proc.returncode == 1
    assert 'msg="cannot listen"' in proc.stderr
    assert "Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.lab
def test_missing_tools_fail_the_firewall_alone_and_sigterm_stops_cleanly() -> None:
    """No iptables/nft binaries on PATH: firewall reports why, the rest is served."""
    lab.need_root()
    with lab.netns("cli") as host:
        host.exec("iptables-nft-restore", input=lab.SEED_RULESET.read_text())
        port = 29100
        proc = subprocess.Popen(
            [NSENTER, f"--net={host.path}", *EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
             "--poll.interval=200ms", "--no-collector.docker"],
            cwd=ROOT, env={"PATH": "/nonexistent"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            body = ""
            while 'collector="firewall"} 0' not in body:
                assert time.monotonic() < deadline, f"no failed firewall poll served: {body}"
                scrape = host.exec(
                    "/usr/bin/curl", "-sf", f"http://127.0.0.1:{port}/metrics", check=False
                )
                body = scrape or body
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert 'netpath_collector_success{collector="links"} 1' in body
    assert 'netpath_collector_success{collector="sysctl"} 1' in body
    assert "iptables-nft-save not found" in err
    assert err.count('msg="collector failed" collector=firewall') == 1, "logged once, not per poll"
    assert "msg=stopped" in err
    assert "Traceback" not in err


LEAN = """
import sys
from exporter.config import load_config
from exporter.pipeline import make_poller
from exporter.web.server import make_server
make_poller(load_config(None)).poll_once()
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {MODULES})))
"""


def test_a_lean_daemon_without_config_files_imports_nothing_it_does_not_use() -> None:
    """prometheus-client (12 MB resident) is the tests' oracle only; yaml reads config
    files, bcrypt and the TLS helpers serve a web config: none is loaded without them.
    http.server (http.client, email, ssl) is not used at all, and hashlib (OpenSSL's
    libcrypto, 3.4 MB) only names netavark's chains on Podman hosts."""
    unwanted = {"prometheus_client", "yaml", "bcrypt", "exporter.web.tls", "exporter.web.auth",
                "http.server", "http.client", "ssl", "email", "hashlib"}  # fmt: skip
    code = LEAN.replace("{MODULES}", repr({m.split(".")[0] for m in unwanted}))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert not loaded & unwanted, sorted(loaded & unwanted)
    assert "exporter.web.server" in loaded  # the probe saw the exporter's own modules


def test_kept_xtables_buffers_start_where_glibc_maps_blocks_anew() -> None:
    """xtables keeps the buffers of tables glibc would map anew each poll (page faults),
    and only those (smaller ones come back from the heap): the two sizes are one."""
    assert xtables.KEEP_FROM == cli.MMAP_THRESHOLD
