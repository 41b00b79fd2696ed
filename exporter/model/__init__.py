"""Plain, immutable data that flows from the readers to the renderers.

Readers (``read_*``) do I/O and return these; parsers (``parse_*``) build them
from text or bytes; joins (``build_*``) combine them; renderers (``render_*``)
turn them into metric families. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, overload

# --------------------------------------------------------------------------
# Metric families: what renderers produce and the exposition writer prints.
# --------------------------------------------------------------------------

LabelValues = tuple[str, ...]
Sample = tuple[LabelValues, float | int]


class Series(Sequence[Sample]):
    """A family's samples as two columns, in order: label values and values.

    It reads as the sequence of ``(label values, value)`` pairs (and equals the
    tuple of them), but is made without them: a renderer that keeps its label
    sets between polls hands the same ``labels`` tuple with each poll's values,
    and the exposition writer knows its series unchanged without comparing them
    (10k-rule families: no 10k pairs to build, no 10k label sets to compare).
    """

    __slots__ = ("ints", "labels", "values")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, labels: Sequence[LabelValues], values: Sequence[float | int]) -> None:
        if len(labels) != len(values):
            raise ValueError(f"{len(labels)} label sets for {len(values)} values")
        self.labels = labels
        self.values = values
        self.ints = False  # every value is an int: see counters()

    @classmethod
    def counters(cls, labels: Sequence[LabelValues], values: Sequence[int]) -> Series:
        """Integer values only, as the type says (kernel counters and their sums): the
        writer prints them with ``%d`` without looking at each value's type."""
        series = cls(labels, values)
        series.ints = True
        return series

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Sample, ...]: ...
    def __getitem__(self, i: int | slice) -> Sample | tuple[Sample, ...]:
        if isinstance(i, slice):
            return tuple(zip(self.labels[i], self.values[i], strict=True))
        return (self.labels[i], self.values[i])

    def __iter__(self) -> Iterator[Sample]:
        return zip(self.labels, self.values, strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"Series({tuple(self)!r})"


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One metric family: HELP/TYPE once, then its samples.

    ``labels`` names the label keys; each sample is ``(label values, value)``
    with the values in the same order: a tuple of them, or a :class:`Series`.
    Counter families carry the full name including ``_total``. A renderer may
    hand the same family object poll after poll while nothing in it changes
    (the exposition writer then writes the text it kept for it).
    """

    name: str
    type: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...]
    samples: tuple[Sample, ...] | Series


# --------------------------------------------------------------------------
# Interfaces
# --------------------------------------------------------------------------


class LinkStats(NamedTuple):
    """Counters of one interface, host perspective (as ``ip -s link``).

    A tuple: a thousand interfaces' counters are made every poll, and a tuple
    is made (and compared with the last poll's) at a fraction of a dataclass's cost.
    """

    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


@dataclass(frozen=True, slots=True)
class Link:
    """Topology of one interface in the host network namespace."""

    index: int
    name: str
    kind: str  # "veth", "bridge", "physical", "loopback" or the kernel's link kind
    master: int | None  # ifindex of the master (bridge), None if none
    mac: str  # "" if the link has no hardware address
    operstate: str  # lower case, as the kernel names it: "up", "down", "unknown", ...
    peer_index: int | None = None  # IFLA_LINK: veth peer's ifindex (in its own netns)
    peer_netnsid: int | None = None  # IFLA_LINK_NETNSID: the peer's namespace id


@dataclass(frozen=True, slots=True)
class LinksData:
    links: tuple[Link, ...]  # sorted by name
    stats: Mapping[int, LinkStats]  # by ifindex; a link may lack stats if it vanished


# --------------------------------------------------------------------------
# Firewall
# --------------------------------------------------------------------------

BACKEND_IPTABLES_NFT = "iptables-nft"
BACKEND_IPTABLES_LEGACY = "iptables-legacy"
BACKEND_NFTABLES = "nftables"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as its backend prints it, minus chain prefix and counters.

    For iptables: ``-o br-40d652e0aac8 -j DROP``. For native nftables: the
    statement text, e.g. ``ip daddr 172.18.0.2 iifname != "br-x" counter drop
    comment "DROP DIRECT ACCESS"``. ``packets``/``bytes`` are None for an
    nftables rule without a ``counter`` statement.
    """

    text: str
    packets: int | None
    bytes: int | None


class Rules(Sequence[Rule]):
    """A chain's rules, made on demand from its rule texts and counter columns.

    The firewall readers hand one of these to every chain whose counters moved:
    the renderers read the columns (:meth:`Chain.counter_columns`), so making
    10k :class:`Rule` objects a poll that nobody reads was most of the chain
    cache's cost. It reads as, and equals, the tuple of its rules; each access
    makes the Rule afresh.
    """

    __slots__ = ("_bytes", "_packets", "_texts")

    def __init__(
        self,
        texts: Sequence[str],
        packets: Sequence[int | None],
        nbytes: Sequence[int | None],
    ) -> None:
        if not len(texts) == len(packets) == len(nbytes):
            raise ValueError(
                f"{len(texts)} rule texts for {len(packets)} packet and {len(nbytes)} byte counters"
            )
        self._texts = texts
        self._packets = packets
        self._bytes = nbytes

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, i: int) -> Rule: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Rule, ...]: ...
    def __getitem__(self, i: int | slice) -> Rule | tuple[Rule, ...]:
        if isinstance(i, slice):
            return tuple(map(Rule, self._texts[i], self._packets[i], self._bytes[i]))
        return Rule(self._texts[i], self._packets[i], self._bytes[i])

    def __iter__(self) -> Iterator[Rule]:
        return map(Rule, self._texts, self._packets, self._bytes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Rules({tuple(self)!r})"


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: Sequence[Rule]  # in traversal order, duplicates kept: a tuple, or Rules
    # Built-in (iptables) / base (nftables) chains only:
    policy: str | None = None  # "ACCEPT", "DROP"; lower case for nftables ("accept")
    policy_packets: int | None = None
    policy_bytes: int | None = None
    hook: str | None = None  # nftables base chains: "forward", "prerouting", ...
    # The rules' (packets, bytes) as the reader had them, in columns: renderers
    # take these instead of walking the rules. Not part of equality.
    counters: tuple[Sequence[int | None], Sequence[int | None]] | None = field(
        default=None, compare=False, repr=False
    )

    def counter_columns(self) -> tuple[Sequence[int | None], Sequence[int | None]]:
        """The rules' packets and bytes, as columns."""
        if self.counters is not None:
            return self.counters
        rules = tuple(self.rules)
        return [r.packets for r in rules], [r.bytes for r in rules]


@dataclass(frozen=True, slots=True)
class Table:
    family: str  # iptables: "ipv4"/"ipv6"; nftables: "ip", "ip6", "inet", ...
    backend: str  # one of the BACKEND_* constants
    name: str  # "filter", "nat", "raw", ... or the nftables table name
    chains: tuple[Chain, ...]  # only the chains selected for export


@dataclass(frozen=True, slots=True)
class FirewallData:
    # (family, backend) for every backend that holds rules; family "ipv4"/"ipv6"
    backends: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...]
    # Backends that could not be read, one message each; the poller reports
    # the collector as failed but still serves the tables that were read.
    errors: tuple[str, ...] = ()
    # A process-unique token of the structure: the tables, their chains (name,
    # policy, hook), each chain's rule texts in order and which rules have no
    # counters. Two FirewallData with the same non-zero token differ at most
    # in their counter values, so renderers may keep what they derived from
    # the structure (labels, which rules feed which series) under this token
    # and only sum the counters on each poll. 0: unknown, derive it all again.
    structure: int = 0


