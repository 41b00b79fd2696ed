"""What each firewall manager's rules mean (pure; see :mod:`exporter.meaning.base`).

:data:`MANAGERS` is the one list of managers: adding one is a module with a
:class:`~exporter.meaning.base.Manager` and a row here.
"""

from __future__ import annotations

from exporter.meaning.base import Manager, Meaning, Topology
from exporter.meaning.cni import CniManager
from exporter.meaning.docker import DockerManager
from exporter.meaning.kube_proxy import KubeProxyManager
from exporter.meaning.netavark import NetavarkManager
from exporter.model import FirewallData

MANAGERS: tuple[Manager, ...] = (
    DockerManager(),
    CniManager(),
    NetavarkManager(),
    KubeProxyManager(),
)


def interpret_all(fw: FirewallData, topo: Topology) -> tuple[Meaning, ...]:
    """Every manager's meaning of ``fw`` (those with rules here), in MANAGERS order."""
    out = []
    for manager in MANAGERS:
        meaning = manager.interpret(fw, topo)
        if meaning is not None:
            out.append(meaning)
    return tuple(out)
