"""The conntrack table: how full it is, what fails, and which workload fills it.

Every poll reads the cheap figures over ctnetlink (:mod:`exporter.netlink.conntrack`):
the table's size, its limit and the per-CPU statistics summed into counters.
On its own, longer interval (``conntrack.interval``) it dumps the whole
table, at most ``conntrack.max-entries`` entries, and keeps only two sums of
it: entries per (original source, reply source) pair, and the active
connections per (protocol, original destination, port, reply source). The
renderer attributes the first to the workloads whose address is an entry's
original source (connections it opened) or reply source (connections it
accepted, also through DNAT); :func:`active_connections` serves the second
to whoever maps services to endpoints. One dump feeds both.

Every ctnetlink read needs CAP_NET_ADMIN; when refused the message names it.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from exporter.collector import CollectorError
from exporter.meaning.base import ServicePort
from exporter.meaning.kube_proxy import active_per_endpoint
from exporter.model import MetricFamily, SourceData
from exporter.model.workloads import RUNTIME_CONTAINERD, RUNTIME_CRIO, RUNTIME_PODMAN
from exporter.netlink.conntrack import (
    EVENTS,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ConntrackReader,
    DumpResult,
    TableInfo,
)
from exporter.netlink.netfilter import NetlinkError
from exporter.workloads import WorkloadInterface, has_own_netns

if TYPE_CHECKING:
    from exporter.check import Finding
    from exporter.config import Config
    from exporter.poller import PollResult

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_MAX_ENTRIES = 1_000_000
NEEDS = "needs CAP_NET_ADMIN"

# (container, namespace, pod, network): the labels of netpath_conntrack_workload_entries
WorkloadKey = tuple[str, str, str, str]
# (manager, network): the labels of netpath_conntrack_network_entries
NetworkKey = tuple[str, str]
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class LastDump:
    """The last attribution dump: its sums and what it cost."""

    result: DumpResult
    duration: float  # seconds
    finished: float  # Unix time


@dataclass(frozen=True, slots=True)
class ConntrackData:
    table: TableInfo
    events: Mapping[str, int]  # per-CPU statistics summed, by event name
    dump: LastDump | None  # None until a dump succeeded
    # A failed dump (the cheap figures were read): the poller reports the
    # collector as failed but the figures and the last good dump are served.
    errors: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def error_message(exc: OSError) -> str:
    """``conntrack (netlink REQUEST): REASON (WHAT GRANTS IT)``, as the firewall says it."""
    step = f" (netlink {exc.request})" if isinstance(exc, NetlinkError) and exc.request else ""
    if exc.errno in (errno.EPERM, errno.EACCES):
        return f"conntrack{step}: permission denied ({NEEDS})"
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EOPNOTSUPP, errno.ENOENT, errno.EPROTONOSUPPORT):
        reason += " (is the nf_conntrack_netlink module loaded?)"
    return f"conntrack{step}: {reason}"


# --------------------------------------------------------------------------
# The collector (I/O)
# --------------------------------------------------------------------------


class ConntrackCollector:
    """Cheap figures every poll; the attribution dump every ``interval`` seconds.

    The first dump runs within the poll (so the first scrape and ``check``
    have it); later ones run on a thread of their own, so a dump of a large
    table (seconds at a million entries) never holds up a poll: each poll
    serves the last finished dump. A failed dump is reported (the collector's
    ``errors``) until a dump succeeds again; the last good one is still served.
    """

    name = "conntrack"

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        reader: ConntrackReader | None = None,
        active: bool = False,
    ) -> None:
        self.interval = interval
        self.max_entries = max_entries
        # Whether dumps also sum active connections per service destination
        # (see active_connections): on for whoever renders services' endpoints.
        self.active = active
        self._reader = reader or ConntrackReader()
        self._dump: LastDump | None = None
        self._dump_error = ""  # why the last dump failed; "" once one succeeded
        self._next_dump = 0.0  # monotonic time the next dump is due
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10.0)
        self._reader.close()

    def collect(self) -> ConntrackData:
        try:
            table = self._reader.table()
            events = self._reader.events()
        except OSError as exc:
            raise CollectorError(error_message(exc)) from exc
        except ValueError as exc:
            raise CollectorError(f"conntrack (netlink): malformed reply: {exc}") from exc
        now = time.monotonic()
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
        if now >= self._next_dump and self._thread is None:
            self._next_dump = now + self.interval
            if self._dump is None:
                self._run_dump()
            else:
                self._thread = threading.Thread(
                    target=self._run_dump, name="conntrack-dump", daemon=True
                )
                self._thread.start()
        errors = (self._dump_error,) if self._dump_error else ()
        return ConntrackData(table, events, self._dump, errors)

    def wait_dump(self, timeout: float | None = None) -> None:
        """Wait for a dump running on its thread to finish (tests, tools)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run_dump(self) -> None:
        try:
            self._dump = self.dump_now()
        except OSError as exc:
            self._dump_error = error_message(exc)
        except ValueError as exc:
            self._dump_error = f"conntrack (netlink IPCTNL_MSG_CT_GET): malformed reply: {exc}"
        else:
            self._dump_error = ""

    def dump_now(self) -> LastDump:
        """One attribution dump, timed; says so in the log when the bound stopped it."""
        t0 = time.monotonic()
        result = self._reader.dump_sums(self.max_entries, self.active)
        duration = time.monotonic() - t0
        if result.truncated:
            log.warning(
                "conntrack dump stopped at its bound: the table holds more entries than read; "
                "attribution counts only those read (raise conntrack.max-entries)",
                extra={"max_entries": self.max_entries, "read": result.entries},
            )
        return LastDump(result, duration, time.time())


