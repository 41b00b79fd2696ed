"""``netpath-exporter check``: what the exporter can see on this host, and why not.

Runs every enabled collector once (twice when a container's namespace id was
not known yet), exactly as the daemon would, then prints one line per finding:
capabilities held, interfaces, firewall backends and Docker's layout, Docker's
reachability and version, containers mapped to their host veths,
ip_forward and br_netfilter, routes, and the web config file. Exit status 0
when the exporter can do its job, 1 when something it should export cannot be
read, 2 for bad flags or configuration (as the daemon).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from exporter import __version__
from exporter.config import Config, ConfigError
from exporter.model import FirewallData, LinksData, RoutesData, SourceData, SysctlData, Workload
from exporter.pipeline import make_poller
from exporter.poller import PollResult
from exporter.registry import COLLECTORS, NAMES, resolve
from exporter.workloads import has_own_netns

# The capabilities the exporter uses, with what is lost without each.
NEEDED_CAPS: Mapping[str, str] = {
    "CAP_NET_ADMIN": "firewall: no rule counters (nf_tables netlink, iptables-*-save, "
    "x_tables getsockopt all need it); conntrack: no table figures (ctnetlink)",
    "CAP_NET_RAW": "firewall: no iptables-legacy counters (the x_tables socket is a raw socket)",
    "CAP_SYS_PTRACE": "containers: no host veth for containers of other users "
    "(/proc/PID/ns/net cannot be opened), so no per-container counters",
}
CAP_BITS: Mapping[str, int] = {
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
}

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"


@dataclass(frozen=True, slots=True)
class ProcessCaps:
    uid: int
    groups: tuple[int, ...]
    effective: frozenset[str]  # names from CAP_BITS


@dataclass(frozen=True, slots=True)
class Finding:
    status: str  # OK, WARN, FAIL or INFO
    topic: str
    text: str


# --------------------------------------------------------------------------
# Pure
# --------------------------------------------------------------------------


def parse_capabilities(status: str) -> tuple[int, tuple[int, ...], frozenset[str]]:
    """``/proc/self/status`` text -> (effective uid, groups, effective capability names)."""
    uid = -1
    groups: tuple[int, ...] = ()
    eff = 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":
            parts = value.split()
            uid = int(parts[1]) if len(parts) > 1 else -1
        elif key == "Groups":
            groups = tuple(int(g) for g in value.split())
        elif key == "CapEff":
            eff = int(value.strip(), 16)
    return uid, groups, frozenset(n for n, bit in CAP_BITS.items() if eff >> bit & 1)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _caps_findings(caps: ProcessCaps) -> list[Finding]:
    who = "root" if caps.uid == 0 else f"uid {caps.uid}"
    held = [c for c in NEEDED_CAPS if c in caps.effective]
    text = f"running as {who}; needed capabilities held: {', '.join(held) or 'none'}"
    out = [Finding(INFO, "capabilities", text)]
    for cap, loss in NEEDED_CAPS.items():
        if cap not in caps.effective:
            out.append(Finding(WARN, "capabilities", f"{cap} missing -> {loss}"))
    return out


def describe_links(links: LinksData, poll: PollResult, cfg: Config) -> list[Finding]:
    kinds: dict[str, int] = {}
    for link in links.links:
        kinds[link.kind] = kinds.get(link.kind, 0) + 1
    text = (
        f"{_count(len(links.links), 'interface')}: {_count(kinds.get('bridge', 0), 'bridge')}, "
        f"{_count(kinds.get('veth', 0), 'veth')}"
    )
    return [Finding(OK, "links", text)]


def describe_firewall(fw: FirewallData, poll: PollResult, cfg: Config) -> list[Finding]:
    out: list[Finding] = []
    backends: dict[str, list[str]] = {}
    for family, backend in fw.backends:
        backends.setdefault(backend, []).append(family)
    found = "; ".join(f"{b} ({', '.join(f)})" for b, f in backends.items()) or "none holds rules"
    rules = sum(len(c.rules) for t in fw.tables for c in t.chains)
    out.append(
        Finding(
            OK if not fw.errors else FAIL,
            "firewall",
            f"backends: {found}; {_count(rules, 'rule')} in the exported chains",
        )
    )
    meanings = poll.view.meanings if poll.view is not None else ()
    for m in meanings:
        text = f"{m.manager} rules, layout {m.layout}" + (f" ({m.backend})" if m.backend else "")
        out.append(Finding(INFO, "firewall", text))
    if not meanings:
        out.append(Finding(INFO, "firewall", "no firewall manager's rules recognised"))
    out.extend(Finding(FAIL, "firewall", err) for err in fw.errors)
    return out


def describe_docker(docker: SourceData, poll: PollResult, cfg: Config) -> list[Finding]:
    host = cfg.docker.resolved_host()
    out = [
        Finding(
            OK,
            "docker",
            f"Docker {docker.version or '(version unknown)'} reachable at {host}; "
            f"{_count(len(docker.workloads), 'running container')}, "
            f"{_count(len(docker.networks), 'network')}",
        )
    ]
    own = [c for c in docker.workloads if has_own_netns(c)]
    unmapped = unmapped_namespaces(
        "docker", own, "container", "CAP_SYS_PTRACE (or running as root)"
    )
    if unmapped is not None:
        out.append(unmapped)
    elif own:
        out.append(Finding(OK, "docker", f"all {len(own)} containers with a veth mapped"))
    return out


def unmapped_namespaces(
    topic: str, own: Sequence[Workload], noun: str, needs: str
) -> Finding | None:
    """The FAIL finding for workloads whose network namespace could not be opened, if any."""
    unmapped = sorted(w.name for w in own if w.netns_id is None)
    if not unmapped:
        return None
    shown = ", ".join(unmapped[:5]) + (", ..." if len(unmapped) > 5 else "")
    return Finding(
        FAIL,
        topic,
        f"{len(unmapped)} of {len(own)} {noun}s' network namespaces cannot be opened "
        f"({shown}): no per-{noun} counters; needs {needs}",
    )


def describe_cri(cri: SourceData, poll: PollResult, cfg: Config) -> list[Finding]:
    endpoint = str(cfg.setting("cri.endpoint")) or "the default socket"
    out = [
        Finding(
            OK,
            "cri",
            f"{cri.runtime} {cri.version or '(version unknown)'} answering the CRI at "
            f"{endpoint}; {_count(len(cri.workloads), 'pod')}, "
            f"{_count(len(cri.networks), 'CNI network')}",
        )
    ]
    own = [w for w in cri.workloads if has_own_netns(w)]
    unmapped = unmapped_namespaces(
        "cri", own, "pod", "hostPID and CAP_SYS_PTRACE (or running as root)"
    )
    if unmapped is not None:
        out.append(unmapped)
    elif own:
        out.append(Finding(OK, "cri", f"all {_count(len(own), 'pod')} with a pod network mapped"))
    return out


def describe_sysctl(sysctl: SysctlData, poll: PollResult, cfg: Config) -> list[Finding]:
    out: list[Finding] = []
    fwd = ", ".join(f"{f}={'on' if v else 'off'}" for f, v in sorted(sysctl.ip_forwarding.items()))
    status = OK if sysctl.ip_forwarding.get("ipv4", False) else WARN
    note = "" if status == OK else " (containers cannot reach beyond their bridge)"
    out.append(Finding(status, "sysctl", f"ip forwarding: {fwd or 'unknown'}{note}"))
    if sysctl.bridge_nf_call:
        calls = ", ".join(
            f"{f}={'on' if v else 'off'}" for f, v in sorted(sysctl.bridge_nf_call.items())
        )
        out.append(Finding(INFO, "sysctl", f"br_netfilter loaded; bridge-nf-call: {calls}"))
    else:
        out.append(
            Finding(
                INFO,
                "sysctl",
                "br_netfilter not loaded: traffic within one bridge bypasses iptables",
            )
        )
    return out


def describe_routes(routes: RoutesData, poll: PollResult, cfg: Config) -> list[Finding]:
    default = [r for r in routes.routes if r.destination == "default"]
    via = ", ".join(f"{r.interface}{' via ' + r.gateway if r.gateway else ''}" for r in default)
    text = f"{_count(len(routes.routes), 'route')}; default: {via or 'none'}"
    return [Finding(OK, "routes", text)]


def build_findings(
    cfg: Config,
    caps: ProcessCaps,
    poll: PollResult,
    web: tuple[str, str] | None,
) -> list[Finding]:
    """Everything the check reports, from one poll; ``web`` is (status, text) or None."""
    out = _caps_findings(caps)
    status = {s.name: s for s in poll.status}
    for spec in COLLECTORS:
        name = spec.name
        if not cfg.enabled(name):
            out.append(Finding(INFO, name, "disabled"))
            continue
        data = poll.data.get(name)
        s = status.get(name)
        if s is not None and s.absent:
            out.append(Finding(INFO, name, f"not on this host: {s.error}"))
            continue
        if data is None:
            err = s.error if s is not None else "not run"
            out.append(Finding(FAIL, name, f"cannot read: {err}{_hint(name, err)}"))
            continue
        if spec.describe:
            out.extend(resolve(spec.describe)(data, poll, cfg))
    if web is not None:
        out.append(Finding(web[0], "web", web[1]))
    return out


def _hint(collector: str, error: str) -> str:
    if collector != "docker" or "dockerd running" in error or "Docker socket" in error:
        # The firewall's messages, and the containers' common ones, name their own fix.
        return ""
    low = error.lower()
    if "permission" in low or "denied" in low:
        return " (the Docker socket needs read/write access: group docker, or root)"
    return " (is dockerd running? --docker.host / DOCKER_HOST)"


def render_findings(findings: Iterable[Finding]) -> str:
    width = max(len(t) for t in (*NAMES, "capabilities", "web"))
    return "".join(f"[{f.status:>4}] {f.topic:<{width}}  {f.text}\n" for f in findings)


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0


# --------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------


def read_process_caps(path: str = "/proc/self/status") -> ProcessCaps:
    uid, groups, eff = parse_capabilities(Path(path).read_text())
    return ProcessCaps(uid if uid >= 0 else os.geteuid(), groups, eff)


def read_web_finding(path: str) -> tuple[str, str] | None:
    if not path:
        return None
    from exporter.web.security import WebSecurity  # noqa: PLC0415 - only when a file is given

    try:
        active = WebSecurity(path).current()
    except ConfigError as exc:
        return FAIL, f"{path}: " + "; ".join(exc.problems)
    users = len(active.settings.users)
    tls = "TLS on" if active.tls else "TLS off"
    return OK, f"{path}: {tls}, basic auth {'for ' + _count(users, 'user') if users else 'off'}"


def run_check(cfg: Config, out: TextIO = sys.stdout) -> int:
    """Poll once with the daemon's collectors, print the findings, return the exit status."""
    poller = make_poller(cfg, render=False)
    # The findings say what failed and why; the poller's own error log would repeat it.
    quiet = logging.getLogger("netpath.poller")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        poll = poller.poll_once().poll
        if any(
            w.netns_id is None and has_own_netns(w) for src in poll.sources() for w in src.workloads
        ):
            poll = poller.poll_once().poll  # namespace ids are assigned lazily: ask once more
    finally:
        poller.stop()
        quiet.disabled = was_disabled
    findings = build_findings(cfg, read_process_caps(), poll, read_web_finding(cfg.web.config_file))
    out.write(f"netpath-exporter {__version__} check\n")
    out.write(render_findings(findings))
    code = exit_code(findings)
    out.write("result: the exporter can do its job\n" if code == 0 else "result: FAILED\n")
    return code
