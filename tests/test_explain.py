"""The packet-path walk (exporter.paths.explain) on literal data: the seed host and every layout.

The seed scenario (tests/scenarios/seed: docker0 with ``client``, the user
network ``appnet`` on br-40d652e0aac8 with ``shop-web-1`` publishing port 80)
gives the topology; the firewall is the seed's own ruleset or one of
tests/fixtures/docker_rules (same bridge, same container address). The
expected text of the seed's walk is tests/fixtures/explain/seed-shop-web-1.txt:
regenerate it with NETPATH_UPDATE_GOLDEN=1 and review the diff.

Every scenario folder (tests/scenarios/<name>/, see tests/test_golden.py) also
holds explain's text and JSON for each of its containers with a veth
(``explain/<container>.txt``, ``.json``), and those figures must be the
metric series of the same folder's ``expected.prom``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from meanings import render_docker
from prometheus_client.parser import text_string_to_metric_families
from test_docker_rules import LAYOUTS, layout_firewall
from test_golden import SCENARIO_NAMES, SCENARIOS, check_golden, container_ifnames, load_poll

from exporter.model import (
    Chain,
    FirewallData,
    LinksData,
    LinkStats,
    RoutesData,
    Rule,
    SourceData,
    Table,
    Workload,
)
from exporter.paths.explain import (
    Baseline,
    ContainerPath,
    ExplainError,
    build_path,
    build_paths,
    build_rule_meanings,
    describe_missing,
    describe_no_network,
    find_container,
    format_path_json,
    format_path_text,
    parse_interval,
    path_to_json,
)
from exporter.poller import PollResult
from exporter.view import HostView, derive_view

SEED = Path(__file__).resolve().parent / "scenarios" / "seed"
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "explain" / "seed-shop-web-1.txt"
UPDATE = os.environ.get("NETPATH_UPDATE_GOLDEN") == "1"
APP = "br-40d652e0aac8"


@pytest.fixture(scope="module")
def seed() -> tuple[SourceData, LinksData, FirewallData, RoutesData]:
    data = load_poll(SEED).data
    docker, links, fw, routes = (
        data["docker"],
        data["links"],
        data["firewall"],
        data["routes"],
    )
    assert isinstance(docker, SourceData) and isinstance(links, LinksData)
    assert isinstance(fw, FirewallData) and isinstance(routes, RoutesData)
    return docker, links, fw, routes


def web_path(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
    fw: FirewallData | None = None,
    before: Baseline | None = None,
) -> ContainerPath:
    docker, links, seed_fw, routes = seed
    ctr = find_container(docker.workloads, "shop-web-1")
    ifnames = {(1, 8): "eth0"}
    view = view_of(docker, links, fw or seed_fw, routes)
    return build_path(ctr, view, before=before, ifnames=ifnames)


def view_of(docker: SourceData, links: LinksData, fw: FirewallData, routes: RoutesData) -> HostView:
    """The host view the poller would derive from these collectors' data."""
    data = {"links": links, "firewall": fw, "routes": routes, "docker": docker}
    return derive_view(PollResult(data, (), 0.0, 0.0))


def test_seed_hops(seed: tuple[SourceData, LinksData, FirewallData, RoutesData]) -> None:
    path = web_path(seed)
    assert (path.layout, path.backend) == ("classic", "iptables-nft")
    (leg,) = path.legs
    assert (leg.container_interface.name, leg.container_interface.ifindex) == ("eth0", 8)
    assert (leg.container_interface.ip, leg.container_interface.mac) == (
        "172.18.0.2/16",
        "02:42:ac:12:00:02",
    )
    # Container perspective: it sent what its veth received.
    assert (
        leg.container_interface.transmit is not None
        and leg.container_interface.transmit.packets == 25
    )
    assert (
        leg.container_interface.receive is not None
        and leg.container_interface.receive.packets == 147
    )
    assert (leg.veth.name, leg.veth.ifindex, leg.veth.transmit_dropped) == ("veth5d6e7f8", 9, 1)
    assert leg.bridge is not None and (leg.bridge.name, leg.bridge.ports) == (APP, 1)
    assert leg.network is not None
    assert (leg.network.name, leg.network.subnets, leg.network.gateways) == (
        "appnet",
        ("172.18.0.0/16",),
        ("172.18.0.1",),
    )
    assert not leg.network.internal
    assert [(r.destination, r.interface) for r in leg.routes] == [("172.18.0.0/16", APP)]
    (default,) = path.default_routes
    assert (default.route.gateway, default.route.interface) == ("192.0.2.1", "eth0")
    assert default.uplink is not None and default.uplink.ifindex == 2


