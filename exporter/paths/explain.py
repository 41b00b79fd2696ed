"""``netpath-exporter explain``: one workload's packet path, hop by hop, with live figures.

The command polls twice, ``--interval`` apart, through the daemon's own
pipeline (:func:`exporter.pipeline.make_poller`: the same collectors, the same
join, the same managers' meanings) and prints the path that
:mod:`exporter.paths.walk` builds from the second poll's
:class:`~exporter.view.HostView`, with rates against the first
(:class:`~exporter.paths.views.Baseline`; a counter that went down has no
rate). No running exporter is needed. The ``/path`` page
(:mod:`exporter.paths.page`) shows the same paths from the daemon's last two
polls.

The package: :mod:`~exporter.paths.views` (the path as plain data),
:mod:`~exporter.paths.lookup` (finding the workload, saying why not),
:mod:`~exporter.paths.figures` (counters and rates),
:mod:`~exporter.paths.rules` (which rules are about a network and what each
means), :mod:`~exporter.paths.walk` (the walk), :mod:`~exporter.paths.text`
(text and JSON), and this module (the command).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TextIO

from exporter.config import Config, parse_duration
from exporter.model import Workload
from exporter.paths.lookup import describe_missing, describe_no_network, find_container
from exporter.paths.rules import build_rule_meanings
from exporter.paths.service import build_service_walk, format_service_walk, parse_service_query
from exporter.paths.text import format_path_json, format_path_text, path_to_json
from exporter.paths.views import Baseline, ConntrackView, ContainerPath, ExplainError
from exporter.paths.walk import build_path, build_paths
from exporter.poller import PollResult
from exporter.workloads import has_own_netns

# --------------------------------------------------------------------------
# Reading the host (I/O)
# --------------------------------------------------------------------------


def read_container_ifnames(netnsid: int, timeout: float = 2.0) -> dict[int, str]:
    """{ifindex: name} of the interfaces in the namespace this one calls ``netnsid``.

    One RTM_GETLINK dump with IFLA_TARGET_NETNSID: no namespace is entered.
    """
    from exporter.netlink import route as rtnetlink  # noqa: PLC0415

    return rtnetlink.read_link_names(netnsid=netnsid, timeout=timeout)


def run_explain(
    cfg: Config,
    query: str,
    *,
    interval: float = 1.0,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Explain one workload of the local host; 0 when done, 1 when it cannot be explained.

    Polls through the daemon's own pipeline (:func:`exporter.pipeline.make_poller`):
    twice, ``interval`` apart, for the rates.
    """
    from exporter.pipeline import make_poller  # noqa: PLC0415 - only for `explain`
    from exporter.registry import BY_NAME  # noqa: PLC0415

    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str) -> int:
        print(f"netpath-exporter explain: {message}", file=err)
        return 1

    service = parse_service_query(query)
    if service is not None:  # the walk shows every rule's counter, the KUBE-SEP chains' too
        cfg = replace(cfg, firewall=replace(cfg.firewall, chains_text_only=()))
    poller = make_poller(cfg, render=False)
    quiet = logging.getLogger("netpath.poller")
    was_disabled, quiet.disabled = quiet.disabled, True
    if service is not None:
        try:
            return _explain_service(poller, service, interval, out, fail)
        finally:
            poller.stop()
            quiet.disabled = was_disabled
    try:
        first = poller.poll_once().poll
        view = first.view
        assert view is not None
        workloads = [w for src in view.sources for w in src.workloads]
        failed = [
            s for s in first.status if not s.success and not s.absent and BY_NAME[s.name].source
        ]
        try:
            ctr = find_container(workloads, query)
        except ExplainError as exc:
            return fail(str(exc))
        except LookupError:
            if not view.sources and failed:
                return fail("; ".join(s.error for s in failed))
            return fail(_describe_missing_workload(cfg, query, failed))
        if not has_own_netns(ctr):
            return fail(describe_no_network(ctr))
        before = None
        poll = first
        if interval > 0:
            # The counters were read at the end of the first poll: the window starts there.
            time.sleep(max(0.0, first.timestamp + interval - time.time()))
            poll = poller.poll_once().poll
            seconds = poll.timestamp - first.timestamp
            if first.view is not None and first.view.links is not None:
                before = Baseline(first.view.links, first.view.firewall, seconds)
    finally:
        poller.stop()
        quiet.disabled = was_disabled
    view = poll.view
    assert view is not None
    ifnames: dict[tuple[int, int], str] = {}
    if ctr.netns_id is not None:
        try:
            for index, name in read_container_ifnames(ctr.netns_id).items():
                ifnames[(ctr.netns_id, index)] = name
        except (OSError, ValueError):
            pass  # the names are a nicety: the ifindexes are shown anyway
    path = build_path(ctr, view, before=before, ifnames=ifnames)
    path = replace(path, conntrack=conntrack_view(poll, ctr))
    if not path.legs:
        return fail(
            f"found no host veth of container {ctr.name}: run explain in the network "
            "namespace of the container host (rootless runtimes keep their veths in their "
            "own namespace)"
        )
    out.write(format_path_json(path) if as_json else format_path_text(path))
    out.flush()
    return 0