# --------------------------------------------------------------------------
# Host diagnostics
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SysctlData:
    ip_forwarding: Mapping[str, bool]  # family ("ipv4", "ipv6") -> enabled
    bridge_nf_call: Mapping[str, bool]  # family -> enabled; empty if br_netfilter absent


@dataclass(frozen=True, slots=True)
class Route:
    destination: str  # "default" or CIDR
    interface: str
    gateway: str  # "" if on-link


@dataclass(frozen=True, slots=True)
class RoutesData:
    routes: tuple[Route, ...]


# --------------------------------------------------------------------------
# Workloads (runtime-neutral; see exporter.model.workloads)
# --------------------------------------------------------------------------

from exporter.model.workloads import (  # noqa: E402 - after the types above, by topic
    Endpoint,
    Network,
    PortBinding,
    SourceData,
    Workload,
)

__all__ = [
    "BACKEND_IPTABLES_LEGACY",
    "BACKEND_IPTABLES_NFT",
    "BACKEND_NFTABLES",
    "Chain",
    "Endpoint",
    "FirewallData",
    "LabelValues",
    "Link",
    "LinkStats",
    "LinksData",
    "MetricFamily",
    "Network",
    "PortBinding",
    "Route",
    "RoutesData",
    "Rule",
    "SourceData",
    "SysctlData",
    "Table",
    "Workload",
]