def test_seed_firewall_walk(seed: tuple[SourceData, LinksData, FirewallData, RoutesData]) -> None:
    (leg,) = web_path(seed).legs
    assert [(c.table, c.chain) for c in leg.chains] == [
        ("nat", "PREROUTING"),
        ("nat", "DOCKER"),
        ("filter", "FORWARD"),
        ("filter", "DOCKER-ISOLATION-STAGE-1"),
        ("filter", "DOCKER-ISOLATION-STAGE-2"),
        ("filter", "DOCKER"),
        ("nat", "OUTPUT"),
        ("nat", "POSTROUTING"),
    ]
    shown = [r.rule for c in leg.chains for r in c.rules]
    # Nothing about docker0 or its subnet; everything naming appnet's bridge is there.
    assert not [r for r in shown if "docker0" in r or "172.17." in r]
    seed_rules = [
        r.text for t in seed[2].tables for c in t.chains for r in c.rules if APP in r.text
    ]
    assert set(seed_rules) <= set(shown)
    forward = leg.chains[2]
    assert (forward.policy, forward.hook, forward.other_rules) == ("DROP", "forward", 4)
    assert [r.rule for r in forward.rules[:2]] == ["-j DOCKER-USER", "-j DOCKER-ISOLATION-STAGE-1"]
    stage2 = leg.chains[4]
    assert [(r.rule, r.figures.packets, r.meanings) for r in stage2.rules] == [
        (f"-o {APP} -j DROP", 7, ("drop: isolation",)),
        ("-j RETURN", 137, ()),
    ]


