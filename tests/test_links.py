"""Pure tests of the links collector's rendering: literal topologies."""

from __future__ import annotations

from exporter.collectors.links import render_interfaces
from exporter.model import Link, LinksData, LinkStats, MetricFamily

# -- rendering ---------------------------------------------------------------------


def _stats(n: int) -> LinkStats:
    return LinkStats(
        rx_bytes=n * 1000 + 1,
        rx_packets=n * 10 + 2,
        rx_errors=n + 3,
        rx_dropped=n + 4,
        tx_bytes=n * 1000 + 5,
        tx_packets=n * 10 + 6,
        tx_errors=n + 7,
        tx_dropped=n + 8,
    )


LINKS = LinksData(
    links=(
        Link(3, "docker0", "bridge", None, "02:42:ac:11:00:01", "up"),
        Link(2, "eth0", "physical", None, "52:54:00:12:34:56", "up"),
        Link(1, "lo", "loopback", None, "00:00:00:00:00:00", "unknown"),
        Link(7, "veth1a2b3c4", "veth", 3, "6a:1f:00:00:00:07", "up", peer_index=2, peer_netnsid=0),
    ),
    stats={1: _stats(1), 2: _stats(2), 3: _stats(3), 7: _stats(7)},
)


def _family(families: list[MetricFamily], name: str) -> MetricFamily:
    found = [f for f in families if f.name == name]
    assert len(found) == 1, name
    return found[0]


def test_render_interfaces_info_and_bridge_ports() -> None:
    families = render_interfaces(LINKS)
    info = _family(families, "netpath_interface_info")
    assert info.type == "gauge"
    assert info.labels == ("interface", "kind", "bridge", "mac", "operstate")
    assert info.samples == (
        (("docker0", "bridge", "", "02:42:ac:11:00:01", "up"), 1),
        (("eth0", "physical", "", "52:54:00:12:34:56", "up"), 1),
        (("veth1a2b3c4", "veth", "docker0", "6a:1f:00:00:00:07", "up"), 1),
    )
    ports = _family(families, "netpath_bridge_ports")
    assert (ports.type, ports.labels, ports.samples) == ("gauge", ("bridge",), ((("docker0",), 1),))


def test_render_interfaces_counters() -> None:
    families = render_interfaces(LINKS)
    names = [f.name for f in families]
    assert len(names) == len(set(names)) == 10
    want = {
        "receive_bytes": "rx_bytes",
        "receive_packets": "rx_packets",
        "receive_errors": "rx_errors",
        "receive_dropped": "rx_dropped",
        "transmit_bytes": "tx_bytes",
        "transmit_packets": "tx_packets",
        "transmit_errors": "tx_errors",
        "transmit_dropped": "tx_dropped",
    }
    for metric, field in want.items():
        fam = _family(families, f"netpath_interface_{metric}_total")
        assert fam.type == "counter"
        assert fam.labels == ("interface",)
        assert fam.samples == (
            (("docker0",), getattr(_stats(3), field)),
            (("eth0",), getattr(_stats(2), field)),
            (("veth1a2b3c4",), getattr(_stats(7), field)),
        )
    assert _family(families, "netpath_interface_receive_bytes_total").samples[2] == (
        ("veth1a2b3c4",),
        7001,
    )


def test_render_interfaces_with_loopback() -> None:
    families = render_interfaces(LINKS, include_loopback=True)
    info = _family(families, "netpath_interface_info")
    assert (("lo", "loopback", "", "00:00:00:00:00:00", "unknown"), 1) in info.samples
    rx = _family(families, "netpath_interface_receive_packets_total")
    assert (("lo",), 12) in rx.samples


def test_render_interfaces_link_without_stats_has_info_only() -> None:
    data = LinksData(links=LINKS.links, stats={3: _stats(3)})
    families = render_interfaces(data)
    assert len(_family(families, "netpath_interface_info").samples) == 3
    assert _family(families, "netpath_interface_transmit_bytes_total").samples == (
        (("docker0",), 3005),
    )


def test_render_interfaces_bridge_label_only_for_bridge_masters() -> None:
    data = LinksData(
        links=(
            Link(4, "bond0", "bond", None, "52:54:00:00:00:04", "up"),
            Link(3, "br-1", "bridge", None, "02:42:00:00:00:03", "down"),
            Link(5, "eth1", "physical", 4, "52:54:00:00:00:04", "up"),
        ),
        stats={},
    )
    families = render_interfaces(data)
    info = _family(families, "netpath_interface_info")
    assert (("eth1", "physical", "", "52:54:00:00:00:04", "up"), 1) in info.samples
    assert _family(families, "netpath_bridge_ports").samples == ((("br-1",), 0),)


def test_help_texts_are_one_sentence() -> None:
    for fam in render_interfaces(LINKS):
        assert fam.help.endswith(".") and fam.help.count(". ") == 0, fam.name