# --------------------------------------------------------------------------
# Attribution (pure)
# --------------------------------------------------------------------------


def packed(addr: str) -> bytes | None:
    """An address as ctnetlink carries it (4 or 16 bytes); None if not an address."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, addr.split("/", 1)[0])
        except OSError:
            continue
    return None


def owners(pairs: Iterable[tuple[str, K]]) -> dict[bytes, K]:
    """{packed address: owner} from (address text, owner); unparsable or empty addresses skipped."""
    out: dict[bytes, K] = {}
    for addr, key in pairs:
        raw = packed(addr) if addr else None
        if raw is not None:
            out.setdefault(raw, key)
    return out


def attribute(dump: DumpResult, by_address: Mapping[bytes, K]) -> dict[K, int]:
    """Entries per owner: those whose original source or reply source is the owner's address.

    An entry counts once per owner, also when both of its sources are the
    owner's (a connection to itself); an entry between two owners counts for each.
    """
    out: dict[K, int] = dict.fromkeys(by_address.values(), 0)
    get = by_address.get
    for (osrc, rsrc), n in dump.pairs.items():
        ko = get(osrc)
        kr = get(rsrc)
        if ko is not None:
            out[ko] += n
        if kr is not None and kr != ko:
            out[kr] += n
    return out


def _text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


_PROTO_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}


ActiveKey = tuple[str, str, int, str, int]


def active_connections(dump: DumpResult) -> dict[ActiveKey, int]:
    """Active connections by (protocol, original destination, its port, reply source, its port).

    TCP entries in ESTABLISHED and every UDP entry, as counted by the last
    dump of a collector made with ``active=True`` (else empty). For a
    Service, the original destination is its ClusterIP (or node address) and
    port, the reply source the endpoint the connection was DNATed to (its
    address and port).
    """
    return {
        (_PROTO_NAMES[proto], _text(dst), port, _text(src), sport): n
        for (proto, dst, port, src, sport), n in dump.active.items()
    }


@dataclass(frozen=True, slots=True)
class Owners:
    """Whose address is whose: workloads' endpoint addresses, and networks' gateways."""

    workloads: Mapping[bytes, WorkloadKey] = field(default_factory=dict)
    gateways: Mapping[bytes, NetworkKey] = field(default_factory=dict)
    # which network each workload series counts for
    networks: Mapping[WorkloadKey, NetworkKey] = field(default_factory=dict)


_MANAGERS = {RUNTIME_PODMAN: "netavark", RUNTIME_CONTAINERD: "cni", RUNTIME_CRIO: "cni"}


def manager_of(runtime: str) -> str:
    """The ``manager`` label of a runtime's networks."""
    return _MANAGERS.get(runtime, runtime)


def build_owners(
    sources: Iterable[SourceData], interfaces: Iterable[WorkloadInterface] = ()
) -> Owners:
    """The addresses of the poll's workloads and of their networks' gateways.

    A workload's series is (container, namespace, pod, network) as the workload
    families label it; its network is the one the join found for its veth
    (``interfaces``), else its endpoint's. Every endpoint address counts, IPv4
    and IPv6, also of workloads whose veth is not mapped (yet). A network's
    manager is the program that manages it, as the firewall managers name
    themselves (Docker's networks ``docker``, Podman's ``netavark``, the CRI
    runtimes' CNI networks ``cni``).
    """
    joined = {(wi.workload.id, wi.ip): wi.network for wi in interfaces if wi.ip and wi.network}
    workloads: list[tuple[str, WorkloadKey]] = []
    networks: dict[WorkloadKey, NetworkKey] = {}
    gateways: list[tuple[str, NetworkKey]] = []
    for src in sources:
        for w in src.workloads:
            if not has_own_netns(w):
                continue
            for ep in w.endpoints:
                network = joined.get((w.id, ep.ip), ep.network)
                key = (w.name, w.namespace, w.pod, network)
                for addr in (ep.ip, ep.ipv6):
                    if addr:
                        workloads.append((addr, key))
                        networks[key] = (manager_of(src.runtime), network)
        gateways += [
            (gw, (manager_of(net.runtime), net.name)) for net in src.networks for gw in net.gateways
        ]
    return Owners(owners(workloads), owners(gateways), networks)


# --------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------


