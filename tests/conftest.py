"""Shared pytest fixtures.

Docker: ``dockerd`` (iptables-nft, the default) and ``dockerd_legacy``
(iptables-legacy) hand a module a real dockerd in its own network namespace
(see tests/dockerlab.py). One lab per kind lives for the session and is
reused by the next module; when a module asks for the other kind, a lab
nobody holds is torn down first, so usually only one dockerd runs. Each
module starts from an empty lab (containers and user networks of the previous
module are removed) with the ``netpath-test/busybox`` image imported.
"""

from __future__ import annotations

from collections.abc import Iterator

import dockerlab
import pytest


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
