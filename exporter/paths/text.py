"""A path as text and as JSON (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from exporter.paths.views import ContainerPath, Figures, LinkHop, manager_title

# --------------------------------------------------------------------------
# Output (pure)
# --------------------------------------------------------------------------


def _json(obj: object) -> Any:
    if isinstance(obj, tuple | list):
        return [_json(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _json(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {name: _json(getattr(obj, name)) for name in obj.__dataclass_fields__}
    return obj


def path_to_json(path: ContainerPath) -> dict[str, Any]:
    """The path as plain JSON-ready data (``explain --json``)."""
    ctr = path.container
    return {
        "container": {
            "name": ctr.name,
            "id": ctr.id,
            "image": ctr.image,
            "network_mode": ctr.network_mode,
            "compose_project": ctr.compose_project,
            "compose_service": ctr.compose_service,
        },
        "interval_seconds": path.interval,
        "firewall": {
            "manager": path.manager,
            "backend": path.backend,
            "layout": path.layout,
            "errors": list(path.firewall_errors),
        },
        "networks": [_json(leg) for leg in path.legs],
        **(
            {
                "conntrack": {
                    "entries": dict(path.conntrack.entries),
                    "dump_age_seconds": path.conntrack.dump_age,
                }
            }
            if path.conntrack is not None
            else {}
        ),
        "default_routes": [
            {**_json(u.route), "uplink": _json(u.uplink)} for u in path.default_routes
        ],
    }


def format_path_json(path: ContainerPath) -> str:
    return json.dumps(path_to_json(path), indent=2) + "\n"


def _plural(n: int | None, word: str) -> str:
    return f"{_n(n)} {word}" + ("" if n == 1 else "s")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v}"


def _r(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 or v == 0 else f"{v:.1f}"


def _bytes(v: int | None) -> str:
    if v is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v} B"


def _figs(f: Figures | None, rates: bool) -> str:
    if f is None:
        return "no counters"
    text = f"{_n(f.packets)} pkts {_bytes(f.bytes)}"
    if rates:
        text += f" ({_r(f.packets_per_second)} pkt/s, {_r(f.bytes_per_second)} B/s)"
    return text


def _link_line(hop: LinkHop, rates: bool) -> list[str]:
    lines = [
        f"receive  {_figs(hop.receive, rates)}",
        f"transmit {_figs(hop.transmit, rates)}",
    ]
    if hop.receive is not None:
        lines.append(
            f"dropped rx {_n(hop.receive_dropped)} tx {_n(hop.transmit_dropped)}, "
            f"errors rx {_n(hop.receive_errors)} tx {_n(hop.transmit_errors)}"
        )
    return lines


def format_path_text(path: ContainerPath) -> str:
    """The path for people: numbered hops, then the firewall chain by chain."""
    ctr = path.container
    rates = path.interval is not None
    if ctr.pod:
        out = [f"Pod {ctr.name} (sandbox {ctr.id[:12]}), runtime {ctr.runtime}"]
    else:
        runtime = "" if ctr.runtime == "docker" else f", runtime {ctr.runtime}"
        out = [f"Container {ctr.name} ({ctr.id[:12]}), image {ctr.image or '-'}{runtime}"]
    window = f"rates over {path.interval:.1f} s" if rates else "no rates (one reading)"
    fw = (
        f"firewall {path.backend or 'none found'}, "
        f"{manager_title(path.manager)} layout {path.layout}"
    )
    if ctr.runtime != "docker" and path.layout == "unknown":
        fw = f"firewall {path.backend or 'read'}; no {manager_title(path.manager)} rules"
    out.append(f"{window}; {fw}")
    for err in path.firewall_errors:
        out.append(f"warning: firewall: {err}")
    if path.conntrack is not None:
        per_net = ", ".join(
            f"{n} on {net or '?'}" for net, n in sorted(path.conntrack.entries.items())
        )
        out.append(
            f"conntrack: {per_net or 'no entries'} "
            f"(original or reply source its address; dump {path.conntrack.dump_age:.0f} s ago)"
        )
    for leg in path.legs:
        net = leg.network
        out.append("")
        if net is not None:
            out.append(f"Network {net.name} ({net.id[:12]}, driver {net.driver})")
        else:
            out.append("Network: unknown (the bridge belongs to no known network)")
        iface = leg.container_interface
        where = f"ifindex {iface.ifindex}" if iface.ifindex is not None else "ifindex ?"
        out.append(f"  1. container interface {iface.name or '?'} ({where} in the container)")
        addrs = ", ".join(a for a in (iface.ip, iface.ipv6) if a) or "no address"
        out.append(f"       {addrs}  mac {iface.mac or '-'}  gateway {iface.gateway or '-'}")
        out.append(f"       sent     {_figs(iface.transmit, rates)}")
        out.append(f"       received {_figs(iface.receive, rates)}")
        v = leg.veth
        out.append(f"  2. host veth {v.name} (ifindex {v.ifindex}, {v.operstate}, mac {v.mac})")
        out += [f"       {line}" for line in _link_line(v, rates)]
        b = leg.bridge
        if b is not None:
            out.append(
                f"  3. bridge {b.name} (ifindex {b.ifindex}, {b.operstate}, "
                f"{b.ports} port{'s' if b.ports != 1 else ''})"
            )
        else:
            out.append("  3. bridge: none (the veth has no master)")
        if net is not None:
            subnets = ", ".join(net.subnets) or "-"
            gateways = ", ".join(net.gateways) or "-"
            internal = "yes" if net.internal else "no"
            out.append(f"       subnet {subnets}  gateway {gateways}  internal {internal}")
        if b is not None:
            out += [f"       {line}" for line in _link_line(b, rates)]
        out.append("  4. routing")
        for r in leg.routes:
            via = f" via {r.gateway}" if r.gateway else ""
            out.append(f"       {r.destination}{via} dev {r.interface}")
        if not leg.routes:
            out.append("       no route through the bridge (is it down?)")
        for u in path.default_routes:
            via = f" via {u.route.gateway}" if u.route.gateway else ""
            out.append(f"       default{via} dev {u.route.interface}")
            if u.uplink is not None:
                out.append(f"         uplink {u.uplink.name} ({u.uplink.operstate})")
                out += [f"         {line}" for line in _link_line(u.uplink, rates)[:2]]
        if not path.default_routes:
            out.append("       no default route")
        out.append("  5. firewall, in traversal order")
        if not leg.chains:
            out.append("       no rules about this network")
        for ch in leg.chains:
            head = f"       {ch.family} {ch.table} {ch.chain}"
            if ch.hook:
                head += f" (hook {ch.hook}"
                if ch.policy is not None:
                    head += f", policy {ch.policy}"
                    if ch.policy_figures is not None:
                        head += f": {_figs(ch.policy_figures, rates)}"
                head += ")"
            out.append(head)
            for rv in ch.rules:
                tag = f"   <- {'; '.join(rv.meanings)}" if rv.meanings else ""
                out.append(
                    f"         {_n(rv.figures.packets):>8} {_bytes(rv.figures.bytes):>10}"
                    + (f" {_r(rv.figures.packets_per_second):>7}/s" if rates else "")
                    + f"  {rv.rule}{tag}"
                )
            if ch.other_rules:
                out.append(
                    f"         ({_plural(ch.other_rules, 'rule')} about other networks not shown)"
                )
            if not ch.rules:
                out.append("         (no rules)")
        out.append("  6. published ports")
        for p in leg.published_ports:
            # An IPv6 port's DNAT goes to the container's IPv6 address.
            addr = iface.ipv6 if ":" in p.host_ip and iface.ipv6 else iface.ip
            target = _hostport(addr.split("/")[0] or "?", p.container_port)
            head = f"       {p.protocol} {_hostport(p.host_ip, p.host_port)} -> {target}  "
            if not p.rules:
                out.append(head + "no DNAT rule: docker-proxy alone serves it")
                continue
            out.append(
                head
                + _plural(p.connections.packets, "connection")
                + (f" ({_r(p.connections.packets_per_second)}/s)" if rates else "")
            )
            for rv in p.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.published_ports:
            out.append("       none")
        out.append("  7. masquerade (new connections leaving through another interface)")
        for mq in leg.masquerade:
            out.append(
                f"       {mq.subnet}: {_plural(mq.connections.packets, 'connection')}"
                + (f" ({_r(mq.connections.packets_per_second)}/s)" if rates else "")
            )
            for rv in mq.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.masquerade:
            out.append("       no MASQUERADE rule for this network")
        out.append(f"  8. drops into {net.name if net else 'this network'}, by reason")
        for d in leg.drops:
            out.append(f"       {d.reason}: {_figs(d.figures, rates)}")
            for rv in d.rules:
                out.append(f"         {rv.family} {rv.table} {rv.chain}: {rv.rule}")
        if not leg.drops:
            out.append(f"       no {manager_title(path.manager)} drop rule for this network")
    return "\n".join(out) + "\n"