def render_conntrack(data: ConntrackData, who: Owners) -> list[MetricFamily]:
    table = data.table
    fams = [
        MetricFamily(
            "netpath_conntrack_entries",
            "gauge",
            "Entries in the conntrack table of the host's network namespace.",
            (),
            (((), table.entries),),
        ),
    ]
    if table.limit is not None:
        fams.append(
            MetricFamily(
                "netpath_conntrack_entries_limit",
                "gauge",
                "The table's limit (nf_conntrack_max): new connections are dropped beyond it.",
                (),
                (((), table.limit),),
            )
        )
    fams.append(
        MetricFamily(
            "netpath_conntrack_events_total",
            "counter",
            "Conntrack statistics summed over CPUs (conntrack -S): drop and early_drop count "
            "connections refused or evicted by a full table, insert_failed lost races.",
            ("event",),
            tuple(((e,), data.events[e]) for e in EVENTS if e in data.events),
        )
    )
    dump = data.dump
    if dump is None:
        return fams
    result = dump.result
    fams += [
        MetricFamily(
            "netpath_conntrack_dump_truncated",
            "gauge",
            "1 if the last attribution dump stopped at conntrack.max-entries (its counts are low).",
            (),
            (((), int(result.truncated)),),
        ),
        MetricFamily(
            "netpath_conntrack_dump_duration_seconds",
            "gauge",
            "Wall time of the last attribution dump of the conntrack table.",
            (),
            (((), dump.duration),),
        ),
        MetricFamily(
            "netpath_conntrack_dump_timestamp_seconds",
            "gauge",
            "Unix time the last attribution dump finished (it runs every conntrack.interval).",
            (),
            (((), dump.finished),),
        ),
    ]
    per_workload = attribute(result, who.workloads)
    per_network: dict[NetworkKey, int] = attribute(result, who.gateways)
    for key, n in per_workload.items():
        net = who.networks.get(key)
        if net is not None:
            per_network[net] = per_network.get(net, 0) + n
    fams += [
        MetricFamily(
            "netpath_conntrack_workload_entries",
            "gauge",
            "Conntrack entries whose original or reply source is the workload's address "
            "(connections it opened or accepted), as of the last attribution dump.",
            ("container", "namespace", "pod", "network"),
            tuple(sorted(per_workload.items())),
        ),
        MetricFamily(
            "netpath_conntrack_network_entries",
            "gauge",
            "Conntrack entries of the network's workloads summed, plus those of its gateway "
            "address, as of the last attribution dump.",
            ("manager", "network"),
            tuple(sorted(per_network.items())),
        ),
    ]
    return fams


# --------------------------------------------------------------------------
# The registry's functions (see exporter.registry)
# --------------------------------------------------------------------------


def make_conntrack(cfg: Config) -> ConntrackCollector:
    # The active sums are always kept: one dict update per established entry
    # of a dump that runs every conntrack.interval; kube-proxy's Services read them.
    return ConntrackCollector(
        float(cfg.setting("conntrack.interval")),
        int(cfg.setting("conntrack.max-entries")),
        active=True,
    )


def render_service_active(dump: LastDump, services: Sequence[ServicePort]) -> MetricFamily:
    """``netpath_service_endpoint_active_connections``: the join of Services and the dump.

    The join happens here, when the poll is rendered: the Services come from
    the poll's view (kube-proxy's meaning, derived once per firewall
    structure), the active sums from the last attribution dump (every
    ``conntrack.interval``); :func:`exporter.meaning.kube_proxy.active_per_endpoint`
    matches them. Both modes: nftables mode has no rule counters.
    """
    per = active_per_endpoint(services, active_connections(dump.result))
    return MetricFamily(
        "netpath_service_endpoint_active_connections",
        "gauge",
        "Active connections (TCP ESTABLISHED, UDP all) a Service sent to the endpoint: conntrack "
        "entries to the Service's address whose reply comes from the endpoint, as of the last "
        "attribution dump.",
        ("namespace", "service", "port", "protocol", "endpoint"),
        tuple(sorted(per.items())),
    )


def render_conntrack_data(data: ConntrackData, poll: PollResult, cfg: Config) -> list[MetricFamily]:
    view = poll.view
    who = build_owners(view.sources, view.interfaces) if view is not None else Owners()
    fams = render_conntrack(data, who)
    services = [s for m in view.meanings for s in m.services] if view is not None else []
    if services and data.dump is not None:
        fams.append(render_service_active(data.dump, services))
    return fams


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def describe_conntrack(data: ConntrackData, poll: PollResult, cfg: Config) -> list[Finding]:
    """``check``: whether the table is readable, how full, and what the last dump cost."""
    from exporter.check import FAIL, OK, WARN, Finding  # noqa: PLC0415 - check imports the registry

    table = data.table
    limit = f" of {table.limit} ({100 * table.entries / table.limit:.0f}%)" if table.limit else ""
    out = [Finding(OK, "conntrack", f"readable: {_entries(table.entries)}{limit}")]
    dump = data.dump
    if dump is not None:
        cut = dump.result.truncated
        out.append(
            Finding(
                WARN if cut else OK,
                "conntrack",
                f"last dump: {_entries(dump.result.entries)} read in {dump.duration:.3f}s"
                + (" (stopped at conntrack.max-entries)" if cut else ""),
            )
        )
    out.extend(Finding(FAIL, "conntrack", err) for err in data.errors)
    return out