def test_kube_proxy_chains_stay_out_of_a_workloads_path(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    """kube-proxy's chains are read for its meaning; a workload's path leaves them out
    (``explain svc/NAMESPACE/NAME`` walks a Service's)."""
    fw = seed[2]
    dnat = '-p tcp -m comment --comment "a/b:p" -m tcp -j DNAT --to-destination 172.18.0.2:80'
    masq = '-s 172.18.0.2/32 -m comment --comment "a/b:p" -j KUBE-MARK-MASQ'
    sep = Chain("KUBE-SEP-AAAA", (Rule(masq, 0, 0), Rule(dnat, 0, 0)))
    svc = Chain("KUBE-SERVICES", (Rule("-d 10.96.0.1/32 -p tcp -j KUBE-SEP-AAAA", 0, 0),))
    jump = Rule("-j KUBE-SERVICES", 0, 0)

    def with_kube(t: Table) -> Table:
        if t.name != "nat" or t.family != "ipv4":
            return t
        chains = [replace(c, rules=(*c.rules, jump)) if c.name == "PREROUTING" else c
                  for c in t.chains]  # fmt: skip
        return replace(t, chains=(*chains, svc, sep))

    tables = tuple(with_kube(t) for t in fw.tables)
    (leg,) = web_path(seed, replace(fw, tables=tables, structure=0)).legs
    assert not [c.chain for c in leg.chains if c.chain.startswith("KUBE-")]
    assert [(c.table, c.chain) for c in leg.chains][:2] == [
        ("nat", "PREROUTING"),
        ("nat", "DOCKER"),
    ]


def test_seed_ports_masquerade_drops(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    (leg,) = web_path(seed).legs
    (port,) = leg.published_ports
    assert (port.protocol, port.host_ip, port.host_port, port.container_port) == (
        "tcp",
        "0.0.0.0",
        80,
        80,
    )
    assert port.connections.packets == 1
    assert [(r.table, r.chain, r.rule) for r in port.rules] == [
        (
            "nat",
            "DOCKER",
            f"! -i {APP} -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.18.0.2:80",
        )
    ]
    (masq,) = leg.masquerade
    assert (masq.subnet, masq.connections.packets) == ("172.18.0.0/16", 2)
    assert [r.rule for r in masq.rules] == [f"-s 172.18.0.0/16 ! -o {APP} -j MASQUERADE"]
    (drop,) = leg.drops
    assert (drop.reason, drop.figures.packets, drop.figures.bytes) == ("isolation", 7, 588)
    assert [(r.chain, r.rule) for r in drop.rules] == [
        ("DOCKER-ISOLATION-STAGE-2", f"-o {APP} -j DROP")
    ]


def _bump(fw: FirewallData, text: str, packets: int, nbytes: int) -> FirewallData:
    """The ruleset with rule ``text`` counting ``packets``/``nbytes`` fewer (an earlier reading)."""
    tables = []
    for t in fw.tables:
        chains = []
        for c in t.chains:
            rules = tuple(
                Rule(r.text, (r.packets or 0) - packets, (r.bytes or 0) - nbytes)
                if r.text == text
                else r
                for r in c.rules
            )
            chains.append(replace(c, rules=rules))
        tables.append(replace(t, chains=tuple(chains)))
    return replace(fw, tables=tuple(tables))


def test_rates_over_the_window(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    _docker, links, fw, _routes = seed
    drop = f"-o {APP} -j DROP"
    earlier_fw = _bump(fw, drop, 4, 336)
    st = links.stats[9]
    earlier_stats = dict(links.stats)
    earlier_stats[9] = st._replace(rx_packets=st.rx_packets - 10, rx_bytes=st.rx_bytes - 1000)
    earlier_stats[4] = LinkStats(10**9, 10**9, 0, 0, 10**9, 10**9, 0, 0)  # bridge re-created
    earlier = Baseline(replace(links, stats=earlier_stats), earlier_fw, 2.0)
    path = web_path(seed, before=earlier)
    assert path.interval == 2.0
    (leg,) = path.legs
    (isolation,) = leg.drops
    assert isolation.figures.packets_per_second == 2.0
    assert isolation.figures.bytes_per_second == 168.0
    assert leg.veth.receive is not None and leg.veth.receive.packets_per_second == 5.0
    assert leg.container_interface.transmit is not None
    assert leg.container_interface.transmit.bytes_per_second == 500.0
    # A counter that went down has no rate.
    assert leg.bridge is not None and leg.bridge.receive is not None
    assert leg.bridge.receive.packets_per_second is None
    # Unchanged rules: a rate of zero.
    masq = leg.masquerade[0].rules[0]
    assert masq.figures.packets_per_second == 0.0
    text = format_path_text(path)
    assert "rates over 2.0 s" in text
    assert "isolation: 7 pkts 588 B (2.0 pkt/s, 168 B/s)" in text


@pytest.mark.parametrize("layout", LAYOUTS)
def test_drops_ports_masquerade_agree_with_the_metrics(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData], layout: str
) -> None:
    """explain's figures are the netpath_docker_* series of the same network, on every layout."""
    fw = layout_firewall(layout)
    docker = seed[0]
    (leg,) = web_path(seed, fw=fw).legs
    families = {f.name: f for f in render_docker(fw, docker)}
    want_drops = {
        values[2]: value
        for values, value in families["netpath_dropped_packets_total"].samples
        if values[1] == APP
    }
    assert {d.reason: d.figures.packets for d in leg.drops} == want_drops
    assert want_drops, "every layout drops something into appnet"
    want_ports = {
        (v[2], v[3], int(v[4]), int(v[5])): n
        for v, n in families["netpath_published_port_connections_total"].samples
        if v[0] == "shop-web-1"
    }
    got_ports = {
        (p.protocol, p.host_ip, p.host_port, p.container_port): p.connections.packets
        for p in leg.published_ports
        if p.rules
    }
    assert got_ports == want_ports
    want_masq = {
        v[2]: n for v, n in families["netpath_masquerade_connections_total"].samples if v[1] == APP
    }
    assert {m.subnet: m.connections.packets for m in leg.masquerade} == want_masq
    # Every rule explain shows names appnet or names no other network.
    for chain in leg.chains:
        for r in chain.rules:
            assert "docker0" not in r.rule and "br-5ec2e7000001" not in r.rule, r


def test_nftables_walk_in_hook_order(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    (leg,) = web_path(seed, fw=layout_firewall("v29-nftables")).legs
    ipv4 = [c.chain for c in leg.chains if c.family == "ip"]
    assert ipv4 == [
        "raw-PREROUTING",
        "nat-PREROUTING",
        "nat-prerouting-and-output",
        "filter-FORWARD",
        f"filter-forward-in__{APP}",
        f"filter-forward-out__{APP}",
        "nat-POSTROUTING",
        f"nat-postrouting-out__{APP}",
        f"nat-postrouting-in__{APP}",
    ]
    assert [c.family for c in leg.chains].index("ip6") == len(ipv4)
    fwd_in = leg.chains[4]
    assert [r.meanings for r in fwd_in.rules][-1] == ("drop: unpublished",)


def test_rule_meanings_name_each_rule(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    docker, links, fw, routes = seed
    meanings = build_rule_meanings(fw, view_of(docker, links, fw, routes).meanings)
    texts = {}
    for (ti, chain, ri), ms in meanings.items():
        rule = next(c for c in fw.tables[ti].chains if c.name == chain).rules[ri]
        texts[(chain, rule.text)] = sorted(m.text() for m in ms)
    assert texts[("DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP")] == ["drop: isolation"]
    assert texts[
        ("DOCKER", f"-d 172.18.0.2/32 ! -i {APP} -o {APP} -p tcp -m tcp --dport 80 -j ACCEPT")
    ] == ["forwarded inbound"]
    assert ("DOCKER-USER", "-j RETURN") not in texts


def test_golden_text(seed: tuple[SourceData, LinksData, FirewallData, RoutesData]) -> None:
    got = format_path_text(web_path(seed))
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "explain's text changed: NETPATH_UPDATE_GOLDEN=1"
    hops = [got.index(f"  {n}. ") for n in range(1, 9)]
    assert hops == sorted(hops)


def test_json(seed: tuple[SourceData, LinksData, FirewallData, RoutesData]) -> None:
    path = web_path(seed)
    doc = json.loads(format_path_json(path))
    assert doc == json.loads(json.dumps(path_to_json(path)))
    assert doc["container"]["name"] == "shop-web-1"
    assert doc["firewall"] == {
        "manager": "docker",
        "backend": "iptables-nft",
        "layout": "classic",
        "errors": [],
    }
    (net,) = doc["networks"]
    assert net["veth"]["name"] == "veth5d6e7f8"
    assert net["bridge"]["name"] == APP
    assert net["network"]["subnets"] == ["172.18.0.0/16"]
    assert net["drops"][0]["reason"] == "isolation"
    assert net["drops"][0]["figures"]["packets"] == 7
    assert net["published_ports"][0]["rules"][0]["chain"] == "DOCKER"
    assert net["container_interface"]["ip"] == "172.18.0.2/16"
    assert doc["default_routes"][0]["uplink"]["name"] == "eth0"


def test_every_container_with_a_veth(
    seed: tuple[SourceData, LinksData, FirewallData, RoutesData],
) -> None:
    docker, links, fw, routes = seed
    paths = build_paths(view_of(docker, links, fw, routes))
    assert [(p.container.name, [leg.veth.name for leg in p.legs]) for p in paths] == [
        ("client", ["veth1a2b3c4"]),
        ("shop-web-1", ["veth5d6e7f8"]),
    ]
    batch = find_container(docker.workloads, "batch")
    assert build_path(batch, view_of(docker, links, fw, routes)).legs == ()
    assert "no network (--network none)" in describe_no_network(batch)


def _ctr(name: str, cid: str, mode: str = "bridge") -> Workload:
    return Workload(cid, name, "img", "", "", mode, None, (), ())


def test_find_container() -> None:
    ctrs = [_ctr("web", "abc123" + "0" * 58), _ctr("db", "abd456" + "0" * 58)]
    assert find_container(ctrs, "web").name == "web"
    assert find_container(ctrs, "/db").name == "db"
    assert find_container(ctrs, "abc").name == "web"
    assert find_container(ctrs, "ABD4").name == "db"
    with pytest.raises(ExplainError, match="several container ids"):
        find_container(ctrs, "ab")
    with pytest.raises(LookupError):
        find_container(ctrs, "cache")


def test_messages() -> None:
    listed = [
        {
            "Id": "f00d" + "0" * 60,
            "Names": ["/old"],
            "State": "exited",
            "Status": "Exited (0) 2 hours ago",
        }
    ]
    assert describe_missing("old", listed) == (
        "container old is not running (Exited (0) 2 hours ago): a stopped container has no "
        "network path; start it first"
    )
    assert "not running" in describe_missing("f00d", listed)
    assert describe_missing("nope", listed).startswith("no container named 'nope'")
    host = describe_no_network(_ctr("h", "1" * 64, "host"))
    assert "host's network stack" in host
    shared = describe_no_network(_ctr("s", "2" * 64, "container:" + "3" * 64))
    assert "container 333333333333: explain that one" in shared


def test_parse_interval() -> None:
    assert parse_interval("0") == 0.0
    assert parse_interval("250ms") == 0.25
    assert parse_interval("2s") == 2.0
    with pytest.raises(ValueError):
        parse_interval("soon")


# --------------------------------------------------------------------------
# Every scenario: explain's text and JSON per container, and their figures
# --------------------------------------------------------------------------


def scenario_paths(scenario: str) -> list[ContainerPath]:
    """explain's path of every container of the scenario that has a veth, by name."""
    view = load_poll(SCENARIOS / scenario).view
    assert view is not None and view.links is not None
    ifnames = container_ifnames(view.links)
    return [build_path(p.container, view, ifnames=ifnames) for p in build_paths(view)]


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_scenario_explain_golden(scenario: str) -> None:
    folder = SCENARIOS / scenario / "explain"
    paths = scenario_paths(scenario)
    assert paths, f"{scenario}: no container with a veth"
    for path in paths:
        assert path.legs and all(leg.container_interface.name for leg in path.legs)
        check_golden(folder / f"{path.container.name}.txt", format_path_text(path))
        doc = format_path_json(path)
        assert json.loads(doc) == json.loads(json.dumps(path_to_json(path)))
        check_golden(folder / f"{path.container.name}.json", doc)
    # no golden of a container the scenario no longer has
    want = {f"{p.container.name}.{ext}" for p in paths for ext in ("txt", "json")}
    assert {f.name for f in folder.iterdir()} == want


def test_seed_scenario_explain_is_the_promised_text() -> None:
    """The seed's explain text is a stated promise: byte-identical to the 0.1 golden."""
    assert (SEED / "explain" / "shop-web-1.txt").read_bytes() == GOLDEN.read_bytes()


def _series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_scenario_explain_figures_are_the_metric_series(scenario: str) -> None:
    """Every drop, published-port and masquerade figure of the explain goldens is the series of
    expected.prom with the same meaning: the metrics and explain read the same rules."""
    folder = SCENARIOS / scenario
    series = _series((folder / "expected.prom").read_text())

    def pick(name: str, **labels: str) -> dict[tuple[str, ...], float]:
        keys = [k for k in labels if labels[k] == "*"]
        fixed = {k: v for k, v in labels.items() if v != "*"}
        return {
            tuple(lb[k] for k in keys): v
            for lb, v in series.get(name, [])
            if all(lb[k] == v2 for k, v2 in fixed.items())
        }

    compared = {"drop": 0, "port": 0, "masquerade": 0}
    for doc_path in sorted((folder / "explain").glob("*.json")):
        doc = json.loads(doc_path.read_text())
        ctr = doc["container"]["name"]
        for leg in doc["networks"]:
            bridge, net = leg["bridge"]["name"], leg["network"]["name"]
            drops = {(d["reason"],): d["figures"]["packets"] for d in leg["drops"]}
            drop_bytes = {(d["reason"],): d["figures"]["bytes"] for d in leg["drops"]}
            want = pick("netpath_dropped_packets_total", network=net, bridge=bridge, reason="*")
            assert drops == want, (ctr, net)
            want = pick("netpath_dropped_bytes_total", network=net, bridge=bridge, reason="*")
            assert drop_bytes == want, (ctr, net)
            ports = {
                (p["protocol"], p["host_ip"], str(p["host_port"]), str(p["container_port"])): p[
                    "connections"
                ]["packets"]
                for p in leg["published_ports"]
                if p["rules"]
            }
            want = pick(
                "netpath_published_port_connections_total",
                container=ctr,
                network=net,
                protocol="*",
                host_ip="*",
                host_port="*",
                container_port="*",
            )
            assert ports == want, (ctr, net)
            masq = {(m["subnet"],): m["connections"]["packets"] for m in leg["masquerade"]}
            want = pick(
                "netpath_masquerade_connections_total", network=net, bridge=bridge, subnet="*"
            )
            assert masq == want, (ctr, net)
            compared["drop"] += len(drops)
            compared["port"] += len(ports)
            compared["masquerade"] += len(masq)
    # every scenario drops, publishes and masquerades something explain shows
    assert all(compared.values()), compared


# --------------------------------------------------------------------------
# Known bugs the scenarios show (exporter/paths/text.py, exporter/paths/walk.py)
# --------------------------------------------------------------------------


def _api() -> ContainerPath:
    return next(p for p in scenario_paths("ipv6") if p.container.name == "api")


def test_an_ipv6_published_port_points_at_the_ipv6_address() -> None:
    text = format_path_text(_api())
    assert "tcp [::]:8443 -> [fd00:21::2]:443  1173 connections" in text


def test_published_ports_stay_on_the_leg_their_dnat_serves() -> None:
    api = _api()
    by_net = {leg.network.name: leg for leg in api.legs if leg.network is not None}
    assert [(p.host_ip, p.connections.packets) for p in by_net["dualnet"].published_ports] == [
        ("0.0.0.0", 13),
        ("::", 1173),
    ]
    assert "docker-proxy alone serves it" not in format_path_text(api)


def test_explain_shows_the_workloads_conntrack_entries() -> None:
    """explain counts a workload's entries as the conntrack collector attributes them."""
    import socket  # noqa: PLC0415

    from exporter.collectors.conntrack import ConntrackData, LastDump  # noqa: PLC0415
    from exporter.netlink.conntrack import DumpResult, TableInfo  # noqa: PLC0415
    from exporter.paths.explain import conntrack_view  # noqa: PLC0415

    poll = load_poll(SEED)
    ip = socket.inet_aton
    web, client, outside = ip("172.18.0.2"), ip("172.17.0.2"), ip("192.0.2.9")
    pairs = {(web, outside): 3, (outside, web): 2, (client, web): 4, (client, outside): 5}
    dump = DumpResult(entries=14, truncated=False, pairs=pairs, active={})
    data = ConntrackData(TableInfo(14, 1000), {}, LastDump(dump, 0.01, poll.timestamp - 7))
    with_ct = replace(poll, data={**poll.data, "conntrack": data})
    docker = poll.data["docker"]
    assert isinstance(docker, SourceData)
    web_ctr = find_container(docker.workloads, "shop-web-1")
    view = conntrack_view(with_ct, web_ctr)
    assert view is not None
    assert dict(view.entries) == {"appnet": 3 + 2 + 4}  # a source either way; once each
    assert view.dump_age == 7
    data_ = poll.data
    seed_tuple = (data_["docker"], data_["links"], data_["firewall"], data_["routes"])
    path = replace(web_path(seed_tuple), conntrack=view)  # type: ignore[arg-type]
    text = format_path_text(path)
    assert "conntrack: 9 on appnet (original or reply source its address; dump 7 s ago)" in text
    assert path_to_json(path)["conntrack"] == {"entries": {"appnet": 9}, "dump_age_seconds": 7}
    assert conntrack_view(poll, web_ctr) is None  # no conntrack read: nothing said