def _explain_service(
    poller: Any,
    service: tuple[str, str],
    interval: float,
    out: TextIO,
    fail: Callable[[str], int],
) -> int:
    """``explain svc/NAMESPACE/NAME``: kube-proxy's chain walk with live counters."""
    from exporter.collectors.conntrack import (  # noqa: PLC0415 - only with conntrack data
        ConntrackData,
        active_connections,
    )
    from exporter.meaning.kube_proxy import MANAGER, active_per_endpoint  # noqa: PLC0415

    first = poller.poll_once().poll
    poll = first
    if interval > 0:
        time.sleep(max(0.0, first.timestamp + interval - time.time()))
        poll = poller.poll_once().poll
    view = poll.view
    assert view is not None
    meaning = next((m for m in view.meanings if m.manager == MANAGER), None)
    if meaning is None or view.firewall is None:
        return fail(
            "no kube-proxy rules on this host (run explain in the node's network namespace)"
        )
    namespace, name = service
    before = first.view.firewall if poll is not first and first.view is not None else None
    if before is not None and before.structure != view.firewall.structure:
        before = None  # the rules changed between the polls: no rates
    data = poll.get("conntrack", ConntrackData)
    active = None
    if data is not None and data.dump is not None:
        active = active_per_endpoint(meaning.services, active_connections(data.dump.result))
    walk = build_service_walk(
        view.firewall,
        meaning,
        namespace,
        name,
        before=before,
        seconds=poll.timestamp - first.timestamp,
        active=active,
    )
    if walk is None:
        known = sorted({f"{s.namespace}/{s.service}" for s in meaning.services})
        hint = f" (kube-proxy's rules name {len(known)} Services, e.g. {', '.join(known[:5])})"
        return fail(f"no Service {namespace}/{name} in kube-proxy's rules{hint if known else ''}")
    out.write(format_service_walk(walk))
    out.flush()
    return 0


def conntrack_view(poll: PollResult, workload: Workload) -> ConntrackView | None:
    """The workload's conntrack entries per network, from the poll's last attribution dump."""
    from exporter.collectors.conntrack import (  # noqa: PLC0415 - only with conntrack data
        ConntrackData,
        attribute,
        build_owners,
    )

    data = poll.get("conntrack", ConntrackData)
    if data is None or data.dump is None or poll.view is None:
        return None
    owners = build_owners(poll.view.sources, poll.view.interfaces)
    counts = attribute(data.dump.result, owners.workloads)
    entries = {key[3]: n for key, n in counts.items() if key[0] == workload.name}
    return ConntrackView(entries, max(0.0, poll.timestamp - data.dump.finished))


def _describe_missing_workload(cfg: Config, query: str, failed: Sequence[Any]) -> str:
    """Why ``query`` names no running workload: Docker's stopped containers say most."""
    if cfg.enabled("docker") and not any(s.name == "docker" for s in failed):
        from exporter.sources.docker import list_all_containers  # noqa: PLC0415

        try:
            listed = list_all_containers(cfg.docker.resolved_host(), cfg.docker.timeout)
        except Exception as exc:  # Docker went away meanwhile: say what we know
            return f"no running container {query!r} ({exc})"
        return describe_missing(query, listed)
    return describe_missing(query, [])


def parse_interval(value: str) -> float:
    """``--interval``: a duration ("1s", "500ms") or 0 for a single reading without rates."""
    if value.strip() in ("0", "0s"):
        return 0.0
    return parse_duration(value)


def _interval_arg(value: str) -> float:
    try:
        return parse_interval(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` subcommand's own arguments, added to the exporter's common flags."""
    parser.description = (
        "Print the path of one container's traffic on this host, hop by hop, with live "
        "figures: its interface, host veth, bridge and Docker network, routes, the firewall "
        "rules that apply to its network chain by chain, published ports, masquerade and drops."
    )
    parser.epilog = (
        "svc/NAMESPACE/NAME instead of a container: the chain walk of a Kubernetes Service "
        "through kube-proxy's rules, from KUBE-SERVICES to each endpoint, with live counters. "
        "Exit 1 when the container (or Service) is unknown, stopped or has no network of its own."
    )
    parser.add_argument(
        "container", help="container name or id prefix, or svc/NAMESPACE/NAME for a Service"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--interval",
        type=_interval_arg,
        default=1.0,
        metavar="DURATION",
        help="rate window: read the counters twice this far apart (default 1s; 0: once, no rates)",
    )


__all__ = [
    "Baseline",
    "ContainerPath",
    "ExplainError",
    "add_explain_arguments",
    "build_path",
    "build_paths",
    "build_rule_meanings",
    "describe_missing",
    "describe_no_network",
    "find_container",
    "format_path_json",
    "format_path_text",
    "parse_interval",
    "path_to_json",
    "read_container_ifnames",
    "run_explain",
]
