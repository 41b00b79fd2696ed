"""Renderers that keep what the structure decides: same output as rendering from scratch.

render_firewall and render_docker keep a plan per ``FirewallData.structure``
(and SourceData), render_interfaces per topology tuple, the exposition writer
per family. With the token set and only the counters moving, every render must
equal a render of the same data without a token (planned afresh); a token
that does not fit the data (a bug elsewhere) must not make it wrong either.
The lab test checks that the FirewallCollector's token changes exactly when
the structure does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest
from meanings import render_docker

from exporter.collectors.links import render_interfaces
from exporter.firewall.iptables_save import parse_iptables_save
from exporter.firewall.nft_text import parse_nft_text
from exporter.metrics.exposition import ExpositionWriter
from exporter.metrics.firewall import render_firewall
from exporter.model import (
    BACKEND_IPTABLES_NFT,
    BACKEND_NFTABLES,
    Chain,
    Endpoint,
    FirewallData,
    Link,
    LinksData,
    LinkStats,
    MetricFamily,
    Network,
    Rule,
    SourceData,
    Table,
    Workload,
)

REPO = Path(__file__).resolve().parent.parent
RULES = Path(__file__).resolve().parent / "fixtures" / "docker_rules"
TOKENS = itertools.count(1_000_000)  # far from the collectors' tokens in this process


def _nft_tables(text: str) -> list[Table]:
    return [
        Table(
            t.family,
            BACKEND_NFTABLES,
            t.name,
            tuple(
                Chain(c.name, tuple(Rule(r.text, r.packets, r.bytes) for r in c.rules), c.policy)
                for c in t.chains
            ),
        )
        for t in parse_nft_text(text)
    ]


def _firewall(layout: str, backend: str = BACKEND_IPTABLES_NFT) -> FirewallData:
    if layout == "v29-nftables":
        tables = _nft_tables((RULES / "v29-nftables.nft").read_text())
    else:
        tables = parse_iptables_save(
            (RULES / f"{layout}.ipv4.iptables-save").read_text(), "ipv4", backend
        )
        v6 = RULES / f"{layout}.ipv6.iptables-save"
        if v6.exists():
            tables += parse_iptables_save(v6.read_text(), "ipv6", backend)
    # a duplicate rule (summed into one series) and a rule without counters
    first = tables[0]
    chain = first.chains[0]
    extra = (Rule("-j RETURN", 1, 10), Rule("-j RETURN", 2, 20), Rule("-j LOG", None, None))
    tables[0] = dataclasses.replace(
        first, chains=(dataclasses.replace(chain, rules=chain.rules + extra), *first.chains[1:])
    )
    backends = tuple(sorted({(t.family, t.backend) for t in tables}))
    return FirewallData(backends=backends, tables=tuple(tables), structure=next(TOKENS))


def _moved(fw: FirewallData, step: int) -> FirewallData:
    """The same structure (and token) with every counter moved, as on a busy host."""

    def rule(r: Rule, i: int) -> Rule:
        if r.packets is None or r.bytes is None:
            return r
        return Rule(r.text, r.packets + step * (i + 1), r.bytes + step * 1000 * (i + 1))

    return dataclasses.replace(
        fw,
        tables=tuple(
            dataclasses.replace(
                t,
                chains=tuple(
                    dataclasses.replace(
                        c,
                        rules=tuple(rule(r, i) for i, r in enumerate(c.rules)),
                        policy_packets=None if c.policy is None else step,
                        policy_bytes=None if c.policy is None else step * 64,
                    )
                    for c in t.chains
                ),
            )
            for t in fw.tables
        ),
    )


def _fresh(fw: FirewallData) -> FirewallData:
    return dataclasses.replace(fw, structure=0)


def _docker(bridge_name: str = "appnet") -> SourceData:
    return SourceData(
        version="27.5.1",
        workloads=(
            Workload(
                id="w" * 64,
                name="web",
                image="busybox",
                compose_project="",
                compose_service="",
                network_mode=bridge_name,
                netns_id=None,
                endpoints=(Endpoint(bridge_name, "", "172.18.0.2", "fd00:18::2", "", ""),),
                ports=(),
            ),
        ),
        networks=(
            Network(
                bridge_name,
                "40d652e0aac8" + "a" * 52,
                "bridge",
                "br-40d652e0aac8",
                ("172.18.0.0/16", "fd00:18::/64"),
                (),
                False,
            ),
            Network("bridge", "b" * 64, "bridge", "docker0", ("172.17.0.0/16",), (), False),
        ),
    )


LAYOUTS = ["classic", "forward-chains", "v29-iptables", "v29-nftables"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_moving_counters_render_as_from_scratch(layout: str) -> None:
    fw = _firewall(layout)
    docker = _docker()
    writer, scratch = ExpositionWriter(), ExpositionWriter()
    for step in range(4):
        now = _moved(fw, step)
        planned = render_firewall(now) + render_docker(now, docker)
        fresh = render_firewall(_fresh(now)) + render_docker(_fresh(now), docker)
        assert planned == fresh
        assert writer.render(planned) == ExpositionWriter().render(fresh)
        assert scratch.render(fresh) == ExpositionWriter().render(fresh)
    moved = {s for f in planned if f.name.endswith("_total") for s in f.samples}
    assert any(v for _, v in moved)  # the counters did reach the series


def test_rules_without_counters_and_duplicates() -> None:
    fw = _moved(_firewall("classic"), 3)
    fams = {f.name: f for f in render_firewall(fw)}
    key = ("ipv4", BACKEND_IPTABLES_NFT, fw.tables[0].name, fw.tables[0].chains[0].name)
    pk = dict(fams["netpath_firewall_rule_packets_total"].samples)
    n = len(fw.tables[0].chains[0].rules)
    # the two "-j RETURN" rules, indexes n-3 and n-2, are one series: 1+3(n-2) + 2+3(n-1)
    assert pk[(*key, "-j RETURN")] == 1 + 3 * (n - 2) + 2 + 3 * (n - 1)
    assert (*key, "-j LOG") not in pk
    assert dict(fams["netpath_firewall_chain_rules"].samples)[key] == n


def test_docker_plan_follows_docker_data() -> None:
    fw = _firewall("classic")
    first = render_docker(fw, _docker("appnet"))
    renamed = render_docker(fw, _docker("frontend"))  # same token, other SourceData
    assert renamed == render_docker(_fresh(fw), _docker("frontend"))
    assert renamed != first
    assert render_docker(fw, None) == render_docker(_fresh(fw), None)


def test_a_token_that_does_not_fit_is_not_trusted() -> None:
    fw = _firewall("classic")
    render_firewall(fw)
    render_docker(fw, None)
    other = dataclasses.replace(_firewall("forward-chains"), structure=fw.structure)
    assert render_firewall(other) == render_firewall(_fresh(other))
    assert render_docker(other, None) == render_docker(_fresh(other), None)
    fewer = dataclasses.replace(
        fw,
        tables=tuple(
            dataclasses.replace(t, chains=tuple(c for c in t.chains if c.name != "DOCKER"))
            for t in fw.tables
        ),
    )
    assert render_firewall(fewer) == render_firewall(_fresh(fewer))
    assert render_docker(fewer, None) == render_docker(_fresh(fewer), None)


def _links() -> tuple[Link, ...]:
    return (
        Link(1, "lo", "loopback", None, "", "unknown"),
        Link(2, "docker0", "bridge", None, "02:42:00:00:00:01", "up"),
        Link(3, "veth1", "veth", 2, "02:42:00:00:00:02", "up", 7, 0),
        Link(4, "veth2", "veth", 2, "02:42:00:00:00:03", "down", 9, 1),
    )


def _stats(seed: int, indexes: tuple[int, ...]) -> dict[int, LinkStats]:
    return {i: LinkStats(*(seed * 100 + i * 10 + k for k in range(8))) for i in indexes}


@pytest.mark.parametrize("loopback", [False, True])
def test_interfaces_same_topology_new_counters(loopback: bool) -> None:
    links = _links()
    for seed, indexes in enumerate([(1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 4), ()]):
        data = LinksData(links, _stats(seed, indexes))
        got = render_interfaces(data, include_loopback=loopback)
        fresh = render_interfaces(LinksData(tuple(links), data.stats), include_loopback=loopback)
        assert got == fresh
        rx = dict(got[1].samples)
        assert rx == {
            (link.name,): seed * 100 + link.index * 10
            for link in links
            if link.index in indexes and (loopback or link.kind != "loopback")
        }


def test_writer_notices_new_help_and_label_names() -> None:
    w = ExpositionWriter()
    w.render([MetricFamily("m_total", "counter", "one", ("a",), ((("x",), 1),))])
    body = w.render([MetricFamily("m_total", "counter", "two", ("b",), ((("x",), 2),))])
    assert body == b'# HELP m_total two\n# TYPE m_total counter\nm_total{b="x"} 2\n'


# --------------------------------------------------------------------------
# The FirewallCollector's token, against the real kernel
# --------------------------------------------------------------------------

AGENT = (
    f"TESTS_DIR = {str(Path(__file__).resolve().parent)!r}\n"
    + r"""
