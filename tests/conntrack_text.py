"""``conntrack -L`` / ``-S`` text read back into the exporter's terms, for comparisons.

The Debian ``conntrack`` tool (conntrack-tools) is the reference: tests compare
what the exporter reads over ctnetlink with what the tool prints.
"""

from __future__ import annotations

import socket

from exporter.netlink.conntrack import NO_STATE, TCP_STATES, CtEntry


def _pack(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def parse_list_line(line: str) -> CtEntry:
    """One ``conntrack -L`` line as a compact entry (see CtEntry)."""
    words = line.split()
    proto = int(words[1])
    state = NO_STATE
    if proto == 6 and words[3] in TCP_STATES:
        state = TCP_STATES.index(words[3])
    src = [w[4:] for w in words if w.startswith("src=")]
    dst = [w[4:] for w in words if w.startswith("dst=")]
    dport = [int(w[6:]) for w in words if w.startswith("dport=")]
    sport = [int(w[6:]) for w in words if w.startswith("sport=")]
    return (
        proto,
        _pack(src[0]),
        _pack(dst[0]),
        _pack(src[1]),
        _pack(dst[1]),
        dport[0] if dport else 0,
        state,
        sport[1] if len(sport) > 1 else 0,
    )


def parse_list(text: str) -> list[CtEntry]:
    return [parse_list_line(line) for line in text.splitlines() if "src=" in line]


def parse_stats(text: str) -> dict[str, int]:
    """``conntrack -S`` summed over its CPU lines, by counter name."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        for word in line.split()[1:]:
            key, _, value = word.partition("=")
            if value.isdigit():
                totals[key] = totals.get(key, 0) + int(value)
    return totals
