"""Throw-away lab hosts in network namespaces, for tests that need the real kernel.

Every namespace made here carries a unique name (``np-<tag>-<random>``) and is
deleted by the fixture that made it, also when the test fails. Nothing here
touches the machine's own network namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SEED_RULESET = SHARED / "fixtures" / "seed-docker-classic.iptables-save"


def need_root() -> None:
    """Skip (with a reason) where the lab cannot be built."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, iptables)")
    if shutil.which("ip") is None:
        pytest.skip("lab tests need iproute2's `ip`")


def run(cmd: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command, return stdout; raise with stderr on failure."""
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


class Netns:
    """A network namespace made for one test."""

    def __init__(self, tag: str) -> None:
        self.name = f"np-{tag}-{secrets.token_hex(3)}"
        self.path = f"/var/run/netns/{self.name}"

    def create(self) -> None:
        run(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        run(["ip", "netns", "delete", self.name], check=False)

    def exec(self, *cmd: str, input: str | None = None, check: bool = True) -> str:
        """Run a command inside the namespace (network only, via nsenter)."""
        return run(["nsenter", f"--net={self.path}", *cmd], input=input, check=check)

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *cmd], **kwargs)  # type: ignore[call-overload, no-any-return]

    def ip(self, *args: str) -> str:
        return self.exec("ip", *args)


@contextmanager
def netns(tag: str) -> Iterator[Netns]:
    ns = Netns(tag)
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


@contextmanager
def namespaces(tag: str, count: int) -> Iterator[list[Netns]]:
    made: list[Netns] = []
    try:
        for i in range(count):
            ns = Netns(f"{tag}{i}")
            ns.create()
            made.append(ns)
        yield made
    finally:
        for ns in made:
            ns.delete()


def add_container(host: Netns, container: Netns, *, host_if: str, bridge: str,
                  addr: str, gateway: str, addr6: str | None = None,
                  gateway6: str | None = None) -> None:
    """Wire a "container" namespace to a bridge of the lab host like Docker does.

    ``host_if`` is the veth's host end (``vethXXXX``); the container end is ``eth0``.
    """
    host.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", container.path)
    host.ip("link", "set", host_if, "master", bridge)
    host.ip("link", "set", host_if, "up")
    container.ip("addr", "add", addr, "dev", "eth0")
    container.ip("link", "set", "eth0", "up")
    container.ip("route", "add", "default", "via", gateway)
    if addr6 and gateway6:
        container.exec("sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=0")
        container.ip("-6", "addr", "add", addr6, "dev", "eth0", "nodad")
        container.ip("-6", "route", "add", "default", "via", gateway6)


def add_bridge(host: Netns, name: str, addr: str, addr6: str | None = None) -> None:
    host.ip("link", "add", name, "type", "bridge")
    host.ip("addr", "add", addr, "dev", name)
    if addr6:
        host.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{name}.accept_dad=0")
        host.ip("-6", "addr", "add", addr6, "dev", name, "nodad")
    host.ip("link", "set", name, "up")