import dataclasses, json, subprocess, sys
from exporter.config import FirewallConfig
import sys
sys.path.insert(0, TESTS_DIR)
from meanings import render_docker
from exporter.firewall.collector import FirewallCollector
from exporter.metrics.firewall import render_firewall
collector = FirewallCollector(FirewallConfig())
ipt = sys.argv[1]
def step(*cmd):
    if cmd:
        subprocess.run([ipt, *cmd], check=True)
    data = collector.collect()
    fresh = dataclasses.replace(data, structure=0)
    same = render_firewall(data) + render_docker(data, None) == (
        render_firewall(fresh) + render_docker(fresh, None)
    )
    return [data.structure, same]
out = [
    step(),
    step(),
    step("-Z"),
    step("-A", "FORWARD", "-o", "docker9", "-j", "DROP"),
    step(),
    step("-D", "FORWARD", "-o", "docker9", "-j", "DROP"),
    step("-R", "DOCKER-ISOLATION-STAGE-2", "1", "-o", "docker8", "-j", "DROP"),
]
print(json.dumps(out))
"""
)


@pytest.fixture(params=["nft", "legacy"])
def ruleset_host(request: pytest.FixtureRequest) -> Iterator[tuple[str, lab.Netns]]:
    lab.need_root()
    with lab.netns(f"plan{request.param[0]}") as host:
        host.exec(f"iptables-{request.param}-restore", input=lab.SEED_RULESET.read_text())
        yield request.param, host


@pytest.mark.lab
def test_collector_token_changes_with_the_structure_only(
    ruleset_host: tuple[str, lab.Netns],
) -> None:
    kind, host = ruleset_host
    out = json.loads(host.exec(sys.executable, "-c", AGENT, f"iptables-{kind}"))
    tokens = [t for t, _ in out]
    assert all(same for _, same in out)
    assert all(tokens)
    # first read, steady, counters zeroed: one token
    assert tokens[0] == tokens[1] == tokens[2]
    # a rule added, then steady: a new token, kept
    assert tokens[3] == tokens[4] != tokens[2]
    # removed again (read anew: a new token), then a same-size change
    assert tokens[5] != tokens[4]
    assert tokens[6] not in (tokens[5], tokens[4], tokens[2])
