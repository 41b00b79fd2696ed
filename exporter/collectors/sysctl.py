"""Host switches that decide whether container traffic can be routed at all.

``ip_forward`` off means no container reaches the outside; with br_netfilter
loaded, ``bridge-nf-call-iptables`` decides whether bridged traffic passes
iptables (and so Docker's isolation rules).
"""

from __future__ import annotations

from pathlib import Path

from exporter.collector import CollectorError
from exporter.config import Config
from exporter.model import MetricFamily, SysctlData

FORWARDING = {
    "ipv4": "net/ipv4/ip_forward",
    "ipv6": "net/ipv6/conf/all/forwarding",
}
BRIDGE_NF_CALL = {
    "ipv4": "net/bridge/bridge-nf-call-iptables",
    "ipv6": "net/bridge/bridge-nf-call-ip6tables",
}


def parse_switch(text: str, where: str) -> bool:
    value = text.strip()
    if not value.lstrip("-").isdigit():
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return int(value) != 0


def read_sysctl(root: Path = Path("/proc/sys")) -> SysctlData:
    forwarding: dict[str, bool] = {}
    problems: list[str] = []
    for family, rel in FORWARDING.items():
        path = root / rel
        try:
            forwarding[family] = parse_switch(path.read_text(), str(path))
        except FileNotFoundError:
            continue  # IPv6 disabled on this host
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    bridge: dict[str, bool] = {}
    for family, rel in BRIDGE_NF_CALL.items():
        path = root / rel
        try:
            bridge[family] = parse_switch(path.read_text(), str(path))
        except FileNotFoundError:
            continue  # br_netfilter not loaded
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        raise CollectorError("; ".join(problems))
    return SysctlData(ip_forwarding=forwarding, bridge_nf_call=bridge)


class SysctlCollector:
    name = "sysctl"

    def __init__(self, root: Path = Path("/proc/sys")) -> None:
        self._root = root

    def collect(self) -> SysctlData:
        return read_sysctl(self._root)

    def close(self) -> None:
        pass


def render_sysctl(data: SysctlData) -> list[MetricFamily]:
    return [
        MetricFamily(
            "netpath_ip_forwarding_enabled",
            "gauge",
            "1 if the kernel forwards packets for this address family (net.ipv4.ip_forward, "
            "net.ipv6.conf.all.forwarding), else 0.",
            ("family",),
            tuple(((f,), int(v)) for f, v in sorted(data.ip_forwarding.items())),
        ),
        MetricFamily(
            "netpath_bridge_nf_call_iptables_enabled",
            "gauge",
            "1 if bridged traffic passes iptables/ip6tables (br_netfilter's bridge-nf-call-*), "
            "else 0; absent when br_netfilter is not loaded.",
            ("family",),
            tuple(((f,), int(v)) for f, v in sorted(data.bridge_nf_call.items())),
        ),
    ]


def make_sysctl(cfg: Config) -> SysctlCollector:
    """The registry's factory (see exporter.registry)."""
    return SysctlCollector()


def render_sysctl_data(data: SysctlData, poll: object, cfg: Config) -> list[MetricFamily]:
    return render_sysctl(data)
