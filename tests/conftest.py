"""Shared pytest fixtures.

Docker: ``dockerd`` (iptables-nft, the default) and ``dockerd_legacy``
(iptables-legacy) hand a module a real dockerd in its own network namespace
(see tests/dockerlab.py). One lab per kind lives for the session and is
reused by the next module; when a module asks for the other kind, a lab
nobody holds is torn down first, so usually only one dockerd runs. Each
module starts from an empty lab (containers and user networks of the previous
module are removed) with the ``netpath-test/busybox`` image imported.

Podman: ``podman_netavark`` and ``podman_cni`` hand a module a real rootful
Podman (see tests/podmanlab.py) with its API service, torn down after the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import crilab
import dockerlab
import podmanlab
import pytest

from exporter.config import Config
from exporter.model import MetricFamily
from exporter.poller import Poller, PollResult
from exporter.web.security import WebSecurity
from exporter.web.server import ExporterHTTPServer, serve_in_thread


@pytest.fixture(scope="session")
def docker_labs() -> Iterator[dockerlab.DockerLabs]:
    labs = dockerlab.DockerLabs()
    try:
        yield labs
    finally:
        labs.close()


def _lab(labs: dockerlab.DockerLabs, legacy: bool) -> Iterator[dockerlab.DockerLab]:
    dockerlab.need_dockerd()
    dl = labs.acquire(legacy)
    try:
        yield dl
    finally:
        labs.release(dl)


@pytest.fixture(scope="module")
def dockerd(docker_labs: dockerlab.DockerLabs) -> Iterator[dockerlab.DockerLab]:
    """A running lab dockerd on iptables-nft."""
    yield from _lab(docker_labs, legacy=False)


@pytest.fixture(scope="module")
def dockerd_legacy(docker_labs: dockerlab.DockerLabs) -> Iterator[dockerlab.DockerLab]:
    """A running lab dockerd on iptables-legacy."""
    yield from _lab(docker_labs, legacy=True)


@pytest.fixture(scope="module", params=["iptables-nft", "iptables-legacy"])
def dockerd_any(
    request: pytest.FixtureRequest, docker_labs: dockerlab.DockerLabs
) -> Iterator[dockerlab.DockerLab]:
    """Each test runs once against each kind of lab dockerd (nft first, then legacy)."""
    yield from _lab(docker_labs, legacy=request.param == "iptables-legacy")


def _podman(backend: str) -> Iterator[podmanlab.PodmanLab]:
    podmanlab.need_podman(backend)
    with podmanlab.podman_lab(backend) as pl:
        yield pl


@pytest.fixture(scope="module")
def podman_netavark() -> Iterator[podmanlab.PodmanLab]:
    """A running lab Podman (netavark backend) with its API service, for one module."""
    yield from _podman("netavark")


@pytest.fixture(scope="module")
def podman_cni() -> Iterator[podmanlab.PodmanLab]:
    """A running lab Podman (CNI backend) with its API service, for one module."""
    yield from _podman("cni")


def _one_gauge(poll: PollResult) -> list[MetricFamily]:
    return [MetricFamily("netpath_test", "gauge", "t", (), (((), 1),))]


class _NoLinks:
    """A "links" collector that reads nothing."""

    name = "links"

    def collect(self) -> object:
        return 1

    def close(self) -> None:
        pass


@pytest.fixture
def start_server() -> Iterator[Callable[..., ExporterHTTPServer]]:
    """``start_server(security=None, *, polled=True, render=...)``: a server on a free
    port, in a thread.

    It has polled once and serves ``netpath_test 1`` (or what ``render`` makes of a
    poll); with ``polled=False`` it has not polled yet (not ready). Every server
    started is shut down after the test.
    """
    started: list[ExporterHTTPServer] = []

    def start(
        security: WebSecurity | None = None,
        *,
        polled: bool = True,
        render: Callable[[PollResult], list[MetricFamily]] = _one_gauge,
    ) -> ExporterHTTPServer:
        poller = Poller([("links", _NoLinks)], render, 60)
        if polled:
            poller.poll_once()
        srv = ExporterHTTPServer(("127.0.0.1", 0), poller, Config(), security)
        serve_in_thread(srv)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------------------
# containerd with its CRI plugin and the CNI plugins (tests/crilab.py)
# ---------------------------------------------------------------------------


class _CriLabs:
    """The session's lab containerd, started when a module first asks for it."""

    def __init__(self) -> None:
        self.lab: crilab.CriLab | None = None

    def acquire(self) -> crilab.CriLab:
        crilab.need_containerd()
        if self.lab is None:
            cl = crilab.CriLab()
            self.lab = cl
            try:
                cl.setup()
                cl.start()
                cl.import_image()
            except BaseException:
                self.close()
                raise
        elif not self.lab.running():
            self.lab.start()
        return self.lab

    def close(self) -> None:
        if self.lab is not None:
            self.lab.close()
            self.lab = None


@pytest.fixture(scope="session")
def cri_labs() -> Iterator[_CriLabs]:
    labs = _CriLabs()
    try:
        yield labs
    finally:
        labs.close()


@pytest.fixture(scope="module")
def containerd(cri_labs: _CriLabs) -> Iterator[crilab.CriLab]:
    """A running lab containerd (CRI plugin, CNI bridge + portmap) in its own node namespace.

    One per session; each module starts with no pods and leaves none behind
    (and containerd running, if a test stopped it).
    """
    cl = cri_labs.acquire()
    try:
        yield cl
    finally:
        if not cl.running():
            cl.start()
        cl.remove_all()
